package node

import (
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

// TestLateCreateGroupsInitializesEmptyReplicas creates a range's leader
// first: its prepares reach the other nodes before they create the range,
// so they host empty replicas for it. Their CreateGroups must turn those
// into the real replicas, so that the range runs on all three nodes.
func TestLateCreateGroupsInitializesEmptyReplicas(t *testing.T) {
	ranges := splitRanges(4, 3)
	for _, d := range ranges {
		d.LeaderNodeId = 1
	}
	c := newTestCluster(t, 3, nil, nil)
	if err := c.nodes[1].CreateGroups(ranges); err != nil {
		t.Fatal(err)
	}
	// Wait until the prepares created empty replicas on node 2.
	deadline := time.Now().Add(10 * time.Second)
	for c.nodes[2].replica(1) == nil {
		if time.Now().After(deadline) {
			t.Fatal("node 1's prepares never reached node 2")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := c.nodes[2].replica(1).desc.Load(); len(d.GetReplicas()) != 0 {
		t.Fatalf("node 2's replica of range 1 was not empty: %v", d)
	}
	for _, id := range []uint64{2, 3} {
		if err := c.nodes[id].CreateGroups(ranges); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range ranges {
		put(t, c, d.RangeId, string(d.StartKey)+"0", "v")
	}
	// Every node ends up with an initialized replica of every range that
	// applies the writes.
	for id, n := range c.nodes {
		for _, d := range ranges {
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := n.replica(d.RangeId)
				resp, err := c.clients[id].Get(ctx(t), &kvpb.GetRequest{Key: append(append([]byte(nil), d.StartKey...), '0'),
					Header: &kvpb.RequestHeader{RangeId: d.RangeId, Consistency: kvpb.ReadConsistency_STALE}})
				if r != nil && len(r.desc.Load().GetReplicas()) == 3 && err == nil && resp.Found {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d, range %d: not initialized or missing the write (%v)", id, d.RangeId, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}
