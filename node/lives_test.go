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

func startNode1(t *testing.T, fs vfs.FS, knobs TestingKnobs) *Node {
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
	n := startNode1(t, fs, TestingKnobs{})
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
	restarted = startNode1(t, crashed, TestingKnobs{BeforeApply: func(_ uint64, entries []pb.Entry) {
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

// TestFollowerAnswersNoCallerWithAnEarlierLifesResult is the three-node
// form of the same bug: node 1 leads and is applying a put when it
// crashes (the entry is durable, the apply is not); node 2 takes over;
// node 1 restarts as a follower and, as it applies that put again, holds a
// client's put of its new life, which it must refuse (it does not lead). Issue 9 saw such a put acknowledged
// though never proposed, and the next cycle call the deleted callback:
// the node died of a nil function call.
func TestFollowerAnswersNoCallerWithAnEarlierLifesResult(t *testing.T) {
	fss := map[uint64]*vfs.MemFS{1: vfs.NewCrashableMem(), 2: vfs.NewCrashableMem(), 3: vfs.NewCrashableMem()}
	// Node 1 crashes as it applies the put: the clone is taken then.
	crashed := make(chan *vfs.MemFS, 1)
	var cloneOnce sync.Once
	knobs1 := TestingKnobs{BeforeApply: func(_ uint64, entries []pb.Entry) {
		for _, e := range entries {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				cloneOnce.Do(func() { crashed <- fss[1].CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}) })
			}
		}
	}}
	ranges := splitRanges(1, 3)
	ranges[0].LeaderNodeId = 1
	var mu sync.Mutex // guards fss and knobs1 against the cluster's starts
	c := newTestCluster(t, 3, ranges, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		cfg.FS, cfg.Dir = fss[cfg.NodeID], "data"
		if cfg.NodeID == 1 {
			cfg.Knobs = knobs1
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.leaderFor(1, 1)
	h := &kvpb.RequestHeader{RangeId: 1}
	n1 := c.nodes[1]
	if _, err := await(ctx, n1, func(done func(*kvpb.PutResponse, error)) {
		n1.doPut(&kvpb.PutRequest{Header: h, Key: []byte("a"), Value: []byte("old")}, done)
	}); err != nil {
		t.Fatal(err)
	}
	addr := n1.Addr()
	mu.Lock()
	fss[1] = <-crashed
	mu.Unlock()
	n1.Stop()
	c.leaderFor(1, 2, 3)

	type putResult struct {
		resp *kvpb.PutResponse
		err  error
	}
	put := make(chan putResult, 1)
	ready := make(chan struct{})
	var once sync.Once
	mu.Lock()
	knobs1 = TestingKnobs{BeforeApply: func(_ uint64, entries []pb.Entry) {
		<-ready
		for _, e := range entries {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				once.Do(func() {
					n := c.nodes[1]
					n.doPut(&kvpb.PutRequest{Header: h, Key: []byte("b"), Value: []byte("new")},
						func(resp *kvpb.PutResponse, err error) { put <- putResult{resp, err} })
				})
			}
		}
	}}
	mu.Unlock()
	c.start(1, addr)
	restarted := c.nodes[1]
	close(ready)
	var res putResult
	select {
	case res = <-put:
	case <-ctx.Done():
		t.Fatal("node 1 never applied its earlier life's put again")
	}
	if status.Code(res.err) != codes.FailedPrecondition {
		t.Fatalf("a put to a follower: %v; want FailedPrecondition (not the leader): it got the earlier life's result", res.err)
	}
	// Node 1 keeps running its cycles (no nil callback): it applies a
	// later write.
	lead := c.nodes[c.leaderFor(1, 2, 3)]
	if _, err := await(ctx, lead, func(done func(*kvpb.PutResponse, error)) {
		lead.doPut(&kvpb.PutRequest{Header: h, Key: []byte("c"), Value: []byte("later")}, done)
	}); err != nil {
		t.Fatal(err)
	}
	for restarted.replica(1).applied.Load() < lead.replica(1).applied.Load() {
		if ctx.Err() != nil {
			t.Fatalf("node 1 stopped applying at %d", restarted.replica(1).applied.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if err := restarted.Err(); err != nil {
		t.Fatalf("node 1 stopped: %v", err)
	}
	select {
	case <-restarted.Done():
		t.Fatal("node 1 stopped")
	default:
	}
}
