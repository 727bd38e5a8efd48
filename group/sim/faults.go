package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/shardd/shardd/group"
	pb "github.com/shardd/shardd/paxospb"
)

// faults are the rates of one run, drawn from its seed so that seeds cover
// calm and hostile worlds alike. Rates are per step, except those of the
// network, which are per message.
type faults struct {
	drop, dup, longDelay, overLeaseDelay float64
	partition, oneWay, heal              float64
	isolateLeader                        float64
	crash, restart                       float64
	crashMidReady                        float64
	pause                                float64
	clockJump                            float64
	wipe                                 float64
	propose, transfer, cfg               float64
	read                                 float64
	// liveness turns on node-level support, and with it quiescence.
	liveness bool
}

func drawFaults(r *rand.Rand, opt Options) faults {
	f := faults{
		drop:          r.Float64() * 0.15,
		dup:           r.Float64() * 0.05,
		longDelay:     r.Float64() * 0.05,
		partition:     r.Float64() * 0.01,
		oneWay:        r.Float64() * 0.005,
		isolateLeader: r.Float64() * 0.005,
		heal:          0.01 + r.Float64()*0.05,
		crash:         r.Float64() * 0.005,
		restart:       0.01 + r.Float64()*0.05,
		crashMidReady: r.Float64() * 0.01,
		propose:       r.Float64() * 0.6,
		transfer:      r.Float64() * 0.01,
		cfg:           r.Float64() * 0.01,
		read:          r.Float64() * 0.1,
		liveness:      r.IntN(4) != 0,
	}
	// Each of the rarer faults strikes in half the runs, so that the other
	// half shows what the remaining ones do alone.
	if r.IntN(2) == 0 {
		f.overLeaseDelay = r.Float64() * 0.005
	}
	if r.IntN(2) == 0 {
		f.pause = r.Float64() * 0.003
	}
	if r.IntN(2) == 0 {
		f.clockJump = r.Float64() * 0.02
	}
	if opt.Wipes {
		f.wipe = r.Float64() * 0.002
	}
	if opt.Churn {
		f.cfg *= 10
	}
	if r.IntN(3) == 0 {
		f.propose *= 0.02 // mostly idle, so groups quiesce
	}
	if r.IntN(4) == 0 || opt.Hostile {
		f.partition *= 5
		f.isolateLeader *= 5
		f.crash *= 5
		f.crashMidReady *= 5
		f.restart *= 5
	}
	return f
}

// faultStep injects this step's faults and client requests.
func (w *World) faultStep() {
	f := w.f
	if w.chance(f.partition) {
		w.partition()
	}
	if w.chance(f.oneWay) {
		w.cutOneWay()
	}
	if w.chance(f.isolateLeader) {
		if l := w.pick(w.leaders()); l != nil {
			w.isolate(l)
			if f.clockJump > 0 {
				// The moment a jump can hurt: the acceptors' promises to
				// the old leader end early, and a new one is elected.
				for _, n := range w.nodes {
					if n != l {
						w.jumpClock(n)
					}
				}
			}
		}
	}
	if len(w.cut) > 0 && w.chance(f.heal) {
		w.tracef("heal")
		clear(w.cut)
	}
	if w.chance(f.crash) {
		if n := w.pick(w.up()); n != nil {
			w.crash(n)
		}
	}
	if w.chance(f.pause) {
		if n := w.pick(w.live()); n != nil {
			// Longer than a lease and an election timeout, at times.
			w.pause(n, 20*ms+w.rng.Int64N(4*leaseDuration))
		}
	}
	if w.chance(f.clockJump) {
		w.jumpClock(w.pick(w.nodes))
	}
	if w.chance(f.wipe) {
		if n := w.pick(w.nodes); n != nil && w.mayWipe(n) {
			w.wipe(n)
		}
	}
	for _, n := range w.nodes {
		if !n.up && w.chance(f.restart) {
			w.tracef("restart %d", n.id)
			w.start(n)
		}
	}
	if w.chance(f.propose) {
		w.propose(w.pick(w.live()))
	}
	if w.chance(f.read) {
		w.read(w.pick(w.live()))
	}
	if w.chance(f.transfer) {
		if l := w.pick(w.leaders()); l != nil {
			to := w.pick(w.live())
			if to != nil && l.r.TransferLeader(to.id) == nil {
				w.tracef("transfer %d -> %d", l.id, to.id)
			}
		}
	}
	if w.chance(f.cfg) {
		w.reconfigure(false)
	}
}

// jumpClock moves n's clock forward by up to maxJump, at most once per two
// leases, so that no lease or support period sees two jumps of one clock.
func (w *World) jumpClock(n *node) {
	c := n.clock
	j := w.maxJump()
	if j == 0 || (c.lastJump != 0 && w.now-c.lastJump < 2*leaseDuration) {
		return
	}
	d := 1 + w.rng.Int64N(j)
	c.jumped += d
	c.lastJump = w.now
	w.count(ClockJumps)
	w.tracef("clock of %d jumps %dus", n.id, d/1000)
}

func (w *World) propose(n *node) {
	if n == nil {
		return
	}
	v := fmt.Sprintf("v%d", w.nextValue)
	if n.r.Propose([]byte(v)) == nil {
		w.nextValue++
		w.proposed[v] = true
		w.count(Proposed)
	}
}

// read asks n for a linearizable read and notes what it must observe.
func (w *World) read(n *node) {
	if n == nil {
		return
	}
	w.nextRead++
	id := w.nextRead
	start := w.readStart(n.r.LeaseValid())
	if n.r.ReadIndex(binary.BigEndian.AppendUint64(nil, id)) == nil {
		w.reads[id] = start
	}
}

// maxNodes bounds the replica ids ever started in one run, so that
// removals can't go on forever.
func (w *World) maxNodes() int {
	if w.opt.Churn {
		return 16
	}
	return 9
}

// reconfigure asks a leader for the next sensible membership change:
// remove a wiped replica and add it back; promote a learner; remove a
// voter to get back to the initial size; or add a learner. Ids are not
// reused otherwise. With repairOnly, only a change that removes or adds
// back a wiped replica.
func (w *World) reconfigure(repairOnly bool) {
	l := w.pick(w.leaders())
	if l == nil {
		return
	}
	c := l.r.Status().Config
	var cc pb.ConfChange
	if n := w.wipedNode(); n != nil {
		// A replica that lost its state is removed, whatever it was, and
		// added back as a learner, which learns the group from a snapshot
		// like any new one. Only then is it whole again.
		member := slices.Contains(c.Voters, n.id) || slices.Contains(c.Learners, n.id)
		switch {
		case member && n.readded:
			n.wiped, n.readded = false, false
		case member:
			cc = pb.ConfChange{Type: pb.ConfRemove, Replica: n.id}
		default:
			cc = pb.ConfChange{Type: pb.ConfAddLearner, Replica: n.id}
		}
	}
	switch {
	case cc.Type != 0:
	case repairOnly:
		return
	case len(c.Learners) > 0:
		cc = pb.ConfChange{Type: pb.ConfPromote, Replica: c.Learners[0]}
	case len(c.Voters) > w.opt.Replicas && w.opt.Churn:
		// A replica move: the oldest voter makes way for the new one, so
		// the voters turn over.
		cc = pb.ConfChange{Type: pb.ConfRemove, Replica: c.Voters[0]}
	case len(c.Voters) > w.opt.Replicas:
		cc = pb.ConfChange{Type: pb.ConfRemove, Replica: c.Voters[w.rng.IntN(len(c.Voters))]}
	case len(w.nodes) < w.maxNodes():
		cc = pb.ConfChange{Type: pb.ConfAddLearner, Replica: uint64(len(w.nodes) + 1)}
	default:
		return
	}
	if err := l.r.ProposeConfChange(cc); err != nil {
		return
	}
	w.tracef("%d proposes %v %d", l.id, cc.Type, cc.Replica)
	if cc.Type == pb.ConfAddLearner {
		if n := w.node(cc.Replica); n != nil {
			n.readded = true // its empty replica runs already
		} else {
			// The new replica starts empty and learns everything from the
			// group.
			w.addNode(cc.Replica, pb.Meta{})
		}
	}
}

// wipedNode returns a node whose storage was wiped and that is not whole
// again yet, if any.
func (w *World) wipedNode() *node {
	i := slices.IndexFunc(w.nodes, func(n *node) bool { return n.wiped })
	if i < 0 {
		return nil
	}
	return w.nodes[i]
}

// mayWipe reports whether n's storage may be wiped now: one at a time,
// and only while the group is at full strength, so that the others hold a
// majority of the voters' state and can remove it and add it back. That
// must hold in every configuration a new leader may have to recover too:
// the one in force at any replica's chosen point (a lagging replica knows
// no later one), and the one after any membership change that some
// replica accepted and that may not be chosen yet. Were n half of such a
// configuration (a removal pending in a group of three), its loss could
// leave the group no quorum that knows what it accepted, and no candidate
// could safely win. Losing the state of a majority is a disaster no
// protocol recovers from.
func (w *World) mayWipe(n *node) bool {
	if w.wipedNode() != nil || len(w.conf.Learners) > 0 || len(w.conf.Voters) < w.opt.Replicas {
		return false
	}
	others := func(id uint64) bool { return id != n.id }
	if !hasMajority(w.conf.Voters, others) {
		return false
	}
	applied := uint64(len(w.chosen))
	for _, o := range w.nodes {
		// The configuration at o's chosen point decides o's next slots
		// until o learns more.
		if o.up && !hasMajority(o.r.Status().Config.Voters, others) {
			return false
		}
		for slot, e := range o.store.live.entries {
			var cc pb.ConfChange
			if slot <= applied || e.Type != pb.EntryConfChange || cc.Unmarshal(e.Data) != nil {
				continue
			}
			if !hasMajority(group.ApplyConfChange(w.conf, cc).Voters, others) {
				return false
			}
		}
	}
	return true
}

// hasMajority reports whether the ids in has form a majority of voters.
func hasMajority(voters []uint64, has func(uint64) bool) bool {
	n := 0
	for _, id := range voters {
		if has(id) {
			n++
		}
	}
	return 2*n > len(voters)
}
