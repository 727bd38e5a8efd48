package sim

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/shardd/shardd/group"
)

// check verifies the invariants that must hold after every step, and
// counts replicas going idle and waking up.
func (w *World) check() {
	var holders []uint64
	for _, n := range w.up() {
		if n.r.LeaseValid() {
			holders = append(holders, n.id)
		}
		st := n.r.Status()
		if st.Applied > st.Chosen {
			w.fail("replica %d applied %d beyond chosen %d", n.id, st.Applied, st.Chosen)
		}
		if q := n.r.Quiesced(); q != n.quiesced {
			n.quiesced = q
			if q {
				w.count(Quiesces)
			} else {
				w.count(Unquiesces)
			}
		}
	}
	if len(holders) > 1 {
		var b strings.Builder
		for _, id := range holders {
			fmt.Fprintf(&b, " %+v;", w.node(id).r.Status())
		}
		w.fail("replicas %v hold valid leases at once:%s", holders, b.String())
	}
	w.noteChosen()
}

// noteChosen raises knownChosen to the highest chosen point any replica
// knows. Knowing is enough: the replica may have told a client.
func (w *World) noteChosen() {
	for _, n := range w.up() {
		w.knownChosen = max(w.knownChosen, n.r.Chosen())
	}
}

// readStart is what a linearizable read must observe, noted when it is
// asked: every slot known to be chosen by then, since a write there may
// have been acknowledged before the read began. Not merely what some
// replica has applied: a value is chosen, and its write acknowledged,
// before most replicas apply it.
type readStart struct {
	mustSee uint64
	lease   bool // the leader held a lease when asked
}

func (w *World) readStart(lease bool) readStart {
	w.noteChosen()
	return readStart{mustSee: w.knownChosen, lease: lease}
}

// serveReads serves, as the caller would, each read released to n whose
// index n has applied. The answer is n's state machine as of its applied
// point: it holds every value chosen up to there and nothing else, and
// apply checked that each was proposed before it was applied, so a read
// never observes a write that had not begun when it returns. What remains
// to check is that it observes every write chosen before it began.
func (w *World) serveReads(n *node) {
	applied := n.store.live.applied
	n.serving = slices.DeleteFunc(n.serving, func(rs group.ReadState) bool {
		if rs.Index > applied {
			return false
		}
		w.checkRead(n, rs)
		return true
	})
}

func (w *World) checkRead(n *node, rs group.ReadState) {
	id := binary.BigEndian.Uint64(rs.Ctx)
	start, ok := w.reads[id]
	if !ok {
		w.fail("replica %d released read %d, which is not pending", n.id, id)
		return
	}
	delete(w.reads, id)
	if rs.Index < start.mustSee {
		w.fail("replica %d answers read %d as of slot %d, but slot %d (%s) was known chosen before the read began",
			n.id, id, rs.Index, start.mustSee, w.slotValue(start.mustSee))
	}
	if start.lease {
		w.count(LeaseReads)
	} else {
		w.count(QuorumReads)
	}
}

// slotValue describes the value chosen at slot s, if any replica applied
// it yet.
func (w *World) slotValue(s uint64) string {
	if v, ok := w.chosen[s]; ok {
		return fmt.Sprintf("%q", v)
	}
	return "applied nowhere yet"
}

// checkLiveness requires that, in a healed world, a leader is elected and
// a new value is chosen and applied by every voter within LivenessTicks:
// a group stuck for good (no voter able to campaign, a leader that can't
// propose) fails the run. Like a real client, it proposes again when a
// leader lost its proposal.
func (w *World) checkLiveness() {
	var values []string
	var lastTry int64
	deadline := w.now + int64(w.opt.LivenessTicks)*tick
	for ; w.now < deadline && w.err == nil; w.step++ {
		if w.now-lastTry > 20*tick {
			for _, l := range w.leaders() {
				v := fmt.Sprintf("live-%d-%d", w.opt.Seed, len(values))
				if l.r.Propose([]byte(v)) == nil {
					w.proposed[v] = true
					values = append(values, v)
					lastTry = w.now
					w.tracef("%d takes liveness proposal %s", l.id, v)
				}
			}
		}
		if w.opt.Wipes && w.chance(0.05) {
			// An operator still removes and adds back a wiped replica;
			// until then it may hold the group back.
			w.reconfigure(true)
		}
		w.advance()
		for _, v := range values {
			if w.appliedEverywhere(v) {
				return
			}
		}
	}
	if w.err == nil {
		var b strings.Builder
		for _, n := range w.live() {
			fmt.Fprintf(&b, " %+v;", n.r.Status())
		}
		w.fail("no progress within %d ticks after healing (proposed %v):%s", w.opt.LivenessTicks, values, b.String())
	}
}

// appliedEverywhere reports whether every voter of the live configuration
// has applied v.
func (w *World) appliedEverywhere(v string) bool {
	ls := w.leaders()
	if len(ls) == 0 {
		return false
	}
	for _, id := range ls[0].r.Status().Config.Voters {
		n := w.node(id)
		if n == nil || !slices.Contains(n.store.live.app, v) {
			return false
		}
	}
	return true
}
