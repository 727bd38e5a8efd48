package service

import (
	"bytes"
	"flag"
	"math"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keyOf returns a key inside d.
func keyOf(d *kvpb.RangeDescriptor) []byte {
	if len(d.StartKey) == 0 {
		return []byte("a")
	}
	return append(bytes.Clone(d.StartKey), 'x')
}

// TestMoveReplica moves a replica of a range to a fourth node through the
// service: the range keeps its data and serves throughout, the map records
// the new replicas, the source node drops the range, and bad moves are
// refused without changing anything.
func TestMoveReplica(t *testing.T) {
	const ranges = 4
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges, c.ExpectedNodes = ranges, 3
		// No balancer: it would move replicas onto the empty node 4 too,
		// and the test's moves would be refused as busy with its own.
		c.BalanceInterval = time.Hour
	})
	dc := newDataCluster(t, 4, pc)
	for id := uint64(1); id <= 3; id++ {
		dc.start(id)
	}
	waitCreated(t, pc, dc, ranges)
	dc.start(4)
	c := pc.client()
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	all, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := all[1]
	if err := rc.Put(tctx(t), keyOf(d), []byte("before")); err != nil {
		t.Fatal(err)
	}
	from := d.LeaderNodeId // the hardest case: the leader's replica moves
	if from == 0 {
		from = placement.VoterNodes(d)[0]
	}
	waitNode(t, c, 4, 10*time.Second, "live and settled", func(n *placementpb.NodeInfo) bool { return n.Live && !n.Settling })

	// Refused: a move onto a node that holds a replica, from one that
	// holds none, of an unknown range.
	other := placement.VoterNodes(d)[0]
	if other == from {
		other = placement.VoterNodes(d)[1]
	}
	for _, bad := range []struct {
		id, from, to uint64
		code         codes.Code
	}{
		{d.RangeId, from, other, codes.InvalidArgument},
		{d.RangeId, 4, from, codes.InvalidArgument},
		{999, from, 4, codes.NotFound},
	} {
		if _, err := c.MoveReplica(tctx(t), bad.id, bad.from, bad.to); status.Code(err) != bad.code {
			t.Errorf("move of range %d from %d to %d: %v, want %v", bad.id, bad.from, bad.to, err, bad.code)
		}
	}

	start := time.Now()
	resp, err := c.MoveReplica(tctx(t), d.RangeId, from, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved range %d's replica from node %d to node 4 in %v: %v", d.RangeId, from, time.Since(start).Round(time.Millisecond), resp.Descriptor_)
	voters := placement.VoterNodes(resp.Descriptor_)
	if len(voters) != 3 || !placement.Holds(resp.Descriptor_, 4) || placement.Holds(resp.Descriptor_, from) {
		t.Fatalf("after the move: %v", resp.Descriptor_)
	}
	if v, _, err := rc.Get(tctx(t), keyOf(d)); err != nil || string(v) != "before" {
		t.Fatalf("get after the move: %q, %v", v, err)
	}
	if err := rc.Put(tctx(t), keyOf(d), []byte("after")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the source node to drop the range", func() bool {
		resp, err := dc.admin(from).Ranges(tctx(t), &kvpb.RangesRequest{})
		if err != nil {
			return false
		}
		for _, rd := range resp.Ranges {
			if rd.RangeId == d.RangeId {
				return false
			}
		}
		return true
	})
	// The same move again is refused: the source holds no replica now.
	if _, err := c.MoveReplica(tctx(t), d.RangeId, from, 4); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("the same move again: %v, want InvalidArgument", err)
	}
	after, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkTiled(t, after)
}

// TestDeadNodeRepair: four nodes, every range on three of them; one dies,
// and once it has been silent for DeadAfter each of its ranges gets a new
// replica on a live node, until every range has three live voters again.
func TestDeadNodeRepair(t *testing.T) {
	const ranges = 8
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges, c.ExpectedNodes, c.DeadAfter, c.MaxConcurrentMoves = ranges, 4, time.Second, 4
	})
	dc := startNodes(t, 4, pc)
	c := pc.client()
	testutil.WaitFor(t, 15*time.Second, "the ranges to be created", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		return err == nil && len(all) == ranges
	})
	time.Sleep(time.Second) // let the creation settle
	dc.stop(2)
	start := time.Now()
	testutil.WaitFor(t, 60*time.Second, "every range to have three voters on live nodes", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		if err != nil {
			return false
		}
		for _, d := range all {
			v := placement.VoterNodes(d)
			if len(v) != 3 || placement.Holds(d, 2) {
				return false
			}
		}
		return true
	})
	t.Logf("every range has three live voters %v after node 2 stopped", time.Since(start).Round(time.Millisecond))
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	all, _ := c.AllRanges(tctx(t), 0)
	for _, d := range all {
		if err := rc.Put(tctx(t), keyOf(d), []byte("v")); err != nil {
			t.Fatalf("put in range %d after the repair: %v", d.RangeId, err)
		}
	}
}

var (
	joinRanges = flag.Int("join.ranges", 8, "TestNewNodeReceivesReplicas: the ranges of the first three nodes")
	joinMoves  = flag.Int("join.moves", 4, "TestNewNodeReceivesReplicas: MaxConcurrentMoves")
)

// TestNewNodeReceivesReplicas: a fourth node joins three that hold every
// replica; the balancer moves replicas to it (after it settles) until
// every node holds within 10% of the mean. The time it takes is logged;
// with more ranges:
//
//	go test ./placement/service -run TestNewNodeReceivesReplicas -join.ranges=1000 -join.moves=8 -v
func TestNewNodeReceivesReplicas(t *testing.T) {
	ranges := *joinRanges
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges, c.ExpectedNodes, c.SettleTime, c.MaxConcurrentMoves = ranges, 3, 500*time.Millisecond, *joinMoves
	})
	dc := newDataCluster(t, 4, pc)
	for id := uint64(1); id <= 3; id++ {
		dc.start(id)
	}
	waitCreated(t, pc, dc, ranges)
	start := time.Now()
	dc.start(4)
	c := pc.client()
	var counts map[uint64]int
	testutil.WaitFor(t, time.Duration(60+ranges/5)*time.Second, "replicas spread over four nodes", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		if err != nil {
			return false
		}
		counts = map[uint64]int{}
		for _, d := range all {
			for _, r := range d.Replicas {
				counts[r.NodeId]++
			}
		}
		// Within 10% of the mean (3 replicas per range over 4 nodes),
		// or of its rounding when counts are small.
		mean := float64(3*ranges) / 4
		for id := uint64(1); id <= 4; id++ {
			if c := float64(counts[id]); c < min(math.Ceil(0.9*mean), math.Floor(mean)) || c > max(math.Floor(1.1*mean), math.Ceil(mean)) {
				return false
			}
		}
		return true
	})
	t.Logf("replicas per node %v, %v after node 4 joined", counts, time.Since(start).Round(time.Millisecond))
}
