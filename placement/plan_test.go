package placement

import (
	"fmt"
	"slices"
	"testing"

	"github.com/shardd/shardd/kvpb"
)

// applyTransfers returns a copy of descs with the transfers applied,
// failing the test if one is invalid.
func applyTransfers(t *testing.T, descs []*kvpb.RangeDescriptor, live []uint64, ts []Transfer) []*kvpb.RangeDescriptor {
	t.Helper()
	out := cloneDescs(descs)
	seen := map[uint64]bool{}
	for _, tr := range ts {
		if seen[tr.RangeID] {
			t.Fatalf("two transfers for range %d", tr.RangeID)
		}
		seen[tr.RangeID] = true
		found := false
		for _, d := range out {
			if d.GetRangeId() != tr.RangeID {
				continue
			}
			found = true
			if d.GetLeaderNodeId() != tr.From {
				t.Fatalf("%+v: leader is %d", tr, d.GetLeaderNodeId())
			}
			if !isVoter(d.GetReplicas(), tr.To) || !slices.Contains(live, tr.To) {
				t.Fatalf("%+v: target is not a live voter", tr)
			}
			d.LeaderNodeId = tr.To
		}
		if !found {
			t.Fatalf("%+v: no such range", tr)
		}
	}
	return out
}

// checkLeaderBalance fails the test unless every live node leads within
// 5% of the average number of leaderships (the planner's band), with
// floor/ceil tolerance.
func checkLeaderBalance(t *testing.T, descs []*kvpb.RangeDescriptor, live []uint64) {
	t.Helper()
	_, leaders := counts(descs)
	total := 0
	for _, n := range live {
		total += leaders[n]
	}
	avg := float64(total) / float64(len(live))
	for _, n := range live {
		c := float64(leaders[n])
		ok := (c <= avg*1.05+1e-9 || c <= float64((total+len(live)-1)/len(live))) &&
			(c >= avg*0.95-1e-9 || c >= float64(total/len(live)))
		if !ok {
			t.Fatalf("node %d leads %d ranges, average %.2f: %v", n, leaders[n], avg, leaders)
		}
	}
}

func setAllLeaders(descs []*kvpb.RangeDescriptor, n uint64) {
	for _, d := range descs {
		d.LeaderNodeId = n
	}
}

func TestPlanLeaderBalanceSkewed(t *testing.T) {
	descs, err := InitialRanges(EvenSplitKeys(1000, "k", 4), []uint64{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	setAllLeaders(descs, 1)
	live := []uint64{1, 2, 3}
	ts := PlanLeaderBalance(descs, live)
	// Node 1 must shed down to floor(1.05*1000/3) = 350; nodes 2 and 3
	// must reach 317: 650 transfers is the minimum.
	if len(ts) != 650 {
		t.Errorf("%d transfers, want the minimum 650", len(ts))
	}
	after := applyTransfers(t, descs, live, ts)
	checkLeaderBalance(t, after, live)
	if again := PlanLeaderBalance(after, live); len(again) != 0 {
		t.Fatalf("planning again gave %d transfers: %v", len(again), again[:min(5, len(again))])
	}
	// Deterministic.
	if !slices.Equal(ts, PlanLeaderBalance(descs, live)) {
		t.Fatal("two plans of the same input differ")
	}
	// The balanced bootstrap needs nothing.
	fresh, _ := InitialRanges(EvenSplitKeys(1000, "k", 4), live, 3)
	if ts := PlanLeaderBalance(fresh, live); len(ts) != 0 {
		t.Fatalf("balanced input gave %d transfers", len(ts))
	}
}

func TestPlanLeaderBalanceDeadLeaders(t *testing.T) {
	descs, err := InitialRanges(EvenSplitKeys(300, "k", 4), []uint64{1, 2, 3, 4, 5}, 3)
	if err != nil {
		t.Fatal(err)
	}
	descs[0].LeaderNodeId = 0    // unknown
	descs[1].LeaderNodeId = 99   // not a replica
	live := []uint64{1, 2, 3, 5} // node 4 is dead
	ts := PlanLeaderBalance(descs, live)
	after := applyTransfers(t, descs, live, ts)
	for _, d := range after {
		if !slices.Contains(live, d.GetLeaderNodeId()) || !isVoter(d.GetReplicas(), d.GetLeaderNodeId()) {
			t.Fatalf("range %d still led by %d", d.GetRangeId(), d.GetLeaderNodeId())
		}
	}
	checkLeaderBalance(t, after, live)
	if again := PlanLeaderBalance(after, live); len(again) != 0 {
		t.Fatalf("planning again gave %v", again)
	}
}

func TestPlanLeaderBalanceSmall(t *testing.T) {
	tests := []struct {
		name    string
		leaders []uint64 // leader per range; every range is on nodes 1,2,3
		live    []uint64
		want    []Transfer
	}{
		{"balanced", []uint64{1, 2, 3}, []uint64{1, 2, 3}, nil},
		{"within rounding", []uint64{1, 1, 2, 3}, []uint64{1, 2, 3}, nil},
		{"two on one", []uint64{1, 1, 2}, []uint64{1, 2, 3}, []Transfer{{RangeID: 1, From: 1, To: 3}}},
		{"all on one", []uint64{2, 2, 2}, []uint64{1, 2, 3}, []Transfer{{1, 2, 1}, {2, 2, 3}}},
		{"dead leader", []uint64{3, 1, 2}, []uint64{1, 2}, []Transfer{{1, 3, 1}}},
		{"nobody live", []uint64{1, 2, 3}, []uint64{7}, nil},
		{"no ranges", nil, []uint64{1, 2}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var descs []*kvpb.RangeDescriptor
			for i, l := range tc.leaders {
				d := desc(uint64(i+1), "", "", voters(1, 2, 3)...)
				d.LeaderNodeId = l
				descs = append(descs, d)
			}
			if got := PlanLeaderBalance(descs, tc.live); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanLeaderBalanceRandom(t *testing.T) {
	r := newRand(t)
	for iter := range 200 {
		nodes := []uint64{1, 2, 3, 4, 5, 6}[:2+r.IntN(5)]
		n := 1 + r.IntN(300)
		// With every node a voter of every range, balance is always
		// reachable; with fewer replicas the plan is best effort.
		full := r.IntN(2) == 0
		replicas := len(nodes)
		if !full {
			replicas = 1 + r.IntN(len(nodes))
		}
		descs, err := InitialRanges(EvenSplitKeys(n, "k", 6), nodes, replicas)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range descs {
			d.LeaderNodeId = uint64(r.IntN(len(nodes) + 2)) // sometimes 0 or unknown
			if r.IntN(3) > 0 {
				d.LeaderNodeId = d.GetReplicas()[0].GetNodeId() // skew
			}
		}
		var live []uint64
		for _, n := range nodes {
			if r.IntN(4) > 0 {
				live = append(live, n)
			}
		}
		if len(live) == 0 {
			live = nodes[:1]
		}
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			ts := PlanLeaderBalance(descs, live)
			after := applyTransfers(t, descs, live, ts)
			if full {
				checkLeaderBalance(t, after, live)
			}
			for _, d := range after {
				if !slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool {
					return slices.Contains(live, r.GetNodeId())
				}) {
					continue // no live voter: nothing to do
				}
				if !slices.Contains(live, d.GetLeaderNodeId()) {
					t.Fatalf("range %d led by dead node %d", d.GetRangeId(), d.GetLeaderNodeId())
				}
			}
			if again := PlanLeaderBalance(after, live); len(again) != 0 {
				t.Fatalf("not idempotent: %v", again)
			}
		})
	}
}

func TestPlanRepair(t *testing.T) {
	// 5 nodes, 3 replicas, 100 ranges: 60 replicas per node.
	nodes := []uint64{1, 2, 3, 4, 5}
	descs, err := InitialRanges(EvenSplitKeys(100, "k", 4), nodes, 3)
	if err != nil {
		t.Fatal(err)
	}
	if moves := PlanRepair(descs, nodes); len(moves) != 0 {
		t.Fatalf("all live: got %v", moves)
	}
	live := []uint64{1, 2, 4, 5} // node 3 died
	moves := PlanRepair(descs, live)
	onDead := 0
	for _, d := range descs {
		if slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == 3 }) {
			onDead++
		}
	}
	if len(moves) != onDead || onDead != 60 {
		t.Fatalf("%d moves for %d ranges on the dead node", len(moves), onDead)
	}
	reps, _ := counts(descs)
	byID := map[uint64]*kvpb.RangeDescriptor{}
	for _, d := range descs {
		byID[d.GetRangeId()] = d
	}
	for _, mv := range moves {
		d := byID[mv.RangeID]
		if mv.Remove != 3 {
			t.Fatalf("%+v does not remove the dead node", mv)
		}
		if !slices.Contains(live, mv.Add) || slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == mv.Add }) {
			t.Fatalf("%+v adds a dead node or one already in the range", mv)
		}
		reps[mv.Add]++
	}
	delete(reps, 3)
	if spread(reps) > 1 {
		t.Fatalf("after repair, replica counts %v differ by more than 1", reps)
	}
	if !slices.Equal(moves, PlanRepair(descs, live)) {
		t.Fatal("two plans of the same input differ")
	}
}

func TestPlanRepairTable(t *testing.T) {
	tests := []struct {
		name  string
		descs []*kvpb.RangeDescriptor
		live  []uint64
		want  []Move
	}{
		{"least loaded, ties by id",
			[]*kvpb.RangeDescriptor{
				desc(1, "", "", voters(1, 2, 3)...),
				desc(2, "", "", voters(4, 5, 6)...),
				desc(3, "", "", voters(4, 6, 7)...),
			},
			[]uint64{1, 2, 4, 5, 6, 7},
			// Loads: 1:1 2:1 4:2 5:1 6:2 7:1. Range 1 takes 5 (lowest of
			// the 1-replica nodes not in it); range 2 is all live.
			[]Move{{RangeID: 1, Remove: 3, Add: 5}}},
		{"one move per range even with two dead voters",
			[]*kvpb.RangeDescriptor{desc(1, "", "", voters(1, 2, 3)...)},
			[]uint64{1, 4, 5},
			[]Move{{RangeID: 1, Remove: 2, Add: 4}}},
		{"dead learner is not repaired",
			[]*kvpb.RangeDescriptor{desc(1, "", "", append(voters(1), learner(2))...)},
			[]uint64{1, 3},
			nil},
		{"live learner is not a candidate",
			[]*kvpb.RangeDescriptor{desc(1, "", "", append(voters(1, 2), learner(3))...)},
			[]uint64{1, 3, 4},
			[]Move{{RangeID: 1, Remove: 2, Add: 4}}},
		{"no candidate",
			[]*kvpb.RangeDescriptor{desc(1, "", "", voters(1, 2, 3)...)},
			[]uint64{1, 2},
			nil},
		{"spreads over ranges",
			[]*kvpb.RangeDescriptor{
				desc(1, "", "", voters(1, 9)...),
				desc(2, "", "", voters(1, 9)...),
				desc(3, "", "", voters(1, 9)...),
			},
			[]uint64{1, 2, 3},
			[]Move{{1, 9, 2}, {2, 9, 3}, {3, 9, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlanRepair(tc.descs, tc.live); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLeadersBalanced(t *testing.T) {
	for _, tc := range []struct {
		counts []int
		want   bool
	}{
		{nil, true},
		{[]int{334, 333, 333}, true},
		{[]int{350, 325, 325}, true}, // the edge of the 5% band
		{[]int{351, 324, 325}, false},
		{[]int{1000, 0, 0}, false},
		{[]int{1, 0}, true}, // within rounding
		{[]int{2, 0}, false},
	} {
		if got := LeadersBalanced(tc.counts); got != tc.want {
			t.Errorf("LeadersBalanced(%v) = %v, want %v", tc.counts, got, tc.want)
		}
	}
	// What the planner leaves is balanced by this measure.
	descs, err := InitialRanges(EvenSplitKeys(1000, "k", 4), []uint64{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	setAllLeaders(descs, 1)
	live := []uint64{1, 2, 3}
	_, leaders := counts(applyTransfers(t, descs, live, PlanLeaderBalance(descs, live)))
	if c := []int{leaders[1], leaders[2], leaders[3]}; !LeadersBalanced(c) {
		t.Errorf("the planner left %v, which LeadersBalanced rejects", c)
	}
}

// TestPlanReplicaBalance: a fourth node joins three that hold every
// replica; the plan moves replicas to it until every node is within 10% of
// the mean, one move per range, never onto a node that holds the range,
// and applying the plan and planning again gives nothing more.
func TestPlanReplicaBalance(t *testing.T) {
	descs, err := InitialRanges(EvenSplitKeys(100, "k", 4), []uint64{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []uint64{1, 2, 3, 4}
	moves := PlanReplicaBalance(descs, nodes, nil, 1000)
	// 300 replicas over 4 nodes: 75 each; within 10% means 68..83.
	if len(moves) < 68 || len(moves) > 83 {
		t.Fatalf("%d moves", len(moves))
	}
	seen := map[uint64]bool{}
	for _, m := range moves {
		if seen[m.RangeID] {
			t.Fatalf("range %d moves twice", m.RangeID)
		}
		seen[m.RangeID] = true
		d := descs[m.RangeID-1]
		if !Holds(d, m.Remove) || Holds(d, m.Add) || m.Add != 4 {
			t.Fatalf("move %+v of %v", m, d)
		}
		for _, r := range d.Replicas {
			if r.NodeId == m.Remove {
				r.NodeId = m.Add
			}
		}
	}
	counts := map[uint64]int{}
	for _, d := range descs {
		for _, r := range d.Replicas {
			counts[r.NodeId]++
		}
	}
	for _, n := range nodes {
		if counts[n] < 68 || counts[n] > 83 {
			t.Errorf("node %d holds %d replicas after the plan: %v", n, counts[n], counts)
		}
	}
	if again := PlanReplicaBalance(descs, nodes, nil, 1000); len(again) != 0 {
		t.Errorf("planning again after applying the plan: %v", again)
	}
	// The limit and busy ranges are honoured.
	fresh, _ := InitialRanges(EvenSplitKeys(10, "k", 4), []uint64{1, 2, 3}, 3)
	busy := map[uint64]bool{}
	for _, d := range fresh {
		busy[d.RangeId] = d.RangeId%2 == 0
	}
	for _, m := range PlanReplicaBalance(fresh, nodes, busy, 3) {
		if busy[m.RangeID] {
			t.Errorf("busy range %d planned", m.RangeID)
		}
	}
	if n := len(PlanReplicaBalance(fresh, nodes, nil, 2)); n != 2 {
		t.Errorf("limit 2: %d moves", n)
	}
	// A node not among the targets (down) neither gives nor takes.
	for _, m := range PlanReplicaBalance(descs, []uint64{1, 2, 4}, nil, 1000) {
		if m.Remove == 3 || m.Add == 3 {
			t.Errorf("move %+v involves node 3, not a target", m)
		}
	}
}
