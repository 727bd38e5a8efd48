package transport

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
)

// server implements kvpb.TransportServer: the receiving side of peers'
// message and snapshot streams.
type server struct {
	kvpb.UnimplementedTransportServer
	t *Transport
}

var errServerClosed = status.Error(codes.Unavailable, "transport: closed")

// serve runs recv, the loop that reads one incoming stream, in a goroutine
// that Close waits for, and returns when recv does or when the transport
// closes. A stream's Recv cannot be interrupted from the server side except
// by returning from the handler, which makes gRPC end the stream and so
// unblocks the Recv; this is why recv does not run in the handler's own
// goroutine.
func (s *server) serve(recv func() error) error {
	t := s.t
	if !t.enter() {
		return errServerClosed
	}
	errc := make(chan error, 1)
	go func() {
		defer t.exit()
		errc <- recv()
	}()
	select {
	case err := <-errc:
		return err
	case <-t.done:
		return errServerClosed
	}
}

// Messages receives one peer's long-lived stream of frames and hands each
// frame's messages to the Handler, in order. The ack direction is unused;
// the stream ends when the peer closes it (or breaks it). A frame that
// does not decode, or claims another sender than the stream's first frame,
// ends the stream with InvalidArgument; one addressed to another node ends
// it with FailedPrecondition. Either way it is counted, and the receiver
// carries on serving other streams: bad input never crashes a node.
func (s *server) Messages(stream kvpb.Transport_MessagesServer) error {
	return s.serve(func() error { return s.t.receiveMessages(stream) })
}

func (t *Transport) receiveMessages(stream kvpb.Transport_MessagesServer) error {
	var from uint64
	for {
		f, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := t.checkAddress(f.FromNode, f.ToNode, &from); err != nil {
			return err
		}
		msgs, err := pb.DecodeMessages(f.Messages)
		if err != nil {
			t.stats.corruptFrames.Add(1)
			t.cfg.Logger.Warn("transport: corrupt frame", "node", t.cfg.NodeID, "peer", from, "err", err)
			return status.Errorf(codes.InvalidArgument, "transport: frame from node %d: %v", from, err)
		}
		if t.faults.cutFrom(from) {
			t.stats.droppedOnArrival.Add(uint64(len(msgs)))
			continue
		}
		t.stats.framesReceived.Add(1)
		t.stats.messagesReceived.Add(uint64(len(msgs)))
		t.stats.bytesReceived.Add(uint64(len(f.Messages)))
		select {
		case <-t.done:
			return errServerClosed
		default:
		}
		t.handler.HandleMessages(from, msgs)
	}
}

// checkAddress checks a frame's or chunk's sender and recipient: the
// sender must be set and match *from once that is set (the stream's first
// frame sets it), and the recipient must be this node.
func (t *Transport) checkAddress(fromNode, toNode uint64, from *uint64) error {
	switch {
	case fromNode == 0:
		t.stats.corruptFrames.Add(1)
		return status.Error(codes.InvalidArgument, "transport: frame without a sender")
	case *from != 0 && fromNode != *from:
		t.stats.corruptFrames.Add(1)
		return status.Errorf(codes.InvalidArgument, "transport: frame from node %d on a stream from node %d", fromNode, *from)
	case toNode != t.cfg.NodeID:
		t.stats.corruptFrames.Add(1)
		return status.Errorf(codes.FailedPrecondition, "transport: frame for node %d reached node %d", toNode, t.cfg.NodeID)
	}
	*from = fromNode
	return nil
}

// Snapshot receives one snapshot stream and hands it to the Handler. The
// first chunk carries the MsgSnapshot header and no data; the following
// ones carry data for the same group.
func (s *server) Snapshot(stream kvpb.Transport_SnapshotServer) error {
	return s.serve(func() error {
		err := s.t.receiveSnapshot(stream)
		if err != nil {
			s.t.stats.snapshotsFailed.Add(1)
			return err
		}
		s.t.stats.snapshotsReceived.Add(1)
		return stream.SendAndClose(&kvpb.SnapshotResponse{})
	})
}

func (t *Transport) receiveSnapshot(stream kvpb.Transport_SnapshotServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "transport: empty snapshot stream")
	}
	if err != nil {
		return err
	}
	var from uint64
	if err := t.checkAddress(first.FromNode, first.ToNode, &from); err != nil {
		return err
	}
	if t.faults.cutFrom(from) {
		return status.Errorf(codes.Unavailable, "transport: node %d drops what node %d sends (Faults.CutFrom)", t.cfg.NodeID, from)
	}
	var header pb.Message
	if err := header.Unmarshal(first.Header); err != nil {
		t.stats.corruptFrames.Add(1)
		return status.Errorf(codes.InvalidArgument, "transport: snapshot header from node %d: %v", from, err)
	}
	if header.Type != pb.MsgSnapshot || header.Group != first.GroupId || len(first.Data) != 0 {
		t.stats.corruptFrames.Add(1)
		return status.Errorf(codes.InvalidArgument, "transport: bad snapshot header from node %d: type %v, group %d in a stream for group %d, %d data bytes",
			from, header.Type, header.Group, first.GroupId, len(first.Data))
	}
	eof := false
	next := func() ([]byte, error) {
		if eof {
			return nil, io.EOF
		}
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			eof = true
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if c.FromNode != from || c.ToNode != t.cfg.NodeID || c.GroupId != first.GroupId || len(c.Header) != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "transport: snapshot chunk for node %d, group %d from node %d (with %d header bytes) in the stream of group %d from node %d",
				c.ToNode, c.GroupId, c.FromNode, len(c.Header), first.GroupId, from)
		}
		t.stats.snapshotBytesReceived.Add(uint64(len(c.Data)))
		return c.Data, nil
	}
	return t.handler.HandleSnapshot(from, header, next)
}
