package placement

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/shardd/shardd/kvpb"
)

// testLoadConfig is the service's default tuning, with room for every
// step a test plans.
var testLoadConfig = LoadConfig{Threshold: 0.1, Floor: 100, MaxTransfers: 256, MaxMoves: 4}

// applyLoadPlan returns a copy of descs with plan carried out as the
// service does (a replica move takes the leadership along when its source
// leads), failing the test if a step is invalid: a range planned twice or
// fixed, a transfer from a node that does not lead or to one that is not
// a voter target, a move off a node without the replica or onto one that
// has it. It also returns the ranges the plan moved.
func applyLoadPlan(t *testing.T, descs []*kvpb.RangeDescriptor, targets []uint64, fixed map[uint64]bool, plan LoadPlan) ([]*kvpb.RangeDescriptor, map[uint64]bool) {
	t.Helper()
	out := cloneDescs(descs)
	byID := map[uint64]*kvpb.RangeDescriptor{}
	for _, d := range out {
		byID[d.RangeId] = d
	}
	moved := map[uint64]bool{}
	touch := func(id uint64) *kvpb.RangeDescriptor {
		t.Helper()
		if moved[id] || fixed[id] {
			t.Fatalf("range %d planned twice, or fixed: %+v", id, plan.Decisions)
		}
		moved[id] = true
		d := byID[id]
		if d == nil {
			t.Fatalf("no range %d", id)
		}
		return d
	}
	for _, dec := range plan.Decisions {
		if n := len(dec.Transfers) + len(dec.Moves); n < 1 || n > 2 {
			t.Fatalf("decision of %d steps: %+v", n, dec)
		}
		for _, tr := range dec.Transfers {
			d := touch(tr.RangeID)
			if d.LeaderNodeId != tr.From || !isVoter(d.Replicas, tr.To) || !slices.Contains(targets, tr.To) {
				t.Fatalf("transfer %+v of %v (leader %d)", tr, replicaNodes(d), d.LeaderNodeId)
			}
			d.LeaderNodeId = tr.To
		}
		for _, m := range dec.Moves {
			d := touch(m.RangeID)
			if !Holds(d, m.Remove) || Holds(d, m.Add) || !slices.Contains(targets, m.Add) {
				t.Fatalf("move %+v of %v", m, replicaNodes(d))
			}
			for _, r := range d.Replicas {
				if r.NodeId == m.Remove {
					r.NodeId = m.Add
				}
			}
			if d.LeaderNodeId == m.Remove {
				d.LeaderNodeId = m.Add
			}
		}
	}
	return out, moved
}

func replicaNodes(d *kvpb.RangeDescriptor) []uint64 {
	var ns []uint64
	for _, r := range d.Replicas {
		ns = append(ns, r.NodeId)
	}
	return ns
}

// nodeLoads returns each target's led load.
func nodeLoads(descs []*kvpb.RangeDescriptor, load map[uint64]float64, targets []uint64) map[uint64]float64 {
	out := map[uint64]float64{}
	for _, n := range targets {
		out[n] = 0
	}
	for _, d := range descs {
		if _, ok := out[d.LeaderNodeId]; ok {
			out[d.LeaderNodeId] += load[d.RangeId]
		}
	}
	return out
}

func maxLoad(loads map[uint64]float64) float64 {
	m := 0.0
	for _, l := range loads {
		m = max(m, l)
	}
	return m
}

func sumSquares(loads map[uint64]float64) float64 {
	s := 0.0
	for _, l := range loads {
		s += l * l
	}
	return s
}

// runLoadRounds plans and applies up to maxRounds plans, as the balancer's
// rounds do: a range moved in one round is fixed in the next (its
// cooldown), on top of fixed. It checks that no plan raises the busiest
// node's load or takes a count out of its band (or further out), and
// returns the map once a plan is empty, and the rounds that planned
// something; it fails the test if the plans never stop.
func runLoadRounds(t *testing.T, descs []*kvpb.RangeDescriptor, load map[uint64]float64, targets []uint64, fixed map[uint64]bool, cfg LoadConfig, maxRounds int) ([]*kvpb.RangeDescriptor, int) {
	t.Helper()
	recent := map[uint64]bool{}
	planned := 0
	for round := 0; round < maxRounds; round++ {
		cooling := map[uint64]bool{}
		for id := range recent {
			cooling[id] = true
		}
		for id := range fixed {
			cooling[id] = true
		}
		plan := PlanLoadBalance(descs, load, targets, cooling, cfg)
		if len(plan.Decisions) == 0 {
			if len(recent) == 0 {
				return descs, planned
			}
			recent = nil // the cooldown ends: plan once more
			continue
		}
		transfers, moves := 0, 0
		for _, d := range plan.Decisions {
			transfers += len(d.Transfers)
			moves += len(d.Moves)
		}
		if transfers > cfg.MaxTransfers || moves > cfg.MaxMoves {
			t.Fatalf("round %d: %d transfers and %d moves, over the limits %d and %d", round, transfers, moves, cfg.MaxTransfers, cfg.MaxMoves)
		}
		after, moved := applyLoadPlan(t, descs, targets, cooling, plan)
		before, now := nodeLoads(descs, load, targets), nodeLoads(after, load, targets)
		if maxLoad(now) > maxLoad(before)+1e-9 || sumSquares(now) >= sumSquares(before) {
			t.Fatalf("round %d made loads worse: %v -> %v (%+v)", round, before, now, plan.Decisions)
		}
		checkCountsKept(t, descs, after, targets)
		descs, recent = after, moved
		planned++
	}
	t.Fatalf("the plans did not stop within %d rounds", maxRounds)
	return nil, 0
}

// checkCountsKept fails the test if a node's leader or replica count left
// the count planners' band between before and after, or moved further
// out of it.
func checkCountsKept(t *testing.T, before, after []*kvpb.RangeDescriptor, targets []uint64) {
	t.Helper()
	count := func(descs []*kvpb.RangeDescriptor) (replicas, leaders map[uint64]int, lLo, lHi, rLo, rHi int) {
		p := newLoadState(descs, nil, targets, nil)
		return p.replicas, p.leaders, p.lLo, p.lHi, p.rLo, p.rHi
	}
	r0, l0, lLo, lHi, rLo, rHi := count(before)
	r1, l1, _, _, _, _ := count(after)
	for _, n := range targets {
		if !inBand(l0[n], l1[n], lLo, lHi) {
			t.Fatalf("node %d: leaders %d -> %d, band [%d, %d]", n, l0[n], l1[n], lLo, lHi)
		}
		if !inBand(r0[n], r1[n], rLo, rHi) {
			t.Fatalf("node %d: replicas %d -> %d, band [%d, %d]", n, r0[n], r1[n], rLo, rHi)
		}
	}
}

// hotOn returns 18 ranges on nodes 1-3 with balanced leader counts (six
// each), and loads: the ranges node 1 leads take hot ops/s each, the
// others cold.
func hotOn(t *testing.T, hot, cold float64) ([]*kvpb.RangeDescriptor, map[uint64]float64) {
	t.Helper()
	descs, err := InitialRanges(EvenSplitKeys(18, "k", 4), []uint64{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	load := map[uint64]float64{}
	for _, d := range descs {
		load[d.RangeId] = cold
		if d.LeaderNodeId == 1 {
			load[d.RangeId] = hot
		}
	}
	return descs, load
}

// TestPlanLoadBalanceSpreadsHotLeaders: six hot ranges all led by node 1
// of three, every node leading six ranges. The leader counts are at the
// mean, so every step must be a swap; one round spreads the hot ranges
// two per node, and the next plans nothing.
func TestPlanLoadBalanceSpreadsHotLeaders(t *testing.T) {
	targets := []uint64{1, 2, 3}
	descs, load := hotOn(t, 600, 5)
	plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig)
	if !slices.Equal(plan.Overloaded, []uint64{1}) {
		t.Fatalf("overloaded %v, want node 1 (mean %.0f, limit %.0f)", plan.Overloaded, plan.Mean, plan.Limit)
	}
	for _, d := range plan.Decisions {
		if !d.Swap() || len(d.Moves) != 0 || d.Donor != 1 {
			t.Errorf("decision %+v: want swaps of leaders off node 1", d)
		}
	}
	after, rounds := runLoadRounds(t, descs, load, targets, nil, testLoadConfig, 3)
	if rounds != 1 {
		t.Errorf("%d rounds planned something; want 1", rounds)
	}
	hot := map[uint64]int{}
	for _, d := range after {
		if load[d.RangeId] > 100 {
			hot[d.LeaderNodeId]++
		}
	}
	if hot[1] != 2 || hot[2] != 2 || hot[3] != 2 {
		t.Errorf("hot leaders per node %v, want 2 each", hot)
	}
	loads := nodeLoads(after, load, targets)
	if maxLoad(loads) > plan.Limit {
		t.Errorf("loads %v, limit %.0f", loads, plan.Limit)
	}
	t.Logf("loads per node %v -> %v in %d swaps", nodeLoads(descs, load, targets), loads, len(plan.Decisions))
	// Deterministic.
	again := PlanLoadBalance(descs, load, targets, nil, testLoadConfig)
	if fmt.Sprint(again) != fmt.Sprint(plan) {
		t.Errorf("two plans of the same input differ:\n%+v\n%+v", plan, again)
	}
}

// TestPlanLoadBalanceSingleTransfers: with counts of leaders that leave
// room in the band (100 each, within 95 to 105), the plan moves single
// leaders, not swaps.
func TestPlanLoadBalanceSingleTransfers(t *testing.T) {
	targets := []uint64{1, 2, 3}
	descs, err := InitialRanges(EvenSplitKeys(300, "k", 4), targets, 3)
	if err != nil {
		t.Fatal(err)
	}
	load := map[uint64]float64{}
	hot := 0
	for _, d := range descs {
		load[d.RangeId] = 10
		if d.LeaderNodeId == 1 && hot < 6 {
			load[d.RangeId] = 300 // 6 of node 1's 100 ranges: 4 to move
			hot++
		}
	}
	plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig)
	for _, d := range plan.Decisions {
		if d.Swap() {
			t.Errorf("a swap %+v, where counts leave room for single transfers", d)
		}
	}
	after, _ := runLoadRounds(t, descs, load, targets, nil, testLoadConfig, 4)
	loads := nodeLoads(after, load, targets)
	if maxLoad(loads) > plan.Limit {
		t.Errorf("loads %v, limit %.0f", loads, plan.Limit)
	}
	t.Logf("loads per node %v -> %v", nodeLoads(descs, load, targets), loads)
}

// TestPlanLoadBalanceQuiet: a balanced load, an idle cluster, and a load
// that only a split could spread (one range hotter than the others
// together) plan nothing.
func TestPlanLoadBalanceQuiet(t *testing.T) {
	targets := []uint64{1, 2, 3}
	t.Run("balanced", func(t *testing.T) {
		descs, load := hotOn(t, 500, 500)
		r := newRand(t)
		for id := range load {
			load[id] *= 1 + 0.05*(2*r.Float64()-1) // within 5%: under the 10% threshold
		}
		if plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig); len(plan.Decisions) != 0 || len(plan.Overloaded) != 0 {
			t.Errorf("a balanced load planned %+v", plan)
		}
	})
	t.Run("idle", func(t *testing.T) {
		// Node 1 serves everything, but no more than the floor.
		descs, load := hotOn(t, 16, 0)
		plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig)
		if len(plan.Decisions) != 0 || len(plan.Overloaded) != 0 {
			t.Errorf("an idle cluster planned %+v", plan)
		}
		// Nor does a balanced idle one with its leaders on one node.
		setAllLeaders(descs, 1)
		if plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig); len(plan.Decisions) != 0 {
			t.Errorf("an idle cluster planned %+v", plan)
		}
	})
	t.Run("one hot range", func(t *testing.T) {
		descs, load := hotOn(t, 0, 1)
		load[descs[0].RangeId] = 5000
		if plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig); len(plan.Decisions) != 0 {
			t.Errorf("moving the one hot range only moves the problem; planned %+v", plan)
		}
	})
	t.Run("fixed", func(t *testing.T) {
		descs, load := hotOn(t, 600, 5)
		fixed := map[uint64]bool{}
		for _, d := range descs {
			fixed[d.RangeId] = load[d.RangeId] > 100 // the hot ranges moved a moment ago
		}
		if plan := PlanLoadBalance(descs, load, targets, fixed, testLoadConfig); len(plan.Decisions) != 0 {
			t.Errorf("fixed ranges moved: %+v", plan)
		}
	})
}

// TestPlanLoadBalanceMovesReplicas: six nodes, the six hot ranges all on
// nodes 1-3 and led by node 1. Leader moves spread them over nodes 1-3,
// which is not enough; replica moves, at most MaxMoves at a time, take
// hot ranges to nodes 4-6, within the replica count band.
func TestPlanLoadBalanceMovesReplicas(t *testing.T) {
	targets := []uint64{1, 2, 3, 4, 5, 6}
	var descs []*kvpb.RangeDescriptor
	load := map[uint64]float64{}
	keys := EvenSplitKeys(36, "k", 4)
	for i := range 36 {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 1), Generation: 1}
		if i > 0 {
			d.StartKey = keys[i-1]
		}
		if i < len(keys) {
			d.EndKey = keys[i]
		}
		// The leader first. Every node holds 18 replicas and leads 6
		// ranges.
		var nodes []uint64
		load[d.RangeId] = 5
		switch j := uint64(i - 6); {
		case i < 6: // hot
			nodes = []uint64{1, 2, 3}
			load[d.RangeId] = 600
		case j < 18:
			nodes = []uint64{4 + j%3, 4 + (j+1)%3, 1 + j%3}
		case j < 24:
			nodes = []uint64{2 + j%2, 4 + j%3, 4 + (j+1)%3}
		default:
			nodes = []uint64{2 + j%2, 1, 4 + j%3}
		}
		d.Replicas = voters(nodes...)
		d.LeaderNodeId = nodes[0]
		descs = append(descs, d)
	}
	r0, l0 := counts(descs)
	t.Logf("replicas per node %v, leaders %v, loads %v", r0, l0, nodeLoads(descs, load, targets))
	cfg := testLoadConfig
	cfg.MaxMoves = 2
	plan := PlanLoadBalance(descs, load, targets, nil, cfg)
	moves := 0
	for _, d := range plan.Decisions {
		moves += len(d.Moves)
	}
	if moves == 0 || moves > cfg.MaxMoves {
		t.Errorf("%d replica moves planned, want 1..%d: %+v", moves, cfg.MaxMoves, plan.Decisions)
	}
	after, rounds := runLoadRounds(t, descs, load, targets, nil, cfg, 12)
	loads := nodeLoads(after, load, targets)
	if maxLoad(loads) > plan.Limit {
		t.Errorf("loads %v, limit %.0f", loads, plan.Limit)
	}
	r1, l1 := counts(after)
	t.Logf("after %d rounds: replicas per node %v, leaders %v, loads %v", rounds, r1, l1, loads)
}

// TestPlanLoadBalanceLimits: the plan keeps within MaxTransfers and
// MaxMoves, and plans no replica move while a transfer may still help.
func TestPlanLoadBalanceLimits(t *testing.T) {
	targets := []uint64{1, 2, 3}
	descs, load := hotOn(t, 600, 5)
	cfg := testLoadConfig
	cfg.MaxTransfers = 3 // room for one swap
	plan := PlanLoadBalance(descs, load, targets, nil, cfg)
	if len(plan.Decisions) != 1 || !plan.Decisions[0].Swap() || len(plan.Decisions[0].Moves) != 0 {
		t.Errorf("with room for 3 transfers: %+v", plan.Decisions)
	}
	cfg.MaxTransfers = 1 // no room for a swap, and counts allow nothing else
	if plan := PlanLoadBalance(descs, load, targets, nil, cfg); len(plan.Decisions) != 0 {
		t.Errorf("with room for 1 transfer: %+v", plan.Decisions)
	}
}

// TestPlanLoadBalanceRandom plans random maps and loads (seeded; see
// newRand) over rounds, checking every plan's steps, that none raises the
// busiest node's load or breaks the count bands, and that the rounds stop.
func TestPlanLoadBalanceRandom(t *testing.T) {
	r := newRand(t)
	var transfers, moves int // over all iterations, to show the test plans some of each
	for iter := range 200 {
		nodes := []uint64{1, 2, 3, 4, 5}[:3+r.IntN(3)]
		descs, err := InitialRanges(EvenSplitKeys(2+r.IntN(60), "k", 4), nodes, 3)
		if err != nil {
			t.Fatal(err)
		}
		load := map[uint64]float64{}
		fixed := map[uint64]bool{}
		randomReplicas := r.IntN(2) == 0
		for _, d := range descs {
			if randomReplicas { // replica counts off balance, some out of the band
				perm := r.Perm(len(nodes))
				d.Replicas = voters(nodes[perm[0]], nodes[perm[1]], nodes[perm[2]])
				d.LeaderNodeId = nodes[perm[r.IntN(3)]]
			}
			if r.IntN(3) == 0 { // skew: a third of the leaders on node 1
				if isVoter(d.Replicas, 1) {
					d.LeaderNodeId = 1
				}
			}
			load[d.RangeId] = math.Floor(math.Exp(r.Float64() * 8)) // 1 to ~3000 ops/s, heavy-tailed
			fixed[d.RangeId] = r.IntN(10) == 0
		}
		targets := nodes
		if r.IntN(4) == 0 {
			targets = nodes[1:] // node 1 draining: neither gives nor takes
		}
		cfg := testLoadConfig
		cfg.MaxTransfers, cfg.MaxMoves = 1+r.IntN(20), r.IntN(4)
		for _, d := range PlanLoadBalance(descs, load, targets, fixed, cfg).Decisions {
			transfers += len(d.Transfers)
			moves += len(d.Moves)
		}
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			after, _ := runLoadRounds(t, descs, load, targets, fixed, cfg, 200)
			for _, d := range after {
				if !slices.Contains(targets, d.LeaderNodeId) {
					if orig := descs[d.RangeId-1]; orig.LeaderNodeId != d.LeaderNodeId {
						t.Fatalf("range %d's leader moved off a node that is not a target", d.RangeId)
					}
				}
			}
		})
	}
	t.Logf("first plans: %d transfers, %d moves", transfers, moves)
	if transfers == 0 || moves == 0 {
		t.Errorf("the random maps planned %d transfers and %d moves: they test too little", transfers, moves)
	}
}

// TestPlanLoadBalanceKeepsReplicaBand: node 1's two hot ranges can only go
// to node 4 (nodes 2 and 3 are busy), by a replica move. Every node holds
// 9 replicas and leads 3 ranges, the ends of both bands, and every range
// node 4 leads has a replica on node 1: the only step that keeps the
// leader counts (the hot replica to node 4, a cold leadership back) takes
// node 1 to 8 replicas and node 4 to 10. So there is no step.
func TestPlanLoadBalanceKeepsReplicaBand(t *testing.T) {
	ranges := []struct {
		nodes []uint64 // the leader first
		load  float64
	}{
		{[]uint64{1, 2, 3}, 300}, {[]uint64{1, 2, 3}, 300}, {[]uint64{1, 4, 2}, 0},
		{[]uint64{4, 1, 2}, 0}, {[]uint64{4, 1, 3}, 0}, {[]uint64{4, 1, 3}, 0},
		{[]uint64{2, 1, 4}, 130}, {[]uint64{2, 3, 4}, 130}, {[]uint64{2, 1, 3}, 140},
		{[]uint64{3, 2, 4}, 130}, {[]uint64{3, 4, 1}, 130}, {[]uint64{3, 4, 2}, 140},
	}
	keys := EvenSplitKeys(len(ranges), "k", 4)
	var descs []*kvpb.RangeDescriptor
	load := map[uint64]float64{}
	for i, r := range ranges {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 1), Generation: 1, Replicas: voters(r.nodes...), LeaderNodeId: r.nodes[0]}
		if i > 0 {
			d.StartKey = keys[i-1]
		}
		if i < len(keys) {
			d.EndKey = keys[i]
		}
		descs = append(descs, d)
		load[d.RangeId] = r.load
	}
	replicas, leaders := counts(descs)
	for n := uint64(1); n <= 4; n++ {
		if replicas[n] != 9 || leaders[n] != 3 {
			t.Fatalf("the map is not as meant: replicas %v, leaders %v", replicas, leaders)
		}
	}
	targets := []uint64{1, 2, 3, 4}
	plan := PlanLoadBalance(descs, load, targets, nil, testLoadConfig)
	if !slices.Equal(plan.Overloaded, []uint64{1}) || len(plan.Decisions) != 0 {
		t.Errorf("overloaded %v (want [1]), decisions %+v (want none)", plan.Overloaded, plan.Decisions)
	}
}
