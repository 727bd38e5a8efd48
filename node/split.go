package node

import (
	"bytes"
	"context"
	"fmt"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Splits. The leader proposes a split through the range's own log
// (kvsm.NewSplit); every replica applies it at the same point of the log
// (applySplit): the left range keeps [start, key) under its group, and
// the right half [key, end) becomes a new group on the same replicas,
// built from the split entry alone (group.SplitState), with a copy of the
// range-local records (the client sessions). No data moves: it is already
// in the node's one key space.
//
// The leader applies a split before any other replica can learn it is
// chosen (it alone hears the acceptances, and tells the others only after
// the cycle that applied it), so from the moment another replica could
// lead the right half, the left group's leader no longer serves its keys.
// A new leader of the left group reads only at or past its first slot,
// so after the split if the split was chosen; reads re-check the range
// once they may be served (submitRead).

// SplitRange implements the Admin RPC: see kvpb.AdminServer.
func (s *adminServer) SplitRange(ctx context.Context, req *kvpb.SplitRangeRequest) (*kvpb.SplitRangeResponse, error) {
	n := s.n
	if err := n.cfg.Limits.ValidateSplit(req); err != nil {
		return nil, err
	}
	key := req.SplitKey
	r := n.replica(req.RangeId)
	if r == nil || len(r.desc.Load().GetReplicas()) == 0 {
		return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", n.cfg.NodeID, req.RangeId), nil)
	}
	if done, ok := n.splitDone(r, key, req.NewRangeId); ok {
		return done, nil // a retry of a split that applied
	}
	d := r.desc.Load()
	if g := req.GetExpectedGeneration(); g != 0 && g != d.Generation {
		return nil, rangeMismatch(fmt.Sprintf("range %d is at generation %d, not %d", r.id, d.Generation, g), r)
	}
	if !contains(d, key) || bytes.Equal(key, d.StartKey) {
		return nil, rangeMismatch(fmt.Sprintf("split key %q is not strictly inside range %d [%q, %q)", key, r.id, d.StartKey, d.EndKey), r)
	}
	if other := n.replica(req.NewRangeId); other != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "node %d already hosts range %d", n.cfg.NodeID, req.NewRangeId)
	}
	if r.leader.Load() != n.cfg.NodeID {
		return nil, n.notLeader(r)
	}
	// Whether this attempt or an earlier one cut the range, the halves
	// say so; a split that found the range changed says nothing.
	if _, err := await(ctx, n, func(done func(kvsm.Result, error)) {
		n.submitTracedWrite(r, kvsm.NewSplit(key, req.NewRangeId), done, recordingSpan(ctx))
	}); err != nil {
		return nil, err
	}
	if done, ok := n.splitDone(r, key, req.NewRangeId); ok {
		return done, nil
	}
	d = r.desc.Load()
	return nil, rangeMismatch(fmt.Sprintf("range %d [%q, %q) changed before the split at %q applied", r.id, d.StartKey, d.EndKey, key), r)
}

// splitDone returns both halves if range r was split at key into newRange
// on this node.
func (n *Node) splitDone(r *replica, key []byte, newRange uint64) (*kvpb.SplitRangeResponse, bool) {
	right := n.replica(newRange)
	if right == nil {
		return nil, false
	}
	ld, rd := r.desc.Load(), right.desc.Load()
	if !bytes.Equal(ld.EndKey, key) || !bytes.Equal(rd.StartKey, key) {
		return nil, false
	}
	return &kvpb.SplitRangeResponse{Left: ld, Right: rd}, true
}

// applySplit carries out a split that range r's state machine just
// applied from entry e, within the cycle's batch: the left range's
// descriptor, and the right half's group, meta, hard state and range-local
// records. The right half's replica is created held (see born): nothing
// runs it until the batch that creates it is committed.
func (n *Node) applySplit(it *cycleItem, ov *overlay, e *pb.Entry, c *kvsm.Command) {
	r, b := it.r, ov.b
	old := r.desc.Load()
	left := proto.Clone(old).(*kvpb.RangeDescriptor)
	left.EndKey = bytes.Clone(c.Key)
	left.Generation++
	right := &kvpb.RangeDescriptor{
		RangeId: c.NewRange, StartKey: bytes.Clone(c.Key), EndKey: old.EndKey,
		Generation: left.Generation, Replicas: left.Replicas, LeaderNodeId: e.Ballot.Node,
	}
	r.setDesc(left)
	lm := groupMeta{Desc: left, Config: r.appliedConfig}
	b.SetGroupMeta(engine.GroupID(r.id), lm.marshal())

	meta := groupMeta{Desc: right, Config: r.appliedConfig}
	from := &splitOrigin{ballot: e.Ballot, local: rangeStore{ov, engine.GroupID(r.id)}.localRecords()}
	n.createMu.Lock()
	defer n.createMu.Unlock()
	if rr := n.replica(c.NewRange); rr != nil {
		// A peer's message created it first, empty: it takes the split's
		// state on its own worker, unless a snapshot initialized it
		// meanwhile (that is newer).
		n.post(rr, func(in *inputs) { in.initWith, in.splitFrom = &meta, from })
		return
	}
	st := group.SplitState(r.appliedConfig, e.Ballot)
	rg := engine.GroupID(c.NewRange)
	b.SetGroupMeta(rg, meta.marshal())
	b.SetHardState(rg, st.HardState.Marshal())
	b.SetApplied(rg, st.Applied)
	from.write(b, rg)
	rr, err := n.newReplica(c.NewRange, st, meta, true)
	if err != nil {
		ov.fail(err)
		return
	}
	rr.syncedPromise = st.HardState.Promised
	rr.mb.post(func(in *inputs) { in.campaign = e.Ballot.Node == n.cfg.NodeID })
	it.born = append(it.born, rr)
	n.index(rr)
}

// splitOrigin is what a right half takes from the split that made it:
// the ballot of the split entry, and its parent's range-local records (the
// client sessions) at the split.
type splitOrigin struct {
	ballot pb.Ballot
	local  []localKV
}

type localKV struct{ suffix, value []byte }

// write puts the parent's range-local records into group g's.
func (o *splitOrigin) write(b *engine.Batch, g engine.GroupID) {
	for _, kv := range o.local {
		b.PutRangeLocal(g, kv.suffix, kv.value)
	}
}

// localRecords returns every range-local record of s, as of the batch
// being built.
func (s rangeStore) localRecords() []localKV {
	var out []localKV
	inBatch := make(map[string]bool)
	for k, v := range s.local {
		if k.g != s.g {
			continue
		}
		inBatch[k.suffix] = true
		if !v.deleted {
			out = append(out, localKV{[]byte(k.suffix), v.v})
		}
	}
	s.fail(s.n.eng.ScanRangeLocal(s.g, nil, func(k, v []byte) bool {
		if !inBatch[string(k)] {
			out = append(out, localKV{bytes.Clone(k), bytes.Clone(v)})
		}
		return true
	}))
	return out
}

// keyMoved is the error for a request whose key range r no longer holds.
func (n *Node) keyMoved(r *replica, key []byte) error {
	d := r.desc.Load()
	return n.mismatch(fmt.Sprintf("range %d [%q, %q) does not hold key %q", r.id, d.StartKey, d.EndKey, key), r, key)
}

// mismatch is a RangeMismatch error about range r for a request of key:
// it carries r's descriptor and this node's descriptor of the range that
// holds key, if another one does.
func (n *Node) mismatch(msg string, r *replica, key []byte) error {
	d := &kvpb.RangeMismatch{Descriptor_: r.desc.Load()}
	if o := n.replicaFor(key); o != nil && o != r {
		d.Others = append(d.Others, o.desc.Load())
	}
	st, _ := status.New(codes.FailedPrecondition, msg).WithDetails(d)
	return st.Err()
}
