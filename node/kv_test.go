package node

import (
	"bytes"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func put(t *testing.T, c *testCluster, rangeID uint64, k, v string) {
	t.Helper()
	err := c.do(rangeID, func(kv kvpb.KVClient) error {
		_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)})
		return err
	})
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

func get(t *testing.T, c *testCluster, rangeID uint64, k string) (string, bool) {
	t.Helper()
	var resp *kvpb.GetResponse
	err := c.do(rangeID, func(kv kvpb.KVClient) (err error) {
		resp, err = kv.Get(ctx(t), &kvpb.GetRequest{Key: []byte(k)})
		return err
	})
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return string(resp.Value), resp.Found
}

// rangeOf returns the range of splitRanges(n, _) holding key k.
func rangeOf(ranges []*kvpb.RangeDescriptor, k string) uint64 {
	for _, d := range ranges {
		if contains(d, []byte(k)) {
			return d.RangeId
		}
	}
	return 0
}

func TestKVOperations(t *testing.T) {
	ranges := splitRanges(4, 3)
	c := newTestCluster(t, 3, ranges, nil)

	// Put and get in every range.
	keys := []string{"a", "k1000", "k2600", "k5000", "k7777", "k9999", "z"}
	for _, k := range keys {
		put(t, c, rangeOf(ranges, k), k, "v-"+k)
	}
	for _, k := range keys {
		if v, ok := get(t, c, rangeOf(ranges, k), k); !ok || v != "v-"+k {
			t.Fatalf("get %s = %q, %v", k, v, ok)
		}
	}
	if _, ok := get(t, c, 1, "absent"); ok {
		t.Fatal("found a key never written")
	}

	t.Run("scan stops at the range end with a resume key", func(t *testing.T) {
		for i := range 30 {
			put(t, c, 1, fmt.Sprintf("k%04d", 2490+i), "s")
		}
		var resp *kvpb.ScanResponse
		err := c.do(1, func(kv kvpb.KVClient) (err error) {
			resp, err = kv.Scan(ctx(t), &kvpb.ScanRequest{StartKey: []byte("k2490"), EndKey: []byte("k2600"), Limit: 100})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 10 || string(resp.Kvs[0].Key) != "k2490" || string(resp.ResumeKey) != "k2500" {
			t.Fatalf("scan of range 1's tail: %d kvs, resume %q", len(resp.Kvs), resp.ResumeKey)
		}
		// And at the limit, inside a range.
		err = c.do(2, func(kv kvpb.KVClient) (err error) {
			resp, err = kv.Scan(ctx(t), &kvpb.ScanRequest{StartKey: []byte("k2500"), EndKey: []byte("k2600"), Limit: 5})
			return err
		})
		if err != nil || len(resp.Kvs) != 5 || string(resp.ResumeKey) != "k2505" {
			t.Fatalf("scan with limit: %v kvs=%d resume=%q", err, len(resp.Kvs), resp.ResumeKey)
		}
	})

	t.Run("compare and swap", func(t *testing.T) {
		cas := func(req *kvpb.CompareAndSwapRequest) *kvpb.CompareAndSwapResponse {
			var resp *kvpb.CompareAndSwapResponse
			err := c.do(1, func(kv kvpb.KVClient) (err error) {
				resp, err = kv.CompareAndSwap(ctx(t), req)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		if r := cas(&kvpb.CompareAndSwapRequest{Key: []byte("c"), ExpectAbsent: true, NewValue: []byte("1")}); !r.Succeeded {
			t.Fatalf("create if absent: %+v", r)
		}
		if r := cas(&kvpb.CompareAndSwapRequest{Key: []byte("c"), ExpectAbsent: true, NewValue: []byte("2")}); r.Succeeded || string(r.Value) != "1" {
			t.Fatalf("second create if absent: %+v", r)
		}
		if r := cas(&kvpb.CompareAndSwapRequest{Key: []byte("c"), ExpectedValue: []byte("0"), NewValue: []byte("3")}); r.Succeeded {
			t.Fatalf("swap with the wrong value: %+v", r)
		}
		if r := cas(&kvpb.CompareAndSwapRequest{Key: []byte("c"), ExpectedValue: []byte("1"), NewValue: []byte("4")}); !r.Succeeded {
			t.Fatalf("swap with the right value: %+v", r)
		}
		if r := cas(&kvpb.CompareAndSwapRequest{Key: []byte("c"), ExpectedValue: []byte("4"), Delete: true}); !r.Succeeded {
			t.Fatalf("delete with the right value: %+v", r)
		}
		if _, ok := get(t, c, 1, "c"); ok {
			t.Fatal("CAS delete left the key")
		}
	})

	t.Run("delete", func(t *testing.T) {
		var resp *kvpb.DeleteResponse
		err := c.do(1, func(kv kvpb.KVClient) (err error) {
			resp, err = kv.Delete(ctx(t), &kvpb.DeleteRequest{Key: []byte("a")})
			return err
		})
		if err != nil || !resp.Found {
			t.Fatalf("delete: %v %v", resp, err)
		}
		if _, ok := get(t, c, 1, "a"); ok {
			t.Fatal("deleted key still there")
		}
	})

	t.Run("batch is atomic within a range and refused across ranges", func(t *testing.T) {
		ops := []*kvpb.BatchOp{
			{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("b1"), Value: []byte("x")}}},
			{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("b2"), Value: []byte("y")}}},
			{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: []byte("k1000")}}},
		}
		err := c.do(1, func(kv kvpb.KVClient) error {
			_, err := kv.Batch(ctx(t), &kvpb.BatchRequest{Ops: ops})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := get(t, c, 1, "b2"); v != "y" {
			t.Fatalf("b2 = %q", v)
		}
		if _, ok := get(t, c, 1, "k1000"); ok {
			t.Fatal("batch delete not applied")
		}
		across := append(ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("z2"), Value: []byte("no")}}})
		lead := c.leaderFor(1)
		_, err = c.clients[lead].Batch(ctx(t), &kvpb.BatchRequest{Ops: across})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("batch across ranges: %v", err)
		}
		if _, ok := get(t, c, 4, "z2"); ok {
			t.Fatal("a refused batch wrote something")
		}
	})

	t.Run("stream carries many requests per frame", func(t *testing.T) {
		lead := c.leaderFor(1)
		st, err := c.clients[lead].Stream(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var frame kvpb.RequestFrame
		for i := range 200 {
			frame.Requests = append(frame.Requests, &kvpb.Request{Id: uint64(i + 1),
				Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{Key: fmt.Appendf(nil, "b%03d", i), Value: []byte("v")}}})
		}
		frame.Requests = append(frame.Requests, &kvpb.Request{Id: 999, Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{}}})
		if err := st.Send(&frame); err != nil {
			t.Fatal(err)
		}
		got := map[uint64]*kvpb.Response{}
		frames := 0
		for len(got) < len(frame.Requests) {
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			frames++
			for _, r := range resp.Responses {
				got[r.Id] = r
			}
		}
		st.CloseSend()
		for i := range 200 {
			if r := got[uint64(i+1)]; r.Error != nil || r.GetPut() == nil {
				t.Fatalf("streamed put %d: %+v", i, r)
			}
		}
		if e := got[999].Error; e == nil || codes.Code(e.Code) != codes.InvalidArgument {
			t.Fatalf("streamed empty key: %+v", got[999])
		}
		t.Logf("%d requests answered in %d frames", len(got), frames)
		if frames >= len(got) {
			t.Fatalf("responses were not batched: %d frames for %d responses", frames, len(got))
		}
	})
}

func TestInvalidInputWritesNothing(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	lead := c.leaderFor(1)
	kv := c.clients[lead]
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	for name, call := range map[string]func() error{
		"empty key": func() error { _, err := kv.Put(ctx(t), &kvpb.PutRequest{Value: []byte("v")}); return err },
		"key too long": func() error {
			_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: bytes.Repeat([]byte("k"), 4097)})
			return err
		},
		"value too big": func() error { _, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte("big"), Value: big}); return err },
		"scan backwards": func() error {
			_, err := kv.Scan(ctx(t), &kvpb.ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")})
			return err
		},
		"empty batch": func() error { _, err := kv.Batch(ctx(t), &kvpb.BatchRequest{}); return err },
		"cas absent and expected": func() error {
			_, err := kv.CompareAndSwap(ctx(t), &kvpb.CompareAndSwapRequest{Key: []byte("big"), ExpectAbsent: true, ExpectedValue: []byte("x")})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	if _, ok := get(t, c, 1, "big"); ok {
		t.Fatal("a refused request wrote its key")
	}
}

func TestRoutingErrors(t *testing.T) {
	ranges := splitRanges(2, 3)
	c := newTestCluster(t, 3, ranges, nil)
	lead := c.leaderFor(1)
	follower := lead%3 + 1

	t.Run("not leader names the leader", func(t *testing.T) {
		// Wait until the follower knows the leader, so the hint is there.
		for range 200 {
			if c.nodes[follower].replica(1).leader.Load() == lead {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, err := c.clients[follower].Put(ctx(t), &kvpb.PutRequest{Key: []byte("a"), Value: []byte("v")})
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition {
			t.Fatalf("put on follower: %v", err)
		}
		var hint *kvpb.NotLeader
		for _, d := range st.Details() {
			if nl, ok := d.(*kvpb.NotLeader); ok {
				hint = nl
			}
		}
		if hint == nil || hint.LeaderNodeId != lead || hint.LeaderAddr != c.nodes[lead].Addr() {
			t.Fatalf("hint %+v, want leader %d at %s", hint, lead, c.nodes[lead].Addr())
		}
	})

	t.Run("stale generation and wrong range get the descriptor", func(t *testing.T) {
		for name, req := range map[string]*kvpb.PutRequest{
			"stale generation": {Header: &kvpb.RequestHeader{RangeId: 1, Generation: 7}, Key: []byte("a"), Value: []byte("v")},
			"key outside":      {Header: &kvpb.RequestHeader{RangeId: 1, Generation: 1}, Key: []byte("z"), Value: []byte("v")},
		} {
			_, err := c.clients[lead].Put(ctx(t), req)
			st := status.Convert(err)
			var mm *kvpb.RangeMismatch
			for _, d := range st.Details() {
				if x, ok := d.(*kvpb.RangeMismatch); ok {
					mm = x
				}
			}
			if st.Code() != codes.FailedPrecondition || mm == nil || mm.Descriptor_.GetRangeId() != 1 {
				t.Fatalf("%s: %v (detail %+v)", name, err, mm)
			}
		}
		_, err := c.clients[lead].Put(ctx(t), &kvpb.PutRequest{Header: &kvpb.RequestHeader{RangeId: 99}, Key: []byte("a")})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("unknown range: %v", err)
		}
	})
}

// TestLeaderFailover stops the node leading a range; another must take
// over once the old lease has run out and an election timeout has passed,
// and every acknowledged write must survive.
func TestLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	for i := range 20 {
		put(t, c, 1, fmt.Sprintf("k%02d", i), "before")
	}
	old := c.leaderFor(1)
	cfg := c.nodes[old].cfg
	stopped := time.Now()
	c.nodes[old].Stop()
	delete(c.nodes, old)
	put(t, c, 1, "after", "1")
	took := time.Since(stopped)
	bound := cfg.LeaseDuration + 2*time.Duration(cfg.ElectionTicks)*cfg.TickInterval
	t.Logf("leader %d stopped; a write succeeded through node %d after %v (lease %v + max election timeout %v)",
		old, c.leaderFor(1), took, cfg.LeaseDuration, bound-cfg.LeaseDuration)
	for i := range 20 {
		if v, ok := get(t, c, 1, fmt.Sprintf("k%02d", i)); !ok || v != "before" {
			t.Fatalf("acknowledged write k%02d lost: %q %v", i, v, ok)
		}
	}
}

// TestRestartCatchesUp restarts a node that missed writes; it reloads its
// groups from its store and catches up, by log or by snapshot.
func TestRestartCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(2, 3), nil)
	var victim uint64
	for id := uint64(1); id <= 3; id++ {
		if id != c.leaderFor(1) && id != c.leaderFor(2) {
			victim = id
		}
	}
	if victim == 0 {
		victim = 3
	}
	addr := c.nodes[victim].Addr()
	c.nodes[victim].Stop()
	delete(c.nodes, victim)
	want := map[string]string{}
	for i := range 300 {
		k := fmt.Sprintf("k%04d", i*30)
		put(t, c, rangeOf(c.ranges, k), k, fmt.Sprint(i))
		want[k] = fmt.Sprint(i)
	}
	c.start(victim, addr)
	n := c.nodes[victim]
	for id, m := range c.nodes {
		n.SetPeer(id, m.Addr())
	}
	for _, d := range c.ranges {
		lead := c.nodes[c.leaderFor(d.RangeId)].replica(d.RangeId)
		deadline := time.Now().Add(15 * time.Second)
		for n.replica(d.RangeId).applied.Load() < lead.applied.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("range %d: restarted node at %d, leader at %d", d.RangeId, n.replica(d.RangeId).applied.Load(), lead.applied.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Stale reads on the restarted node see every write.
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		resp, err := c.clients[victim].Get(ctx(t), &kvpb.GetRequest{Key: []byte(k), Header: &kvpb.RequestHeader{Consistency: kvpb.ReadConsistency_STALE}})
		if err != nil || string(resp.Value) != want[k] {
			t.Fatalf("stale read of %s on the restarted node: %v %v", k, resp, err)
		}
	}
}

// TestScanResumeKeySurvivesIteratorReuse: a scan that stops at its limit
// resumes at the next key, which the engine lent it only until its
// callback returned. The engine's iterators recycle their key buffers, so
// a scan run by another request before the response was built (here the
// AfterScan knob's, on the same goroutine, which takes the same recycled
// buffer) must not change the resume key. It did: a YCSB E run saw a
// scan resume at another request's key, below its own start.
func TestScanResumeKeySurvivesIteratorReuse(t *testing.T) {
	var (
		node      atomic.Pointer[Node]
		knobScans atomic.Int32 // engine scans the knob ran over the alien keys
	)
	other := func(i int) string { return fmt.Sprintf("alien-%06d", i) } // below the scan, like the run's
	c := newTestCluster(t, 1, splitRanges(1, 1), func(cfg *Config) {
		cfg.Knobs.AfterScan = func() {
			n := node.Load()
			if n == nil {
				return
			}
			// Keys as long as the scanned ones, so that the recycled
			// buffer's bytes under the resume key are all replaced.
			if err := n.eng.Scan([]byte(other(0)), []byte(other(999999)), 0, func(k, v []byte) bool { return true }); err != nil {
				t.Error(err)
			}
			knobScans.Add(1)
		}
	})
	for i := range 5 {
		put(t, c, 1, fmt.Sprintf("keyed-%06d", i), "v")
		put(t, c, 1, other(i), "v")
	}
	node.Store(c.nodes[1])
	// sync.Pool may drop what is put back into it (it does so at random
	// under the race detector), so the buffer is reused in most attempts,
	// not all.
	for attempt := range 20 {
		var resp *kvpb.ScanResponse
		err := c.do(1, func(kv kvpb.KVClient) (err error) {
			resp, err = kv.Scan(ctx(t), &kvpb.ScanRequest{StartKey: []byte("keyed-"), EndKey: []byte("keyed-999999"), Limit: 2})
			return err
		})
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if len(resp.Kvs) != 2 || string(resp.Kvs[1].Key) != "keyed-000001" {
			t.Fatalf("attempt %d: scanned %v", attempt, resp.Kvs)
		}
		if got, want := string(resp.ResumeKey), "keyed-000002"; got != want {
			t.Fatalf("attempt %d: scan resumes at %q, want %q", attempt, got, want)
		}
	}
	if knobScans.Load() == 0 {
		t.Fatal("the AfterScan knob never ran")
	}
}

// TestStaleScanServesTheRangeItChecked: a stale read is served on its
// caller's goroutine while the range's worker may apply a split. A scan
// checked against the range before the split must then be served by that
// descriptor, and one checked after it refused as a range mismatch: never
// an engine error for a span that ends before it starts, nor a resume key
// at or below the start (both Internal errors to the client). Here the
// descriptor flips between the range and its left half, as a split
// applied and undone would, while stale scans run, bounded in count and
// time. Without the fix the race is only won sometimes (most runs on two
// cores), so this test guards the fix rather than reproducing the bug
// every time: with it there is no second load to race.
func TestStaleScanServesTheRangeItChecked(t *testing.T) {
	c := newTestCluster(t, 1, splitRanges(1, 1), nil)
	for i := range 5 {
		put(t, c, 1, fmt.Sprintf("keyed-%06d", i), "v")
	}
	r := c.nodes[1].replica(1)
	whole := r.desc.Load()
	left := proto.Clone(whole).(*kvpb.RangeDescriptor)
	left.EndKey = []byte("keyed-000002")
	left.Generation++
	// Stored here rather than by the worker: only what the handlers load
	// matters, and the idle group's worker reads no bounds from it.
	t.Cleanup(func() { r.desc.Store(whole) })

	const scans = 50000
	deadline := time.Now().Add(2 * time.Second)
	flipped := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				r.desc.Store(left)
			} else {
				r.desc.Store(whole)
			}
		}
	}()
	defer func() { close(stop); <-flipped }()
	start := []byte("keyed-000003")
	header := &kvpb.RequestHeader{Consistency: kvpb.ReadConsistency_STALE}
	for i := 0; i < scans && time.Now().Before(deadline); i++ {
		var (
			resp *kvpb.ScanResponse
			err  error
		)
		c.nodes[1].doScan(&kvpb.ScanRequest{Header: header, StartKey: start, Limit: 1}, func(sr *kvpb.ScanResponse, e error) { resp, err = sr, e })
		if err != nil {
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("scan %d: %v", i, err)
			}
			continue
		}
		for _, kv := range resp.Kvs {
			if bytes.Compare(kv.Key, start) < 0 {
				t.Fatalf("scan %d: served %q, below its start", i, kv.Key)
			}
		}
		if len(resp.ResumeKey) > 0 && bytes.Compare(resp.ResumeKey, start) <= 0 {
			t.Fatalf("scan %d: resumes at %q, not after its start %q", i, resp.ResumeKey, start)
		}
	}
}
