package placement

import (
	"math"
	"slices"

	"github.com/shardd/shardd/kvpb"
)

// Transfer moves the leadership of range RangeID from node From (zero if
// the range had no known leader) to node To, a live voter of the range.
type Transfer struct{ RangeID, From, To uint64 }

// PlanLeaderBalance returns leader transfers that spread leadership evenly
// over the live nodes. descs and live are only read.
//
// First, every range whose leader hint is zero, not a voter or not live
// gets the live voter that leads the fewest ranges (ties to the lowest
// id); a range with no live voter is left alone (see PlanRepair). Then,
// among the live nodes that are voters of at least one range, leadership
// moves one range at a time from the most-loaded node to the least-loaded
// one that is a voter of a range the donor leads, until every such node
// leads between lo and hi ranges, where, with L ranges led by N nodes,
//
//	lo = min(floor(L/N), ceil(0.95*L/N))
//	hi = max(ceil(L/N), floor(1.05*L/N))
//
// that is, within 5% of the average, or within rounding of it when the
// counts are small. The cluster promises 10%; planning to half of that
// leaves room for the leaderships that elections move between rounds. Without replica constraints every step takes a node
// out of excess or deficit, so the number of transfers is the minimum;
// with them the plan is greedy and stops when no useful step is left.
//
// The result has at most one Transfer per range, in the order of descs,
// and depends only on the inputs. Applying it and planning again returns
// nothing.
func PlanLeaderBalance(descs []*kvpb.RangeDescriptor, live []uint64) []Transfer {
	isLive := make(map[uint64]bool, len(live))
	for _, n := range live {
		if n != 0 {
			isLive[n] = true
		}
	}
	// counts holds the planned number of leaderships of every eligible
	// node: live and a voter of some range.
	counts := make(map[uint64]int)
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			if r.GetRole() == kvpb.ReplicaRole_VOTER && isLive[r.GetNodeId()] {
				counts[r.GetNodeId()] += 0
			}
		}
	}
	leader := make([]uint64, len(descs))
	for i, d := range descs {
		if l := d.GetLeaderNodeId(); isLive[l] && isVoter(d.GetReplicas(), l) {
			leader[i] = l
			counts[l]++
		}
	}
	// Reassign ranges without a live leader.
	for i, d := range descs {
		if leader[i] != 0 {
			continue
		}
		var best uint64
		for _, r := range d.GetReplicas() {
			n := r.GetNodeId()
			if r.GetRole() != kvpb.ReplicaRole_VOTER || !isLive[n] {
				continue
			}
			if best == 0 || counts[n] < counts[best] || (counts[n] == counts[best] && n < best) {
				best = n
			}
		}
		if best != 0 {
			leader[i] = best
			counts[best]++
		}
	}

	nodes := make([]uint64, 0, len(counts))
	total := 0
	for n, c := range counts {
		nodes = append(nodes, n)
		total += c
	}
	if len(nodes) > 0 {
		lo, hi := leaderBounds(total, len(nodes))
		for balanceStep(descs, leader, counts, nodes, lo, hi) {
		}
	}

	var out []Transfer
	for i, d := range descs {
		if leader[i] != 0 && leader[i] != d.GetLeaderNodeId() {
			out = append(out, Transfer{RangeID: d.GetRangeId(), From: d.GetLeaderNodeId(), To: leader[i]})
		}
	}
	return out
}

// LeadersBalanced reports whether leaderships per node (one count per
// eligible node) already lie in the band PlanLeaderBalance plans to, so
// that a caller holding only counts (nodes report theirs) can tell that
// there is nothing to plan without gathering every range's leader.
func LeadersBalanced(counts []int) bool {
	if len(counts) == 0 {
		return true
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	lo, hi := leaderBounds(total, len(counts))
	for _, c := range counts {
		if c < lo || c > hi {
			return false
		}
	}
	return true
}

// leaderBounds returns the band [lo, hi] of leaderships per node that
// counts as balanced when n nodes lead total ranges.
func leaderBounds(total, n int) (lo, hi int) {
	floor, ceil := total/n, (total+n-1)/n
	lo = min(floor, (19*total+20*n-1)/(20*n))
	hi = max(ceil, 21*total/(20*n))
	return lo, hi
}

// balanceStep makes one leader transfer in the plan (leader, counts) from
// the most-loaded node to the least-loaded one that can take a range from
// it, provided the transfer reduces an excess above hi or a deficit below
// lo, and the donor leads at least two more ranges than the recipient (so
// the imbalance strictly shrinks and planning terminates). It reports
// whether it made a transfer.
func balanceStep(descs []*kvpb.RangeDescriptor, leader []uint64, counts map[uint64]int, nodes []uint64, lo, hi int) bool {
	byLoad := func(desc bool) []uint64 {
		s := slices.Clone(nodes)
		slices.SortFunc(s, func(a, b uint64) int {
			if counts[a] != counts[b] {
				if desc == (counts[a] > counts[b]) {
					return -1
				}
				return 1
			}
			if a < b {
				return -1
			}
			return 1
		})
		return s
	}
	donors, recipients := byLoad(true), byLoad(false)
	for _, from := range donors {
		for _, to := range recipients {
			if counts[from]-counts[to] < 2 {
				break // recipients only get more loaded from here
			}
			if counts[from] <= hi && counts[to] >= lo {
				continue
			}
			for i, d := range descs {
				if leader[i] == from && isVoter(d.GetReplicas(), to) {
					leader[i] = to
					counts[from]--
					counts[to]++
					return true
				}
			}
		}
	}
	return false
}

// Move replaces the voter on node Remove in range RangeID by a new voter
// on node Add. Carrying it out takes several single-step changes: add Add
// as a learner, let it catch up, promote it, then remove Remove.
type Move struct{ RangeID, Remove, Add uint64 }

// PlanRepair returns replica moves away from dead nodes. For each range, in
// the order of descs, that has a voter on a node not in live, it plans one
// Move that replaces the first such voter (in replica order) with the live
// node not already in the range (as voter or learner) that holds the
// fewest replicas, counting replicas of every role and the moves planned
// so far, ties to the lowest id. A range with no such live node is skipped.
// There is at most one Move per range, so a range with several dead voters
// needs several rounds; the result depends only on the inputs. A range
// that has lost a majority of its voters still gets a Move, but cannot
// carry it out through its own log.
func PlanRepair(descs []*kvpb.RangeDescriptor, live []uint64) []Move {
	nodes := make([]uint64, 0, len(live))
	for _, n := range live {
		if n != 0 {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	load := make(map[uint64]int, len(nodes))
	for _, n := range nodes {
		load[n] = 0
	}
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			if _, ok := load[r.GetNodeId()]; ok {
				load[r.GetNodeId()]++
			}
		}
	}
	var out []Move
	for _, d := range descs {
		var dead uint64
		in := make(map[uint64]bool, len(d.GetReplicas()))
		for _, r := range d.GetReplicas() {
			in[r.GetNodeId()] = true
			if _, ok := load[r.GetNodeId()]; !ok && dead == 0 && r.GetRole() == kvpb.ReplicaRole_VOTER {
				dead = r.GetNodeId()
			}
		}
		if dead == 0 {
			continue
		}
		var best uint64
		for _, n := range nodes { // ascending, so ties go to the lowest id
			if !in[n] && (best == 0 || load[n] < load[best]) {
				best = n
			}
		}
		if best == 0 {
			continue
		}
		load[best]++
		out = append(out, Move{RangeID: d.GetRangeId(), Remove: dead, Add: best})
	}
	return out
}

// PlanReplicaBalance returns replica moves that bring every node of
// targets within 10% of the mean replica count (or within one of it, when
// counts are small), at most limit of them. Only nodes in targets receive
// replicas; a node holding replicas that is not in targets gives none up
// (it may be down: that is PlanRepair's work) but its replicas count in
// the mean. Each step moves one replica of a range from the most loaded
// target node to the least loaded one that holds no replica of that
// range, preferring a range the donor does not lead (a move of a leader's
// replica costs a leader transfer too); ranges in busy are skipped, and a
// range moves at most once. Ties go to the lowest ids; the result depends
// only on the inputs.
func PlanReplicaBalance(descs []*kvpb.RangeDescriptor, targets []uint64, busy map[uint64]bool, limit int) []Move {
	nodes := slices.Clone(targets)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	if len(nodes) < 2 || limit <= 0 {
		return nil
	}
	count := make(map[uint64]int, len(nodes))
	for _, n := range nodes {
		count[n] = 0
	}
	total := 0
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			if _, ok := count[r.GetNodeId()]; ok {
				count[r.GetNodeId()]++
				total++
			}
		}
	}
	lo, hi := replicaBounds(total, len(nodes))
	moved := map[uint64]bool{}
	var out []Move
	for len(out) < limit {
		var donor, taker uint64
		for _, n := range nodes {
			if donor == 0 || count[n] > count[donor] {
				donor = n
			}
			if taker == 0 || count[n] < count[taker] {
				taker = n
			}
		}
		if count[donor] <= hi && count[taker] >= lo || count[donor]-count[taker] < 2 {
			break
		}
		pick := -1
		for i, d := range descs {
			if busy[d.GetRangeId()] || moved[d.GetRangeId()] || !Holds(d, donor) || Holds(d, taker) {
				continue
			}
			if pick < 0 || (descs[pick].GetLeaderNodeId() == donor && d.GetLeaderNodeId() != donor) {
				pick = i
			}
			if d.GetLeaderNodeId() != donor {
				break
			}
		}
		if pick < 0 {
			break // every range of the donor also lives on the taker
		}
		d := descs[pick]
		moved[d.GetRangeId()] = true
		count[donor]--
		count[taker]++
		out = append(out, Move{RangeID: d.GetRangeId(), Remove: donor, Add: taker})
	}
	return out
}

// replicaBounds returns the band [lo, hi] of replicas per node that
// counts as balanced when n nodes hold total replicas: within 10% of the
// mean, or of its rounding when counts are small.
func replicaBounds(total, n int) (lo, hi int) {
	mean := float64(total) / float64(n)
	hi = max(int(math.Floor(mean*1.1)), int(math.Ceil(mean)))
	lo = min(int(math.Ceil(mean*0.9)), int(math.Floor(mean)))
	return lo, hi
}

// Holds reports whether node holds a replica of d, in any role.
func Holds(d *kvpb.RangeDescriptor, node uint64) bool {
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() == node {
			return true
		}
	}
	return false
}

// VoterNodes returns the nodes of d's voters, in d's order.
func VoterNodes(d *kvpb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, r := range d.GetReplicas() {
		if r.GetRole() == kvpb.ReplicaRole_VOTER {
			out = append(out, r.GetNodeId())
		}
	}
	return out
}
