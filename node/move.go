package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Replica moves. Placement moves a replica of a range from node A to node
// B in steps, each one ChangeReplicas call to the range's leader:
//
//	ADD_LEARNER B      B's node creates an empty replica at the leader's
//	                   first message; the leader sends it a snapshot
//	                   (sendSnapshot, rate-limited per node), and the
//	                   learner follows the log from there
//	PROMOTE_LEARNER B  Unavailable until B has caught up; then B votes
//	(TransferLeader)   if A leads: the leader is never removed
//	REMOVE_REPLICA A   A's node learns it was removed (group/removal.go)
//	                   and deletes the range's data, log and records, with
//	                   a tombstone (gc.go)
//
// Each step is idempotent: a step whose effect already holds in the
// range's configuration (B a learner, B a voter, A gone) answers with the
// current descriptor and proposes nothing. So placement, after a crash of
// any process, re-sends the step it recorded last and goes on; a step
// whose outcome it never heard (Unavailable: leadership moved while it
// was in flight) is re-sent the same way.

// ChangeReplicas implements the Admin RPC: see kvpb.AdminServer.
func (s *adminServer) ChangeReplicas(ctx context.Context, req *kvpb.ChangeReplicasRequest) (*kvpb.ChangeReplicasResponse, error) {
	n := s.n
	cc, err := confChangeOf(req)
	if err != nil {
		return nil, err
	}
	r := n.replica(req.RangeId)
	if r == nil || len(r.desc.Load().GetReplicas()) == 0 {
		return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", n.cfg.NodeID, req.RangeId), nil)
	}
	d, err := await(ctx, n, func(done func(*kvpb.RangeDescriptor, error)) {
		n.onWorker(r, func() { n.changeReplicas(r, req.ExpectedGeneration, cc, done) })
	})
	if err != nil {
		return nil, err
	}
	return &kvpb.ChangeReplicasResponse{Descriptor_: d}, nil
}

// confChangeOf checks a request and returns the change it asks for.
func confChangeOf(req *kvpb.ChangeReplicasRequest) (pb.ConfChange, error) {
	types := map[kvpb.ReplicaChange]pb.ConfChangeType{
		kvpb.ReplicaChange_ADD_LEARNER:     pb.ConfAddLearner,
		kvpb.ReplicaChange_PROMOTE_LEARNER: pb.ConfPromote,
		kvpb.ReplicaChange_REMOVE_REPLICA:  pb.ConfRemove,
	}
	t, ok := types[req.GetChange()]
	switch {
	case req.GetRangeId() == 0 || req.GetNodeId() == 0:
		return pb.ConfChange{}, status.Error(codes.InvalidArgument, "range_id and node_id must be set")
	case !ok:
		return pb.ConfChange{}, status.Errorf(codes.InvalidArgument, "change %v is not one of ADD_LEARNER, PROMOTE_LEARNER, REMOVE_REPLICA", req.GetChange())
	}
	return pb.ConfChange{Type: t, Replica: req.NodeId}, nil
}

// confWaiter is a ChangeReplicas call waiting until this replica has
// applied the slot of its change.
type confWaiter struct {
	slot uint64
	done func(*kvpb.RangeDescriptor, error)
}

// changeHolds reports whether configuration c already has the effect of
// cc.
func changeHolds(c pb.Config, cc pb.ConfChange) bool {
	switch cc.Type {
	case pb.ConfAddLearner:
		return slices.Contains(c.Learners, cc.Replica)
	case pb.ConfPromote:
		return slices.Contains(c.Voters, cc.Replica)
	default:
		return !slices.Contains(c.Voters, cc.Replica) && !slices.Contains(c.Learners, cc.Replica)
	}
}

// changeReplicas runs on r's worker: it checks the change against the
// range as the worker sees it, proposes it, and has done called once it
// is applied here (resolveConfWaiters), or with why it was not.
func (n *Node) changeReplicas(r *replica, wantGen uint64, cc pb.ConfChange, done func(*kvpb.RangeDescriptor, error)) {
	if r.removed {
		done(nil, n.removedError(r.id))
		return
	}
	d := r.desc.Load()
	chosen := r.rn.Status().Config
	if changeHolds(chosen, cc) {
		// Applied, or chosen and about to be: a retry, or a change that
		// another call made.
		r.confWaiters = append(r.confWaiters, confWaiter{slot: r.rn.Chosen(), done: done})
		n.resolveConfWaiters(r)
		return
	}
	if wantGen != 0 && wantGen != d.Generation {
		done(nil, rangeMismatch(fmt.Sprintf("range %d is at generation %d, not %d", r.id, d.Generation, wantGen), r))
		return
	}
	if r.rn.Leader() != n.cfg.NodeID {
		done(nil, n.notLeader(r))
		return
	}
	switch {
	case cc.Type == pb.ConfAddLearner && slices.Contains(chosen.Voters, cc.Replica):
		done(nil, status.Errorf(codes.FailedPrecondition, "node %d already holds a replica of range %d (a voter)", cc.Replica, r.id))
		return
	case cc.Type == pb.ConfPromote && !slices.Contains(chosen.Learners, cc.Replica):
		done(nil, status.Errorf(codes.FailedPrecondition, "node %d holds no learner of range %d to promote: add it as a learner first", cc.Replica, r.id))
		return
	case cc.Type == pb.ConfRemove && cc.Replica == n.cfg.NodeID:
		done(nil, status.Errorf(codes.FailedPrecondition,
			"node %d leads range %d: move the leadership to another voter first (TransferLeader), then remove it through the new leader", cc.Replica, r.id))
		return
	}
	var nl *group.NotLeaderError
	switch err := r.rn.ProposeConfChange(cc); {
	case err == nil:
		// The change is the leader's last slot. While it leads, it is
		// chosen there; if it stops leading first, failConfWaiters says so.
		r.confWaiters = append(r.confWaiters, confWaiter{slot: r.rn.Status().LastIndex, done: done})
	case errors.As(err, &nl):
		done(nil, n.notLeader(r))
	case errors.Is(err, group.ErrConfChangeInFlight):
		done(nil, status.Errorf(codes.FailedPrecondition,
			"a membership change of range %d is in flight: one change at a time; retry once it is applied", r.id))
	case errors.Is(err, group.ErrLearnerBehind):
		done(nil, status.Errorf(codes.Unavailable,
			"learner %d of range %d has not caught up yet (it has not applied its snapshot, or lags the log): retry", cc.Replica, r.id))
	case errors.Is(err, group.ErrInvalidConfChange):
		done(nil, status.Errorf(codes.FailedPrecondition, "%v does not apply to range %d's configuration %v (the last voter can't be removed)",
			cc, r.id, chosen))
	default:
		done(nil, status.Errorf(codes.Unavailable, "range %d can't take the change now (%v): retry", r.id, err))
	}
}

// resolveConfWaiters answers the ChangeReplicas calls whose change this
// replica has applied, with its descriptor.
func (n *Node) resolveConfWaiters(r *replica) {
	if len(r.confWaiters) == 0 {
		return
	}
	d := proto.Clone(r.desc.Load()).(*kvpb.RangeDescriptor)
	d.LeaderNodeId = r.rn.Leader()
	applied := r.rn.Applied()
	r.confWaiters = slices.DeleteFunc(r.confWaiters, func(w confWaiter) bool {
		if w.slot > applied {
			return false
		}
		w.done(d, nil)
		return true
	})
}

// failConfWaiters answers the ChangeReplicas calls still waiting when the
// replica loses its leadership (or leaves the node): their change may be
// chosen by the next leader or dropped.
func (n *Node) failConfWaiters(r *replica) {
	for _, w := range r.confWaiters {
		w.done(nil, status.Errorf(codes.Unavailable,
			"the leadership of range %d moved while the change was in flight: it may or may not be applied; send it again (a change that applied is reported done)", r.id))
	}
	r.confWaiters = nil
}
