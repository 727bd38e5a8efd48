package node

import (
	"cmp"
	"slices"
	"time"

	"github.com/shardd/shardd/internal/buildinfo"
	"github.com/shardd/shardd/kvpb"
)

// maxLaggingListed bounds the ranges a status lists as behind their
// leader; it counts them all.
const maxLaggingListed = 20

// status assembles the node's Admin.NodeStatus answer: its build and
// lifetime, its groups, its disk use, its links to peers, and its ranges
// that have not caught up with their leader. It reads the replicas'
// atomics, which the workers refresh after every cycle, so it never waits
// for a worker.
func (n *Node) status() *kvpb.NodeStatusResponse {
	st := n.Stats()
	resp := &kvpb.NodeStatusResponse{
		NodeId: n.cfg.NodeID, Addr: n.Addr(), Groups: uint32(st.Groups), ActiveGroups: uint32(st.Active), Leaders: uint32(st.Leaders),
		CommandsPerValue: st.CommandsPerValue, RecordsPerSync: st.RecordsPerSync, Syncs: uint64(st.Syncs),
		Version: buildinfo.Read().String(), UptimeMillis: uint64(time.Since(n.start).Milliseconds()), Incarnation: n.incarnation,
	}
	if st.Transport.FramesSent > 0 {
		resp.MessagesPerFrame = float64(st.Transport.MessagesSent) / float64(st.Transport.FramesSent)
	}
	if du, err := n.eng.DiskUsage(); err == nil {
		resp.DiskBytes, resp.PebbleBytes = du.Allocated, du.Pebble
	}
	for _, p := range n.trans.PeerStatuses() {
		l := &kvpb.PeerLink{NodeId: p.NodeID, Addr: p.Addr, Connected: p.Connected,
			QueuedMessages: uint32(p.QueuedMessages), QueuedBytes: uint64(p.QueuedBytes)}
		if l.Addr == "" {
			l.Addr, _ = n.addrOf(p.NodeID)
		}
		if !p.LostAt.IsZero() {
			l.LostMillis = uint64(max(time.Since(p.LostAt).Milliseconds(), 1))
		}
		if p.LastError != nil {
			l.LastError = p.LastError.Error()
			l.LastErrorMillis = uint64(max(time.Since(p.LastErrorAt).Milliseconds(), 1))
		}
		resp.Peers = append(resp.Peers, l)
	}
	n.mu.RLock()
	reps := make([]*replica, 0, len(n.replicas))
	for _, r := range n.replicas {
		reps = append(reps, r)
	}
	n.mu.RUnlock()
	var lagging []*kvpb.ReplicaStatus
	for _, r := range reps {
		rs := n.replicaStatus(r)
		initialized := len(r.desc.Load().GetReplicas()) > 0
		if rs.LeaderNodeId == 0 && initialized {
			resp.LeaderlessRanges++
		}
		// A replica that does not know its range yet (a new learner
		// waiting for its snapshot) lags too, once a leader spoke to it.
		if rs.Applied < rs.LeaderChosen {
			lagging = append(lagging, rs)
		}
	}
	slices.SortFunc(lagging, func(a, b *kvpb.ReplicaStatus) int {
		return cmp.Or(cmp.Compare(b.LeaderChosen-b.Applied, a.LeaderChosen-a.Applied), cmp.Compare(a.RangeId, b.RangeId))
	})
	resp.LaggingRanges = uint32(len(lagging))
	resp.Lagging = lagging[:min(len(lagging), maxLaggingListed)]
	return resp
}

// replicaStatus is where replica r stands in its range's log, as of its
// last cycle.
func (n *Node) replicaStatus(r *replica) *kvpb.ReplicaStatus {
	d := r.desc.Load()
	rs := &kvpb.ReplicaStatus{RangeId: r.id, NodeId: n.cfg.NodeID, Generation: d.GetGeneration(),
		LeaderNodeId: r.leader.Load(), Chosen: r.chosen.Load(), Applied: r.applied.Load(),
		LeaderChosen: r.leaderChosen.Load(), Quiesced: !r.active.Load()}
	for _, rd := range d.GetReplicas() {
		if rd.NodeId == n.cfg.NodeID {
			rs.Role = rd.Role
		}
	}
	return rs
}
