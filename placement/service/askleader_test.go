package service

import (
	"testing"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/protobuf/proto"
)

// TestAskLeaderPassesOverNodesWithoutTheRange: a node that answers that
// it holds no replica of the range (a voter that has not applied the
// split that made it yet, or a stale hint) is not its leader; askLeader
// asks the next node. It used to take that answer for the leader's, so a
// move whose first node to ask lacked the range was refused at once,
// again and again: TestChaos found a balancer's move of a range just
// split off stuck that way for good.
func TestAskLeaderPassesOverNodesWithoutTheRange(t *testing.T) {
	const ranges = 2
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges, c.ExpectedNodes = ranges, 3 })
	dc := newDataCluster(t, 4, pc)
	for id := uint64(1); id <= 3; id++ {
		dc.start(id)
	}
	waitCreated(t, pc, dc, ranges)
	dc.start(4) // holds no replica
	s := pc.servers[pc.leader()]
	all, err := pc.client().AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := proto.Clone(all[0]).(*kvpb.RangeDescriptor)
	leader := dc.leaders(t)[d.RangeId]
	d.LeaderNodeId = 4
	addrs := map[uint64]string{}
	for id := uint64(1); id <= 4; id++ {
		addrs[id] = dc.peers[id]
	}
	// A transfer to the leader itself: the leader answers at once, and
	// nothing changes.
	if err := s.transferLeader(tctx(t), d, leader, addrs); err != nil {
		t.Fatalf("asking range %d's leader through a hint that names node 4, which holds no replica: %v", d.RangeId, err)
	}
}
