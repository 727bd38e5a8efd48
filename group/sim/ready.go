package sim

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/shardd/shardd/group"
	pb "github.com/shardd/shardd/paxospb"
)

func (w *World) processReadys() {
	for round := 0; round < 10; round++ {
		busy := false
		for _, n := range w.live() {
			if n.r.HasReady() {
				busy = true
				w.handleReady(n)
			}
		}
		if !busy {
			return
		}
	}
}

// crashMidReady crashes n at one of the points of its cycle where a crash
// tests the Ready contract, and reports whether it did.
func (w *World) crashMidReady(n *node, where string) bool {
	if !w.chance(w.f.crashMidReady) {
		return false
	}
	w.tracef("%d crashes %s", n.id, where)
	w.count(CrashesMidReady)
	w.crash(n)
	return true
}

// handleReady does what the Ready contract (group/ready.go) says, in
// order, and no more: only step 1 is synced. A crash may strike before
// the sync, between syncing and sending, or while applying.
func (w *World) handleReady(n *node) {
	rd := n.r.Ready()
	if rd.SoftState != nil && rd.SoftState.Role == group.Leader {
		w.count(Elections)
		st := n.r.Status()
		if st.Ballot == n.transferBallot {
			w.count(Transfers)
		}
		w.tracef("%d leads with %v, chosen %d, config %v", n.id, st.Ballot, st.Chosen, st.Config)
	}
	// 0. SendFirst claims nothing durable.
	for _, m := range rd.SendFirst {
		w.send(m)
	}
	if w.opt.SendBeforeSync {
		w.sendMessages(n, rd.Messages)
	}
	// 1. Persist, as one batch, and sync.
	if rd.HardState != nil || len(rd.Entries) > 0 || rd.Meta != nil || rd.Snapshot != nil {
		var app []string
		if rd.Snapshot != nil {
			app = w.snapshotData(rd.Snapshot)
		}
		hard, meta, ents, snap := rd.HardState, rd.Meta, rd.Entries, rd.Snapshot
		// As the node does: only a new promise is written.
		if hard != nil && hard.Promised == n.writtenPromise {
			hard = nil
		} else if hard != nil {
			n.writtenPromise = hard.Promised
		}
		n.store.write(func(d *disk) {
			if hard != nil {
				d.hard = *hard
			}
			if meta != nil {
				for s := range d.entries {
					if s <= meta.Index {
						delete(d.entries, s)
					}
				}
			}
			for _, e := range ents {
				d.entries[e.Slot] = e
			}
			if snap != nil {
				d.app = slices.Clone(app)
				d.applied = snap.Meta.Index
				d.conf = snap.Meta.Config
			}
		})
		if w.crashMidReady(n, "before its batch is synced") {
			return
		}
		n.store.sync()
	}
	if rd.Snapshot != nil {
		w.installed(n, rd.Snapshot)
	}
	if w.crashMidReady(n, "after persisting, before sending") {
		return
	}
	// 2. Send.
	if !w.opt.SendBeforeSync {
		w.sendMessages(n, rd.Messages)
	}
	// 3. Apply, unsynced, then serve the reads whose index is applied.
	crashAt := -1
	if len(rd.Committed) > 0 && w.chance(w.f.crashMidReady) {
		crashAt = w.rng.IntN(len(rd.Committed))
	}
	for i, e := range rd.Committed {
		if i == crashAt {
			w.tracef("%d crashes after sending, having applied %d of %d entries", n.id, i, len(rd.Committed))
			w.count(CrashesMidReady)
			w.crash(n)
			return
		}
		w.apply(n, e)
	}
	n.serving = append(n.serving, rd.ReadStates...)
	w.serveReads(n)
	// 4.
	n.r.Advance(rd)
}

// sendMessages sends n's messages, attaching its state machine to
// snapshots.
func (w *World) sendMessages(n *node, msgs []pb.Message) {
	for _, m := range msgs {
		if m.Type == pb.MsgSnapshot {
			m.Snapshot = w.takeSnapshot(n, m.Snapshot.Meta)
		}
		w.send(m)
	}
}

func value(e pb.Entry) string {
	switch e.Type {
	case pb.EntryNoop:
		return "noop"
	case pb.EntryConfChange:
		var cc pb.ConfChange
		_ = cc.Unmarshal(e.Data)
		return fmt.Sprintf("conf:%v:%d", cc.Type, cc.Replica)
	}
	return string(e.Data)
}

// apply checks and applies one chosen entry. The applied point is written
// with the data, unsynced.
func (w *World) apply(n *node, e pb.Entry) {
	d := &n.store.live
	if e.Slot != d.applied+1 {
		w.fail("replica %d applied slot %d after %d", n.id, e.Slot, d.applied)
		return
	}
	v := value(e)
	if e.Type == pb.EntryNormal && !w.proposed[v] {
		w.fail("replica %d applied %q at slot %d, which nobody proposed", n.id, v, e.Slot)
	}
	var cc pb.ConfChange
	isConf := e.Type == pb.EntryConfChange && cc.Unmarshal(e.Data) == nil
	if w.learn(n.id, e.Slot, v) && isConf {
		w.applyConf(cc)
	}
	n.store.write(func(d *disk) {
		d.app = append(d.app, v)
		d.applied = e.Slot
		if isConf {
			d.conf = group.ApplyConfChange(d.conf, cc)
		}
	})
}

// applyConf follows the membership through a newly chosen configuration
// change, and counts it if it changed anything.
func (w *World) applyConf(cc pb.ConfChange) {
	c := group.ApplyConfChange(w.conf, cc)
	if slices.Equal(c.Voters, w.conf.Voters) && slices.Equal(c.Learners, w.conf.Learners) {
		return
	}
	w.conf = c
	switch cc.Type {
	case pb.ConfAddLearner:
		w.count(LearnersAdded)
	case pb.ConfPromote:
		w.count(Promotions)
	case pb.ConfRemove:
		w.count(Removals)
	}
}

// learn records v as the value of slot s, or reports that another value
// was applied there before: two values chosen for one slot. It reports
// whether s was new. Slots are new in order: a replica applies a slot
// after the ones before it.
func (w *World) learn(id, s uint64, v string) bool {
	if old, ok := w.chosen[s]; ok {
		if old != v {
			w.fail("slot %d: replica %d applied %q but %q was applied before", s, id, v, old)
		}
		return false
	}
	w.chosen[s] = v
	w.maxChosen = max(w.maxChosen, s)
	w.count(Chosen)
	w.tracef("slot %d chosen: %s (learned by %d)", s, v, id)
	return true
}

// takeSnapshot attaches n's applied state up to meta.Index. The group asks
// for its applied point, so the state machine is exactly there.
func (w *World) takeSnapshot(n *node, meta pb.Meta) *pb.Snapshot {
	app := n.store.live.app
	if uint64(len(app)) != meta.Index {
		w.fail("replica %d asked to snapshot at %d but applied %d", n.id, meta.Index, len(app))
	}
	w.nextSnap++
	w.snapshots[w.nextSnap] = slices.Clone(app)
	w.count(SnapshotsSent)
	return &pb.Snapshot{Meta: meta, Data: binary.BigEndian.AppendUint64(nil, w.nextSnap)}
}

// snapshotData returns the state machine a snapshot carries.
func (w *World) snapshotData(s *pb.Snapshot) []string {
	app := w.snapshots[binary.BigEndian.Uint64(s.Data)]
	if uint64(len(app)) != s.Meta.Index {
		w.fail("snapshot at %d holds %d slots", s.Meta.Index, len(app))
	}
	return app
}

// installed checks the values of a snapshot n installed.
func (w *World) installed(n *node, s *pb.Snapshot) {
	for i, v := range w.snapshotData(s) {
		w.learn(n.id, uint64(i+1), v)
	}
	w.count(SnapshotsInstalled)
	w.tracef("%d installs snapshot at %d", n.id, s.Meta.Index)
}
