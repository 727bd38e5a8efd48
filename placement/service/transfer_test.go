package service

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTransferLeader moves a range's leader through the Placement API: the
// target leads when the call returns, and the map records it. Bad requests
// get a clear error and change nothing; so do a transfer while another
// operation is under way on the range and one to a node that is draining
// or not live.
func TestTransferLeader(t *testing.T) {
	const ranges = 4
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges = ranges
		c.HeartbeatTimeout = time.Second
		c.BalanceInterval = time.Hour // no balancer moving leaders behind the test's back
	})
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()

	leaderOf := func(rangeID uint64) uint64 {
		for id := range dc.nodes {
			resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
			if err != nil {
				continue
			}
			for _, d := range resp.Ranges {
				if d.RangeId == rangeID && d.LeaderNodeId == id {
					return id
				}
			}
		}
		return 0
	}
	var from uint64
	testutil.WaitFor(t, 10*time.Second, "range 1 to have a leader", func() bool { from = leaderOf(1); return from != 0 })

	for _, tc := range []struct {
		name        string
		rangeID, to uint64
		code        codes.Code
	}{
		{"no range", 0, 2, codes.InvalidArgument},
		{"no target", 1, 0, codes.InvalidArgument},
		{"unknown range", 99, 2, codes.NotFound},
		{"not a voter", 1, 9, codes.InvalidArgument},
	} {
		if _, err := c.TransferLeader(tctx(t), tc.rangeID, tc.to); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// An operation under way on the range (planted here) refuses it.
	s := pc.servers[pc.leader()]
	s.mu.Lock()
	s.term.ops[1] = &placementpb.RangeOperation{RangeId: 1,
		Op: &placementpb.RangeOperation_Split{Split: &placementpb.SplitOperation{Key: []byte("k0001"), NewRangeId: 9}}}
	s.mu.Unlock()
	_, err := c.TransferLeader(tctx(t), 1, from%3+1)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "busy with a split of range 1") {
		t.Errorf("transfer during a split: %v, want FailedPrecondition naming the split", err)
	}
	s.mu.Lock()
	delete(s.term.ops, 1)
	s.mu.Unlock()
	if l := leaderOf(1); l != from {
		t.Fatalf("refused requests moved range 1's leader from %d to %d", from, l)
	}

	// Back and forth: every voter leads once, the map's hint following.
	for i := range 3 {
		to := (from+uint64(i))%3 + 1
		resp, err := c.TransferLeader(tctx(t), 1, to)
		if err != nil {
			t.Fatalf("transfer range 1 to node %d: %v", to, err)
		}
		if l := resp.Descriptor_.GetLeaderNodeId(); l != to {
			t.Errorf("the map records node %d as range 1's leader, want %d", l, to)
		}
		// The nodes' reports of whom they lead lag a cycle behind.
		testutil.WaitFor(t, 2*time.Second, "the target to report it leads", func() bool { return leaderOf(1) == to })
		list, err := c.ListRanges(tctx(t), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if l := list.Ranges[0].GetLeaderNodeId(); l != to || list.Revision < resp.Revision {
			t.Errorf("listed range 1 with leader %d at revision %d, want %d at %d or later", l, list.Revision, to, resp.Revision)
		}
	}

	// A node that reports it is draining (planted, its heartbeats
	// stopped so that none undoes it) is refused; so is, once its
	// heartbeats are overdue, a node that stopped.
	lead := leaderOf(1)
	down := lead%3 + 1
	dc.beats[down]()
	s.mu.Lock()
	hb := s.heartbeats[down]
	hb.draining = true
	s.heartbeats[down] = hb
	s.mu.Unlock()
	if _, err := c.TransferLeader(tctx(t), 1, down); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "draining") {
		t.Errorf("transfer to a draining node: %v, want FailedPrecondition, draining", err)
	}
	dc.stop(down)
	testutil.WaitFor(t, 10*time.Second, "the stopped node to be seen down", func() bool {
		nodes, err := c.ListNodes(tctx(t))
		return err == nil && !slices.ContainsFunc(nodes.Nodes, func(n *placementpb.NodeInfo) bool { return n.NodeId == down && n.Live })
	})
	if _, err := c.TransferLeader(tctx(t), 1, down); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not live") {
		t.Errorf("transfer to a stopped node: %v, want FailedPrecondition, not live", err)
	}
	if l := leaderOf(1); l != lead {
		t.Errorf("node %d leads range 1 after a refused transfer, want %d", l, lead)
	}
}
