package node

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
)

func TestLoadSplitKey(t *testing.T) {
	keys := func(ks ...string) [][]byte {
		out := make([][]byte, len(ks))
		for i, k := range ks {
			out[i] = []byte(k)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		samples    [][]byte
		start, end string
		want       string // "" for none
	}{
		{"median", keys("e", "a", "d", "b", "c"), "", "", "c"},
		{"median of an even count", keys("d", "a", "c", "b"), "", "", "c"},
		{"samples outside the range are ignored", keys("a", "m", "n", "o", "p", "z"), "m", "q", "o"},
		{"the end is exclusive", keys("m", "n", "o", "q", "q", "q"), "m", "q", "n"},
		{"a median at the start moves past it", keys("m", "m", "m", "n", "o", "p"), "m", "", "n"},
		{"the first of equal keys at the median", keys("a", "b", "c", "c", "c", "d"), "", "", "c"},
		{"one hot key", keys("h", "h", "h", "h"), "a", "z", ""},
		{"one hot key at the start", keys("a", "a", "a", "a"), "a", "z", ""},
		{"a hot key with too little around it", keys("a", "h", "h", "h", "h", "h", "h", "h", "h", "z"), "", "", ""},
		{"a range of one key", keys("k", "k"), "k", "l", ""},
		{"no samples", nil, "", "", ""},
		{"one sample", keys("c"), "", "", ""},
	} {
		got := loadSplitKey(tc.samples, []byte(tc.start), []byte(tc.end))
		if string(got) != tc.want || (tc.want == "" && got != nil) {
			t.Errorf("%s: loadSplitKey(%q, [%q, %q)) = %q, want %q", tc.name, tc.samples, tc.start, tc.end, got, tc.want)
		}
	}
}

// TestRangeLoad: a node reports, for each range it leads, the requests it
// was sent over its load window, a load split key at the median of their
// keys (none for a range whose load is one key), and a size that grows
// with the data written, with a size split key near the middle of the
// range's bytes.
func TestRangeLoad(t *testing.T) {
	const window = 300 * time.Millisecond
	// One node, two ranges: ["", k5000) and [k5000, "").
	c := newTestCluster(t, 1, splitRanges(2, 1), func(cfg *Config) {
		cfg.LoadWindow = window
		cfg.MemTableSize = 1 << 20 // flush every MiB, so written data soon counts
	})
	c.leaderFor(1)
	c.leaderFor(2)
	admin := c.admin(1)
	kv := c.clients[1]
	load := func(threshold uint64) map[uint64]*kvpb.RangeLoad {
		t.Helper()
		resp, err := admin.RangeLoad(ctx(t), &kvpb.RangeLoadRequest{SizeSplitThreshold: threshold})
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]*kvpb.RangeLoad{}
		for _, rl := range resp.Ranges {
			out[rl.RangeId] = rl
		}
		if len(out) != 2 {
			t.Fatalf("RangeLoad reports %v; want both ranges the node leads", resp.Ranges)
		}
		return out
	}
	descs := c.currentRanges()
	inside := func(key []byte, d *kvpb.RangeDescriptor) bool {
		return bytes.Compare(key, d.StartKey) > 0 && (len(d.EndKey) == 0 || bytes.Compare(key, d.EndKey) < 0)
	}

	// The first report starts measuring: no load yet.
	t0 := time.Now()
	first := load(0)
	for id, rl := range first {
		if rl.OpsPerSecond != 0 || rl.LoadSplitKey != nil || rl.SizeSplitKey != nil {
			t.Fatalf("range %d before any request: %v", id, rl)
		}
	}

	// Requests spread over range 2, and on one hot key of range 1.
	const spread, hot = 400, 100
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < spread+hot; i += 8 {
				var err error
				switch {
				case i >= spread:
					_, err = kv.Get(ctx(t), &kvpb.GetRequest{Key: []byte("k1234")})
				case i%4 == 0:
					_, err = kv.Put(ctx(t), &kvpb.PutRequest{Key: fmt.Appendf(nil, "k%04d", 5000+rand.IntN(5000)), Value: []byte("v")})
				default:
					_, err = kv.Get(ctx(t), &kvpb.GetRequest{Key: fmt.Appendf(nil, "k%04d", 5000+rand.IntN(5000))})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Once a window has passed, the next report rolls it: every request
	// counted over at least the window, at most the time since the first
	// report.
	time.Sleep(window)
	rep := load(0)
	elapsed := time.Since(t0).Seconds()
	if got, lo, hi := rep[2].OpsPerSecond, spread/elapsed, spread/window.Seconds(); got < lo || got > hi {
		t.Errorf("range 2: %.0f ops/s, want %d requests over %.2fs to %.2fs: [%.0f, %.0f]", got, spread, window.Seconds(), elapsed, lo, hi)
	}
	if got, lo, hi := rep[1].OpsPerSecond, hot/elapsed, hot/window.Seconds(); got < lo || got > hi {
		t.Errorf("range 1: %.0f ops/s, want [%.0f, %.0f]", got, lo, hi)
	}
	// The median of 64-128 samples of uniform keys over k5000..k9999 is in
	// the middle half but for a chance below 1e-6.
	if k := rep[2].LoadSplitKey; !inside(k, descs[1]) || string(k) < "k6250" || string(k) > "k8750" {
		t.Errorf("range 2's load split key %q: want the median of keys spread over k5000..k9999", k)
	}
	if k := rep[1].LoadSplitKey; k != nil {
		t.Errorf("range 1's load is one key, yet its load split key is %q", k)
	}

	// 2 MiB of data in range 2: its size grows past 1 MiB once flushed,
	// and it gets a size split key near the middle of its bytes.
	const values, valueSize = 512, 4 << 10
	value := make([]byte, valueSize)
	for i := range value {
		value[i] = byte(rand.Uint32())
	}
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < values; i += 8 {
				if _, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: fmt.Appendf(nil, "k7%03d", i), Value: value}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const threshold = 1 << 20
	var rl *kvpb.RangeLoad
	testutil.WaitFor(t, 10*time.Second, "range 2's size estimate to reach 1 MiB", func() bool {
		rl = load(threshold)[2]
		return rl.Bytes >= threshold
	})
	if rl.Bytes <= first[2].Bytes || rl.Bytes > 3<<20 {
		t.Errorf("range 2: %d bytes after 2 MiB written (%d before)", rl.Bytes, first[2].Bytes)
	}
	// Keys k7000..k7511 of equal size, and a few small ones around: the
	// middle is near k7256.
	if k := rl.SizeSplitKey; !inside(k, descs[1]) || string(k) < "k7200" || string(k) > "k7300" {
		t.Errorf("range 2's size split key %q: want near k7256", k)
	}
	if rl := load(threshold)[1]; rl.SizeSplitKey != nil {
		t.Errorf("range 1 holds a few bytes, yet its size split key is %q", rl.SizeSplitKey)
	}
	if rl := load(0)[2]; rl.SizeSplitKey != nil {
		t.Errorf("no threshold asked for, yet range 2's size split key is %q", rl.SizeSplitKey)
	}

	// A range of one key has no size split key, even at the range's
	// start; the first key past the start is one.
	r1 := c.nodes[1].replica(1)
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"k1234"}, ""},
		{[]string{"k0000", "k0001"}, "k0001"},
	} {
		d := &kvpb.RangeDescriptor{RangeId: 1, StartKey: []byte(tc.keys[0]), EndKey: append([]byte(tc.keys[len(tc.keys)-1]), 0),
			Generation: 100 + uint64(len(tc.keys))} // a generation of its own: not the cached scan
		for _, k := range tc.keys {
			if _, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte(k), Value: value}); err != nil {
				t.Fatal(err)
			}
		}
		key, _, _, err := c.nodes[1].sizeSplitKey(r1, d, true)
		if err != nil || string(key) != tc.want || (tc.want == "" && key != nil) {
			t.Errorf("size split key of [%q, %q) holding %q: %q, %v; want %q", d.StartKey, d.EndKey, tc.keys, key, err, tc.want)
		}
	}
}
