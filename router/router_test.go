package router

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func codeOf(err error) codes.Code { return status.Code(err) }

// TestConcurrentOps runs every operation from many goroutines over eight
// ranges and checks the results, and that the shared streams batched
// requests into frames.
func TestConcurrentOps(t *testing.T) {
	c := newCluster(t, 3, splitRanges(8, 3, 1))
	cl := c.client(Config{})
	ctx := testCtx(t)

	const workers, rounds = 64, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			fail := func(format string, args ...any) {
				errs <- fmt.Errorf("worker %d: "+format, append([]any{w}, args...)...)
			}
			for j := range rounds {
				base := (w*157 + j*613) % 10000
				k := key(base, fmt.Sprintf("/w%02d/%d", w, j))
				v := fmt.Appendf(nil, "v%d-%d", w, j)
				if err := cl.Put(ctx, k, v); err != nil {
					fail("put %s: %v", k, err)
					return
				}
				got, found, err := cl.Get(ctx, k)
				if err != nil || !found || !bytes.Equal(got, v) {
					fail("get %s = %q, %v, %v", k, got, found, err)
					return
				}
				if got, found, err := cl.Get(ctx, k, Stale()); err != nil || (found && !bytes.Equal(got, v)) {
					fail("stale get %s = %q, %v, %v", k, got, found, err)
					return
				}
				v2 := append(bytes.Clone(v), '+')
				r, err := cl.CompareAndSwap(ctx, CAS{Key: k, Expected: v, NewValue: v2})
				if err != nil || !r.Swapped || !bytes.Equal(r.Current, v) {
					fail("cas %s: %+v, %v", k, r, err)
					return
				}
				r, err = cl.CompareAndSwap(ctx, CAS{Key: k, ExpectAbsent: true, NewValue: v})
				if err != nil || r.Swapped || !bytes.Equal(r.Current, v2) {
					fail("cas absent %s: %+v, %v", k, r, err)
					return
				}
				// A batch in k's range: two puts and the delete of k.
				b1, b2 := append(bytes.Clone(k), "/b1"...), append(bytes.Clone(k), "/b2"...)
				if err := cl.Batch(ctx, []Op{{Key: b1, Value: v}, {Key: b2, Value: v2}, {Key: k, Delete: true}}); err != nil {
					fail("batch at %s: %v", k, err)
					return
				}
				if _, found, err := cl.Get(ctx, k); err != nil || found {
					fail("get %s after the batch deleted it: %v, %v", k, found, err)
					return
				}
				if got, _, err := cl.Get(ctx, b2); err != nil || !bytes.Equal(got, v2) {
					fail("get %s = %q, %v", b2, got, err)
					return
				}
				if found, err := cl.Delete(ctx, b1); err != nil || !found {
					fail("delete %s: %v, %v", b1, found, err)
					return
				}
				if found, err := cl.Delete(ctx, b1); err != nil || found {
					fail("second delete %s: %v, %v", b1, found, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := cl.Stats()
	t.Logf("stats: %+v, %.2f requests per frame", st, st.RequestsPerFrame())
	if st.Frames == 0 || st.Frames >= st.Requests {
		t.Errorf("no batching: %d frames for %d requests", st.Frames, st.Requests)
	}
	if want := uint64(workers * rounds * 10); st.Requests < want {
		t.Errorf("%d requests sent, want at least %d", st.Requests, want)
	}
	if n := len(cl.Ranges()); n != 8 {
		t.Errorf("cache holds %d ranges, want 8", n)
	}
}

// TestScanAcrossRanges checks that scans walk the ranges in order, with
// no gaps or duplicates at the boundaries, over empty ranges, and page
// correctly with resume keys.
func TestScanAcrossRanges(t *testing.T) {
	ranges := splitRanges(8, 3, 1)
	c := newCluster(t, 3, ranges)
	cl := c.client(Config{})
	ctx := testCtx(t)

	// Keys around every boundary and inside ranges, but none in ranges
	// 3 ([k2500, k3750)) and 6 ([k6250, k7500)), and some below "k".
	var want []string
	for i := 0; i < 10000; i += 37 {
		if (i >= 2500 && i < 3750) || (i >= 6250 && i < 7500) {
			continue
		}
		want = append(want, string(key(i, "")))
	}
	for _, b := range []int{1250, 5000, 8750} {
		want = append(want, string(key(b-1, "")), string(key(b-1, "~")), string(key(b, "")))
	}
	want = append(want, "a", "b", "z")
	slices.Sort(want)
	want = slices.Compact(want)
	var wg sync.WaitGroup
	for i, k := range want {
		wg.Go(func() {
			if err := cl.Put(ctx, []byte(k), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Errorf("put %s: %v", k, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	keysOf := func(kvs []KeyValue) []string {
		var out []string
		for _, kv := range kvs {
			out = append(out, string(kv.Key))
		}
		return out
	}
	between := func(lo, hi string) []string {
		var out []string
		for _, k := range want {
			if k >= lo && (hi == "" || k < hi) {
				out = append(out, k)
			}
		}
		return out
	}

	t.Run("everything", func(t *testing.T) {
		kvs, resume, err := cl.Scan(ctx, nil, nil, 0)
		if err != nil || resume != nil {
			t.Fatalf("scan: %v, resume %q", err, resume)
		}
		if got := keysOf(kvs); !slices.Equal(got, want) {
			t.Fatalf("scan returned %d keys, want %d:\n%v\nwant\n%v", len(got), len(want), got, want)
		}
		for _, kv := range kvs {
			i := slices.Index(want, string(kv.Key))
			if string(kv.Value) != fmt.Sprint(i) {
				t.Fatalf("value of %s = %q, want %d", kv.Key, kv.Value, i)
			}
		}
	})

	t.Run("pages", func(t *testing.T) {
		for _, limit := range []int{1, 7, 50, len(want) - 1, len(want)} {
			var got []string
			start := []byte(nil)
			pages := 0
			for {
				kvs, resume, err := cl.Scan(ctx, start, nil, limit)
				if err != nil {
					t.Fatalf("limit %d, page %d: %v", limit, pages, err)
				}
				pages++
				if len(kvs) > limit {
					t.Fatalf("limit %d: page of %d keys", limit, len(kvs))
				}
				if resume != nil && len(kvs) != limit {
					t.Fatalf("limit %d: resume %q after a short page of %d", limit, resume, len(kvs))
				}
				got = append(got, keysOf(kvs)...)
				if resume == nil {
					break
				}
				start = resume
			}
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d: pages gave %d keys, want %d", limit, len(got), len(want))
			}
			t.Logf("limit %d: %d pages", limit, pages)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		for _, span := range [][2]string{
			{"k1000", "k4000"}, // across range 3, which is empty
			{"k1249", "k1250"}, // up to a boundary
			{"k1249~", "k5001"},
			{"k2500", "k3750"}, // exactly the empty range
			{"k6000", "k8000"},
			{"k8000", ""},
			{"", "k0100"},
		} {
			kvs, resume, err := cl.Scan(ctx, []byte(span[0]), []byte(span[1]), 0)
			if err != nil || resume != nil {
				t.Fatalf("scan %q: %v, resume %q", span, err, resume)
			}
			if got, w := keysOf(kvs), between(span[0], span[1]); !slices.Equal(got, w) {
				t.Fatalf("scan %q = %v, want %v", span, got, w)
			}
		}
		// A limit that ends exactly at the last key before end: resume is
		// set (the Client can't know no more keys follow), and continuing
		// from it finds nothing.
		w := between("k6000", "k8000")
		kvs, resume, err := cl.Scan(ctx, []byte("k6000"), []byte("k8000"), len(w))
		if err != nil || len(kvs) != len(w) {
			t.Fatalf("scan to the last key: %d keys, %v", len(kvs), err)
		}
		if resume != nil {
			rest, again, err := cl.Scan(ctx, resume, []byte("k8000"), len(w))
			if err != nil || len(rest) != 0 || again != nil {
				t.Fatalf("continuing from %q: %d keys, resume %q, %v", resume, len(rest), again, err)
			}
		}
	})

	t.Run("invalid", func(t *testing.T) {
		if _, _, err := cl.Scan(ctx, []byte("b"), []byte("a"), 0); codeOf(err) != codes.InvalidArgument {
			t.Fatalf("scan with start after end: %v", err)
		}
	})
}

// TestLeaderChange stops the node leading some ranges while writers run:
// the Client retries through the change, so no put fails and every
// acknowledged write is there afterwards.
func TestLeaderChange(t *testing.T) {
	c := newCluster(t, 3, splitRanges(8, 3, 1))
	cl := c.client(Config{})
	ctx := testCtx(t)
	victim := c.leaderOf(1)
	// Warm up: every range has a leader and the cache knows it.
	for i := 0; i < 10000; i += 1250 {
		if err := cl.Put(ctx, key(i, "/warm"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}

	var (
		stop      atomic.Bool
		acked     sync.Map // key -> value
		puts      atomic.Int64
		ambiguous atomic.Int64
		wg        sync.WaitGroup
	)
	for w := range 24 {
		wg.Go(func() {
			for j := 0; !stop.Load(); j++ {
				k := key((w*389+j*97)%10000, fmt.Sprintf("/w%d/%d", w, j))
				v := fmt.Sprintf("%d.%d", w, j)
				if err := cl.Put(ctx, k, []byte(v)); err != nil {
					t.Errorf("put %s: %v", k, err)
					return
				}
				acked.Store(string(k), v)
				puts.Add(1)
			}
		})
	}
	// CAS counters, one key per worker: each swap adds one.
	counters := make([]int, 8)
	for w := range counters {
		wg.Go(func() {
			k := key(w*1250+1, "/counter")
			n := 0
			for !stop.Load() {
				r, err := cl.CompareAndSwap(ctx, CAS{Key: k, Expected: counterValue(n), ExpectAbsent: n == 0, NewValue: counterValue(n + 1)})
				switch {
				case err == nil && r.Swapped:
					n++
				case err == nil:
					t.Errorf("cas %s: expected %d, found %q", k, n, r.Current)
					return
				case codeOf(err) == codes.Unavailable && strings.Contains(err.Error(), "may or may not have been applied"):
					ambiguous.Add(1)
					// Find out what happened.
					v, _, err := cl.Get(ctx, k)
					if err != nil {
						t.Errorf("get %s after an ambiguous cas: %v", k, err)
						return
					}
					if string(v) == string(counterValue(n+1)) {
						n++
					}
				default:
					t.Errorf("cas %s: %v", k, err)
					return
				}
			}
			counters[w] = n
		})
	}
	time.Sleep(300 * time.Millisecond)
	before := puts.Load()
	start := time.Now()
	c.nodes[victim].Stop()
	// Let the writers run until the ranges the victim led have moved on
	// and plenty of writes went through since.
	for _, d := range c.ranges {
		c.leaderOf(d.RangeId)
	}
	t.Logf("new leaders after %v", time.Since(start))
	for puts.Load() < before+2000 && time.Since(start) < 10*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("stopped node %d after %d puts; %d puts in all; %d ambiguous CAS; stats %+v",
		victim, before, puts.Load(), ambiguous.Load(), cl.Stats())

	// Every acknowledged write is there, read through a fresh client too.
	fresh := c.client(Config{Seeds: slices.DeleteFunc(c.seeds(), func(a string) bool { return a == c.nodes[victim].Addr() })})
	n := 0
	acked.Range(func(k, v any) bool {
		n++
		for _, r := range []*Client{cl, fresh} {
			got, found, err := r.Get(ctx, []byte(k.(string)))
			if err != nil || !found || string(got) != v.(string) {
				t.Errorf("get %s = %q, %v, %v; want %q", k, got, found, err, v)
				return false
			}
		}
		return true
	})
	for w, want := range counters {
		k := key(w*1250+1, "/counter")
		got, _, err := cl.Get(ctx, k)
		if err != nil || string(got) != string(counterValue(want)) {
			t.Errorf("counter %s = %q, %v; want %d", k, got, err, want)
		}
	}
	t.Logf("checked %d acknowledged puts and %d counters", n, len(counters))
}

func counterValue(n int) []byte {
	if n == 0 {
		return nil
	}
	return fmt.Appendf(nil, "%d", n)
}

// staleSource answers its first lookups with an outdated map: range 1
// before it split, at generation 1, covering what ranges 1-4 now hold,
// with a wrong leader hint; then it tells the truth.
type staleSource struct {
	real  Source
	stale int
	calls atomic.Int32
}

func (s *staleSource) Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	descs, addrs, err := s.real.Lookup(ctx, key)
	if int(s.calls.Add(1)) > s.stale || err != nil {
		return descs, addrs, err
	}
	var out []*kvpb.RangeDescriptor
	for _, d := range descs {
		switch {
		case d.RangeId == 1:
			old := &kvpb.RangeDescriptor{RangeId: 1, Generation: 1, EndKey: []byte("k5000"), Replicas: d.Replicas}
			for _, r := range d.Replicas {
				if r.NodeId != d.LeaderNodeId {
					old.LeaderNodeId = r.NodeId // wrong on purpose
				}
			}
			out = append(out, old)
		case d.RangeId > 4:
			out = append(out, d)
		}
	}
	return out, addrs, nil
}

// TestStaleDescriptorCache gives the Client an outdated range map; it
// recovers through the nodes' RangeMismatch and NotLeader answers.
func TestStaleDescriptorCache(t *testing.T) {
	ranges := splitRanges(8, 3, 2)
	c := newCluster(t, 3, ranges)
	for _, d := range ranges {
		c.leaderOf(d.RangeId)
	}
	real := NewNodeSource(c.seeds())
	defer real.Close()
	src := &staleSource{real: real, stale: 1}
	cl := c.client(Config{Source: src})
	ctx := testCtx(t)

	if got := cl.Ranges(); len(got) != 5 || got[0].Generation != 1 {
		t.Fatalf("initial cache: %v", got)
	}
	// k3000 is in range 3, but the cache says range 1 (generation 1).
	for _, i := range []int{100, 3000, 4999, 1250, 6000} {
		k := key(i, "/stale")
		if err := cl.Put(ctx, k, []byte("v")); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if v, found, err := cl.Get(ctx, k); err != nil || !found || string(v) != "v" {
			t.Fatalf("get %s: %q %v %v", k, v, found, err)
		}
	}
	got := cl.Ranges()
	if len(got) != 8 {
		t.Fatalf("cache after recovery holds %d ranges: %v", len(got), got)
	}
	for i, d := range got {
		if d.RangeId != ranges[i].RangeId || d.Generation != 2 || !bytes.Equal(d.EndKey, ranges[i].EndKey) {
			t.Fatalf("cached range %d = %v, want %v", i, d, ranges[i])
		}
	}
	st := cl.Stats()
	t.Logf("source asked %d times; stats %+v", src.calls.Load(), st)
	if src.calls.Load() < 2 || st.StaleDescriptors == 0 {
		t.Fatal("the client never learned it was stale")
	}

	t.Run("wrong leader hints", func(t *testing.T) {
		cl := c.client(Config{Source: wrongLeaders{real}})
		for i := 0; i < 10000; i += 1250 {
			k := key(i+7, "/redirected")
			if err := cl.Put(ctx, k, []byte("v")); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
		st := cl.Stats()
		t.Logf("stats %+v", st)
		if st.Redirects == 0 {
			t.Fatal("no redirects")
		}
		for _, d := range cl.Ranges() {
			if l := c.leaderOf(d.RangeId); d.LeaderNodeId != l {
				t.Errorf("range %d: cached leader %d, leader %d", d.RangeId, d.LeaderNodeId, l)
			}
		}
	})
}

// wrongLeaders is a Source whose leader hints all name a follower.
type wrongLeaders struct{ real Source }

func (s wrongLeaders) Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	descs, addrs, err := s.real.Lookup(ctx, key)
	for _, d := range descs {
		if d.LeaderNodeId != 0 {
			d.LeaderNodeId = d.LeaderNodeId%uint64(len(d.Replicas)) + 1
		}
	}
	return descs, addrs, err
}

// TestBatchAcrossRanges checks that a batch whose keys straddle a range
// boundary is refused before anything is sent.
func TestBatchAcrossRanges(t *testing.T) {
	c := newCluster(t, 3, splitRanges(8, 3, 1))
	cl := c.client(Config{})
	ctx := testCtx(t)
	before := cl.Stats().Requests
	err := cl.Batch(ctx, []Op{{Key: []byte("k1000"), Value: []byte("a")}, {Key: []byte("k1300"), Value: []byte("b")}})
	if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"k1250"`) {
		t.Fatalf("batch across k1250: %v", err)
	}
	if after := cl.Stats().Requests; after != before {
		t.Fatalf("the refused batch sent %d requests", after-before)
	}
	for _, k := range []string{"k1000", "k1300"} {
		if _, found, err := cl.Get(ctx, []byte(k)); err != nil || found {
			t.Fatalf("get %s: %v %v", k, found, err)
		}
	}
	if err := cl.Batch(ctx, nil); codeOf(err) != codes.InvalidArgument {
		t.Fatalf("empty batch: %v", err)
	}
}

// TestErrors checks the codes of bad input, unreachable clusters, ended
// contexts and closed clients.
func TestErrors(t *testing.T) {
	c := newCluster(t, 1, splitRanges(2, 1, 1))
	cl := c.client(Config{})
	ctx := testCtx(t)

	if _, _, err := cl.Get(ctx, nil); codeOf(err) != codes.InvalidArgument {
		t.Errorf("get of an empty key: %v", err)
	}
	big := bytes.Repeat([]byte("x"), kvpb.DefaultMaxKeyBytes+1)
	if err := cl.Put(ctx, big, nil); codeOf(err) != codes.InvalidArgument {
		t.Errorf("put of a key over the limit: %v", err)
	}
	if _, err := cl.CompareAndSwap(ctx, CAS{Key: []byte("a"), Expected: []byte("x"), ExpectAbsent: true}); codeOf(err) != codes.InvalidArgument {
		t.Errorf("cas expecting a value and absence: %v", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := cl.Put(done, []byte("a"), nil); codeOf(err) != codes.Canceled {
		t.Errorf("put with a canceled context: %v", err)
	}
	if err := cl.Put(ctx, []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	if v, found, err := cl.Get(ctx, []byte("a")); err != nil || !found || v == nil || len(v) != 0 {
		t.Errorf("get of an empty value: %q %v %v", v, found, err)
	}

	// The only node stops: requests give up with Unavailable, or with
	// DeadlineExceeded at the context's deadline.
	quick := c.client(Config{MaxAttempts: 3})
	c.nodes[1].Stop()
	if err := quick.Put(ctx, []byte("a"), nil); codeOf(err) != codes.Unavailable || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("put to a stopped cluster with 3 attempts: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := cl.Put(short, []byte("a"), nil); codeOf(err) != codes.DeadlineExceeded {
		t.Errorf("put to a stopped cluster within 200ms: %v", err)
	}

	if _, err := New(ctx, Config{Seeds: []string{c.nodes[1].Addr()}}); codeOf(err) != codes.Unavailable {
		t.Errorf("New with no seed answering: %v", err)
	}
	cl.Close()
	if _, _, err := cl.Get(ctx, []byte("a")); codeOf(err) != codes.Canceled {
		t.Errorf("get after Close: %v", err)
	}
}

// TestReconnect restarts the only node at the same address: the Client
// opens a new stream to it and carries on.
func TestReconnect(t *testing.T) {
	c := newCluster(t, 1, splitRanges(2, 1, 1))
	cl := c.client(Config{})
	ctx := testCtx(t)
	if err := cl.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	n := c.nodes[1]
	addr, dir := n.Addr(), c.dirs[1]
	n.Stop()
	restarted, err := node.Start(node.Config{NodeID: 1, Dir: dir, ListenAddr: addr,
		TickInterval: 20 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = restarted
	start := time.Now()
	if err := cl.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := cl.Get(ctx, []byte("a")); err != nil || string(v) != "1" {
		t.Fatalf("get a after the restart: %q, %v", v, err)
	}
	st := cl.Stats()
	t.Logf("back after %v; stats %+v", time.Since(start), st)
	if st.Streams < 2 {
		t.Fatalf("%d streams opened, want a second one", st.Streams)
	}
}
