package node

import (
	"context"
	"slices"
	"testing"
	"time"
)

// longestGap returns the longest stretch within [from, to] of the
// history's time in which no operation on a key of keys succeeded.
func (h *history) longestGap(keys []string, from, to time.Duration) time.Duration {
	h.mu.Lock()
	var ends []time.Duration
	for _, o := range h.ops {
		if o.fate == fateOK && slices.Contains(keys, o.key) && o.end >= from && o.end <= to {
			ends = append(ends, o.end)
		}
	}
	h.mu.Unlock()
	slices.Sort(ends)
	gap, last := time.Duration(0), from
	for _, e := range ends {
		gap, last = max(gap, e-last), e
	}
	return max(gap, to-last)
}

// TestDrainHandsOffEveryLeadership drains the node that leads every range
// while clients read and write through the router: the node ends leading
// nothing, the clients' history checks out, and the longest stretch
// without a successful operation on a key is logged.
func TestDrainHandsOffEveryLeadership(t *testing.T) {
	ranges := crashRanges(false)
	for _, d := range ranges {
		d.LeaderNodeId = 1
	}
	cc := newCrashCluster(t, ranges, 0)
	for _, d := range ranges {
		if lead := cc.leaderFor(d.RangeId); lead != 1 {
			t.Fatalf("range %d led by node %d before the drain", d.RangeId, lead)
		}
	}
	w := cc.startLoad(1, 8)
	time.Sleep(200 * time.Millisecond)
	from := w.h.now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if left := cc.nodes[1].Drain(ctx); left != 0 {
		t.Fatalf("the drain left node 1 leading %d ranges", left)
	}
	took := w.h.now() - from
	time.Sleep(200 * time.Millisecond)
	to := w.h.now()
	for _, d := range ranges {
		if r := cc.nodes[1].replica(d.RangeId); r.leader.Load() == 1 {
			t.Errorf("node 1 leads range %d after draining", d.RangeId)
		}
	}
	gaps := make([]time.Duration, 0, len(ranges))
	for _, d := range ranges {
		var keys []string
		for _, k := range w.keys {
			if k >= string(d.StartKey) && (len(d.EndKey) == 0 || k < string(d.EndKey)) {
				keys = append(keys, k)
			}
		}
		gaps = append(gaps, w.h.longestGap(keys, from, to))
	}
	t.Logf("drain of %d leaderships took %v; longest stretch without a successful operation per range: %v",
		len(ranges), took.Round(time.Millisecond), gaps)
	cc.finish(w)
}
