package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
)

// TestPickSplits: a round splits the ranges past a threshold that have a
// split key, not busy, whose report agrees with the map, the furthest
// past first, no more than MaxConcurrentSplits under way with the splits
// already going; a threshold that is off splits nothing.
func TestPickSplits(t *testing.T) {
	rm, err := placement.NewRangeMap(testutil.Ranges(5, 3))
	if err != nil {
		t.Fatal(err)
	}
	reports := []*kvpb.RangeLoad{
		// Busy: a split of it is under way.
		{RangeId: 1, Generation: 1, Bytes: 1000, SizeSplitKey: []byte("k1")},
		// Three times the size threshold.
		{RangeId: 2, Generation: 1, Bytes: 300, SizeSplitKey: []byte("k3"), OpsPerSecond: 10, LoadSplitKey: []byte("k2")},
		// Five times the load threshold; over the size threshold without a
		// size split key (one big key).
		{RangeId: 3, Generation: 1, Bytes: 200, OpsPerSecond: 5000, LoadSplitKey: []byte("k5")},
		// Far over the size threshold, but no key to split at.
		{RangeId: 4, Generation: 1, Bytes: 10000, OpsPerSecond: 10},
		// The report is of a generation the map has not recorded.
		{RangeId: 5, Generation: 2, Bytes: 10000, SizeSplitKey: []byte("k9")},
	}
	newServer := func(cfg Config) (*Server, *term) {
		busy := &placementpb.RangeOperation{RangeId: 1, Op: &placementpb.RangeOperation_Split{Split: &placementpb.SplitOperation{Key: []byte("k1"), NewRangeId: 6}}}
		return &Server{cfg: cfg}, &term{rm: rm, ops: map[uint64]*placementpb.RangeOperation{1: busy}}
	}
	picked := func(todo []splitCandidate) string {
		var out []string
		for _, c := range todo {
			out = append(out, fmt.Sprintf("%d:%s@%s", c.rangeID, c.reason, c.key))
		}
		return fmt.Sprint(out)
	}

	s, tm := newServer(Config{SplitSize: 100, SplitQPS: 1000, MaxConcurrentSplits: 3})
	if got, want := picked(s.pickSplitsLocked(tm, reports)), "[3:load@k5 2:size@k3]"; got != want {
		t.Errorf("first round picks %s, want %s", got, want)
	}
	if got := s.pickSplitsLocked(tm, reports); len(got) != 0 {
		t.Errorf("with three splits under way of three allowed, a round picks %s", picked(got))
	}
	s, tm = newServer(Config{SplitSize: 100, SplitQPS: 1000, MaxConcurrentSplits: 2})
	if got, want := picked(s.pickSplitsLocked(tm, reports)), "[3:load@k5]"; got != want {
		t.Errorf("with one split under way of two allowed, a round picks %s, want %s", got, want)
	}
	s, tm = newServer(Config{SplitSize: -1, SplitQPS: 1000, MaxConcurrentSplits: 4})
	if got, want := picked(s.pickSplitsLocked(tm, reports)), "[3:load@k5]"; got != want {
		t.Errorf("with size splits off, a round picks %s, want %s", got, want)
	}
	s, tm = newServer(Config{SplitSize: 100, SplitQPS: -1, MaxConcurrentSplits: 4})
	if got, want := picked(s.pickSplitsLocked(tm, reports)), "[2:size@k3]"; got != want {
		t.Errorf("with load splits off, a round picks %s, want %s", got, want)
	}
}

// autoSplitCluster starts one placement process (tweaked by tweak) and
// three nodes (tweaked by nodeTweak) over two ranges, [, k5000) and
// [k5000, ), and a router.
func autoSplitCluster(t *testing.T, tweak func(*Config), nodeTweak func(*node.Config)) (*Client, *router.Client) {
	t.Helper()
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges = 2
		tweak(c)
	})
	dc := newDataCluster(t, 3, pc)
	dc.tweak = nodeTweak
	for id := uint64(1); id <= 3; id++ {
		dc.start(id)
	}
	waitCreated(t, pc, dc, 2)
	c := pc.client()
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return c, rc
}

// firstSplit waits (bounded) until range 2, [k5000, ), is split, and
// returns the key it was split at. Range 2 keeps its left half, and a
// split resets its load and size: polling every 10ms sees the first
// split before any second one.
func firstSplit(t *testing.T, c *Client) []byte {
	t.Helper()
	var key []byte
	testutil.WaitFor(t, 20*time.Second, "range 2 to be split automatically", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		if err != nil || len(all) < 3 {
			return false
		}
		for _, d := range all {
			if d.RangeId == 2 {
				key = d.EndKey
			}
		}
		return true
	})
	return key
}

// checkAfterSplits checks that the map is tiled, that range 1, which took
// no load and no data, was not split, and that every value written reads
// back through the router.
func checkAfterSplits(t *testing.T, c *Client, rc *router.Client, written map[string]string) {
	t.Helper()
	all, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkTiled(t, all)
	if d := all[0]; d.RangeId != 1 || string(d.EndKey) != "k5000" {
		t.Errorf("range 1 [, k5000) took nothing, yet the map's first range is %v", d)
	}
	for k, v := range written {
		if got, found, err := rc.Get(tctx(t), []byte(k)); err != nil || !found || string(got) != v {
			t.Fatalf("get %q after the splits: %q, %v, %v; want %q", k, got, found, err, v)
		}
	}
	t.Logf("%d ranges after the automatic splits", len(all))
}

// TestAutoSplitBySize: a range written past the size threshold is split
// automatically, inside its data.
func TestAutoSplitBySize(t *testing.T) {
	c, rc := autoSplitCluster(t, func(c *Config) {
		c.SplitSize = 256 << 10
		c.SplitQPS = -1
	}, func(c *node.Config) {
		c.MemTableSize = 1 << 20 // flush each MiB, so that the data soon counts
	})
	// 1.5 MiB of incompressible values under k6000..k6191, in range 2.
	const values, valueSize = 192, 8 << 10
	written := map[string]string{}
	for i := range values {
		v := make([]byte, valueSize)
		for j := range v {
			v[j] = byte(rand.Uint32())
		}
		written[fmt.Sprintf("k6%03d", i)] = string(v)
	}
	var wg sync.WaitGroup
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range written {
			if !yield(k) {
				return
			}
		}
	})
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(keys); i += 8 {
				if err := rc.Put(tctx(t), []byte(keys[i]), []byte(written[keys[i]])); err != nil {
					t.Errorf("put %q: %v", keys[i], err)
					return
				}
			}
		})
	}
	key := firstSplit(t, c)
	if string(key) <= "k6000" || string(key) > "k6191" {
		t.Errorf("range 2 was split at %q, outside the keys that make its size", key)
	}
	wg.Wait()
	// The halves still past the threshold are measured afresh and split
	// in turn.
	testutil.WaitFor(t, 20*time.Second, "the halves of range 2 to be split in turn", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		return err == nil && len(all) >= 5
	})
	checkAfterSplits(t, c, rc, written)
}

// TestAutoSplitByLoad: a range under a steady load of reads and writes
// spread over its keys is split automatically near the median key of the
// load.
func TestAutoSplitByLoad(t *testing.T) {
	c, rc := autoSplitCluster(t, func(c *Config) {
		c.SplitSize = -1
		c.SplitQPS = 100
	}, func(c *node.Config) {
		c.LoadWindow = 500 * time.Millisecond
	})
	// Four clients on keys k5000..k9999, spread evenly, a write in four;
	// each writes only its own keys, so it knows what they hold.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	const clients = 4
	written := make([]map[string]string, clients)
	var wg sync.WaitGroup
	for g := range clients {
		written[g] = map[string]string{}
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("k%04d", 5000+clients*rand.IntN(5000/clients)+g)
				var err error
				if i%4 == 0 {
					v := fmt.Sprintf("v%d-%d", g, i)
					if err = rc.Put(tctx(t), []byte(k), []byte(v)); err == nil {
						written[g][k] = v
					}
				} else {
					_, _, err = rc.Get(tctx(t), []byte(k))
				}
				if err != nil {
					t.Errorf("client %d, key %q: %v", g, k, err)
					return
				}
			}
		})
	}
	key := firstSplit(t, c)
	stop()
	wg.Wait()
	// The median of 64 to 128 keys sampled from an even spread over
	// k5000..k9999 is in its middle half but for a chance below 1e-6.
	if string(key) < "k6250" || string(key) > "k8750" {
		t.Errorf("range 2 was split at %q; want near the median of the load, k7500", key)
	}
	all := map[string]string{}
	for _, w := range written {
		for k, v := range w {
			all[k] = v
		}
	}
	checkAfterSplits(t, c, rc, all)
}
