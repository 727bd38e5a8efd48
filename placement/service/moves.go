package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Replica moves. A move is an operation of ops.go, recorded before its
// first step: add a learner on the target, promote it once it caught up
// (its data comes in a snapshot from the range's leader), move the
// range's leadership away from the source if it has it, and remove the
// source's replica (whose node then deletes the range's data and log).
// Every step is decided from the range's current descriptor, so a leader
// that takes over in the middle of a move picks it up at whatever step
// the nodes reached, and each step asked twice is answered the same way
// (node Admin.ChangeReplicas returns the descriptor once the change
// holds). Moves are how a user moves a replica, how replicas of a dead
// node are re-created elsewhere (repair) and how replica counts are
// balanced across the nodes.

// MoveReplica implements the API; see Server.move.
func (a *api) MoveReplica(ctx context.Context, req *placementpb.MoveReplicaRequest) (*placementpb.MoveReplicaResponse, error) {
	if req.GetRangeId() == 0 || req.GetFromNodeId() == 0 || req.GetToNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "range_id, from_node_id and to_node_id must be set")
	}
	if req.FromNodeId == req.ToNodeId {
		return nil, status.Error(codes.InvalidArgument, "from_node_id and to_node_id must differ")
	}
	if _, err := a.s.leading(); err != nil {
		return nil, err
	}
	return a.s.move(ctx, req.RangeId, req.FromNodeId, req.ToNodeId, "asked")
}

// move records and then drives a move of range id's replica from node
// from to node to.
func (s *Server) move(ctx context.Context, id, from, to uint64, reason string) (*placementpb.MoveReplicaResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, moveDeadline)
	defer cancel()
	op, err := s.startMove(ctx, id, from, to, reason)
	if err != nil {
		return nil, err
	}
	if op == nil {
		return s.awaitMove(ctx, id, from, to)
	}
	return s.driveMove(ctx, op)
}

// awaitMove waits until no operation is under way on range id, and
// answers as if it had moved its replica from node from to node to: a
// retry of a move under way gets the range's descriptor once it is done.
func (s *Server) awaitMove(ctx context.Context, id, from, to uint64) (*placementpb.MoveReplicaResponse, error) {
	what := fmt.Sprintf("the move of range %d's replica from node %d to node %d", id, from, to)
	rm, rev, err := s.awaitOpEnd(ctx, id, what)
	if err != nil {
		return nil, err
	}
	d, ok := rm.Get(id)
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "no range %d in the map", id)
	case !placement.Holds(d, to) || placement.Holds(d, from):
		return nil, status.Errorf(codes.FailedPrecondition, "%s was given up", what)
	}
	return &placementpb.MoveReplicaResponse{Descriptor_: d, Revision: rev}, nil
}

// moveDeadline bounds how long one call drives a move: a move streams a
// snapshot, which takes longer than a client's attempt, so a call that
// runs out answers Unavailable and the move goes on in the background.
const moveDeadline = 2500 * time.Millisecond

// startMove checks that the move may start and records it. It returns no
// operation for the same move under way already (see awaitMove).
func (s *Server) startMove(ctx context.Context, id, from, to uint64, reason string) (*placementpb.RangeOperation, error) {
	var op *placementpb.RangeOperation
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		if tm.rm == nil {
			return nil, nil, s.notBootstrappedLocked(tm)
		}
		d, ok := tm.rm.Get(id)
		if o := tm.ops[id].GetMove(); ok && o != nil && o.From == from && o.To == to {
			return nil, nil, nil // a retry: wait for it
		}
		switch {
		case !ok:
			return nil, nil, status.Errorf(codes.NotFound, "no range %d in the map", id)
		case tm.ops[id] != nil:
			return nil, nil, status.Errorf(codes.FailedPrecondition, "range %d is busy with %s", id, describeOp(tm.ops[id]))
		case !placement.Holds(d, from):
			return nil, nil, status.Errorf(codes.InvalidArgument, "node %d holds no replica of range %d (%s)", from, id, replicaList(d))
		case placement.Holds(d, to):
			return nil, nil, status.Errorf(codes.InvalidArgument, "node %d already holds a replica of range %d (%s)", to, id, replicaList(d))
		case tm.nodes[to] == nil:
			return nil, nil, status.Errorf(codes.FailedPrecondition, "node %d is not registered", to)
		case !slices.Contains(s.balanceTargetsLocked(tm), to):
			return nil, nil, status.Errorf(codes.FailedPrecondition, "node %d is not live, or is draining or settling: no replica moves onto it", to)
		}
		op = &placementpb.RangeOperation{RangeId: id, StartedUnixNanos: time.Now().UnixNano(),
			Op: &placementpb.RangeOperation_Move{Move: &placementpb.MoveOperation{From: from, To: to, Reason: reason}}}
		m := &mutation{}
		m.putOp(op)
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.ops[id] = op
			tm.driving[id] = true
			return nil
		}, nil
	})
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return nil, err
		}
		return nil, s.writeError(err)
	}
	if op != nil {
		s.log.Info("moving a replica", "range", id, "from", from, "to", to, "reason", reason)
		reached(ctx, op, stepRecorded)
	}
	return op, nil
}

func roleOf(d *kvpb.RangeDescriptor, node uint64) (kvpb.ReplicaRole, bool) {
	for _, r := range d.GetReplicas() {
		if r.NodeId == node {
			return r.Role, true
		}
	}
	return 0, false
}

func replicaList(d *kvpb.RangeDescriptor) string {
	var s string
	for i, r := range d.Replicas {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("node %d %s", r.NodeId, r.Role)
	}
	return "replicas: " + s
}

// driveMove carries op out from whatever step the range's descriptor
// says it reached, until it is done or ctx ends. The term that started
// driving op stops driving it when this returns.
func (s *Server) driveMove(ctx context.Context, op *placementpb.RangeOperation) (_ *placementpb.MoveReplicaResponse, err error) {
	defer s.stopDriving(op.RangeId)
	mv := op.GetMove()
	ctx, span := s.startOp(ctx, "placement.move", op.RangeId,
		attribute.Int64("shardd.from", int64(mv.GetFrom())), attribute.Int64("shardd.to", int64(mv.GetTo())),
		attribute.String("shardd.reason", mv.GetReason()))
	defer func() { tracing.EndWith(span, err) }()
	backoff := 10 * time.Millisecond
	var lastErr error
	for ctx.Err() == nil {
		d, addrs, ok := s.rangeAndAddrs(op.RangeId)
		if !ok {
			if _, err := s.leading(); err != nil {
				return nil, err
			}
			return nil, s.rollBack(ctx, op, fmt.Errorf("range %d is no longer in the map", op.RangeId))
		}
		toRole, toIn := roleOf(d, mv.To)
		var change kvpb.ReplicaChange
		var node uint64
		switch {
		case !toIn && placement.Holds(d, mv.From):
			change, node = kvpb.ReplicaChange_ADD_LEARNER, mv.To
		case toIn && toRole == kvpb.ReplicaRole_LEARNER:
			change, node = kvpb.ReplicaChange_PROMOTE_LEARNER, mv.To
		case placement.Holds(d, mv.From):
			change, node = kvpb.ReplicaChange_REMOVE_REPLICA, mv.From
		default:
			return s.finishMove(ctx, op, d)
		}
		nd, err := s.changeReplicas(ctx, d, addrs, change, node)
		if err == nil {
			reached(ctx, op, changeSteps[change])
			if _, err := s.recordDesc(ctx, nd, false); err != nil {
				return nil, s.writeError(err)
			}
			backoff = 10 * time.Millisecond
			continue
		}
		lastErr = err
		if nd := mismatchDesc(err, op.RangeId); nd != nil {
			// The map is behind the nodes: take their descriptor.
			if _, err := s.recordDesc(ctx, nd, false); err != nil {
				return nil, s.writeError(err)
			}
			continue
		}
		if change == kvpb.ReplicaChange_REMOVE_REPLICA && status.Code(err) == codes.FailedPrecondition {
			// The source leads the range (a leader does not remove
			// itself): hand its leadership to the new voter first.
			if terr := s.transferLeader(ctx, d, mv.To, addrs); terr == nil {
				reached(ctx, op, stepLeaderMoved)
				_, _, _ = s.recordLeaders(ctx, map[uint64]uint64{d.RangeId: mv.To})
				continue
			} else {
				lastErr = terr
			}
		}
		s.log.Debug("replica move step refused; again", "op", describeOp(op), "change", change, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		// A learner catches up within tens of milliseconds: ask often.
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	return nil, status.Errorf(codes.Unavailable, "%s is under way and will be completed: %v", describeOp(op), lastErr)
}

// changeSteps are the steps of a move that each membership change reaches.
var changeSteps = map[kvpb.ReplicaChange]opStep{kvpb.ReplicaChange_ADD_LEARNER: stepLearnerAdded,
	kvpb.ReplicaChange_PROMOTE_LEARNER: stepPromoted, kvpb.ReplicaChange_REMOVE_REPLICA: stepRemoved}

// changeReplicas asks range d's leader for one membership change and
// returns the descriptor once it holds.
func (s *Server) changeReplicas(ctx context.Context, d *kvpb.RangeDescriptor, addrs map[uint64]string, change kvpb.ReplicaChange, node uint64) (*kvpb.RangeDescriptor, error) {
	var nd *kvpb.RangeDescriptor
	err := s.askLeader(ctx, d, addrs, func(ctx context.Context, c kvpb.AdminClient) error {
		resp, err := c.ChangeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: d.RangeId, ExpectedGeneration: d.Generation, Change: change, NodeId: node})
		if err == nil {
			nd = resp.Descriptor_
		}
		return err
	}, nil)
	return nd, err
}

// mismatchDesc returns the node's descriptor of range id that a
// RangeMismatch error carries, if any.
func mismatchDesc(err error, id uint64) *kvpb.RangeDescriptor {
	for _, det := range status.Convert(err).Details() {
		if mm, ok := det.(*kvpb.RangeMismatch); ok && mm.Descriptor_.GetRangeId() == id && len(mm.Descriptor_.GetReplicas()) > 0 {
			return mm.Descriptor_
		}
	}
	return nil
}

// finishMove ends op, recording d, the descriptor the move left.
func (s *Server) finishMove(ctx context.Context, op *placementpb.RangeOperation, d *kvpb.RangeDescriptor) (*placementpb.MoveReplicaResponse, error) {
	rev, err := s.recordDesc(ctx, d, true)
	if err != nil {
		return nil, s.writeError(err)
	}
	s.metrics.opEnded(op, opDone)
	s.log.Info("moved a replica", "range", op.RangeId, "from", op.GetMove().From, "to", op.GetMove().To,
		"reason", op.GetMove().Reason, "took", time.Since(time.Unix(0, op.StartedUnixNanos)).Round(time.Millisecond))
	return &placementpb.MoveReplicaResponse{Descriptor_: d, Revision: rev}, nil
}

// recordDesc records d, a range's descriptor as its nodes report it, if
// it is newer than the map's, and with endOp ends the operation on the
// range.
func (s *Server) recordDesc(ctx context.Context, d *kvpb.RangeDescriptor, endOp bool) (uint64, error) {
	var rev uint64
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		cur, ok := tm.rm.Get(d.RangeId)
		newer := ok && cur.Generation < d.Generation
		if !newer && !endOp {
			return nil, nil, nil
		}
		m := &mutation{}
		next := tm.rm
		if newer {
			var err error
			if next, d, err = withDesc(tm.rm, d); err != nil {
				return nil, nil, err
			}
			m.putDesc(d)
		}
		if endOp {
			m.delOp(d.RangeId)
		}
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.rm = next
			if endOp {
				delete(tm.ops, d.RangeId)
			}
			rev = tm.rev + 1
			if newer {
				return &placementpb.WatchEvent{Updated: []*kvpb.RangeDescriptor{d}}
			}
			return nil
		}, nil
	})
	return rev, err
}

// withDesc returns rm with range d.RangeId's descriptor replaced by d,
// keeping the map's leader hint (a node's stored descriptor names the
// leader it was created with, not the current one) unless the change
// removed that node (see voterHint).
func withDesc(rm *placement.RangeMap, d *kvpb.RangeDescriptor) (*placement.RangeMap, *kvpb.RangeDescriptor, error) {
	descs := rm.All()
	var out *kvpb.RangeDescriptor
	for i := range descs {
		if descs[i].RangeId == d.RangeId {
			out = proto.Clone(d).(*kvpb.RangeDescriptor)
			out.LeaderNodeId = voterHint(out, descs[i].LeaderNodeId, d.LeaderNodeId)
			descs[i] = out
		}
	}
	next, err := placement.NewRangeMap(descs)
	return next, out, err
}

// moveReplicas is the balancer's replica round: it re-creates elsewhere
// the replicas of nodes dead for DeadAfter (repair), and, when nothing is
// to repair, moves replicas so that every live node holds within 10% of
// the mean (a node that joins receives replicas until it does). At most
// MaxConcurrentMoves moves are under way at once; nothing moves onto a
// draining or settling node.
func (s *Server) moveReplicas() {
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil || !tm.created {
		s.mu.Unlock()
		return
	}
	busy := map[uint64]bool{}
	moving := 0
	for id, op := range tm.ops {
		busy[id] = true
		if op.GetMove() != nil {
			moving++
		}
	}
	budget := s.cfg.MaxConcurrentMoves - moving
	if budget <= 0 {
		s.mu.Unlock()
		return
	}
	descs := tm.rm.All()
	targets := s.balanceTargetsLocked(tm)
	dead := s.deadNodesLocked(tm)
	s.mu.Unlock()

	var plan []placement.Move
	reason := "repair"
	for _, m := range placement.PlanRepair(descs, targets) {
		if dead[m.Remove] && !busy[m.RangeID] && len(plan) < budget {
			plan = append(plan, m)
		}
	}
	if len(plan) == 0 && len(dead) == 0 {
		reason = "balance"
		plan = placement.PlanReplicaBalance(descs, targets, busy, budget)
	}
	for _, m := range plan {
		op, err := s.startMove(s.ctx, m.RangeID, m.Remove, m.Add, reason)
		if err != nil || op == nil {
			s.log.Info("cannot start a replica move", "range", m.RangeID, "from", m.Remove, "to", m.Add, "reason", reason, "err", err)
			continue
		}
		s.driveInBackground([]*placementpb.RangeOperation{op}, nil)
	}
}

// driveInBackground drives the started moves ops, one after the other,
// in a goroutine, each for at most backgroundMoveDeadline, then calls
// then (if not nil) if they all finished. Each is driven whatever became
// of the others: a move left unfinished is resumed by a later round
// (resumeOps), which needs the driving to have stopped.
func (s *Server) driveInBackground(ops []*placementpb.RangeOperation, then func()) {
	if len(ops) == 0 {
		return
	}
	s.wg.Go(func() {
		done := true
		for _, op := range ops {
			ctx, cancel := context.WithTimeout(s.ctx, backgroundMoveDeadline)
			_, err := s.driveMove(ctx, op)
			cancel()
			if err != nil {
				done = false
				s.log.Info("replica move not finished; the next round resumes it", "op", describeOp(op), "err", err)
			}
		}
		if done && then != nil {
			then()
		}
	})
}

// deadNodesLocked returns the registered nodes silent for DeadAfter,
// whose replicas are to be re-created elsewhere.
func (s *Server) deadNodesLocked(tm *term) map[uint64]bool {
	dead := map[uint64]bool{}
	for id := range tm.nodes {
		hb, ok := s.heartbeats[id]
		if (ok && time.Since(hb.at) >= s.cfg.DeadAfter) || (!ok && time.Since(tm.started) >= s.cfg.DeadAfter) {
			dead[id] = true
		}
	}
	return dead
}

// backgroundMoveDeadline bounds one background drive of a move; one left
// unfinished is resumed by a later round (resumeOps).
const backgroundMoveDeadline = time.Minute
