package node

import (
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func (c *testCluster) admin(id uint64) kvpb.AdminClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.nodes[id].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns = append(c.conns, conn)
	return kvpb.NewAdminClient(conn)
}

// TestConditionalBatch checks the fencing compare of a batch: with a
// stale expected value, or a key expected absent that exists, the batch
// fails with FailedPrecondition and writes none of its ops; with holding
// conditions it applies.
func TestConditionalBatch(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	batch := func(conds []*kvpb.BatchCondition, k, v string) error {
		return c.do(1, func(kv kvpb.KVClient) error {
			_, err := kv.Batch(ctx(t), &kvpb.BatchRequest{Conditions: conds, Ops: []*kvpb.BatchOp{
				{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)}}},
				{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("rev"), Value: []byte(v)}}},
			}})
			if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), "condition") {
				return &conditionError{err}
			}
			return err
		})
	}
	get := func(k string) (string, bool) {
		var resp *kvpb.GetResponse
		if err := c.do(1, func(kv kvpb.KVClient) (err error) {
			resp, err = kv.Get(ctx(t), &kvpb.GetRequest{Key: []byte(k)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return string(resp.Value), resp.Found
	}
	if err := batch([]*kvpb.BatchCondition{{Key: []byte("rev"), ExpectAbsent: true}}, "a", "1"); err != nil {
		t.Fatalf("first batch, rev absent: %v", err)
	}
	// Stale: rev is 1 now.
	err := batch([]*kvpb.BatchCondition{{Key: []byte("rev"), ExpectAbsent: true}}, "b", "2")
	if _, ok := err.(*conditionError); !ok {
		t.Fatalf("batch expecting absent rev: %v, want a failed condition", err)
	}
	err = batch([]*kvpb.BatchCondition{{Key: []byte("a"), ExpectedValue: []byte("1")}, {Key: []byte("rev"), ExpectedValue: []byte("0")}}, "b", "2")
	if _, ok := err.(*conditionError); !ok || !strings.Contains(err.Error(), "condition 1 failed") {
		t.Fatalf("batch with a stale rev: %v, want condition 1 to fail", err)
	}
	if _, found := get("b"); found {
		t.Fatal("a failed conditional batch wrote its ops")
	}
	if v, _ := get("rev"); v != "1" {
		t.Fatalf("rev is %q after failed batches, want 1", v)
	}
	if err := batch([]*kvpb.BatchCondition{{Key: []byte("rev"), ExpectedValue: []byte("1")}}, "b", "2"); err != nil {
		t.Fatalf("batch with the current rev: %v", err)
	}
	if v, _ := get("b"); v != "2" {
		t.Fatalf("b is %q, want 2", v)
	}
}

type conditionError struct{ error }

// TestCreateRangesAndTransferLeader creates ranges through the Admin RPC
// (twice: it is idempotent), then moves a range's leadership with
// TransferLeader and checks the refusals: a non-leader answers
// FailedPrecondition with a NotLeader hint, bad input is InvalidArgument.
func TestCreateRangesAndTransferLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil, nil)
	ranges := splitRanges(4, 3)
	for _, d := range ranges {
		d.LeaderNodeId = 1
	}
	for range 2 {
		for id := uint64(1); id <= 3; id++ {
			if _, err := c.admin(id).CreateRanges(ctx(t), &kvpb.CreateRangesRequest{Ranges: ranges}); err != nil {
				t.Fatalf("CreateRanges on node %d: %v", id, err)
			}
		}
	}
	for _, d := range ranges {
		put(t, c, d.RangeId, string(d.StartKey)+"0", "v")
	}
	bad := []*kvpb.RangeDescriptor{{RangeId: 9, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 2}}}}
	if _, err := c.admin(1).CreateRanges(ctx(t), &kvpb.CreateRangesRequest{Ranges: bad}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateRanges of a range not on the node: %v, want InvalidArgument", err)
	}
	if c.nodes[1].replica(9) != nil {
		t.Fatal("a refused CreateRanges created a replica")
	}

	lead := c.leaderFor(1)
	target := lead%3 + 1
	other := target%3 + 1
	// The hint is what the other node knows: wait until it has heard.
	for deadline := time.Now().Add(10 * time.Second); c.nodes[other].replica(1).leader.Load() != lead; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node %d never heard of leader %d", other, lead)
		}
	}
	_, err := c.admin(other).TransferLeader(ctx(t), &kvpb.TransferLeaderRequest{RangeId: 1, TargetNodeId: target})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || len(st.Details()) == 0 {
		t.Fatalf("TransferLeader on non-leader node %d: %v, want FailedPrecondition with a hint", other, err)
	}
	if nl, ok := st.Details()[0].(*kvpb.NotLeader); !ok || nl.LeaderNodeId != lead {
		t.Fatalf("hint %v, want leader %d", st.Details(), lead)
	}
	if _, err := c.admin(lead).TransferLeader(ctx(t), &kvpb.TransferLeaderRequest{RangeId: 1, TargetNodeId: 7}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("TransferLeader to a non-voter: %v, want InvalidArgument", err)
	}
	if _, err := c.admin(lead).TransferLeader(ctx(t), &kvpb.TransferLeaderRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty TransferLeader: %v, want InvalidArgument", err)
	}
	// Until the target's node supports the leader's (node liveness, just
	// after start), the transfer is refused as FailedPrecondition, with no
	// leader hint: this node leads.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.admin(lead).TransferLeader(ctx(t), &kvpb.TransferLeaderRequest{RangeId: 1, TargetNodeId: target})
		if err == nil {
			break
		}
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || len(st.Details()) > 0 || time.Now().After(deadline) {
			t.Fatalf("TransferLeader from %d to %d: %v", lead, target, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		if l, _ := c.nodes[target].RangeLeader(1); l == target {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("range 1 did not move from node %d to node %d", lead, target)
		}
		time.Sleep(5 * time.Millisecond)
	}
	put(t, c, 1, "after-transfer", "v")
}
