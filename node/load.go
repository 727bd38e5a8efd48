package node

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Load and size of the ranges a node leads, for the placement service's
// automatic splits (Admin RangeLoad).
//
// Load costs one atomic add per request, and a sampled key a mutex and a
// copy: a range's requests are counted into the current window of its
// loadTracker, and a reservoir sample of their keys is kept beside the
// count. Windows are rolled lazily, when a report is asked for: no
// goroutine or timer per range, and a range nobody asks about is not even
// counted (its tracker starts at the first report).
//
// Size is Pebble's estimate of the range's span on disk
// (engine.EstimateDataSize). Only for a range over the caller's threshold
// does the node scan the range to find the key at the middle of its bytes,
// once per generation of the range.

// loadSampleSize is the number of keys a load window samples. The split key
// is their median: 64 keys per window, up to 128 over the two windows a
// report covers, put it within a few percent of the true median.
const loadSampleSize = 64

// loadTracker measures one range's requests. Request handlers call record;
// reports (report) roll the windows.
type loadTracker struct {
	// cur is the window requests are counted in; nil until the first
	// report.
	cur atomic.Pointer[loadWindow]

	mu sync.Mutex // serialises reports; guards the fields below
	// prev is the last complete window, nil until there is one.
	prev *loadWindow
	// gen is the range generation the windows measure.
	gen uint64
	// size caches the size split key of one generation of the range.
	size sizeSplit
}

// loadWindow counts the requests of one window and samples their keys
// (reservoir sampling, Vitter's algorithm R).
type loadWindow struct {
	start int64 // node clock, ns
	ops   atomic.Uint64

	mu   sync.Mutex
	keys [loadSampleSize][]byte
}

// record counts a request for key.
func (t *loadTracker) record(key []byte) {
	if w := t.cur.Load(); w != nil {
		w.record(key)
	}
}

func (w *loadWindow) record(key []byte) {
	n := w.ops.Add(1)
	slot := n - 1
	if n > loadSampleSize {
		// The n-th request replaces a sampled one with probability
		// loadSampleSize/n, so every request is equally likely to be in
		// the sample.
		if slot = rand.Uint64N(n); slot >= loadSampleSize {
			return
		}
	}
	k := bytes.Clone(key)
	w.mu.Lock()
	w.keys[slot] = k
	w.mu.Unlock()
}

// sampled appends the window's sampled keys to dst.
func (w *loadWindow) sampled(dst [][]byte) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.keys {
		if k != nil {
			dst = append(dst, k)
		}
	}
	return dst
}

// report returns the range's requests per second and the keys sampled
// from them, over the last complete window and the current one, as of now
// (node clock). It rolls the windows once the current one is window old.
// A range that was never reported on, or whose generation changed since
// (a split: the counts and keys are of a range that no longer exists),
// starts measuring afresh, and reports nothing until it has measured for
// a whole window.
func (t *loadTracker) report(now int64, gen uint64, window time.Duration) (float64, [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ops, cur := t.rollLocked(now, gen, window)
	if cur == nil {
		return 0, nil
	}
	return ops, cur.sampled(t.prev.sampled(nil))
}

// rate is report without the key samples (for the node's metrics).
func (t *loadTracker) rate(now int64, gen uint64, window time.Duration) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	ops, _ := t.rollLocked(now, gen, window)
	return ops
}

// rollLocked rolls the windows as report says and returns the requests per
// second over the last complete window and cur, the current one; cur is nil
// while there is no complete window. t.mu is held.
func (t *loadTracker) rollLocked(now int64, gen uint64, window time.Duration) (opsPerSecond float64, cur *loadWindow) {
	cur = t.cur.Load()
	if cur == nil || gen != t.gen {
		t.gen, t.prev = gen, nil
		t.cur.Store(&loadWindow{start: now})
		return 0, nil
	}
	if now-cur.start >= int64(window) {
		t.prev, cur = cur, &loadWindow{start: now}
		t.cur.Store(cur)
	}
	if t.prev == nil {
		return 0, nil
	}
	elapsed := time.Duration(now - t.prev.start).Seconds()
	return float64(t.prev.ops.Load()+cur.ops.Load()) / elapsed, cur
}

// loadSplitKey returns the median of the sampled keys that lie in
// [start, end) (an empty end is unbounded), moved up past start: a key
// strictly inside the range. It returns nil when the split would leave
// less than a quarter of the samples on either side: a range whose load
// is one key (or that holds one key) has no useful split.
func loadSplitKey(samples [][]byte, start, end []byte) []byte {
	in := make([][]byte, 0, len(samples))
	for _, k := range samples {
		if bytes.Compare(k, start) >= 0 && (len(end) == 0 || bytes.Compare(k, end) < 0) {
			in = append(in, k)
		}
	}
	slices.SortFunc(in, bytes.Compare)
	n := len(in)
	// i is the first sample at the median's key, or past start if the
	// median is start: the split key, with the i samples before it on
	// the left.
	i := n / 2
	for i > 0 && i < n && bytes.Equal(in[i-1], in[i]) {
		i--
	}
	for i < n && bytes.Equal(in[i], start) {
		i++
	}
	if i == 0 || i == n || 4*i < n || 4*(n-i) < n {
		return nil
	}
	return in[i]
}

// sizeSplit is the size split key found for one generation of a range,
// and the bytes of keys and values the scan counted.
type sizeSplit struct {
	gen   uint64
	at    int64 // node clock, ns; 0: never scanned
	key   []byte
	bytes uint64
}

// maxSizeSplitScan bounds the bytes of keys and values one size split
// scan reads: the split key of a larger range is the middle of its first
// maxSizeSplitScan bytes, which cuts at most that much off it per split.
const maxSizeSplitScan = 256 << 20

// sizeRescanInterval is how long a scan that found no split key stands
// (the range's bytes on disk were mostly overwritten or deleted data, or
// one key): long enough that such a range costs a scan a minute, not one
// per report.
const sizeRescanInterval = time.Minute

// maxSizeScansPerReport bounds the ranges one RangeLoad call scans for
// their size split key: after a burst of writes, or once size splits are
// turned on, many ranges may be past the threshold at once, and placement
// splits only a few at a time anyway. The others are scanned by later
// calls.
const maxSizeScansPerReport = 8

// sizeSplitKey returns a key near the middle of range d's keys and values
// by their bytes, strictly inside it (nil if there is none, a range of one
// key), and the bytes it counted. It scans the range twice (the total,
// then to half of it) the first time it is asked about a generation of
// the range, and returns what it found then until the range changes; a
// scan that found no key stands for sizeRescanInterval. Without mayScan,
// it returns what an earlier scan found, if that stands, or nothing;
// scanned reports whether it scanned.
func (n *Node) sizeSplitKey(r *replica, d *kvpb.RangeDescriptor, mayScan bool) (key []byte, total uint64, scanned bool, err error) {
	now := n.Now()
	t := &r.load
	t.mu.Lock()
	c := t.size
	t.mu.Unlock()
	if c.at != 0 && c.gen == d.Generation && (c.key != nil || now-c.at < int64(sizeRescanInterval)) {
		return c.key, c.bytes, false, nil
	}
	if !mayScan {
		return nil, 0, false, nil
	}
	end := nilIfEmpty(d.EndKey)
	err = n.eng.Scan(d.StartKey, end, 0, func(k, v []byte) bool {
		total += uint64(len(k) + len(v))
		return total < maxSizeSplitScan
	})
	if err != nil {
		return nil, 0, true, err
	}
	total = min(total, maxSizeSplitScan)
	var left uint64 // bytes of the keys before k
	err = n.eng.Scan(d.StartKey, end, 0, func(k, v []byte) bool {
		if left > 0 && 2*left >= total {
			key = bytes.Clone(k)
			return false
		}
		left += uint64(len(k) + len(v))
		return true
	})
	if err != nil {
		return nil, 0, true, err
	}
	t.mu.Lock()
	t.size = sizeSplit{gen: d.Generation, at: now, key: key, bytes: total}
	t.mu.Unlock()
	return key, total, true, nil
}

// RangeLoad implements the Admin RPC: see kvpb.AdminServer.
func (s *adminServer) RangeLoad(ctx context.Context, req *kvpb.RangeLoadRequest) (*kvpb.RangeLoadResponse, error) {
	n := s.n
	n.mu.RLock()
	var led []*replica
	for _, r := range n.replicas {
		if r.leader.Load() == n.cfg.NodeID && len(r.desc.Load().GetReplicas()) > 0 {
			led = append(led, r)
		}
	}
	n.mu.RUnlock()
	slices.SortFunc(led, func(a, b *replica) int { return cmp.Compare(a.id, b.id) })
	resp := &kvpb.RangeLoadResponse{Ranges: make([]*kvpb.RangeLoad, 0, len(led))}
	now := n.Now()
	scans := 0
	for _, r := range led {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		d := r.desc.Load()
		size, err := n.eng.EstimateDataSize(d.StartKey, nilIfEmpty(d.EndKey))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "range %d: estimate its size: %v", r.id, err)
		}
		ops, samples := r.load.report(now, d.Generation, n.cfg.LoadWindow)
		rl := &kvpb.RangeLoad{RangeId: r.id, Generation: d.Generation, Bytes: size, OpsPerSecond: ops,
			LoadSplitKey: loadSplitKey(samples, d.StartKey, d.EndKey)}
		if t := req.GetSizeSplitThreshold(); t > 0 && size >= t {
			key, total, scanned, err := n.sizeSplitKey(r, d, scans < maxSizeScansPerReport)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "range %d: find its size split key: %v", r.id, err)
			}
			if scanned {
				scans++
			}
			if total >= t {
				rl.SizeSplitKey = key
			}
		}
		resp.Ranges = append(resp.Ranges, rl)
	}
	return resp, nil
}
