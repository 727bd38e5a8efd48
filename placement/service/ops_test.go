package service

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkTiled fails unless descs cover the key space in order, with no gap
// or overlap.
func checkTiled(t *testing.T, descs []*kvpb.RangeDescriptor) {
	t.Helper()
	if why := tilingFault(descs); why != "" {
		t.Fatal(why)
	}
}

// tilingFault says where descs leave a gap or overlap in the key space,
// or returns "" if they cover it in order.
func tilingFault(descs []*kvpb.RangeDescriptor) string {
	var end []byte
	for i, d := range descs {
		if !bytes.Equal(d.StartKey, end) || (len(d.EndKey) == 0) != (i == len(descs)-1) {
			return fmt.Sprintf("range %d [%q, %q) after %q: the map has a gap or an overlap: %v", d.RangeId, d.StartKey, d.EndKey, end, descs)
		}
		end = d.EndKey
	}
	return ""
}

// TestSplitThroughPlacement splits a range through the service: the nodes
// cut it, the map records both halves at the nodes' generation, routers
// following the watch learn them, and bad requests change nothing.
func TestSplitThroughPlacement(t *testing.T) {
	const ranges = 4
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	before, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	target := before[1]
	key := append(bytes.Clone(target.StartKey), 'm')
	for _, k := range []string{string(target.StartKey) + "a", string(key), string(key) + "z"} {
		if err := rc.Put(tctx(t), []byte(k), []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}

	resp, err := c.SplitRange(tctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Left.RangeId != target.RangeId || !bytes.Equal(resp.Left.EndKey, key) || !bytes.Equal(resp.Right.StartKey, key) ||
		!bytes.Equal(resp.Right.EndKey, target.EndKey) || resp.Left.Generation <= target.Generation {
		t.Fatalf("split of %v at %q: %v | %v", target, key, resp.Left, resp.Right)
	}
	after, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != ranges+1 {
		t.Fatalf("%d ranges after one split of %d", len(after), ranges)
	}
	checkTiled(t, after)
	testutil.WaitFor(t, 5*time.Second, "the router to learn both halves", func() bool { return len(rc.Ranges()) == ranges+1 })
	for _, k := range []string{string(target.StartKey) + "a", string(key), string(key) + "z"} {
		if v, found, err := rc.Get(tctx(t), []byte(k)); err != nil || !found || string(v) != "v-"+k {
			t.Fatalf("get %q after the split: %q %v %v", k, v, found, err)
		}
	}

	// Bad requests: refused, and the map stays as it is.
	if _, err := c.SplitRange(tctx(t), nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("split at the empty key: %v, want InvalidArgument", err)
	}
	if _, err := c.SplitRange(tctx(t), key); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("split at a range boundary: %v, want FailedPrecondition", err)
	}
	again, err := c.AllRanges(tctx(t), 0)
	if err != nil || len(again) != len(after) {
		t.Fatalf("the map changed after refused splits: %v, %v", again, err)
	}
}

// TestPlacementFinishesASplitItsPredecessorStarted: a leader records a
// split and stops before any node hears of it; the next leader finds the
// record and carries the split out.
func TestPlacementFinishesASplitItsPredecessorStarted(t *testing.T) {
	const ranges = 4
	pc := startPlacement(t, 3, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()
	before, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	target := before[2]
	key := append(bytes.Clone(target.StartKey), 'q')

	old := pc.leader()
	s := pc.servers[old]
	// What split records before its first step, without the step.
	err = s.mutate(tctx(t), func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		op := &placementpb.RangeOperation{RangeId: target.RangeId,
			Op: &placementpb.RangeOperation_Split{Split: &placementpb.SplitOperation{Key: key, NewRangeId: tm.nextRangeID}}}
		m := &mutation{}
		m.putOp(op)
		m.put(keyNextID, encUint(tm.nextRangeID+1))
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.ops[op.RangeId], tm.driving[op.RangeId] = op, true // as if being driven: this leader must not
			tm.nextRangeID++
			return nil
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The operation is listed while it is under way.
	if ops, err := c.ListOperations(tctx(t)); err != nil || len(ops.Operations) != 1 ||
		ops.Operations[0].RangeId != target.RangeId || !strings.Contains(ops.Descriptions[0], "a split of range") {
		t.Fatalf("operations under way: %v, %v", ops, err)
	}
	s.Stop()
	delete(pc.servers, old)
	t.Logf("stopped placement leader %d with a split recorded", old)
	pc.leader()
	testutil.WaitFor(t, 15*time.Second, "the next leader to finish the split", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		return err == nil && len(all) == ranges+1
	})
	all, _ := c.AllRanges(tctx(t), 0)
	checkTiled(t, all)
	if ops, err := c.ListOperations(tctx(t)); err != nil || len(ops.Operations) != 0 {
		t.Fatalf("operations under way after the split: %v, %v", ops, err)
	}
	// A split of the same range now starts at once: the record is gone.
	if _, err := c.SplitRange(tctx(t), append(bytes.Clone(key), 'x')); err != nil {
		t.Fatalf("a second split of the range: %v", err)
	}
}

// TestBalancerSparesADrainingNode: once a node drains, the balancer, which
// would otherwise spread leaders back onto it, leaves it leading nothing;
// ListNodes says it is draining.
func TestBalancerSparesADrainingNode(t *testing.T) {
	const ranges = 12
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	testutil.WaitFor(t, 15*time.Second, "node 3 to lead some ranges", func() bool { return dc.leaderCounts(t)[3] > 0 })
	ctx, cancel := context.WithTimeout(tctx(t), 10*time.Second)
	defer cancel()
	if left := dc.nodes[3].Drain(ctx); left != 0 {
		t.Fatalf("node 3 still leads %d ranges after draining", left)
	}
	c := pc.client()
	waitNode(t, c, 3, 5*time.Second, "draining", func(n *placementpb.NodeInfo) bool { return n.Draining && n.Live })
	// Several balancing rounds (200 ms each) later, still nothing.
	for range 10 {
		time.Sleep(150 * time.Millisecond)
		if n := dc.leaderCounts(t)[3]; n > 0 {
			t.Fatalf("the balancer moved %d leaderships onto the draining node 3", n)
		}
	}
}

// TestStoppedNodeIsSeenDownQuickly: a node that stops (a kill -9 closes
// its connections as well) is shown down once its peers report they lost
// it, well before the heartbeat timeout (10 s here).
func TestStoppedNodeIsSeenDownQuickly(t *testing.T) {
	const ranges = 3
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges, c.HeartbeatTimeout = ranges, 10*time.Second })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()
	stopped := time.Now()
	dc.stop(3)
	waitNode(t, c, 3, 6*time.Second, "shown down", func(n *placementpb.NodeInfo) bool { return !n.Live })
	t.Logf("node 3 shown down %v after it stopped", time.Since(stopped).Round(time.Millisecond))
}

// waitNode waits (bounded) until ListNodes shows node id as ok says.
func waitNode(t *testing.T, c *Client, id uint64, within time.Duration, what string, ok func(*placementpb.NodeInfo) bool) {
	t.Helper()
	testutil.WaitFor(t, within, fmt.Sprintf("node %d to be %s", id, what), func() bool {
		nodes, err := c.ListNodes(tctx(t))
		if err != nil {
			return false
		}
		for _, n := range nodes.Nodes {
			if n.NodeId == id {
				return ok(n)
			}
		}
		return false
	})
}

// TestPlacementLearnsAMissedSplit: a range split through its leader's own
// Admin API, which placement never heard of, is recorded from the nodes'
// reports; the map does not go back, and the next range id placement
// allocates is past the one the nodes used.
func TestPlacementLearnsAMissedSplit(t *testing.T) {
	const ranges = 4
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()
	all, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	target := all[1]
	key := append(bytes.Clone(target.StartKey), 'm')
	var split *kvpb.SplitRangeResponse
	testutil.WaitFor(t, 10*time.Second, "a node to split the range", func() bool {
		for id := range dc.nodes {
			resp, err := dc.admin(id).SplitRange(tctx(t), &kvpb.SplitRangeRequest{RangeId: target.RangeId, SplitKey: key, NewRangeId: 100})
			if err == nil {
				split = resp
				return true
			}
		}
		return false
	})
	testutil.WaitFor(t, 15*time.Second, "placement to record the split", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		return err == nil && len(all) == ranges+1
	})
	all, _ = c.AllRanges(tctx(t), 0)
	checkTiled(t, all)
	if all[1].Generation != split.Left.Generation || all[2].RangeId != 100 {
		t.Fatalf("the map after the missed split: %v", all)
	}
	resp, err := c.SplitRange(tctx(t), append(bytes.Clone(key), 'x'))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Right.RangeId <= 100 {
		t.Fatalf("placement allocated range id %d after the nodes used 100", resp.Right.RangeId)
	}
}
