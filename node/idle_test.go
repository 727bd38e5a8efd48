package node

import (
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
)

// idleMessageRate starts three nodes hosting groups replicated on all
// three, waits until every group has quiesced, and returns the messages
// per second the nodes then send in total.
func idleMessageRate(t *testing.T, groups int) float64 {
	ranges := testutil.Ranges(groups, 3) // leaders spread
	c := newTestCluster(t, 3, nil, func(cfg *Config) { cfg.TickInterval = 50 * time.Millisecond })
	for _, n := range c.nodes {
		if err := n.CreateGroups(ranges); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// Generous: on a loaded 2-core machine (the CI runs packages in
	// parallel) 30,000 replicas electing at once take far longer than the
	// few seconds they take alone.
	deadline := start.Add(90 * time.Second)
	for {
		active := 0
		for _, n := range c.nodes {
			active += n.Stats().Active
		}
		if active == 0 {
			t.Logf("%d groups quiesced %v after they were created", groups, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			for _, n := range c.nodes {
				n.activeMu.Lock()
				for r := range n.active {
					t.Logf("node %d group %d: %+v", n.cfg.NodeID, r.id, r.rn.Status())
				}
				n.activeMu.Unlock()
			}
			t.Fatalf("%d groups: %d replicas still active after the deadline", groups, active)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sent := func() (total int64) {
		for _, n := range c.nodes {
			total += int64(n.Stats().Transport.MessagesSent)
		}
		return total
	}
	const window = 2 * time.Second
	before := sent()
	time.Sleep(window)
	rate := float64(sent()-before) / window.Seconds()
	leaders := 0
	for _, n := range c.nodes {
		n.mu.RLock()
		for _, r := range n.replicas {
			if r.leader.Load() == n.cfg.NodeID {
				leaders++
			}
		}
		n.mu.RUnlock()
	}
	if leaders != groups {
		t.Fatalf("%d groups but %d leaders after quiescing", groups, leaders)
	}
	c.stop()
	return rate
}

// TestIdleCostIndependentOfGroups checks that, once idle, three nodes
// exchange as many messages per second with 10,000 groups as with 100:
// idle groups cost nothing, and liveness is per node pair.
func TestIdleCostIndependentOfGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 30,000 replicas")
	}
	small := idleMessageRate(t, 100)
	large := idleMessageRate(t, 10_000)
	t.Logf("idle messages/s across 3 nodes: %.0f with 100 groups, %.0f with 10,000 groups", small, large)
	if large > 1.5*small+20 {
		t.Fatalf("idle traffic grows with the number of groups: %.0f/s for 10,000 vs %.0f/s for 100", large, small)
	}
}
