package service

import (
	"bytes"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/protobuf/proto"
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
	next, halves, err := withSplit(rm, left, right)
	if err != nil {
		t.Fatalf("recording a split whose left half names a stale leader: %v", err)
	}
	if d, _ := next.Get(1); d.LeaderNodeId == 2 || halves[0].LeaderNodeId == 2 {
		t.Errorf("the map names node 2, which holds no replica, as range 1's leader: %v, to store: %v", d, halves[0])
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

// TestStoredSplitKeepsTheStateLoadable records a split whose left half, as
// its node reports it, names a stale leader, and restarts the placement
// process: it must load its state and lead again. The halves the map
// holds dropped the stale hint, but the reported ones were stored, and
// every later leader refused the stored state as corrupt: the placement
// service was down for good. TestKillAtEachStep found it
// (split/chosen/placement, once the first fix let such splits through).
func TestStoredSplitKeepsTheStateLoadable(t *testing.T) {
	const ranges = 2
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	id := pc.leader()
	s := pc.servers[id]
	all, err := pc.client().AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := all[0]
	key := []byte("k1000")
	left := proto.Clone(d).(*kvpb.RangeDescriptor)
	left.EndKey, left.Generation, left.LeaderNodeId = key, d.Generation+1, 9 // node 9 holds no replica
	right := proto.Clone(left).(*kvpb.RangeDescriptor)
	right.RangeId, right.StartKey, right.EndKey, right.LeaderNodeId = 100, key, d.EndKey, d.Replicas[0].NodeId
	op := &placementpb.RangeOperation{RangeId: d.RangeId, Op: &placementpb.RangeOperation_Split{Split: &placementpb.SplitOperation{Key: key, NewRangeId: 100}}}
	resp, err := s.recordSplit(tctx(t), op, left, right)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Left.LeaderNodeId == 9 {
		t.Errorf("the answer names node 9, which holds no replica, as the left half's leader: %v", resp.Left)
	}
	pc.stop(id)
	pc.restart(id)
	pc.leader()
	testutil.WaitFor(t, 10*time.Second, "the restarted process to serve the map with the split", func() bool {
		all, err := pc.client().AllRanges(tctx(t), 0)
		return err == nil && len(all) == ranges+1 && bytes.Equal(all[1].StartKey, key)
	})
}
