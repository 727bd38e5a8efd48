package service

import (
	"context"
	"slices"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TransferLeader moves a range's leadership to one of its live voters: it
// asks the range's leader to hand over (following the nodes' NotLeader
// hints from the map's leader hint), which answers once the target leads,
// then records the target as the range's leader. A transfer is not an
// operation of ops.go: it leaves nothing half done that a new placement
// leader would have to finish (the range's group completes or abandons it
// within an election timeout), so nothing is recorded before it. It is
// refused while an operation is under way on the range.
func (a *api) TransferLeader(ctx context.Context, req *placementpb.TransferLeaderRequest) (*placementpb.TransferLeaderResponse, error) {
	if req.GetRangeId() == 0 || req.GetTargetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "range_id and target_node_id must be set")
	}
	s := a.s
	tm, err := s.leading()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if tm.rm == nil {
		defer s.mu.Unlock()
		return nil, s.notBootstrappedLocked(tm)
	}
	d, ok := tm.rm.Get(req.RangeId)
	if !ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "no range %d in the map", req.RangeId)
	}
	if o := tm.ops[req.RangeId]; o != nil {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "range %d is busy with %s", req.RangeId, describeOp(o))
	}
	var voters []uint64
	addrs := map[uint64]string{}
	for _, r := range d.Replicas {
		if r.Role == kvpb.ReplicaRole_VOTER {
			voters = append(voters, r.NodeId)
		}
		if rec := tm.nodes[r.NodeId]; rec != nil {
			addrs[r.NodeId] = rec.Addr
		}
	}
	live := slices.Contains(s.liveNodesLocked(tm), req.TargetNodeId)
	draining := s.heartbeats[req.TargetNodeId].draining
	s.mu.Unlock()
	switch {
	case !slices.Contains(voters, req.TargetNodeId):
		return nil, status.Errorf(codes.InvalidArgument, "node %d is not a voter of range %d (voters %v)", req.TargetNodeId, d.RangeId, voters)
	case !live:
		return nil, status.Errorf(codes.FailedPrecondition, "node %d is not live: placement has had no heartbeat from it for %v",
			req.TargetNodeId, s.cfg.HeartbeatTimeout)
	case draining:
		return nil, status.Errorf(codes.FailedPrecondition, "node %d is draining: it would hand the range straight back", req.TargetNodeId)
	}
	if err := s.transferLeader(ctx, d, req.TargetNodeId, addrs); err != nil {
		return nil, err
	}
	nd, rev, err := s.recordLeaders(ctx, map[uint64]uint64{d.RangeId: req.TargetNodeId})
	if err != nil {
		return nil, s.writeError(err)
	}
	s.log.Info("leader moved", "range", d.RangeId, "to", req.TargetNodeId, "reason", "asked")
	return &placementpb.TransferLeaderResponse{Descriptor_: nd[d.RangeId], Revision: rev}, nil
}

// notLiveWait bounds how long transferLeader asks again a leader that
// refuses because the target does not look live to its node, every
// notLiveRetry: about the time a restarted node's peers take to support it.
const (
	notLiveWait  = 1500 * time.Millisecond
	notLiveRetry = 20 * time.Millisecond
)

// transferLeader asks the leader of range d to hand its leadership to node
// to, and returns once to leads (node Admin.TransferLeader answers then).
// The balancer and the TransferLeader API both move leaders through here.
func (s *Server) transferLeader(ctx context.Context, d *kvpb.RangeDescriptor, to uint64, addrs map[uint64]string) (err error) {
	ctx, span := s.startOp(ctx, "placement.transfer", d.RangeId, attribute.Int64("shardd.to", int64(to)))
	defer func() { tracing.EndWith(span, err) }()
	start := time.Now()
	defer func() { s.metrics.transferEnded(err) }()
	return s.askLeader(ctx, d, addrs, func(ctx context.Context, c kvpb.AdminClient) error {
		_, err := c.TransferLeader(ctx, &kvpb.TransferLeaderRequest{RangeId: d.RangeId, TargetNodeId: to})
		return err
	}, func(st *status.Status) bool {
		// The leader's node does not see the target's as live yet, though
		// we do: it started or restarted a moment ago, and node support
		// takes a few of its heartbeats. Ask again.
		return st.Code() == codes.FailedPrecondition && time.Since(start) < notLiveWait
	})
}

// askLeader makes call on the leader of range d: the map's hint, or
// failing that any voter; a node that does not lead answers with NotLeader
// and the leader it knows of, which is asked next, and one that can't be
// reached is passed over. An answer for which again reports true is asked
// again of the same node after notLiveRetry. It returns the leader's
// answer, or Unavailable once no node is left to ask. Every operation that
// must reach a range's leader (transfers, splits, replica changes) goes
// through here.
func (s *Server) askLeader(ctx context.Context, d *kvpb.RangeDescriptor, addrs map[uint64]string,
	call func(context.Context, kvpb.AdminClient) error, again func(*status.Status) bool) error {
	var ask []uint64 // the nodes to ask, in order
	if d.LeaderNodeId != 0 {
		ask = append(ask, d.LeaderNodeId)
	}
	for _, r := range d.Replicas {
		if r.Role == kvpb.ReplicaRole_VOTER && !slices.Contains(ask, r.NodeId) {
			ask = append(ask, r.NodeId)
		}
	}
	var lastErr error
	for tried := map[uint64]bool{}; len(ask) > 0; {
		from := ask[0]
		ask = ask[1:]
		if tried[from] {
			continue
		}
		tried[from] = true
		err := s.callNodeCtx(ctx, addrs[from], call)
		if err == nil {
			return nil
		}
		st := status.Convert(err)
		lastErr = status.Errorf(st.Code(), "range %d, node %d: %s", d.RangeId, from, st.Message())
		var nl *kvpb.NotLeader
		for _, det := range st.Details() {
			if n, ok := det.(*kvpb.NotLeader); ok {
				nl = n
			}
		}
		switch {
		case ctx.Err() != nil:
			return lastErr
		case nl != nil:
			if nl.LeaderNodeId != 0 && !tried[nl.LeaderNodeId] {
				ask = append([]uint64{nl.LeaderNodeId}, ask...)
			}
		case holdsNoReplica(st):
			// A voter that has not applied the split that made the
			// range, or a stale hint: not the leader. Asking it again
			// and again (it answers at once) stalled a move for good.
		case again != nil && again(st):
			tried[from] = false
			ask = append([]uint64{from}, ask...)
			select {
			case <-time.After(notLiveRetry):
			case <-ctx.Done():
				return lastErr
			}
		case st.Code() != codes.Unavailable:
			return err // the leader answered
		}
		// Not the leader, or not reachable: ask the next.
	}
	return status.Errorf(codes.Unavailable, "range %d has no leader that answers now (last: %v)", d.RangeId, lastErr)
}

// holdsNoReplica reports whether a node's answer says it holds no
// replica of the range asked about: a RangeMismatch without a descriptor.
func holdsNoReplica(st *status.Status) bool {
	for _, det := range st.Details() {
		if mm, ok := det.(*kvpb.RangeMismatch); ok && len(mm.Descriptor_.GetReplicas()) == 0 {
			return true
		}
	}
	return false
}

// recordLeaders records, in one change, each range's leader in leaders
// (by range id) where the map says otherwise. It returns the descriptors
// of those ranges as the map holds them from the returned revision on.
func (s *Server) recordLeaders(ctx context.Context, leaders map[uint64]uint64) (map[uint64]*kvpb.RangeDescriptor, uint64, error) {
	out := map[uint64]*kvpb.RangeDescriptor{}
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		next := tm.rm.Clone()
		var changed []*kvpb.RangeDescriptor
		for id, l := range leaders {
			d, ok := next.Get(id)
			if !ok || d.LeaderNodeId == l || next.Apply(placement.SetLeader{RangeID: id, Node: l}) != nil {
				continue
			}
			nd, _ := next.Get(id)
			changed = append(changed, nd)
		}
		if len(changed) == 0 {
			return nil, nil, nil
		}
		m := &mutation{}
		for _, d := range changed {
			m.putDesc(d)
		}
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.rm = next
			return &placementpb.WatchEvent{Updated: changed}
		}, nil
	})
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.term == nil || s.term.rm == nil {
		return nil, 0, errNotLeading
	}
	for id := range leaders {
		if d, ok := s.term.rm.Get(id); ok {
			out[id] = d
		}
	}
	return out, s.term.rev, nil
}
