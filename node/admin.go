package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// adminServer implements the Admin service: what the node hosts, for
// routers, the command line and operators.
type adminServer struct {
	kvpb.UnimplementedAdminServer
	n *Node
}

// Ranges lists the descriptors of the ranges this node hosts a replica of,
// each with the leader it knows of, sorted by start key.
func (s *adminServer) Ranges(context.Context, *kvpb.RangesRequest) (*kvpb.RangesResponse, error) {
	n := s.n
	resp := &kvpb.RangesResponse{NodeAddrs: map[uint64]string{}}
	n.mu.RLock()
	for _, r := range n.replicas {
		d := r.desc.Load()
		if len(d.GetReplicas()) == 0 {
			continue // not initialized yet
		}
		d = proto.Clone(d).(*kvpb.RangeDescriptor)
		d.LeaderNodeId = r.leader.Load()
		resp.Ranges = append(resp.Ranges, d)
	}
	for id, addr := range n.peers {
		resp.NodeAddrs[id] = addr
	}
	n.mu.RUnlock()
	if n.members != nil {
		for _, m := range n.members.Members() {
			resp.NodeAddrs[m.NodeID] = m.GRPCAddr
		}
	}
	slices.SortFunc(resp.Ranges, func(a, b *kvpb.RangeDescriptor) int { return bytes.Compare(a.StartKey, b.StartKey) })
	return resp, nil
}

// NodeStatus reports the node's groups and batching figures.
func (s *adminServer) NodeStatus(context.Context, *kvpb.NodeStatusRequest) (*kvpb.NodeStatusResponse, error) {
	n := s.n
	st := n.Stats()
	resp := &kvpb.NodeStatusResponse{
		NodeId: n.cfg.NodeID, Addr: n.Addr(), Groups: uint32(st.Groups), ActiveGroups: uint32(st.Active), Leaders: uint32(st.Leaders),
		CommandsPerValue: st.CommandsPerValue, RecordsPerSync: st.RecordsPerSync, Syncs: uint64(st.Syncs),
	}
	if st.Transport.FramesSent > 0 {
		resp.MessagesPerFrame = float64(st.Transport.MessagesSent) / float64(st.Transport.FramesSent)
	}
	return resp, nil
}

// CreateRanges creates this node's replicas of new ranges; see
// Node.CreateGroups. It checks every descriptor first, so a bad request
// creates nothing.
func (s *adminServer) CreateRanges(_ context.Context, req *kvpb.CreateRangesRequest) (*kvpb.CreateRangesResponse, error) {
	n := s.n
	for i, d := range req.GetRanges() {
		if err := n.checkNewRange(d); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ranges[%d]: %v", i, err)
		}
	}
	if err := n.CreateGroups(req.GetRanges()); err != nil {
		return nil, status.Errorf(codes.Internal, "create ranges: %v", err)
	}
	return &kvpb.CreateRangesResponse{}, nil
}

// checkNewRange checks a descriptor handed to CreateRanges: a range id, a
// non-empty span, distinct replicas with this node among the voters.
func (n *Node) checkNewRange(d *kvpb.RangeDescriptor) error {
	switch {
	case d == nil:
		return fmt.Errorf("descriptor is not set")
	case d.RangeId == 0:
		return fmt.Errorf("range id 0 is reserved")
	case len(d.EndKey) > 0 && bytes.Compare(d.StartKey, d.EndKey) >= 0:
		return fmt.Errorf("range %d is empty or inverted: [%q, %q)", d.RangeId, d.StartKey, d.EndKey)
	}
	seen := map[uint64]bool{}
	for _, r := range d.Replicas {
		if r == nil || r.NodeId == 0 || seen[r.NodeId] {
			return fmt.Errorf("range %d: replicas must be set, on non-zero and distinct nodes", d.RangeId)
		}
		seen[r.NodeId] = true
	}
	if !slices.Contains(votersOf(d).Voters, n.cfg.NodeID) {
		return fmt.Errorf("range %d does not list node %d as a voter", d.RangeId, n.cfg.NodeID)
	}
	return nil
}

// TransferLeader starts handing the leadership of a range this node leads
// to another voter (group.Replica.TransferLeader: the target catches up,
// then the lease is handed off, so there is never a window with two
// leaders).
func (s *adminServer) TransferLeader(ctx context.Context, req *kvpb.TransferLeaderRequest) (*kvpb.TransferLeaderResponse, error) {
	n := s.n
	if req.GetRangeId() == 0 || req.GetTargetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "range_id and target_node_id must be set")
	}
	r := n.replica(req.RangeId)
	if r == nil || len(r.desc.Load().GetReplicas()) == 0 {
		return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", n.cfg.NodeID, req.RangeId), nil)
	}
	if !slices.Contains(votersOf(r.desc.Load()).Voters, req.TargetNodeId) {
		return nil, status.Errorf(codes.InvalidArgument, "node %d is not a voter of range %d", req.TargetNodeId, req.RangeId)
	}
	if r.leader.Load() != n.cfg.NodeID {
		return nil, n.notLeader(r)
	}
	_, err := await(ctx, n, func(done func(struct{}, error)) {
		n.onWorker(r, func() { done(struct{}{}, r.rn.TransferLeader(req.TargetNodeId)) })
	})
	var nl *group.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return nil, n.notLeader(r)
	case errors.Is(err, group.ErrInvalidConfChange):
		return nil, status.Errorf(codes.InvalidArgument, "node %d is not a voter of range %d", req.TargetNodeId, req.RangeId)
	case errors.Is(err, group.ErrTransferTargetDown):
		return nil, status.Errorf(codes.Unavailable, "node %d does not look live to node %d: not handing range %d to it", req.TargetNodeId, n.cfg.NodeID, req.RangeId)
	case err != nil:
		return nil, status.Convert(err).Err()
	}
	return &kvpb.TransferLeaderResponse{}, nil
}

// onWorker runs task on the worker that processes r, the one place where a
// group replica may be touched, before the cycle that collects its Ready.
// task must not block.
func (n *Node) onWorker(r *replica, task func()) {
	r.mu.Lock()
	r.tasks = append(r.tasks, task)
	r.mu.Unlock()
	n.sched.enqueue(r)
}

// RangeLeader returns the leader this node knows of for a range it hosts
// (zero: none known), and whether it hosts the range.
func (n *Node) RangeLeader(rangeID uint64) (uint64, bool) {
	r := n.replica(rangeID)
	if r == nil {
		return 0, false
	}
	return r.leader.Load(), true
}
