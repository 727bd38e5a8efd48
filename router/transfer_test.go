package router

import (
	"context"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// TestFollowsLeaderAfterTransfer: once a range's leadership moves, the
// next write reaches the new leader through the former leader's NotLeader
// hint: one redirect, no lookup at the Source and no backoff (the Client
// backs off for an hour, so any backoff fails the write by its deadline).
func TestFollowsLeaderAfterTransfer(t *testing.T) {
	c := newCluster(t, 3, splitRanges(1, 3, 1))
	from := c.leaderOf(1)
	cl := c.client(Config{InitialBackoff: time.Hour, MaxBackoff: time.Hour})
	if err := cl.Put(testCtx(t), key(1, ""), []byte("before")); err != nil {
		t.Fatal(err)
	}
	if got := cl.Ranges()[0].LeaderNodeId; got != from {
		t.Fatalf("cached leader %d, want %d", got, from)
	}
	before := cl.Stats()

	to := from%3 + 1
	cc, err := grpc.NewClient(c.nodes[from].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// The target's node may not look live to the leader's yet, just after
	// the start: FailedPrecondition, retried.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := kvpb.NewAdminClient(cc).TransferLeader(testCtx(t), &kvpb.TransferLeaderRequest{RangeId: 1, TargetNodeId: to})
		if err == nil {
			break
		}
		if codeOf(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if l := c.leaderOf(1); l != to {
		t.Fatalf("node %d leads, want %d", l, to)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Put(ctx, key(1, ""), []byte("after")); err != nil {
		t.Fatalf("put after the transfer: %v", err)
	}
	after := cl.Stats()
	if got := cl.Ranges()[0].LeaderNodeId; got != to {
		t.Errorf("cached leader %d after the transfer, want %d", got, to)
	}
	if after.Lookups != before.Lookups || after.Redirects != before.Redirects+1 {
		t.Errorf("lookups %d -> %d, redirects %d -> %d; want no lookup and one redirect",
			before.Lookups, after.Lookups, before.Redirects, after.Redirects)
	}
}
