package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// singleReplicaRange is one range over the whole key space, on node 1.
func singleReplicaRange() *kvpb.RangeDescriptor {
	return &kvpb.RangeDescriptor{RangeId: 1, Generation: 1, LeaderNodeId: 1,
		Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}}}
}

func startOn(t *testing.T, fs vfs.FS, knobs TestingKnobs) *Node {
	t.Helper()
	n, err := Start(Config{NodeID: 1, FS: fs, Dir: "data/node1", ListenAddr: "127.0.0.1:0",
		TickInterval: 10 * time.Millisecond, Logger: testLogger(), Knobs: knobs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// untilLeading runs op until it is not refused for want of a leader, or
// ctx ends.
func untilLeading[T any](ctx context.Context, n *Node, op func(done func(T, error))) (T, error) {
	for {
		v, err := await(ctx, n, op)
		if status.Code(err) != codes.FailedPrecondition || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCommandOfAnEarlierLifeAnswersNoCallerOfThisOne: a put is applied
// and acknowledged, but its apply is not synced when the node crashes, so
// the restarted node applies it again from its log. The new life's first
// write, a compare-and-swap from "zzz", is submitted just before that
// apply. The replayed put must not answer it: issue 9 saw such a CAS
// report a swap while the key still held "old", because command ids were
// (node, seq) with seq restarting at 1 in every process life.
func TestCommandOfAnEarlierLifeAnswersNoCallerOfThisOne(t *testing.T) {
	fs := vfs.NewCrashableMem()
	n := startOn(t, fs, TestingKnobs{})
	if err := n.CreateGroup(singleReplicaRange()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := &kvpb.RequestHeader{RangeId: 1}
	// The put is the first command of its life: it waits for the lease,
	// since a refused attempt would use up a sequence number.
	for r := n.replica(1); r.leader.Load() != 1; time.Sleep(time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("node 1 never led its range")
		}
	}
	if _, err := await(ctx, n, func(done func(*kvpb.PutResponse, error)) {
		n.doPut(&kvpb.PutRequest{Header: h, Key: []byte("a"), Value: []byte("old")}, done)
	}); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	n.Stop()

	type casResult struct {
		resp *kvpb.CompareAndSwapResponse
		err  error
	}
	cas := make(chan casResult, 1)
	var once sync.Once
	var restarted *Node
	ready := make(chan struct{})
	restarted = startOn(t, crashed, TestingKnobs{BeforeApply: func(_ uint64, entries []pb.Entry) {
		<-ready
		for _, e := range entries {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				once.Do(func() {
					restarted.doCAS(&kvpb.CompareAndSwapRequest{Header: h, Key: []byte("a"),
						ExpectedValue: []byte("zzz"), NewValue: []byte("hacked")},
						func(resp *kvpb.CompareAndSwapResponse, err error) { cas <- casResult{resp, err} })
				})
			}
		}
	}})
	close(ready)
	var res casResult
	select {
	case res = <-cas:
	case <-ctx.Done():
		t.Fatal("the restarted node never applied its log, or never answered the CAS")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	got, err := untilLeading(ctx, restarted, func(done func(*kvpb.GetResponse, error)) {
		restarted.doGet(&kvpb.GetRequest{Header: h, Key: []byte("a")}, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.resp.Succeeded || string(got.Value) != "old" {
		t.Fatalf("CAS a from %q reported swapped=%v, and a = %q: it got the earlier life's put's result", "zzz", res.resp.Succeeded, got.Value)
	}
}
