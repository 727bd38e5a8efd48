package node

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

// The figures of a replica move's snapshot: TestMoveSnapshotMemoryAndRate
// moves a range of -move.mib MiB at -move.rate MiB/s and logs them. For
// the figures of a 100 MiB range:
//
//	go test ./node -run TestMoveSnapshotMemoryAndRate -move.mib=100 -move.rate=32 -v
var (
	moveMiB  = flag.Int("move.mib", 32, "MiB of data in the range TestMoveSnapshotMemoryAndRate moves")
	moveRate = flag.Int("move.rate", 16, "snapshot rate limit of TestMoveSnapshotMemoryAndRate in MiB/s; negative means none")
)

// TestMoveSnapshotMemoryAndRate adds a learner to a range of many MiB and
// checks that the snapshot that brings it the data streams: the Go heap
// that stays live while it is in flight (both ends run in this process)
// grows by well under the range's size (what is in flight at once, a few
// chunks in buffers on both ends, does not grow with it; the range is
// large enough for that to show), and the sender keeps to its rate
// limit (the time until the learner ingested it is at least what the
// limit allows for its bytes beyond the first chunk).
func TestMoveSnapshotMemoryAndRate(t *testing.T) {
	rate := int64(*moveRate) << 20
	ingested := make(chan time.Time, 1)
	c := newTestCluster(t, 2, splitRanges(1, 1), func(cfg *Config) {
		cfg.SnapshotBytesPerSecond = rate
		cfg.Knobs.LogRetention = 8 // the values written stay in no log
		if cfg.NodeID == 2 {
			cfg.Knobs.AfterIngest = func(uint64) {
				select {
				case ingested <- time.Now():
				default:
				}
			}
		}
	})
	dataBytes := fillRange(t, c, 1, *moveMiB<<20)

	// The baseline is the least of a few samples: what the writes left
	// behind (buffers, the logs' last entries) may still go meanwhile.
	base := uint64(math.MaxUint64)
	for range 3 {
		runtime.GC()
		base = min(base, liveHeap())
		time.Sleep(50 * time.Millisecond)
	}
	peak := base
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.GC()
			peak = max(peak, liveHeap())
		}
	}()
	start := time.Now()
	newMover(c).step(1, kvpb.ReplicaChange_ADD_LEARNER, 2)
	var at time.Time
	select {
	case at = <-ingested:
	case <-time.After(2 * time.Minute):
		t.Fatal("the learner never ingested its snapshot")
	}
	close(stop)
	<-sampled
	elapsed := at.Sub(start)
	growth := int64(peak) - int64(base)
	t.Logf("moved a range of %.1f MiB in %v: %.1f MiB/s (limit %d MiB/s); the live Go heap grew by at most %.1f MiB",
		float64(dataBytes)/(1<<20), elapsed.Round(time.Millisecond), float64(dataBytes)/(1<<20)/elapsed.Seconds(), *moveRate, float64(growth)/(1<<20))

	if rate > 0 {
		least := time.Duration(float64(dataBytes-snapshotChunkBytes) / float64(rate) * float64(time.Second))
		if elapsed < least {
			t.Errorf("the snapshot of %d bytes took %v, under the %v that %d bytes/s allow", dataBytes, elapsed, least, rate)
		}
	}
	if !pebbleOffHeap {
		t.Log("built without cgo: Pebble's block cache is in the Go heap, which then measures it too; the heap bound is not checked")
	} else if growth > int64(dataBytes)/2 {
		t.Errorf("the live Go heap grew by %d bytes while a snapshot of %d bytes was in flight: it is held whole, not streamed", growth, dataBytes)
	}
	var keys int
	if err := c.nodes[2].eng.Scan(nil, nil, 0, func(_, _ []byte) bool { keys++; return true }); err != nil {
		t.Fatal(err)
	}
	if want := dataBytes / (fillValueBytes + fillKeyBytes); keys != want {
		t.Fatalf("the learner holds %d keys, want %d", keys, want)
	}
}

const (
	fillValueBytes = 64 << 10
	fillKeyBytes   = 7 // "k%06d"
)

// fillRange writes about n bytes of incompressible values to range
// rangeID, in batches of about 1 MiB, and returns the bytes of keys and
// values written.
func fillRange(t *testing.T, c *testCluster, rangeID uint64, n int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	written, k := 0, 0
	for written < n {
		req := &kvpb.BatchRequest{}
		for range 15 {
			v := make([]byte, fillValueBytes)
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			req.Ops = append(req.Ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte(fmt.Sprintf("k%06d", k)), Value: v}}})
			written += fillKeyBytes + fillValueBytes
			k++
		}
		if err := c.do(rangeID, func(kv kvpb.KVClient) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := kv.Batch(ctx, req)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return written
}

// liveHeap is the Go heap that the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestByteRate: the bucket lets its burst through at once, then makes
// each sender sleep off the debt it leaves, senders queueing behind each
// other's reservations; bytes over time never beat the rate.
func TestByteRate(t *testing.T) {
	now := time.Unix(0, 0)
	var slept time.Duration
	l := newByteRate(1000, 500)
	l.now = func() time.Time { return now }
	l.at = now
	l.sleep = func(_ context.Context, d time.Duration) error { slept += d; return nil }
	for _, tc := range []struct {
		n    int
		wait time.Duration
	}{
		{500, 0},                      // the burst
		{250, 250 * time.Millisecond}, // debt 250 at 1000/s
		{250, 500 * time.Millisecond}, // queued behind it: debt 500
	} {
		slept = 0
		if err := l.wait(context.Background(), tc.n); err != nil || slept != tc.wait {
			t.Fatalf("wait(%d) slept %v (%v), want %v", tc.n, slept, err, tc.wait)
		}
	}
	now = now.Add(2 * time.Second) // repays the debt and refills to the burst only
	slept = 0
	_ = l.wait(context.Background(), 700)
	if slept != 200*time.Millisecond {
		t.Fatalf("after a long pause, wait(700) slept %v, want 200ms", slept)
	}
	// A wait cut short gives its bytes back: they were never sent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.sleep = sleepCtx
	if err := l.wait(ctx, 300); err == nil || l.level != -200 {
		t.Fatalf("a canceled wait(300) returned %v and left the level at %v, want an error and -200", err, l.level)
	}
	if newByteRate(0, 1) != nil || newByteRate(-1, 1).wait(context.Background(), 1<<30) != nil {
		t.Fatal("a rate that is not positive must not limit")
	}
}

// TestLearnerRemovedWhileItsSnapshotIsInFlight: placement rolls back a
// move by removing the learner it added while the learner's snapshot is
// still on its way, slowed by the rate limit. The removal bumps the
// range's generation, so the leader's word of it, a snapshot, replaces the
// one in flight (rather than wait for it, while its retries run out), and
// its header alone makes node 4 drop the replica: node 4 keeps nothing of
// the range, and never ingests the old snapshot.
func TestLearnerRemovedWhileItsSnapshotIsInFlight(t *testing.T) {
	ranges := splitRanges(1, 3)
	ranges[0].LeaderNodeId = 1
	var ingests atomic.Int32
	c := newTestCluster(t, 4, ranges, func(cfg *Config) {
		cfg.SnapshotBytesPerSecond = 1 << 20
		if cfg.NodeID == 4 {
			cfg.Knobs.AfterIngest = func(uint64) { ingests.Add(1) }
		}
	})
	fillRange(t, c, 1, 10<<20) // ten seconds of snapshot
	m := newMover(c)
	m.step(1, kvpb.ReplicaChange_ADD_LEARNER, 4)
	deadline := time.Now().Add(10 * time.Second)
	for c.nodes[4].replica(1) == nil {
		if time.Now().After(deadline) {
			t.Fatal("node 4 never heard of range 1")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := m.step(1, kvpb.ReplicaChange_REMOVE_REPLICA, 4)
	c.awaitGone(4, 1)
	c.checkRemoved(4, d)
	if n := ingests.Load(); n != 0 {
		t.Fatalf("node 4 ingested %d snapshots of range 1, which it left", n)
	}
}
