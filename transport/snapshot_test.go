package transport

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/shardd/shardd/paxospb"
)

type snapshotResult struct {
	from   uint64
	header pb.Message
	data   []byte
	chunks int
	err    error
}

// collectSnapshots makes n's Handler read whole snapshots and report them.
func collectSnapshots(n *node) chan snapshotResult {
	results := make(chan snapshotResult, 4)
	n.h.snapshot = func(from uint64, header pb.Message, next func() ([]byte, error)) error {
		r := snapshotResult{from: from, header: header}
		for {
			c, err := next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.err = err
				results <- r
				return err
			}
			r.data = append(r.data, c...)
			r.chunks++
		}
		results <- r
		return nil
	}
	return results
}

func TestSnapshot(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	a, b := nodes[0], nodes[1]
	results := collectSnapshots(b)

	data := make([]byte, 4<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var chunks [][]byte
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 64<<10)
		chunks = append(chunks, rest[:n])
		rest = rest[n:]
	}
	chunks = append(chunks, nil) // skipped
	header := pb.Message{Type: pb.MsgSnapshot, Group: 77, From: 1, To: 2, Ballot: pb.Ballot{Round: 3, Node: 1},
		Snapshot: &pb.Snapshot{Meta: pb.Meta{Index: 99, Config: pb.Config{Voters: []uint64{1, 2, 3}}}}}
	if err := a.tr.SendSnapshot(t.Context(), 2, header, Chunks(chunks...)); err != nil {
		t.Fatal(err)
	}
	r := <-results // SendSnapshot returned, so the Handler has.
	if r.err != nil || r.from != 1 || r.header.Group != 77 || r.header.Snapshot == nil || r.header.Snapshot.Meta.Index != 99 {
		t.Fatalf("received snapshot from %d, header %+v, err %v", r.from, r.header, r.err)
	}
	if !bytes.Equal(r.data, data) || r.chunks != len(chunks)-1 {
		t.Errorf("received %d bytes in %d chunks, want %d in %d, intact", len(r.data), r.chunks, len(data), len(chunks)-1)
	}
	if s := a.tr.Stats(); s.SnapshotsSent != 1 || s.FramesSent != 0 {
		t.Errorf("sender stats %+v: want one snapshot and no message frames", s)
	}
	if s := b.tr.Stats(); s.SnapshotsReceived != 1 {
		t.Errorf("SnapshotsReceived = %d", s.SnapshotsReceived)
	}
}

// TestSnapshotHandlerError checks that a Handler's refusal reaches the
// sender, even while the sender is still streaming chunks.
func TestSnapshotHandlerError(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	a, b := nodes[0], nodes[1]
	b.h.snapshot = func(from uint64, header pb.Message, next func() ([]byte, error)) error {
		if _, err := next(); err != nil {
			return err
		}
		return errors.New("refused: boom")
	}
	// Far more than flow control lets through unread, so the sender is
	// mid-stream when the receiver gives up.
	chunk := make([]byte, 256<<10)
	many := make([][]byte, 64)
	for i := range many {
		many[i] = chunk
	}
	err := a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks(many...))
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("SendSnapshot = %v, want the handler's error", err)
	}
	// A status error keeps its code.
	b.h.snapshot = func(uint64, pb.Message, func() ([]byte, error)) error {
		return status.Error(codes.FailedPrecondition, "not now")
	}
	err = a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks([]byte("x")))
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("SendSnapshot = %v, want FailedPrecondition", err)
	}
	if s := a.tr.Stats(); s.SnapshotsFailed != 2 {
		t.Errorf("sender SnapshotsFailed = %d, want 2", s.SnapshotsFailed)
	}
	if s := b.tr.Stats(); s.SnapshotsFailed != 2 {
		t.Errorf("receiver SnapshotsFailed = %d, want 2", s.SnapshotsFailed)
	}
}

// TestSnapshotSourceError checks that a failing source fails the send and
// the receiver sees the stream break instead of a short snapshot.
func TestSnapshotSourceError(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	a, b := nodes[0], nodes[1]
	gotFirst := make(chan struct{})
	results := make(chan error, 1)
	b.h.snapshot = func(from uint64, header pb.Message, next func() ([]byte, error)) error {
		if _, err := next(); err != nil {
			results <- err
			return err
		}
		close(gotFirst)
		for {
			if _, err := next(); err != nil {
				results <- err
				return err
			}
		}
	}
	diskErr := errors.New("disk on fire")
	src := func(emit func([]byte) error) error {
		if err := emit([]byte("first")); err != nil {
			return err
		}
		// Fail only once the receiver is reading, so it sees the abort
		// (a stream canceled before it reached the receiver is not).
		<-gotFirst
		return diskErr
	}
	if err := a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgSnapshot, Group: 1}, src); !errors.Is(err, diskErr) {
		t.Fatalf("SendSnapshot = %v, want the source's error", err)
	}
	if err := <-results; errors.Is(err, io.EOF) || status.Code(err) != codes.Canceled {
		t.Errorf("receiver's next after the sender's source failed: %v, want Canceled", err)
	}
	// The header must be a snapshot message.
	if err := a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgAccept}, Chunks()); err == nil {
		t.Error("SendSnapshot accepted a non-snapshot header")
	}
}

func TestSnapshotUnreachable(t *testing.T) {
	r := newResolver()
	r.set(2, deadAddr(t))
	a := startNode(t, 1, r, false, func(c *Config) { c.DialTimeout = 100e6 })
	if err := a.tr.SendSnapshot(t.Context(), 2, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks([]byte("x"))); err == nil {
		t.Fatal("SendSnapshot to a dead address succeeded")
	} else {
		t.Logf("SendSnapshot to a dead address: %v", err)
	}
	if err := a.tr.SendSnapshot(t.Context(), 3, pb.Message{Type: pb.MsgSnapshot, Group: 1}, Chunks([]byte("x"))); err == nil {
		t.Fatal("SendSnapshot to an unknown node succeeded")
	}
}
