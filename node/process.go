package node

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
	"go.opentelemetry.io/otel/trace"
)

// cycleItem is one group's share of a scheduling cycle.
type cycleItem struct {
	r       *replica
	rd      group.Ready
	ready   bool
	results []seqResult
	applied uint64
	// born are the right halves of splits applied in the cycle, held until
	// the cycle's batch, which creates them, is durable.
	born []*replica
}

// seqResult is the result of a command this node proposed in this
// process life, by the Proposer.Seq its caller waits on.
type seqResult struct {
	seq uint64
	res kvsm.Result
	// key, for an OutOfRange result, is a key the range no longer holds.
	key []byte
}

// process runs one scheduling cycle over a batch of groups. Every group's
// Ready goes into ONE engine batch (its persistent records and the data of
// the entries it applies), committed with one fsync shared with whatever
// the other workers commit at the same time. Only then are messages sent,
// clients answered and the groups advanced: the Ready contract's "persist
// before send", paid once per cycle instead of once per group.
func (n *Node) process(reps []*replica) {
	b := n.eng.NewBatch()
	defer b.Close()
	ov := overlay{n: n, b: b, m: make(map[string]ovValue), local: make(map[localRecord]ovValue)}
	items := make([]cycleItem, 0, len(reps))
	durable := false
	var early []pb.Message
	// persisting are the traced spans this cycle's persist serves; none,
	// and no tracing work, unless a group has traced work in flight.
	var persisting []trace.SpanContext
	for _, r := range reps {
		if r.removed {
			n.drainRemoved(r)
			continue
		}
		durable = n.feed(r, b) || durable
		it := cycleItem{r: r}
		if r.removed {
			// A snapshot left this node out: removeReplica wrote to b.
			durable = true
		} else if r.rn.HasReady() {
			it.rd, it.ready = r.rn.Ready(), true
			durable = n.persist(&it, &ov) || durable
			for _, m := range it.rd.SendFirst {
				m.Group = r.id
				n.traceSend(r, &m)
				early = append(early, m)
			}
			persisting = n.tracePersisting(r, it.rd.Entries, persisting)
		}
		items = append(items, it)
	}
	// Leaders' accepts leave now and travel while we fsync our own copies.
	if len(early) > 0 {
		n.trans.SendBatch(early)
	}
	if ov.err != nil {
		n.fatal(ov.err)
		return
	}
	if k := n.cfg.Knobs.BeforeCommit; k != nil {
		k()
	}
	var persistSpan trace.Span
	if len(persisting) > 0 {
		persistSpan = n.startPersist(persisting, b)
	}
	if !b.Empty() {
		// A cycle that needs no fsync (it only applies and learns) commits
		// on its own rather than joining, and waiting for, the committer's
		// next synced round.
		var err error
		var round engine.Round
		if durable {
			round, err = n.committer.CommitRound(b, true)
		} else {
			round = engine.Round{Records: b.Count(), Batches: 1}
			err = b.Commit(false)
		}
		if persistSpan != nil {
			endPersist(persistSpan, round, err)
		}
		if err != nil {
			n.fatal(err)
			return
		}
	} else if persistSpan != nil {
		persistSpan.End()
	}
	var persisted time.Time
	if persistSpan != nil {
		persisted = time.Now()
	}
	if k := n.cfg.Knobs.AfterPersist; k != nil {
		k()
	}
	for i := range items {
		n.sched.release(items[i].born...)
	}
	var out []pb.Message
	for i := range items {
		if items[i].r.removed {
			// What it would send claims state the batch just deleted.
			n.dropReplica(items[i].r)
			continue
		}
		out = n.finish(&items[i], out)
	}
	if len(out) > 0 {
		n.trans.SendBatch(out)
	}
	for i := range items {
		if r := items[i].r; r.traces != nil {
			if persisted.IsZero() {
				persisted = time.Now()
			}
			n.traceSent(r, persisted)
		}
	}
	if k := n.cfg.Knobs.AfterSend; k != nil {
		k()
	}
}

// feed hands a group everything that arrived for it since its last cycle.
// It reports whether it wrote to the cycle's batch b what must be synced
// before the group sends (an initialization).
func (n *Node) feed(r *replica, b *engine.Batch) (durable bool) {
	in := r.mb.take()
	if in.initWith != nil {
		written, err := n.initialize(r, in.initWith, in.splitFrom, b)
		if err != nil {
			n.log.Error("cannot initialize replica", "group", r.id, "err", err)
		}
		durable = written
	}
	if in.wake {
		r.rn.Unquiesce()
	}
	for _, m := range r.deferPrepares(in.msgs) {
		n.traceStep(r, &m)
		r.rn.Step(m)
	}
	n.traceChosen(r)
	for range in.ticks {
		r.rn.Tick()
	}
	if in.campaign {
		r.rn.Campaign()
	}
	for _, task := range in.tasks {
		task()
	}
	for _, si := range in.installs {
		n.install(r, si, b)
	}
	// Writes are taken after the inputs, so that they go by what the group
	// has become: a leader proposes them, a group completing a leader
	// transfer holds them (its writers see no refusal; finish feeds them
	// again once it completes), and any other refuses them with its hint.
	leading := r.rn.Leader() == n.cfg.NodeID
	holdUpTo := 0
	if r.rn.Transferring() {
		holdUpTo = n.cfg.MaxHeldWriteBytes
	}
	cmds, value, refused, held, traced := r.mb.takeWrites(leading, holdUpTo, n.cfg.MaxValueBytes, time.Now().UnixNano())
	r.holdingWrites = held
	if len(refused) > 0 {
		err := n.notLeader(r)
		traceProposeFailed(traced, err)
		for _, cb := range refused {
			cb(kvsm.Result{}, err)
		}
	}
	if value != nil {
		err := r.rn.Propose(value)
		if err == nil {
			n.stats.Values.Add(1)
			n.stats.Commands.Add(int64(len(cmds)))
			n.metrics.proposed(len(cmds))
			for _, c := range cmds {
				r.proposed[c.Proposer.Seq] = struct{}{}
			}
			if len(traced) > 0 {
				n.traceProposed(r, r.rn.LastIndex(), len(cmds), traced)
			}
		} else {
			err = n.proposeError(r, err)
			traceProposeFailed(traced, err)
			n.failCommands(r, cmds, err)
		}
	}
	if reads := in.reads; len(reads) > 0 {
		n.traceReads(r, reads)
		r.nextReadCtx++
		ctx := binary.BigEndian.AppendUint64(nil, r.nextReadCtx)
		if err := r.rn.ReadIndex(ctx); err != nil {
			for _, rr := range reads {
				rr.serve(n.notLeader(r))
			}
		} else {
			r.readsAwaitingIndex[r.nextReadCtx] = reads
		}
	}
	return durable
}

func (n *Node) failCommands(r *replica, cmds []kvsm.Command, err error) {
	for _, cb := range r.mb.takeCallersOf(cmds) {
		cb(kvsm.Result{}, err)
	}
}

// persist writes a Ready's records and applies its chosen entries into the
// cycle's batch. It reports whether the batch must be synced: promises and
// accepted entries must be durable before any message mentions them;
// applied data need not be, since the log replays it.
func (n *Node) persist(it *cycleItem, ov *overlay) bool {
	r, rd, b := it.r, &it.rd, ov.b
	g := engine.GroupID(r.id)
	durable := false
	// Only a new promise must be written, and synced before we send. The
	// chosen point beside it is a hint: after a restart the replica starts
	// from its applied point (persisted with the data) and learns the rest
	// again, so a cycle that only learns what was chosen writes nothing
	// for it and needs no fsync.
	if rd.HardState != nil && rd.HardState.Promised != r.syncedPromise {
		b.SetHardState(g, rd.HardState.Marshal())
		durable = true
		r.syncedPromise = rd.HardState.Promised
	}
	for i := range rd.Entries {
		b.PutEntry(g, rd.Entries[i].Slot, rd.Entries[i].Marshal())
		durable = true
	}
	if rd.Meta != nil {
		// The log was truncated (or replaced by a snapshot): entries at or
		// below the point are no longer needed.
		b.DeleteEntries(g, 0, rd.Meta.Index+1)
	}
	if rd.Snapshot != nil {
		it.applied = rd.Snapshot.Meta.Index // its data was ingested already
	}
	if k := n.cfg.Knobs.BeforeApply; k != nil && len(rd.Committed) > 0 {
		k(r.id, rd.Committed)
	}
	confChanged := false
	for i := range rd.Committed {
		e := &rd.Committed[i]
		switch e.Type {
		case pb.EntryNormal:
			n.traceApply(r, e.Slot)
			err := r.kv.Apply(rangeStore{ov, g}, e.Data, func(c *kvsm.Command, res kvsm.Result) {
				if c.Op == kvsm.OpSplit && res.Succeeded {
					n.applySplit(it, ov, e, c)
				}
				if c.Proposer.Node == n.cfg.NodeID && c.Proposer.Incarnation == n.incarnation {
					sr := seqResult{seq: c.Proposer.Seq, res: res}
					if res.Outcome == kvsm.OutOfRange {
						sr.key = c.Key
						if c.Op == kvsm.OpBatch {
							sr.key = c.Ops[0].Key
						}
					}
					it.results = append(it.results, sr)
				}
			})
			var corrupt *kvsm.StoreError
			switch {
			case errors.As(err, &corrupt):
				ov.fail(err)
			case err != nil:
				// Every replica decodes the same bytes the same way, so a
				// value nobody can decode is skipped everywhere alike.
				n.log.Error("skipping undecodable value", "group", r.id, "slot", e.Slot, "err", err)
			}
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := cc.Unmarshal(e.Data); err == nil {
				n.applyConfChange(r, cc, b)
				confChanged = true
			}
		}
		it.applied = e.Slot
	}
	if len(rd.Committed) > 0 {
		b.SetApplied(g, it.applied)
		if r.rn.Leader() == n.cfg.NodeID {
			n.commits.Add(uint64(len(rd.Committed)))
		}
	}
	if confChanged && n.leftGroup(r.appliedConfig) {
		n.removeReplica(r, b, r.desc.Load().Generation)
		durable = true
	}
	return durable
}

// applyConfChange records the membership at the applied point, and the
// range descriptor's replicas with it, atomically with the applied point.
func (n *Node) applyConfChange(r *replica, cc pb.ConfChange, b *engine.Batch) {
	r.appliedConfig = group.ApplyConfChange(r.appliedConfig, cc)
	old := r.desc.Load()
	desc := &kvpb.RangeDescriptor{
		RangeId: old.RangeId, StartKey: old.StartKey, EndKey: old.EndKey,
		Generation: old.Generation + 1, LeaderNodeId: old.LeaderNodeId,
	}
	for _, id := range r.appliedConfig.Voters {
		desc.Replicas = append(desc.Replicas, &kvpb.ReplicaDescriptor{NodeId: id, Role: kvpb.ReplicaRole_VOTER})
	}
	for _, id := range r.appliedConfig.Learners {
		desc.Replicas = append(desc.Replicas, &kvpb.ReplicaDescriptor{NodeId: id, Role: kvpb.ReplicaRole_LEARNER})
	}
	r.setDesc(desc)
	m := groupMeta{Desc: desc, Config: r.appliedConfig}
	b.SetGroupMeta(engine.GroupID(r.id), m.marshal())
}

// finish sends a group's messages (appending them to out), answers its
// clients and advances it, once its Ready is durable.
func (n *Node) finish(it *cycleItem, out []pb.Message) []pb.Message {
	r := it.r
	if it.ready {
		for _, m := range it.rd.Messages {
			m.Group = r.id
			if m.Type == pb.MsgSnapshot {
				n.sendSnapshot(r, m)
				continue
			}
			n.traceSend(r, &m)
			out = append(out, m)
		}
		if len(it.results) > 0 {
			n.answer(r, it.results)
		}
		for _, rs := range it.rd.ReadStates {
			ctx := binary.BigEndian.Uint64(rs.Ctx)
			if reqs := r.readsAwaitingIndex[ctx]; reqs != nil {
				delete(r.readsAwaitingIndex, ctx)
				r.readsAwaitingApply = append(r.readsAwaitingApply, indexedReads{index: rs.Index, reqs: reqs})
			}
		}
		r.rn.Advance(it.rd)
		if len(it.born) > 0 {
			// A split applied: its right half's leader, campaigning now,
			// needs the followers to apply it too, which they do once they
			// learn it chosen.
			r.rn.TellChosen()
		}
		n.traceChosen(r)
		n.resolveConfWaiters(r)
	}
	n.serveReads(r)
	leading := r.rn.Leader() == n.cfg.NodeID
	r.leader.Store(r.rn.Leader()) // before the errors below name it
	if r.wasLeader && !leading {
		n.lostLeadership(r)
		n.leadershipsLost.Add(1)
	}
	if leading && !r.wasLeader {
		n.leadershipsGained.Add(1)
		if n.draining.Load() {
			n.handOff(r, 0) // a draining node keeps no leadership it wins
		}
	}
	r.wasLeader = leading
	r.lease.Store(leading && r.rn.LeaseValid())
	n.setActive(r, !r.rn.Quiesced())
	r.applied.Store(r.rn.Applied())
	r.chosen.Store(r.rn.Chosen())
	r.leaderChosen.Store(r.rn.LeaderChosen())
	if r.rn.HasReady() || (r.holdingWrites && !r.rn.Transferring()) {
		n.sched.enqueue(r)
	}
	return out
}

// answer hands applied results to the clients waiting on this node. A
// command can be applied with no caller waiting: its caller was already
// told its fate was unknown, or it was proposed twice (a new leader
// re-proposed it) and the first copy answered.
func (n *Node) answer(r *replica, results []seqResult) {
	seqs := make([]uint64, len(results))
	for i, sr := range results {
		seqs[i] = sr.seq
	}
	for i, cb := range r.mb.takeCallers(seqs) {
		delete(r.proposed, results[i].seq)
		if cb == nil {
			continue
		}
		switch res := results[i].res; res.Outcome {
		case kvsm.Forgotten:
			cb(res, errForgotten)
		case kvsm.OutOfRange:
			cb(res, n.keyMoved(r, results[i].key))
		default:
			cb(res, nil)
		}
	}
}

// serveReads serves the confirmed reads whose index is applied.
func (n *Node) serveReads(r *replica) {
	if len(r.readsAwaitingApply) == 0 {
		return
	}
	applied := r.rn.Applied()
	keep := r.readsAwaitingApply[:0]
	for _, ir := range r.readsAwaitingApply {
		if ir.index > applied {
			keep = append(keep, ir)
			continue
		}
		for _, rr := range ir.reqs {
			rr.serve(nil)
		}
	}
	r.readsAwaitingApply = keep
}

// lostLeadership fails what depended on this replica leading: writes it
// proposed may or may not be chosen by the next leader, and reads can't
// be confirmed.
func (n *Node) lostLeadership(r *replica) {
	for _, cb := range r.mb.takeCallers(slices.Collect(maps.Keys(r.proposed))) {
		if cb != nil {
			cb(kvsm.Result{}, errAmbiguous)
		}
	}
	clear(r.proposed)
	traceLostLeadership(r)
	n.failConfWaiters(r)
	err := n.notLeader(r)
	for ctx, reqs := range r.readsAwaitingIndex {
		for _, rr := range reqs {
			rr.serve(err)
		}
		delete(r.readsAwaitingIndex, ctx)
	}
	for _, ir := range r.readsAwaitingApply {
		for _, rr := range ir.reqs {
			rr.serve(err)
		}
	}
	r.readsAwaitingApply = nil
}

// proposeError turns a refused proposal into the client's error.
func (n *Node) proposeError(r *replica, err error) error {
	var nl *group.NotLeaderError
	if errors.As(err, &nl) {
		return n.notLeader(r)
	}
	return errBusy
}

// overlay gives the applies of one cycle read-your-writes over the engine:
// a CAS must see a put applied earlier in the same batch, in any group.
type overlay struct {
	n *Node
	b *engine.Batch
	m map[string]ovValue
	// local holds the range-local records written in the cycle.
	local map[localRecord]ovValue
	err   error
}

type localRecord struct {
	g      engine.GroupID
	suffix string
}

type ovValue struct {
	v       []byte
	deleted bool
}

func (o *overlay) fail(err error) {
	if err != nil && o.err == nil {
		o.err = err
	}
}

// Get, Put and Delete are the user data as kvsm sees it.
func (o *overlay) Get(k []byte) ([]byte, bool) {
	if x, ok := o.m[string(k)]; ok {
		return x.v, !x.deleted
	}
	v, ok, err := o.n.eng.Get(k)
	o.fail(err)
	return v, ok
}

func (o *overlay) Put(k, v []byte) {
	o.b.Put(k, v)
	o.m[string(k)] = ovValue{v: v}
}

func (o *overlay) Delete(k []byte) {
	o.b.Delete(k)
	o.m[string(k)] = ovValue{deleted: true}
}

// rangeStore is one group's kvsm.Store within a cycle's overlay: the
// shared user data, and the group's range-local records.
type rangeStore struct {
	*overlay
	g engine.GroupID
}

func (s rangeStore) GetLocal(suffix []byte) ([]byte, bool) {
	if x, ok := s.local[localRecord{s.g, string(suffix)}]; ok {
		return x.v, !x.deleted
	}
	v, ok, err := s.n.eng.GetRangeLocal(s.g, suffix)
	s.fail(err)
	return v, ok
}

func (s rangeStore) PutLocal(suffix, v []byte) {
	s.b.PutRangeLocal(s.g, suffix, v)
	s.local[localRecord{s.g, string(suffix)}] = ovValue{v: v}
}

func (s rangeStore) DeleteLocal(suffix []byte) {
	s.b.DeleteRangeLocal(s.g, suffix)
	s.local[localRecord{s.g, string(suffix)}] = ovValue{deleted: true}
}

func (s rangeStore) ScanLocal(prefix []byte, fn func(suffix, value []byte)) {
	s.fail(s.n.eng.ScanRangeLocal(s.g, prefix, func(k, v []byte) bool {
		fn(k, v)
		return true
	}))
}
