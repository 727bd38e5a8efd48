package transport

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/shardd/shardd/paxospb"
)

// sendMarker heals the link, sends a message with Seq seq and waits for
// it. Since one link delivers in order, anything sent before the marker
// that is not received by then never will be.
func sendMarker(t *testing.T, a, b *node, group, seq uint64) {
	t.Helper()
	a.tr.Faults().Heal(b.id)
	if !a.tr.Send(heartbeat(a.id, b.id, group, seq)) {
		t.Fatal("Send of the marker refused")
	}
	waitFor(t, "the marker", func() bool {
		got := b.h.received()
		return len(got) > 0 && got[len(got)-1].Seq == seq && got[len(got)-1].Group == group
	}, b.h)
}

func TestFaultsCut(t *testing.T) {
	nodes := startCluster(t, 2, true, nil)
	a, b := nodes[0], nodes[1]
	// Open the stream first, so the cut acts on a live link.
	a.tr.Send(heartbeat(1, 2, 1, 1))
	waitFor(t, "the first message", func() bool { return b.h.count.Load() == 1 }, b.h)

	a.tr.Faults().Cut(2)
	const n = 100
	for i := range uint64(n) {
		a.tr.Send(heartbeat(1, 2, 2, i+1))
	}
	waitFor(t, "the cut to drop every message", func() bool { return a.tr.Stats().Dropped.Fault == n })
	if err := a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks([]byte("x"))); !errors.Is(err, ErrCut) {
		t.Errorf("SendSnapshot over a cut link: %v, want ErrCut", err)
	}
	sendMarker(t, a, b, 3, 1)
	if got := b.h.count.Load(); got != 2 {
		t.Errorf("received %d messages, want the first and the marker only", got)
	}
	// The sender counts a frame once its write returns, which may be
	// after the receiver has it.
	waitFor(t, "MessagesSent = 2", func() bool { return a.tr.Stats().MessagesSent == 2 })
	if s := a.tr.Stats(); s.MessagesSent != 2 {
		t.Errorf("MessagesSent = %d, want 2", s.MessagesSent)
	}
}

// TestFaultsPartition cuts both directions before any stream exists.
func TestFaultsPartition(t *testing.T) {
	nodes := startCluster(t, 3, true, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.tr.Faults().Cut(b.id)
	b.tr.Faults().Cut(a.id)
	for i := range uint64(10) {
		a.tr.Send(heartbeat(a.id, b.id, 1, i+1))
		b.tr.Send(heartbeat(b.id, a.id, 1, i+1))
		a.tr.Send(heartbeat(a.id, c.id, 1, i+1))
	}
	waitFor(t, "the partition to drop", func() bool {
		return a.tr.Stats().Dropped.Fault == 10 && b.tr.Stats().Dropped.Fault == 10
	})
	waitFor(t, "c to hear from a", func() bool { return c.h.count.Load() == 10 }, c.h)
	a.tr.Faults().HealAll()
	b.tr.Faults().HealAll()
	sendMarker(t, a, b, 2, 1)
	sendMarker(t, b, a, 2, 1)
	if a.h.count.Load() != 1 || b.h.count.Load() != 1 {
		t.Errorf("across the partition: a received %d, b %d; want only the markers", a.h.count.Load(), b.h.count.Load())
	}
	if s := a.tr.Stats(); s.StreamsOpened != 2 {
		t.Errorf("a opened %d streams, want 2 (the cut link needs none until healed)", s.StreamsOpened)
	}
}

func TestFaultsDrop(t *testing.T) {
	nodes := startCluster(t, 2, true, func(c *Config) { c.FaultSeed = 42 })
	a, b := nodes[0], nodes[1]
	a.tr.Faults().SetDrop(2, 0.5)
	const n = 1000
	for i := range uint64(n) {
		a.tr.Send(heartbeat(1, 2, i+1, 1))
	}
	waitFor(t, "every message to be sent or dropped", func() bool {
		s := a.tr.Stats()
		return s.MessagesSent+s.Dropped.Fault == n
	})
	sendMarker(t, a, b, n+1, 1)
	dropped := a.tr.Stats().Dropped.Fault
	t.Logf("dropped %d of %d at p=0.5", dropped, n)
	if dropped == 0 || dropped == n {
		t.Errorf("dropped %d of %d messages at p=0.5", dropped, n)
	}
	if got := uint64(b.h.count.Load()); got != n-dropped+1 {
		t.Errorf("received %d messages, want %d", got, n-dropped+1)
	}
	// The decisions replay with the same seed.
	f := newFaults(42)
	f.SetDrop(2, 0.5)
	msgs, costs := make([]pb.Message, n), make([]int, n)
	if kept, _ := f.filter(2, msgs, costs); uint64(n-kept) != dropped {
		t.Errorf("a fresh Faults with the same seed drops %d, not %d", n-kept, dropped)
	}
}

func TestFaultsDelay(t *testing.T) {
	nodes := startCluster(t, 2, true, nil)
	a, b := nodes[0], nodes[1]
	const d = 150 * time.Millisecond
	a.tr.Faults().SetDelay(2, d)
	start := time.Now()
	for i := range uint64(20) {
		a.tr.Send(heartbeat(1, 2, 1, i+1))
	}
	waitFor(t, "delayed messages", func() bool { return b.h.count.Load() == 20 }, b.h)
	b.h.checkOrder(t)
	b.h.mu.Lock()
	first := b.h.arrived[1]
	b.h.mu.Unlock()
	if got := first.Sub(start); got < d {
		t.Errorf("first message arrived after %v, before the %v delay", got, d)
	}
	// Under delay, messages queue up behind the frame and coalesce.
	if s := a.tr.Stats(); s.FramesSent >= 20 {
		t.Errorf("%d frames for 20 delayed messages", s.FramesSent)
	}
}

// TestFaultsCutFrom cuts what b receives from a on b's side alone: a's
// frames are read and dropped, a's stream stays up, a's snapshots are
// refused, and c still reaches b. Healing lets the next frame through.
func TestFaultsCutFrom(t *testing.T) {
	nodes := startCluster(t, 3, true, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.tr.Send(heartbeat(a.id, b.id, 1, 1))
	waitFor(t, "the first message", func() bool { return b.h.count.Load() == 1 }, b.h)

	b.tr.Faults().CutFrom(a.id)
	const n = 10
	for i := range uint64(n) {
		a.tr.Send(heartbeat(a.id, b.id, 2, i+1))
		c.tr.Send(heartbeat(c.id, b.id, 2, i+1))
	}
	waitFor(t, "b to drop a's messages on arrival", func() bool { return b.tr.Stats().DroppedOnArrival == n })
	waitFor(t, "b to hear from c", func() bool { return b.h.count.Load() == 1+n }, b.h)
	err := a.tr.SendSnapshot(t.Context(), b.id, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks([]byte("x")))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("snapshot into a cut link: %v, want Unavailable", err)
	}

	b.tr.Faults().HealFrom(a.id)
	a.tr.Send(heartbeat(a.id, b.id, 3, 1))
	waitFor(t, "a's message after healing", func() bool { return b.h.count.Load() == 2+n }, b.h)
	if s := a.tr.Stats(); s.StreamsOpened != 1 || s.Dropped.Total() != 0 {
		t.Errorf("a's side saw the cut: %d streams opened, drops %+v; want 1 stream and no drops", s.StreamsOpened, s.Dropped)
	}
	b.tr.Faults().CutFrom(c.id)
	b.tr.Faults().HealAll()
	c.tr.Send(heartbeat(c.id, b.id, 3, 1))
	waitFor(t, "c's message after HealAll", func() bool { return b.h.count.Load() == 3+n }, b.h)
}
