package service

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/protobuf/proto"
)

// Load balancing. Once per balancing round, in a round where the leader
// counts needed no transfer, the leader spreads the load: the reads and
// writes per second of each range, as its leader measures them and
// reports them in the round's RangeLoad answers (gatherLoad, which
// automatic splits read too: one call per node and round, whatever the
// number of ranges). Those answers also say who leads each range. The
// plan is placement.PlanLoadBalance's: leader transfers off the nodes
// above the limit (swaps where leader counts are tight), then, if those
// cannot help, replica moves of hot ranges to cooler nodes.
//
// Measured loads lag: a range's new leader measures it afresh, and
// reports too little for one or two of its load windows. So a range
// whose leader changed (through this balancer or any other way) is held
// for Config.LoadCooldown: it does not move for load, and it counts at its
// new leader with the load it had at the old one. That, and the planner
// moving load only onto nodes that stay under the limit, keeps the rounds
// from moving the same load back and forth.
//
// Every decision is logged at INFO with its figures, and listed among the
// balancer's recent decisions (ListOperations, shardd ranges); a replica
// move for load is an operation with reason "load", as other moves are.

// loadReason is the reason of the replica moves the load balancer starts.
const loadReason = "load"

// loadMemory is what the load balancer remembers between rounds.
type loadMemory struct {
	// seen is, by range, the leader and load in the last reports that
	// named a leader of the range.
	seen map[uint64]seenLoad
	// cooling are the ranges whose leader changed less than LoadCooldown
	// ago, with the load they had before.
	cooling map[uint64]coolingLoad
	// stuck names the nodes last found over the limit with no step to
	// take, so that the fact is logged once, not every round.
	stuck string
}

type seenLoad struct {
	leader uint64
	ops    float64
}

type coolingLoad struct {
	ops   float64
	since time.Time
}

// update takes a round's leaders and loads (by range) into the memory:
// a range whose leader is not the one last seen starts cooling with the
// load last seen (or the one it was cooling with, if more), and ranges
// that left the map (all, by id) are forgotten.
func (m *loadMemory) update(all []*kvpb.RangeDescriptor, leader map[uint64]uint64, load map[uint64]float64, now time.Time, cooldown time.Duration) {
	if m.seen == nil {
		m.seen, m.cooling = map[uint64]seenLoad{}, map[uint64]coolingLoad{}
	}
	for id, l := range leader {
		prev, ok := m.seen[id]
		if ok && prev.leader != l {
			ops := prev.ops
			if c, ok := m.cooling[id]; ok {
				ops = max(ops, c.ops)
			}
			m.cooling[id] = coolingLoad{ops: ops, since: now}
		}
		m.seen[id] = seenLoad{leader: l, ops: load[id]}
	}
	inMap := make(map[uint64]bool, len(all))
	for _, d := range all {
		inMap[d.RangeId] = true
	}
	for id := range m.seen {
		if !inMap[id] {
			delete(m.seen, id)
		}
	}
	for id, c := range m.cooling {
		if !inMap[id] || now.Sub(c.since) >= cooldown {
			delete(m.cooling, id)
		}
	}
}

// balanceLoad is one round of load balancing on this round's reports (by
// node; see gatherLoad).
func (s *Server) balanceLoad(reports map[uint64][]*kvpb.RangeLoad) {
	if s.cfg.LoadThreshold < 0 || reports == nil {
		return
	}
	// Who leads what, and with what load, as the leaders say. A range two
	// nodes both claim (a leadership changing hands) counts for neither
	// and stays where it is.
	leader, load, gen := map[uint64]uint64{}, map[uint64]float64{}, map[uint64]uint64{}
	doubt := map[uint64]bool{}
	for _, node := range slices.Sorted(maps.Keys(reports)) {
		for _, rl := range reports[node] {
			if l, ok := leader[rl.RangeId]; ok && l != node {
				doubt[rl.RangeId] = true
			}
			leader[rl.RangeId], load[rl.RangeId], gen[rl.RangeId] = node, rl.OpsPerSecond, rl.Generation
		}
	}
	for id := range doubt {
		delete(leader, id)
	}

	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return
	}
	all := tm.rm.All()
	// A node that did not answer is no target: it would look idle, and
	// may be anything but.
	targets := slices.DeleteFunc(s.balanceTargetsLocked(tm), func(id uint64) bool { _, ok := reports[id]; return !ok })
	fixed := map[uint64]bool{}
	moving, loadMoving := 0, false
	for id, op := range tm.ops {
		fixed[id] = true
		if mv := op.GetMove(); mv != nil {
			moving++
			loadMoving = loadMoving || mv.Reason == loadReason
		}
	}
	for id := range s.autoSplitting {
		fixed[id] = true
	}
	// Replica moves for load wait for the last ones to finish (until
	// then the planner counts their load where it was, and would move
	// more), and for repairs.
	moveBudget := s.cfg.MaxConcurrentMoves - moving
	if loadMoving || len(s.deadNodesLocked(tm)) > 0 {
		moveBudget = 0
	}
	addrs := map[uint64]string{}
	for _, id := range s.liveNodesLocked(tm) {
		addrs[id] = tm.nodes[id].Addr
	}
	s.mu.Unlock()

	now := time.Now()
	s.loads.update(all, leader, load, now, s.cfg.LoadCooldown)
	descs := make([]*kvpb.RangeDescriptor, len(all))
	byID := make(map[uint64]*kvpb.RangeDescriptor, len(all))
	for i, d := range all {
		id := d.RangeId
		if d.LeaderNodeId != leader[id] {
			d = proto.Clone(d).(*kvpb.RangeDescriptor)
			d.LeaderNodeId = leader[id]
		}
		if c, ok := s.loads.cooling[id]; ok {
			fixed[id] = true
			load[id] = max(load[id], c.ops)
		}
		if g, ok := gen[id]; ok && g != d.Generation {
			fixed[id] = true // the map and the leader disagree on the range: a later round sees
		}
		descs[i], byID[id] = d, d
	}
	plan := placement.PlanLoadBalance(descs, load, targets, fixed, placement.LoadConfig{
		Threshold: s.cfg.LoadThreshold, Floor: s.cfg.LoadFloor,
		MaxTransfers: s.cfg.MaxTransfersPerRound, MaxMoves: max(moveBudget, 0)})

	stuck := ""
	if len(plan.Decisions) == 0 && len(plan.Overloaded) > 0 {
		stuck = fmt.Sprint(plan.Overloaded)
	}
	if stuck != "" && stuck != s.loads.stuck {
		s.log.Info("nodes over the load limit, but no leader or replica move helps now: their load is in ranges "+
			"that would put any other node over it, that moved a moment ago, or that are busy (a split by load may help)",
			"nodes", plan.Overloaded, "mean ops/s", round0(plan.Mean), "limit ops/s", round0(plan.Limit))
	}
	s.loads.stuck = stuck

	var transfers []placement.Transfer
	for _, dec := range plan.Decisions {
		text := describeLoadDecision(dec, load, byID, plan)
		s.log.Info("balancing load", "decision", text)
		s.noteDecision(text)
		if len(dec.Moves) == 0 {
			transfers = append(transfers, dec.Transfers...)
			continue
		}
		s.moveForLoad(dec, byID, addrs)
	}
	if len(transfers) == 0 {
		return
	}
	if err := s.transferLeaders(transfers, byID, addrs); err != nil {
		s.log.Info("leader transfers for load not all done", "err", err)
	}
}

// moveForLoad starts the replica moves of dec, a step of a load plan, and
// drives them in the background; its leader transfer, if any (the cold
// leadership of a swap), follows once they are done, so that leader
// counts are off by one at most for the time of a move. A step cut short
// (a move that does not start or finish, or a leader that takes over
// meanwhile and resumes the moves without the transfer) leaves the
// counts for the leader-count balancer to even out.
func (s *Server) moveForLoad(dec placement.LoadDecision, byID map[uint64]*kvpb.RangeDescriptor, addrs map[uint64]string) {
	var ops []*placementpb.RangeOperation
	for _, m := range dec.Moves {
		op, err := s.startMove(s.ctx, m.RangeID, m.Remove, m.Add, loadReason)
		if err != nil || op == nil {
			s.log.Info("cannot start a replica move", "range", m.RangeID, "from", m.Remove, "to", m.Add, "reason", loadReason, "err", err)
			s.driveInBackground(ops, nil) // those started, without the rest of the step
			return
		}
		ops = append(ops, op)
	}
	s.driveInBackground(ops, func() {
		if len(dec.Transfers) == 0 {
			return
		}
		if err := s.transferLeaders(dec.Transfers, byID, addrs); err != nil {
			s.log.Info("leader transfer of a swap for load not done", "err", err)
		}
	})
}

// describeLoadDecision says what dec does and why, with its figures.
func describeLoadDecision(dec placement.LoadDecision, load map[uint64]float64, byID map[uint64]*kvpb.RangeDescriptor, plan placement.LoadPlan) string {
	var parts []string
	for _, t := range dec.Transfers {
		parts = append(parts, fmt.Sprintf("range %d's leadership from node %d to node %d (%.0f ops/s)", t.RangeID, t.From, t.To, load[t.RangeID]))
	}
	for _, m := range dec.Moves {
		what := "replica"
		if byID[m.RangeID].GetLeaderNodeId() == m.Remove {
			what = "replica and leadership"
		}
		parts = append(parts, fmt.Sprintf("range %d's %s from node %d to node %d (%.0f ops/s)", m.RangeID, what, m.Remove, m.Add, load[m.RangeID]))
	}
	text := fmt.Sprintf("load: %s; node %d served %.0f ops/s, over the limit of %.0f (mean %.0f), node %d %.0f; after: %.0f and %.0f",
		strings.Join(parts, ", and "), dec.Donor, dec.DonorLoad, plan.Limit, plan.Mean, dec.Recipient, dec.RecipientLoad,
		dec.DonorLoad-dec.Shift, dec.RecipientLoad+dec.Shift)
	if dec.Swap() {
		text += " (a swap: both nodes keep their counts of leaders and replicas)"
	}
	return text
}

// round0 rounds an ops/s figure for the log.
func round0(f float64) string { return fmt.Sprintf("%.0f", f) }

// maxDecisions bounds the balancer's decisions ListOperations lists.
const maxDecisions = 32

// noteDecision keeps a balancer decision for ListOperations.
func (s *Server) noteDecision(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decisions = append(s.decisions, time.Now().Format("15:04:05.000")+" "+text)
	if len(s.decisions) > maxDecisions {
		s.decisions = slices.Clone(s.decisions[len(s.decisions)-maxDecisions:])
	}
}
