package transport

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
)

// rawClient returns a kvpb Transport client to n that bypasses the
// Transport's sender, to put arbitrary frames on the wire.
func rawClient(t *testing.T, n *node) kvpb.TransportClient {
	t.Helper()
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kvpb.NewTransportClient(cc)
}

// sendRaw sends frames on a new stream and returns the status that ended
// it.
func sendRaw(t *testing.T, c kvpb.TransportClient, frames ...*kvpb.MessageFrame) error {
	t.Helper()
	stream, err := c.Messages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := stream.Send(f); err != nil {
			break // the server ended the stream; Recv says why.
		}
	}
	_, err = stream.Recv()
	return err
}

func TestCorruptFrame(t *testing.T) {
	nodes := startCluster(t, 2, true, nil)
	a, b := nodes[0], nodes[1]
	c := rawClient(t, b)
	good := pb.AppendMessages(nil, []pb.Message{heartbeat(1, 2, 5, 1)})

	// A good frame, then garbage: the good one is delivered, the stream
	// ends with InvalidArgument.
	err := sendRaw(t, c,
		&kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: good},
		&kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: []byte{1, 5, 0xff, 0xff}},
	)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("corrupt frame ended the stream with %v, want InvalidArgument", err)
	}
	if got := b.h.count.Load(); got != 1 {
		t.Errorf("received %d messages, want the good frame's one", got)
	}
	if s := b.tr.Stats(); s.CorruptFrames != 1 || s.FramesReceived != 1 {
		t.Errorf("CorruptFrames = %d, FramesReceived = %d; want 1, 1", s.CorruptFrames, s.FramesReceived)
	}

	for _, tc := range []struct {
		name  string
		frame *kvpb.MessageFrame
		code  codes.Code
	}{
		{"empty", &kvpb.MessageFrame{FromNode: 1, ToNode: 2}, codes.InvalidArgument},
		{"unknown version", &kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: append([]byte{9}, good[1:]...)}, codes.InvalidArgument},
		{"truncated", &kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: good[:len(good)-1]}, codes.InvalidArgument},
		{"no sender", &kvpb.MessageFrame{ToNode: 2, Messages: good}, codes.InvalidArgument},
		{"wrong recipient", &kvpb.MessageFrame{FromNode: 1, ToNode: 3, Messages: good}, codes.FailedPrecondition},
	} {
		if err := sendRaw(t, c, tc.frame); status.Code(err) != tc.code {
			t.Errorf("%s frame: %v, want %v", tc.name, err, tc.code)
		}
	}
	// A stream that changes its sender is refused.
	err = sendRaw(t, c,
		&kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: good},
		&kvpb.MessageFrame{FromNode: 3, ToNode: 2, Messages: good},
	)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("sender change: %v, want InvalidArgument", err)
	}

	// Random garbage never crashes the receiver.
	rng := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		junk := make([]byte, rng.IntN(64))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 && len(junk) > 0 {
			junk[0] = 1 // the frame version, to get past the first check
		}
		_ = sendRaw(t, c, &kvpb.MessageFrame{FromNode: 1, ToNode: 2, Messages: junk})
	}
	t.Logf("receiver stats after garbage: %+v", b.tr.Stats())

	// The receiver still works.
	before := b.h.count.Load()
	a.tr.Send(heartbeat(1, 2, 6, 1))
	waitFor(t, "a message after the garbage", func() bool { return b.h.count.Load() > before }, b.h)
}

func TestCorruptSnapshotHeader(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	b := nodes[1]
	c := rawClient(t, b)
	hdr := (&pb.Message{Type: pb.MsgSnapshot, Group: 4}).Marshal()
	for _, tc := range []struct {
		name  string
		chunk *kvpb.SnapshotChunk
		code  codes.Code
	}{
		{"garbage header", &kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, GroupId: 4, Header: []byte{1, 200}}, codes.InvalidArgument},
		{"no header", &kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, GroupId: 4}, codes.InvalidArgument},
		{"group mismatch", &kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, GroupId: 5, Header: hdr}, codes.InvalidArgument},
		{"not a snapshot", &kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, Header: (&pb.Message{Type: pb.MsgAccept}).Marshal()}, codes.InvalidArgument},
		{"wrong recipient", &kvpb.SnapshotChunk{FromNode: 1, ToNode: 9, GroupId: 4, Header: hdr}, codes.FailedPrecondition},
	} {
		stream, err := c.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(tc.chunk)
		if _, err := stream.CloseAndRecv(); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// A chunk for another group inside a stream is refused too.
	stream, err := c.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, GroupId: 4, Header: hdr})
	_ = stream.Send(&kvpb.SnapshotChunk{FromNode: 1, ToNode: 2, GroupId: 5, Data: []byte("x")})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("chunk of another group: %v, want InvalidArgument", err)
	}
	if s := b.tr.Stats(); s.CorruptFrames != 5 || s.SnapshotsFailed != 6 {
		t.Errorf("CorruptFrames = %d, SnapshotsFailed = %d; want 5, 6", s.CorruptFrames, s.SnapshotsFailed)
	}
}
