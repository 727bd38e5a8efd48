package transport

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
)

// SnapshotSource produces a snapshot's data: it calls emit once per chunk,
// in order, and returns nil when done. If emit returns an error the source
// must stop and return it. The push shape fits engine.ExportSnapshot, whose
// callback can call emit with each encoded chunk directly. emit does not
// retain the chunk, so the source may reuse it after emit returns.
type SnapshotSource func(emit func(chunk []byte) error) error

// Chunks returns a SnapshotSource that emits the given chunks.
func Chunks(chunks ...[]byte) SnapshotSource {
	return func(emit func([]byte) error) error {
		for _, c := range chunks {
			if err := emit(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// ErrCut is returned by SendSnapshot when Faults cut the link.
var ErrCut = errors.New("transport: link cut by Faults")

// SendSnapshot streams a snapshot to node to and blocks until the
// receiver's Handler.HandleSnapshot has returned, or ctx is done, or the
// stream fails. header is the MsgSnapshot message it answers, with Group
// set. It returns the receiver's error if the Handler refused the
// snapshot, so a caller can tell a refused snapshot from a lost one only
// by its gRPC status code. Empty chunks are skipped; no chunk may exceed
// the receiving server's MaxRecvMsgSize.
//
// Snapshots travel on their own connection to the peer, not on the
// message stream's, so that megabytes of snapshot never queue the
// heartbeats and accepts of every other group behind them in one TCP
// connection (CockroachDB separates them for the same reason). Waiting for
// the connection is bounded by DialTimeout; the rest only by ctx.
func (t *Transport) SendSnapshot(ctx context.Context, to uint64, header pb.Message, src SnapshotSource) (err error) {
	if header.Type != pb.MsgSnapshot {
		return fmt.Errorf("transport: SendSnapshot header is a %v message, not a snapshot", header.Type)
	}
	if !t.enter() {
		return ErrClosed
	}
	defer t.exit()
	defer func() {
		if err != nil {
			t.stats.snapshotsFailed.Add(1)
		} else {
			t.stats.snapshotsSent.Add(1)
		}
	}()
	if t.faults.cut(to) {
		return ErrCut
	}
	p, r := t.peer(to)
	if p == nil {
		if r == dropClosed {
			return ErrClosed
		}
		return fmt.Errorf("transport: no route to node %d", to)
	}
	cc, err := p.snapConn()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()
	stream, err := openWithTimeout(ctx, cancel, t.cfg.DialTimeout, func(ctx context.Context) (kvpb.Transport_SnapshotClient, error) {
		return kvpb.NewTransportClient(cc).Snapshot(ctx, grpc.WaitForReady(true))
	})
	if err != nil {
		return fmt.Errorf("transport: snapshot to node %d: %w", to, err)
	}
	first := &kvpb.SnapshotChunk{FromNode: t.cfg.NodeID, ToNode: to, GroupId: header.Group, Header: header.Marshal()}
	if err := stream.Send(first); err != nil {
		return finishBroken(stream)
	}
	// sendErr marks an error of the stream, as opposed to one of src.
	var sendErr error
	err = src(func(chunk []byte) error {
		if len(chunk) == 0 {
			return nil
		}
		c := &kvpb.SnapshotChunk{FromNode: t.cfg.NodeID, ToNode: to, GroupId: header.Group, Data: chunk}
		if err := stream.Send(c); err != nil {
			sendErr = err
			return err
		}
		t.stats.snapshotBytesSent.Add(uint64(len(chunk)))
		return nil
	})
	switch {
	case sendErr != nil:
		return finishBroken(stream)
	case err != nil:
		// The source failed: cancel the stream (by the deferred cancel),
		// so that the receiver's next returns an error.
		return fmt.Errorf("transport: snapshot source: %w", err)
	}
	_, err = stream.CloseAndRecv()
	return err
}

// finishBroken returns the outcome of a snapshot stream whose Send failed.
// A Send reports only io.EOF when the stream ended early; the receiver's
// status, such as its Handler's error, comes from Recv. That status may be
// OK, if the Handler accepted the snapshot without reading all of it.
func finishBroken(stream kvpb.Transport_SnapshotClient) error {
	_, err := stream.CloseAndRecv()
	return err
}
