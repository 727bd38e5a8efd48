package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/router"
)

// TestRollingRestart restarts the three nodes of a cluster one after the
// other with SIGTERM, while clients write through the router: each node
// drains (hands its leaderships off) before it stops, and exits cleanly;
// restarted, it takes leaderships back once the balancer lets it (after
// placement's settle time). Every write must succeed, and the longest
// stretch without a successful write to a range is logged: a drain costs
// the ranges a leader transfer, not an election timeout.
//
//	go test -run TestRollingRestart -v ./cmd/shardd
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and restarts three processes")
	}
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, 4)
	placement := fmt.Sprintf("127.0.0.1:%d", ports[0])
	const ranges = 6
	pl := startProcUntil(t, placementBin, "placement", filepath.Join(base, "placement.log"), "serving on",
		"start", "--id", "1", "--listen", placement, "--data-dir", filepath.Join(base, "placement"),
		"--initial-ranges", strconv.Itoa(ranges), "--expected-nodes", "3", "--balance-interval", "200ms",
		"--settle-time", "1s", "--log-level", "warn")
	pl.waitReady(t)
	nodes := map[int]*proc{}
	nodeArgs := map[int][]string{}
	for id := 1; id <= 3; id++ {
		nodeArgs[id] = []string{"start", "--id", strconv.Itoa(id), "--listen", fmt.Sprintf("127.0.0.1:%d", ports[id]), "--gossip=",
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)), "--placement", placement, "--log-level", "info"}
		nodes[id] = startProc(t, shardd, fmt.Sprintf("node %d", id), filepath.Join(base, fmt.Sprintf("node%d.log", id)), nodeArgs[id]...)
		nodes[id].waitReady(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs in %s", base)
		}
	})

	pc, err := client.New([]string{placement})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// One key per range ("k%04d" ranges cut the space evenly).
	keys := []string{"a", "k2000", "k4000", "k5000", "k7000", "k9000"}
	for _, k := range keys {
		if err := rc.Put(ctx, []byte(k), []byte("v")); err != nil {
			t.Fatalf("first put of %s: %v", k, err)
		}
	}

	// Writers record when each successful write ended, per key.
	var mu sync.Mutex
	acked := map[string][]time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := rc.Put(wctx, []byte(k), []byte(fmt.Sprintf("w%d.%d", i, n)))
				wcancel()
				if err != nil {
					t.Errorf("put %s during the rolling restart: %v", k, err)
					return
				}
				mu.Lock()
				acked[k] = append(acked[k], time.Now())
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	from := time.Now()
	for id := 1; id <= 3; id++ {
		start := time.Now()
		if code := nodes[id].terminate(t); code != 0 {
			t.Errorf("node %d exited %d after SIGTERM", id, code)
		}
		t.Logf("node %d drained and stopped in %v", id, time.Since(start).Round(time.Millisecond))
		nodes[id] = startProc(t, shardd, fmt.Sprintf("node %d", id), filepath.Join(base, fmt.Sprintf("node%d.log", id)), nodeArgs[id]...)
		nodes[id].waitReady(t)
		time.Sleep(2 * time.Second) // settle, take leaderships back
	}
	to := time.Now()
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	var gaps []time.Duration
	for _, k := range keys {
		times := acked[k]
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		gap, last := time.Duration(0), from
		for _, at := range times {
			if at.After(from) && at.Before(to) {
				gap, last = max(gap, at.Sub(last)), at
			}
		}
		gaps = append(gaps, max(gap, to.Sub(last)).Round(time.Millisecond))
	}
	t.Logf("rolling restart of 3 nodes over %v: longest stretch without a successful write, per range: %v",
		to.Sub(from).Round(time.Millisecond), gaps)
}
