package transport

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	pb "github.com/shardd/shardd/paxospb"
)

// TestDelivery sends 100k messages per node from many goroutines across
// 1000 groups, to every other node, and checks that every message arrives
// and that each (sender, group) sequence arrives in order.
func TestDelivery(t *testing.T) {
	for _, k := range []int{2, 3} {
		t.Run(fmt.Sprintf("nodes=%d", k), func(t *testing.T) {
			testDelivery(t, k)
		})
	}
}

func testDelivery(t *testing.T, k int) {
	const (
		perNode = 100_000
		groups  = 1000
		senders = 20
	)
	// Queues large enough for the whole burst: this test is about delivery
	// and order, and must not depend on how fast a loaded machine drains a
	// queue (TestBoundedQueue covers the limit).
	nodes := startCluster(t, k, false, func(c *Config) { c.MaxQueueBytes = 256 << 20 })
	// Open every stream first, so that the frames counted below are the
	// steady state's, not one backlog built up while dialing.
	for _, src := range nodes {
		for _, dst := range nodes {
			if src != dst {
				src.tr.Send(heartbeat(src.id, dst.id, groups+1, 1))
			}
		}
	}
	for _, n := range nodes {
		waitFor(t, "streams to open", func() bool { return n.h.count.Load() == int64(k-1) }, n.h)
	}
	var wg sync.WaitGroup
	for _, src := range nodes {
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Goroutine g owns groups g+1, g+1+senders, ...; it numbers
				// each group's messages to each destination 1, 2, 3, ...
				var others []uint64
				for _, n := range nodes {
					if n != src {
						others = append(others, n.id)
					}
				}
				seq := make(map[[2]uint64]uint64)
				var batch []pb.Message
				useBatch := g%2 == 1
				for j := range perNode / senders {
					group := uint64(g + 1 + senders*(j%(groups/senders)))
					dst := others[j%len(others)]
					key := [2]uint64{dst, group}
					seq[key]++
					m := heartbeat(src.id, dst, group, seq[key])
					if !useBatch {
						if !src.tr.Send(m) {
							t.Errorf("node %d: Send to %d refused", src.id, dst)
							return
						}
						continue
					}
					batch = append(batch, m)
					if len(batch) == 8 || j == perNode/senders-1 {
						if n := src.tr.SendBatch(batch); n != len(batch) {
							t.Errorf("node %d: SendBatch queued %d of %d", src.id, n, len(batch))
							return
						}
						batch = batch[:0]
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, dst := range nodes {
		// Every node sends perNode messages spread evenly over the others,
		// so every node receives perNode.
		waitFor(t, fmt.Sprintf("node %d to receive its messages", dst.id), func() bool {
			return dst.h.count.Load() == perNode+int64(k-1)
		}, dst.h)
		dst.h.checkOrder(t)
	}
	for _, n := range nodes {
		s := n.tr.Stats()
		t.Logf("node %d: %d messages in %d frames (%.1f per frame), %d bytes, %d streams", n.id,
			s.MessagesSent, s.FramesSent, float64(s.MessagesSent)/float64(s.FramesSent), s.BytesSent, s.StreamsOpened)
		if s.MessagesSent != perNode+uint64(k-1) {
			t.Errorf("node %d sent %d messages, want %d", n.id, s.MessagesSent, perNode+k-1)
		}
		if s.FramesSent >= s.MessagesSent {
			t.Errorf("node %d: %d frames for %d messages: frames do not coalesce", n.id, s.FramesSent, s.MessagesSent)
		}
		if d := s.Dropped.Total(); d != 0 {
			t.Errorf("node %d dropped %d messages: %+v", n.id, d, s.Dropped)
		}
		if s.StreamsOpened != uint64(k-1) {
			t.Errorf("node %d opened %d streams, want one per peer (%d)", n.id, s.StreamsOpened, k-1)
		}
		if s.QueuedMessages != 0 || s.QueuedBytes != 0 {
			t.Errorf("node %d: %d messages (%d bytes) still queued", n.id, s.QueuedMessages, s.QueuedBytes)
		}
	}
}

// TestFrameLimit checks that frames respect MaxFrameBytes and that a
// larger message still goes, alone.
func TestFrameLimit(t *testing.T) {
	nodes := startCluster(t, 2, true, func(c *Config) { c.MaxFrameBytes = 4096 })
	a, b := nodes[0], nodes[1]
	entry := func(n int) []pb.Entry {
		return []pb.Entry{{Slot: 1, Ballot: pb.Ballot{Round: 1, Node: 1}, Type: pb.EntryNormal, Data: make([]byte, n)}}
	}
	const n = 100
	for i := range n {
		m := heartbeat(1, 2, 1, uint64(i+1))
		m.Type, m.Entries = pb.MsgAccept, entry(1000)
		if !a.tr.Send(m) {
			t.Fatal("Send refused")
		}
	}
	big := heartbeat(1, 2, 1, n+1)
	big.Type, big.Entries = pb.MsgAccept, entry(10_000)
	if !a.tr.Send(big) {
		t.Fatal("Send of a message above MaxFrameBytes refused")
	}
	waitFor(t, "all messages", func() bool { return b.h.count.Load() == n+1 }, b.h)
	b.h.checkOrder(t)
	if got := b.h.maxFrame.Load(); got > 4 {
		t.Errorf("a frame carried %d messages of ~1 KB with MaxFrameBytes=4096", got)
	}
	if sizes := b.h.frameSizes(); sizes[len(sizes)-1] != 1 {
		t.Errorf("the message above MaxFrameBytes shared its frame with %d others", sizes[len(sizes)-1]-1)
	}
	got := b.h.received()
	if len(got[n].Entries[0].Data) != 10_000 {
		t.Errorf("large message arrived with %d bytes of data", len(got[n].Entries[0].Data))
	}
}

// TestBoundedQueue checks that with the peer unreachable the queue fills
// to MaxQueueBytes and no further: Send refuses and counts from then on.
func TestBoundedQueue(t *testing.T) {
	const limit = 64 << 10
	r := newResolver()
	r.set(2, deadAddr(t))
	a := startNode(t, 1, r, false, func(c *Config) { c.MaxQueueBytes, c.MaxFrameBytes = limit, limit })
	accepted := 0
	for a.tr.Send(heartbeat(1, 2, 1, uint64(accepted+1))) {
		accepted++
		if accepted > limit {
			t.Fatalf("queue accepted %d messages of at least %d bytes each within %d bytes", accepted, msgOverhead, limit)
		}
	}
	const extra = 100
	for i := range extra {
		if a.tr.Send(heartbeat(1, 2, 1, uint64(accepted+2+i))) {
			t.Fatal("Send accepted a message after the queue was full")
		}
	}
	s := a.tr.Stats()
	t.Logf("queue holds %d heartbeats in %d of %d bytes", s.QueuedMessages, s.QueuedBytes, limit)
	if s.Dropped.QueueFull != extra+1 {
		t.Errorf("Dropped.QueueFull = %d, want %d", s.Dropped.QueueFull, extra+1)
	}
	if s.QueuedMessages != accepted || s.QueuedBytes > limit || s.QueuedBytes < limit-2*msgOverhead {
		t.Errorf("queue holds %d messages in %d bytes, want %d in at most %d", s.QueuedMessages, s.QueuedBytes, accepted, limit)
	}
	// The queue costs memory, not just wire bytes.
	if accepted*(msgOverhead+messageCost(new(pb.Message))) > limit {
		t.Errorf("%d messages cannot fit %d bytes", accepted, limit)
	}

	// A message that could never fit is refused as such.
	huge := heartbeat(1, 2, 1, 1)
	huge.Entries = []pb.Entry{{Slot: 1, Data: make([]byte, limit)}}
	if a.tr.Send(huge) || a.tr.Stats().Dropped.TooLarge != 1 {
		t.Errorf("message above MaxQueueBytes: Dropped = %+v", a.tr.Stats().Dropped)
	}
	// Failed dials keep the queue, and it stays full.
	waitFor(t, "a dial failure", func() bool { return a.tr.Stats().DialFailures >= 1 })
	if a.tr.Send(heartbeat(1, 2, 1, 1)) {
		t.Error("Send accepted a message after a failed dial while the queue was full")
	}
	if s := a.tr.Stats(); s.QueuedMessages != accepted {
		t.Errorf("after a failed dial the queue holds %d messages, want %d", s.QueuedMessages, accepted)
	}
	// Closing counts what was still queued.
	a.tr.Close()
	s = a.tr.Stats()
	if s.Dropped.Closed != uint64(accepted) || s.QueuedMessages != 0 || s.QueuedBytes != 0 {
		t.Errorf("after Close: Dropped.Closed = %d, queued %d (%d bytes); want %d, 0, 0", s.Dropped.Closed, s.QueuedMessages, s.QueuedBytes, accepted)
	}
}

// TestNoRoute checks that messages to unknown nodes, to no node and to
// this node are refused and counted.
func TestNoRoute(t *testing.T) {
	a := startNode(t, 1, newResolver(), false, nil)
	for _, to := range []uint64{0, 1, 99} {
		if a.tr.Send(heartbeat(1, to, 1, 1)) {
			t.Errorf("Send to %d accepted", to)
		}
	}
	if n := a.tr.SendBatch([]pb.Message{heartbeat(1, 99, 1, 1), heartbeat(1, 98, 1, 1)}); n != 0 {
		t.Errorf("SendBatch to unknown nodes queued %d", n)
	}
	if s := a.tr.Stats(); s.Dropped.NoRoute != 5 || s.Peers != 0 {
		t.Errorf("Dropped.NoRoute = %d with %d peers, want 5 and 0", s.Dropped.NoRoute, s.Peers)
	}
}

// TestReconnect stops the receiving node's server and restarts it on the
// same address; sending resumes on a new stream. The sender logs the loss
// and the restoration of the stream once each.
func TestReconnect(t *testing.T) {
	var log testutil.SyncBuffer
	nodes := startCluster(t, 2, true, func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	a, b := nodes[0], nodes[1]
	if !a.tr.Send(heartbeat(1, 2, 1, 1)) {
		t.Fatal("Send refused")
	}
	waitFor(t, "first message", func() bool { return b.h.count.Load() == 1 }, b.h)

	b.stopServer()
	// Wait until the sender noticed, so the restart is really a reconnect.
	waitFor(t, "the stream to break", func() bool { return a.tr.Stats().StreamFailures >= 1 })
	b.restartServer(t)

	// Each message may be lost while the new stream is set up, so resend
	// (with new group numbers, as Paxos would retransmit) until one arrives.
	deadline := time.Now().Add(safetyNet)
	for group := uint64(2); b.h.count.Load() < 2; group++ {
		if time.Now().After(deadline) {
			t.Fatal("no message arrived after the restart")
		}
		a.tr.Send(heartbeat(1, 2, group, 1))
		select {
		case <-b.h.changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
	s := a.tr.Stats()
	t.Logf("stats after reconnect: %+v", s)
	if s.StreamsOpened < 2 {
		t.Errorf("StreamsOpened = %d, want a second stream", s.StreamsOpened)
	}
	// Delivery is in order on the new stream too.
	for i := range uint64(100) {
		a.tr.Send(heartbeat(1, 2, 1000, i+1))
	}
	waitFor(t, "messages on the new stream", func() bool {
		return b.h.count.Load() >= 2+100
	}, b.h)
	b.h.checkOrder(t)
	for _, msg := range []string{"transport: stream to peer lost", "transport: stream to peer restored"} {
		if n := strings.Count(log.String(), `msg="`+msg+`"`); n != 1 {
			t.Errorf("%d lines %q, want 1; log:\n%s", n, msg, log.String())
		}
	}
}

// TestClose checks that Close ends incoming streams and outgoing ones,
// that nothing is sent afterwards, and that it is idempotent.
func TestClose(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	a, b := nodes[0], nodes[1]
	a.tr.Send(heartbeat(1, 2, 1, 1))
	b.tr.Send(heartbeat(2, 1, 1, 1))
	waitFor(t, "both streams", func() bool { return a.h.count.Load() == 1 && b.h.count.Load() == 1 })
	// b has an open incoming stream from a; Close must not wait for a.
	if err := b.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if b.tr.Send(heartbeat(2, 1, 1, 2)) {
		t.Error("Send after Close accepted")
	}
	if s := b.tr.Stats(); s.Dropped.Closed != 1 {
		t.Errorf("Dropped.Closed = %d, want 1", s.Dropped.Closed)
	}
	if err := b.tr.SendSnapshot(t.Context(), 1, pb.Message{Type: pb.MsgSnapshot}, Chunks()); err != ErrClosed {
		t.Errorf("SendSnapshot after Close: %v, want ErrClosed", err)
	}
	// a notices that b's end of the stream went away.
	waitFor(t, "a's stream to b to end", func() bool { return a.tr.Stats().StreamFailures >= 1 })
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.NodeID = 0 }, "NodeID"},
		{func(c *Config) { c.MaxQueueBytes = -1 }, "MaxQueueBytes"},
		{func(c *Config) { c.MaxFrameBytes = c.MaxQueueBytes + 1 }, "MaxFrameBytes"},
		{func(c *Config) { c.DialTimeout = -1 }, "DialTimeout"},
		{func(c *Config) { c.MaxReconnectBackoff = c.ReconnectBackoff / 2 }, "MaxReconnectBackoff"},
	} {
		c := DefaultConfig()
		c.NodeID = 1
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
		}
		if _, err := New(c, newResolver(), newRecorder(false)); err == nil {
			t.Errorf("New accepted a Config without a valid %s", tc.want)
		}
	}
}
