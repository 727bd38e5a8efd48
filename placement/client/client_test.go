package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scriptedPlacement answers MoveReplica with its errors in turn (then
// success), and ListRanges with its map.
type scriptedPlacement struct {
	placementpb.UnimplementedPlacementServer
	descs []*kvpb.RangeDescriptor

	mu    sync.Mutex
	moves []error
}

func (p *scriptedPlacement) MoveReplica(context.Context, *placementpb.MoveReplicaRequest) (*placementpb.MoveReplicaResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.moves) == 0 {
		return &placementpb.MoveReplicaResponse{Descriptor_: p.descs[0], Revision: 1}, nil
	}
	err := p.moves[0]
	p.moves = p.moves[1:]
	return nil, err
}

func (p *scriptedPlacement) ListRanges(context.Context, *placementpb.ListRangesRequest) (*placementpb.ListRangesResponse, error) {
	return &placementpb.ListRangesResponse{Ranges: p.descs, Revision: 42}, nil
}

// TestMoveReplicaRetryFindsTheMoveDone: a MoveReplica attempt whose
// outcome is unknown (the placement leader failed while its move ran; the
// next leader finished it), then a retry that the new leader refuses
// because the source holds no replica any more: the call reports the move
// done, with the range's descriptor. `shardd move` reported the refusal
// for a move that had happened (the linearizability test's nemesis saw
// it). A refusal without an earlier doubt, or with the map not showing
// the move, stays a refusal.
func TestMoveReplicaRetryFindsTheMoveDone(t *testing.T) {
	voters := func(ids ...uint64) []*kvpb.ReplicaDescriptor {
		var out []*kvpb.ReplicaDescriptor
		for _, id := range ids {
			out = append(out, &kvpb.ReplicaDescriptor{NodeId: id, Role: kvpb.ReplicaRole_VOTER})
		}
		return out
	}
	moved := &kvpb.RangeDescriptor{RangeId: 7, Generation: 5, Replicas: voters(2, 3, 4)}
	notMoved := &kvpb.RangeDescriptor{RangeId: 7, Generation: 5, Replicas: voters(1, 2, 3)}
	refusal := status.Error(codes.InvalidArgument, "node 1 holds no replica of range 7")
	inDoubt := status.Error(codes.Unavailable, "the placement leader went away")
	for _, tc := range []struct {
		name  string
		desc  *kvpb.RangeDescriptor
		moves []error
		want  codes.Code
	}{
		{"in doubt, then refused, moved", moved, []error{inDoubt, refusal}, codes.OK},
		{"refused at once", moved, []error{refusal}, codes.InvalidArgument},
		{"in doubt, then refused, not moved", notMoved, []error{inDoubt, refusal}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			placementpb.RegisterPlacementServer(srv, &scriptedPlacement{descs: []*kvpb.RangeDescriptor{tc.desc}, moves: tc.moves})
			go func() { _ = srv.Serve(lis) }()
			defer srv.Stop()
			c, err := New([]string{lis.Addr().String()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			resp, err := c.MoveReplica(ctx, 7, 1, 4)
			if status.Code(err) != tc.want {
				t.Fatalf("MoveReplica: %v, want %v", err, tc.want)
			}
			if err == nil && (resp.Descriptor_.GetGeneration() != 5 || resp.Revision != 42) {
				t.Fatalf("MoveReplica answered %v at revision %d, want the map's descriptor at 42", resp.Descriptor_, resp.Revision)
			}
		})
	}
}
