package service

import (
	"testing"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
)

// TestRecordingIgnoresStaleLeaderHints: a node's descriptor of a range
// keeps the leader hint the range was created with after that node left
// it, and the map's own hint may name the replica a move just removed.
// Recording a split or a replica change the nodes report must not fail on
// such a hint (the map refuses a leader that is not a voter): it failed
// for good, and the operation stayed under way for ever, refusing every
// other operation on the range. TestChaos found it: a split of a range
// whose first leader had been moved off it.
func TestRecordingIgnoresStaleLeaderHints(t *testing.T) {
	voters := func(ids ...uint64) []*kvpb.ReplicaDescriptor {
		var out []*kvpb.ReplicaDescriptor
		for _, id := range ids {
			out = append(out, &kvpb.ReplicaDescriptor{NodeId: id})
		}
		return out
	}
	// Range 1 was created on nodes 1-3 led by node 2; node 2's replica
	// moved to node 4. The map's hint is node 3, the actual leader.
	rm, err := placement.NewRangeMap([]*kvpb.RangeDescriptor{
		{RangeId: 1, EndKey: []byte("m"), Generation: 5, Replicas: voters(1, 3, 4), LeaderNodeId: 3},
		{RangeId: 2, StartKey: []byte("m"), Generation: 1, Replicas: voters(1, 2, 3), LeaderNodeId: 1},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The split as the leader reports it: the left half with the stale
	// hint its node stored.
	left := &kvpb.RangeDescriptor{RangeId: 1, EndKey: []byte("f"), Generation: 6, Replicas: voters(1, 3, 4), LeaderNodeId: 2}
	right := &kvpb.RangeDescriptor{RangeId: 3, StartKey: []byte("f"), EndKey: []byte("m"), Generation: 6, Replicas: voters(1, 3, 4), LeaderNodeId: 3}
	next, err := withSplit(rm, left, right)
	if err != nil {
		t.Fatalf("recording a split whose left half names a stale leader: %v", err)
	}
	if d, _ := next.Get(1); d.LeaderNodeId == 2 {
		t.Errorf("the map names node 2, which holds no replica, as range 1's leader: %v", d)
	}

	// A move off node 3, which the map's hint names: its descriptor once
	// the source is removed.
	moved := &kvpb.RangeDescriptor{RangeId: 1, EndKey: []byte("m"), Generation: 7, Replicas: voters(1, 4, 2), LeaderNodeId: 2}
	next, d, err := withDesc(rm, moved)
	if err != nil {
		t.Fatalf("recording a move off the node the map's hint names: %v", err)
	}
	if d.LeaderNodeId != 2 {
		t.Errorf("range 1's hint after the move: node %d, want the node's hint (node 2), a voter", d.LeaderNodeId)
	}
	if got, _ := next.Get(1); got.Generation != 7 {
		t.Errorf("range 1 after the move: %v", got)
	}
}
