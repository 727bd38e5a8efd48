package node

import (
	"bytes"
	"context"
	"slices"

	"github.com/shardd/shardd/kvpb"
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
		NodeId: n.cfg.NodeID, Addr: n.Addr(), Groups: uint32(st.Groups), ActiveGroups: uint32(st.Active),
		CommandsPerValue: st.CommandsPerValue, RecordsPerSync: st.RecordsPerSync, Syncs: uint64(st.Syncs),
	}
	if st.Transport.FramesSent > 0 {
		resp.MessagesPerFrame = float64(st.Transport.MessagesSent) / float64(st.Transport.FramesSent)
	}
	n.mu.RLock()
	for _, r := range n.replicas {
		if r.leader.Load() == n.cfg.NodeID {
			resp.Leaders++
		}
	}
	n.mu.RUnlock()
	return resp, nil
}
