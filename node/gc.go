package node

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
)

// Removal of a replica from this node. A node stops hosting a replica
// when the replica applies a configuration that no longer includes the
// node, or is sent a snapshot of one (group/removal.go makes sure a
// removed replica learns its removal). In the batch of the cycle that
// finds it out (removeReplica), synced:
//
//   - the group's records (hard state, log, applied point, meta,
//     range-local records) go with one range deletion (DeleteGroup),
//   - the range's user data goes with range deletions of its span, but
//     only of the parts no other replica of this node holds (uncovered):
//     the data key space is shared, and a replica whose descriptor is
//     stale may still overlap another's,
//   - a replica tombstone records the generation of the descriptor that
//     left the node out.
//
// Once that batch is durable the replica is unregistered (dropReplica):
// gone from the replica map and the index, everything waiting on it told
// so. A message for the range that arrives later (a leader that has not
// heard, a removal notice retold) does not create an empty replica again,
// which would sit there for ever, since no leader sends it a snapshot:
// the node answers it as an empty replica would (answerAsRemoved), which
// creates and persists nothing. A snapshot of a later generation than the
// tombstone's creates the replica again: the node was added back, and its
// new leader brings it its data.

// errReplicaRemoved refuses a snapshot for a replica that left its range
// on this node, or that the snapshot itself leaves out.
var errReplicaRemoved = errors.New("node: the replica left its range on this node")

// leftGroup reports whether configuration c, which a replica of this node
// applied, leaves this node out. A replica that knows no configuration
// yet has left nothing.
func (n *Node) leftGroup(c pb.Config) bool {
	return len(c.Voters)+len(c.Learners) > 0 && !slices.Contains(c.Voters, n.cfg.NodeID) && !slices.Contains(c.Learners, n.cfg.NodeID)
}

// removeReplica writes into the cycle's batch b the deletion of all that
// replica r holds on this node and its tombstone at generation gen, and
// marks it removed: the cycle syncs b, then drops r (dropReplica).
func (n *Node) removeReplica(r *replica, b *engine.Batch, gen uint64) {
	g := engine.GroupID(r.id)
	b.DeleteGroup(g)
	if d := r.desc.Load(); len(d.GetReplicas()) > 0 {
		for _, s := range n.uncovered(d.StartKey, nilIfEmpty(d.EndKey), r) {
			b.DeleteSpan(s.start, s.end)
		}
	}
	b.SetReplicaTombstone(g, gen)
	r.removed, r.removedAt = true, gen
	n.log.Info("replica left its range: deleting its data and log", "range", r.id, "generation", gen)
}

// span is [start, end) of user keys; a nil end is unbounded.
type span struct{ start, end []byte }

// uncovered returns the parts of [start, end) (nil end: unbounded) that
// no replica of this node other than except holds, in key order.
func (n *Node) uncovered(start, end []byte, except *replica) []span {
	var out []span
	cur := start
	if idx := n.byStart.Load(); idx != nil {
		for _, o := range *idx {
			if o == except {
				continue
			}
			d := o.desc.Load()
			oEnd := nilIfEmpty(d.EndKey)
			if end != nil && bytes.Compare(d.StartKey, end) >= 0 {
				break // the index is sorted by start key
			}
			if oEnd != nil && bytes.Compare(oEnd, cur) <= 0 {
				continue
			}
			if bytes.Compare(cur, d.StartKey) < 0 {
				out = append(out, span{cur, d.StartKey})
			}
			if oEnd == nil {
				return out
			}
			cur = oEnd
		}
	}
	if end == nil || bytes.Compare(cur, end) < 0 {
		out = append(out, span{cur, end})
	}
	return out
}

// dropReplica unregisters a replica whose removal is durable, and tells
// whoever waits on it.
func (n *Node) dropReplica(r *replica) {
	n.createMu.Lock()
	n.tombstones[r.id] = max(n.tombstones[r.id], r.removedAt)
	n.mu.Lock()
	if n.replicas[r.id] == r {
		delete(n.replicas, r.id)
	}
	n.mu.Unlock()
	n.createMu.Unlock()
	n.unindex(r)
	n.setActive(r, false)
	r.leader.Store(0)
	n.lostLeadership(r)
	if r.wasLeader {
		n.leadershipsLost.Add(1)
	}
	n.drainRemoved(r)
}

// drainRemoved answers whatever reached a replica's mailbox after it was
// removed: it serves nothing, and ingests nothing, any more.
func (n *Node) drainRemoved(r *replica) {
	in := r.mb.take()
	_, _, refused, _, traced := r.mb.takeWrites(false, 0, 0, 0)
	err := n.removedError(r.id)
	traceProposeFailed(traced, err)
	for _, cb := range refused {
		cb(kvsm.Result{}, err)
	}
	for _, rr := range in.reads {
		rr.serve(err)
	}
	for _, si := range in.installs {
		si.w.Abort()
		si.done <- errReplicaRemoved
	}
	for _, task := range in.tasks {
		task() // each checks r.removed (see changeReplicas)
	}
}

// removedError is the error for a request that reached a replica after it
// left the node: the router must look the range up again.
func (n *Node) removedError(id uint64) error {
	return rangeMismatch(fmt.Sprintf("node %d no longer hosts range %d", n.cfg.NodeID, id), nil)
}

// unindex takes a replica out of the start-key index.
func (n *Node) unindex(r *replica) {
	n.indexMu.Lock()
	defer n.indexMu.Unlock()
	p := n.byStart.Load()
	if p == nil || !slices.Contains(*p, r) {
		return
	}
	idx := slices.DeleteFunc(slices.Clone(*p), func(o *replica) bool { return o == r })
	n.byStart.Store(&idx)
}

// mayCreate reports whether the node may create a replica of group id for
// a reason of generation gen (zero: a message, which carries none): not if
// the group left the node at gen or later. The caller holds createMu.
func (n *Node) mayCreate(id, gen uint64) bool {
	t, ok := n.tombstones[id]
	return !ok || gen > t
}

// removedHere reports whether group id left this node, and at which
// generation.
func (n *Node) removedHere(id uint64) (uint64, bool) {
	n.createMu.Lock()
	defer n.createMu.Unlock()
	t, ok := n.tombstones[id]
	return t, ok
}

// answerAsRemoved returns the answers to m, a message for a group that
// left this node, of a replica with no state: it promises nothing and
// counts towards no quorum, and a leader whose configuration still lists
// this node (it added the node back) offers it a snapshot, which creates
// the replica again if its generation is past the tombstone's.
func (n *Node) answerAsRemoved(m pb.Message) []pb.Message {
	rn, err := n.newGroup(m.Group, group.State{})
	if err != nil {
		return nil
	}
	rn.Step(m)
	if !rn.HasReady() {
		return nil
	}
	rd := rn.Ready()
	out := append(rd.SendFirst, rd.Messages...)
	for i := range out {
		out[i].Group = m.Group
	}
	return out
}

// loadTombstones reads the store's replica tombstones.
func (n *Node) loadTombstones() error {
	ts, err := n.eng.ReplicaTombstones()
	if err != nil {
		return fmt.Errorf("node: read replica tombstones: %w", err)
	}
	n.tombstones = make(map[uint64]uint64, len(ts))
	for g, gen := range ts {
		n.tombstones[uint64(g)] = gen
	}
	return nil
}
