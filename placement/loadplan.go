package placement

import (
	"cmp"
	"slices"

	"github.com/shardd/shardd/kvpb"
)

// Load balancing. The count planners (PlanLeaderBalance,
// PlanReplicaBalance) spread leaders and replicas; PlanLoadBalance spreads
// the work: the reads and writes per second that each range's leader
// serves, as the leaders measure them. A node's load is the sum of the
// loads of the ranges it leads, since a range's leader serves all of its
// reads and writes.
//
// The count rule comes first. Leader counts stay in PlanLeaderBalance's
// band and replica counts in PlanReplicaBalance's, so the two planners
// never undo each other: a step that would take a node out of its band
// (or further out) is not taken, and the planner swaps instead, a hot
// range one way and the coldest range that can go the other way, which
// leaves both nodes' counts where they were. When the counts are tight
// (a few ranges per node, every node at the mean), every step is a swap.
//
// Steps are greedy, from the node with the most load down: each moves
// load off a node above the limit (the mean plus Threshold of it, or plus
// Floor when that is more) onto one that stays at or below the limit,
// picking the range that leaves the larger of the two nodes' loads the
// lowest. So a step never overshoots (its recipient does not become a
// node to unload), it lowers the donor's load by at least Floor/10, and,
// with the loads as measured, it strictly lowers the sum of the squares
// of the nodes' loads: planning again on the loads it leaves, and again,
// terminates, and a balanced cluster (no node above the limit) plans
// nothing. What keeps real rounds from oscillating on loads that are
// measured, not known, is the caller's part: it passes the ranges it
// moved recently as fixed, and keeps counting a moved range's load at
// its new leader until that leader has measured it.
//
// Leader transfers come first: they cost a few milliseconds. Only when no
// transfer helps any more (the hot ranges' voters are all on busy nodes)
// does the plan move replicas: a hot range's replica on its leader's node
// goes to a cooler node that holds none of it, taking the leadership with
// it (the move hands the leadership to the new voter before it removes
// the old one). Where that takes a count out of its band, a cold range
// comes back: its replica, or only its leadership, which the caller
// hands over once the move is done, so that counts are off by one at most
// for the time of a move. Moves copy a range's data, so there are at most
// MaxMoves of them.

// LoadConfig tunes PlanLoadBalance.
type LoadConfig struct {
	// Threshold is how far above the mean load a node's load may be, as
	// a fraction of the mean, before load moves off it: 0.1 is 10%.
	Threshold float64
	// Floor is the least excess over the mean, in ops/s, that counts: a
	// node is unloaded only above mean + max(Threshold*mean, Floor). So a
	// cluster whose busiest node serves at most Floor ops/s never moves
	// anything for load. A step shifts at least Floor/10 ops/s.
	Floor float64
	// MaxTransfers bounds the leader transfers of the plan, and MaxMoves
	// its replica moves (a swap counts two).
	MaxTransfers, MaxMoves int
}

// LoadDecision is one step of a load plan: load goes from node Donor to
// node Recipient, through one leader transfer or replica move, or through
// a swap of two (a hot range to the recipient, a cold one back), which
// keeps both nodes' leader (and replica) counts where they were. A step
// with a move and a transfer swaps a hot range's replica for a cold
// range's leadership: the transfer is to be made once the move is done.
type LoadDecision struct {
	Donor, Recipient uint64
	Transfers        []Transfer
	Moves            []Move
	// Shift is the load the step takes off the donor and puts on the
	// recipient, in ops/s: the hot range's, less the cold one's in a
	// swap.
	Shift float64
	// DonorLoad and RecipientLoad are the two nodes' loads before the
	// step, in ops/s.
	DonorLoad, RecipientLoad float64
}

// Swap reports whether the step swaps two ranges.
func (d LoadDecision) Swap() bool { return len(d.Transfers)+len(d.Moves) > 1 }

// LoadPlan is what PlanLoadBalance decides.
type LoadPlan struct {
	// Mean is the mean load of the target nodes and Limit the load above
	// which a node is unloaded, in ops/s.
	Mean, Limit float64
	// Overloaded are the target nodes above the limit when the plan was
	// made, ascending.
	Overloaded []uint64
	// Decisions are the steps, in the order planned; each range is in at
	// most one.
	Decisions []LoadDecision
}

// PlanLoadBalance returns the steps that bring every node of targets to a
// load at most the plan's limit, or as close as single ranges allow (see
// the overview above). descs' leader hints must be the ranges' actual
// leaders; load holds each range's ops/s by range id (a range missing
// counts zero). Only ranges led by a node of targets count, and move;
// those in fixed do not move (they are busy, moved recently, or their
// leader is in doubt). The result depends only on the inputs, which are
// only read.
func PlanLoadBalance(descs []*kvpb.RangeDescriptor, load map[uint64]float64, targets []uint64, fixed map[uint64]bool, cfg LoadConfig) LoadPlan {
	p := newLoadState(descs, load, targets, fixed)
	if len(p.nodes) < 2 {
		return LoadPlan{}
	}
	total := 0.0
	for _, n := range p.nodes {
		total += p.nodeLoad[n]
	}
	mean := total / float64(len(p.nodes))
	p.limit = mean + max(cfg.Threshold*mean, cfg.Floor)
	p.minShift = cfg.Floor / 10
	plan := LoadPlan{Mean: mean, Limit: p.limit}
	for _, n := range p.nodes {
		if p.nodeLoad[n] > p.limit {
			plan.Overloaded = append(plan.Overloaded, n)
		}
	}
	p.transfersLeft, p.movesLeft = cfg.MaxTransfers, cfg.MaxMoves
	for _, replica := range []bool{false, true} {
		for {
			d, ok := p.step(replica)
			if !ok {
				break
			}
			plan.Decisions = append(plan.Decisions, d)
		}
		if p.transfersLeft <= 0 {
			break // more transfers may do: a later plan sees, before any replica moves
		}
	}
	return plan
}

// loadState is a plan in the making: where every range's leader is, and
// what that makes of every target node's load and counts.
type loadState struct {
	descs   []*kvpb.RangeDescriptor
	load    []float64 // by index in descs
	leader  []uint64  // planned, by index in descs
	movable []bool    // by index in descs: not fixed, led by a target, not planned yet
	nodes   []uint64  // the targets, ascending
	target  map[uint64]bool
	// nodeLoad, leaders and replicas are each target node's planned load
	// and counts.
	nodeLoad           map[uint64]float64
	leaders, replicas  map[uint64]int
	lLo, lHi, rLo, rHi int // the count planners' bands
	limit, minShift    float64
	// transfersLeft and movesLeft are what the plan may still use.
	transfersLeft, movesLeft int
}

func newLoadState(descs []*kvpb.RangeDescriptor, load map[uint64]float64, targets []uint64, fixed map[uint64]bool) *loadState {
	p := &loadState{descs: descs, load: make([]float64, len(descs)), leader: make([]uint64, len(descs)),
		movable: make([]bool, len(descs)), target: map[uint64]bool{},
		nodeLoad: map[uint64]float64{}, leaders: map[uint64]int{}, replicas: map[uint64]int{}}
	for _, n := range targets {
		if n != 0 && !p.target[n] {
			p.target[n] = true
			p.nodes = append(p.nodes, n)
			p.nodeLoad[n], p.replicas[n] = 0, 0
		}
	}
	slices.Sort(p.nodes)
	totalReplicas := 0
	for i, d := range descs {
		for _, r := range d.GetReplicas() {
			if n := r.GetNodeId(); p.target[n] {
				p.replicas[n]++
				totalReplicas++
				if r.GetRole() == kvpb.ReplicaRole_VOTER {
					p.leaders[n] += 0 // a voter somewhere: one to count leaders of (see PlanLeaderBalance)
				}
			}
		}
		l := d.GetLeaderNodeId()
		if !p.target[l] || !isVoter(d.GetReplicas(), l) {
			continue
		}
		p.load[i] = max(load[d.GetRangeId()], 0)
		p.leader[i] = l
		p.nodeLoad[l] += p.load[i]
		p.leaders[l]++
		p.movable[i] = !fixed[d.GetRangeId()]
	}
	totalLeaders := 0
	for _, c := range p.leaders {
		totalLeaders += c
	}
	if len(p.leaders) > 0 {
		p.lLo, p.lHi = leaderBounds(totalLeaders, len(p.leaders))
	}
	if len(p.nodes) > 0 {
		p.rLo, p.rHi = replicaBounds(totalReplicas, len(p.nodes))
	}
	return p
}

// loadChange is one part of a step: the leadership of descs[i] goes from
// node from to node to, with the replica on from when replica is set (a
// replica move, which takes the leadership along only if from leads).
type loadChange struct {
	i        int
	from, to uint64
	replica  bool
}

// candidate is a step under consideration, and the larger of its two
// nodes' loads after it.
type candidate struct {
	changes []loadChange
	after   float64
	shift   float64
}

// better reports whether c is a better step than o: it makes fewer
// changes (a swap only where a single change is not allowed), or as few
// and leaves the larger of its nodes' loads lower. Ties keep the one
// found first, which makes the plan deterministic.
func (c candidate) better(o candidate) bool {
	if o.changes == nil {
		return true
	}
	if len(c.changes) != len(o.changes) {
		return len(c.changes) < len(o.changes)
	}
	return c.after < o.after
}

// step finds the best step off the most loaded node above the limit that
// has one, and plans it. Without replica, the step is a leader transfer
// or a swap of two; with replica, it is a replica move of a range the
// donor leads, alone or with a cold range coming back (see bestMove).
func (p *loadState) step(replica bool) (LoadDecision, bool) {
	donors := slices.Clone(p.nodes)
	slices.SortStableFunc(donors, func(a, b uint64) int { return cmp.Compare(p.nodeLoad[b], p.nodeLoad[a]) })
	for _, d := range donors {
		if p.nodeLoad[d] <= p.limit {
			break
		}
		var best candidate
		if replica {
			best = p.bestMove(d)
		} else {
			best = p.bestTransfer(d)
		}
		if best.changes != nil {
			return p.apply(d, best), true
		}
	}
	return LoadDecision{}, false
}

// coldestLedFor returns, for every node, the coldest movable range it
// leads of which node d holds a voter: what can come to d in a swap of
// leaders.
func (p *loadState) coldestLedFor(d uint64) map[uint64]int {
	coldest := map[uint64]int{}
	for i, desc := range p.descs {
		if v := p.leader[i]; p.movable[i] && v != d && isVoter(desc.GetReplicas(), d) {
			if j, ok := coldest[v]; !ok || p.load[i] < p.load[j] {
				coldest[v] = i
			}
		}
	}
	return coldest
}

// bestTransfer returns the best leader transfer, or swap of two, off
// donor d (no changes if there is none).
func (p *loadState) bestTransfer(d uint64) candidate {
	coldest := p.coldestLedFor(d)
	var best candidate
	for i, desc := range p.descs {
		if p.leader[i] != d || !p.movable[i] {
			continue
		}
		for _, r := range desc.GetReplicas() {
			v := r.GetNodeId()
			if v == d || !p.target[v] || r.GetRole() != kvpb.ReplicaRole_VOTER {
				continue
			}
			hot := loadChange{i: i, from: d, to: v}
			best = p.consider(best, d, v, hot)
			if j, ok := coldest[v]; ok {
				best = p.consider(best, d, v, hot, loadChange{i: j, from: v, to: d})
			}
		}
	}
	return best
}

// bestMove returns the best replica move off donor d: the replica of a
// range d leads goes, with the leadership, to a node w holding none of
// the range. Where that takes a count out of its band, a cold range comes
// back from w to d: its replica (w's voter of a range d does not hold,
// led by w or not), or its leadership (a range w leads of which d holds
// a voter). It returns no changes if there is no such step.
func (p *loadState) bestMove(d uint64) candidate {
	// coldLed[w] is the coldest range w leads, and coldHeld[w] the
	// coldest of which w holds a voter but does not lead, that d does
	// not hold.
	coldLed, coldHeld := map[uint64]int{}, map[uint64]int{}
	for i, desc := range p.descs {
		if !p.movable[i] || Holds(desc, d) {
			continue
		}
		for _, r := range desc.GetReplicas() {
			w := r.GetNodeId()
			if !p.target[w] || r.GetRole() != kvpb.ReplicaRole_VOTER {
				continue
			}
			m := coldHeld
			if p.leader[i] == w {
				m = coldLed
			}
			if j, ok := m[w]; !ok || p.load[i] < p.load[j] {
				m[w] = i
			}
		}
	}
	ledFor := p.coldestLedFor(d)
	var best candidate
	for i, desc := range p.descs {
		if p.leader[i] != d || !p.movable[i] {
			continue
		}
		for _, w := range p.nodes {
			if Holds(desc, w) {
				continue
			}
			hot := loadChange{i: i, from: d, to: w, replica: true}
			best = p.consider(best, d, w, hot)
			for _, m := range []map[uint64]int{coldHeld, coldLed} {
				if j, ok := m[w]; ok {
					best = p.consider(best, d, w, hot, loadChange{i: j, from: w, to: d, replica: true})
				}
			}
			if j, ok := ledFor[w]; ok {
				best = p.consider(best, d, w, hot, loadChange{i: j, from: w, to: d})
			}
		}
	}
	return best
}

// consider returns the better of best and the step made of changes
// between donor d and recipient v, if that step is allowed: it shifts at
// least minShift, leaves v at or below the limit, and takes no node's
// leader or replica count out of its band (or further out).
func (p *loadState) consider(best candidate, d, v uint64, changes ...loadChange) candidate {
	shift := 0.0
	dl, vl, dr, vr := p.leaders[d], p.leaders[v], p.replicas[d], p.replicas[v]
	transfers, moves := 0, 0
	for _, c := range changes {
		if c.replica {
			moves++
		} else {
			transfers++
		}
		sign := 1 // d to v
		if c.from != d {
			sign = -1
		}
		if p.leader[c.i] == c.from {
			shift += float64(sign) * p.load[c.i]
			dl, vl = dl-sign, vl+sign
		}
		if c.replica {
			dr, vr = dr-sign, vr+sign
		}
	}
	after := p.nodeLoad[v] + shift
	switch {
	case transfers > p.transfersLeft || moves > p.movesLeft,
		shift <= 0 || shift < p.minShift || after > p.limit,
		!inBand(p.leaders[d], dl, p.lLo, p.lHi), !inBand(p.leaders[v], vl, p.lLo, p.lHi),
		!inBand(p.replicas[d], dr, p.rLo, p.rHi), !inBand(p.replicas[v], vr, p.rLo, p.rHi):
		return best
	}
	c := candidate{changes: changes, after: max(p.nodeLoad[d]-shift, after), shift: shift}
	if c.better(best) {
		return c
	}
	return best
}

// inBand reports whether a count that goes from old to next stays within
// [lo, hi], or at least does not move further out of it.
func inBand(old, next, lo, hi int) bool {
	return (next >= lo || next >= old) && (next <= hi || next <= old)
}

// apply plans step c off donor d and returns it as a decision.
func (p *loadState) apply(d uint64, c candidate) LoadDecision {
	v := c.changes[0].to
	dec := LoadDecision{Donor: d, Recipient: v, Shift: c.shift, DonorLoad: p.nodeLoad[d], RecipientLoad: p.nodeLoad[v]}
	for _, ch := range c.changes {
		id := p.descs[ch.i].GetRangeId()
		if ch.replica {
			dec.Moves = append(dec.Moves, Move{RangeID: id, Remove: ch.from, Add: ch.to})
			p.replicas[ch.from]--
			p.replicas[ch.to]++
			p.movesLeft--
		} else {
			dec.Transfers = append(dec.Transfers, Transfer{RangeID: id, From: ch.from, To: ch.to})
			p.transfersLeft--
		}
		if p.leader[ch.i] == ch.from {
			p.leader[ch.i] = ch.to
			p.leaders[ch.from]--
			p.leaders[ch.to]++
			p.nodeLoad[ch.from] -= p.load[ch.i]
			p.nodeLoad[ch.to] += p.load[ch.i]
		}
		p.movable[ch.i] = false
	}
	return dec
}
