package node

import (
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLateReplicaCatchesUpAndLeads: a replica created after its group has
// chosen values (its node was down when the range was created; the
// placement service creates it when the node is back) catches up and can
// take the leadership over.
func TestLateReplicaCatchesUpAndLeads(t *testing.T) {
	ranges := splitRanges(1, 3)
	ranges[0].LeaderNodeId = 1
	c := newTestCluster(t, 3, nil, nil)
	for id := uint64(1); id <= 2; id++ {
		if err := c.nodes[id].CreateGroups(ranges); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		put(t, c, 1, string(rune('a'+i)), "v")
	}
	if err := c.nodes[3].CreateGroups(ranges); err != nil {
		t.Fatal(err)
	}
	r3, lead := c.nodes[3].replica(1), c.nodes[1].replica(1)
	deadline := time.Now().Add(10 * time.Second)
	for r3.applied.Load() < lead.applied.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("node 3 applied %d, the leader %d", r3.applied.Load(), lead.applied.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		_, err := c.admin(1).TransferLeader(ctx(t), &kvpb.TransferLeaderRequest{RangeId: 1, TargetNodeId: 3})
		if err == nil {
			break
		}
		// FailedPrecondition: node 3's support for node 1 is not
		// established yet (the node says so); Aborted: node 3 did not
		// catch up in time. Both pass.
		if c := status.Code(err); (c != codes.FailedPrecondition && c != codes.Aborted) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for r3.leader.Load() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("node 3 did not take over; leader %d", r3.leader.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	put(t, c, 1, "after", "v")
}
