package node

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/kvstream"
	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
)

// BenchmarkClusterWrites measures 16-byte writes with sync on through three
// nodes in this process (so the nodes and the load share the machine's
// cores), 256 concurrent writers, keys spread over 1, 100 or 1,000 groups.
func BenchmarkClusterWrites(b *testing.B) {
	for _, groups := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			benchmarkWrites(b, groups, 256, nil)
		})
	}
}

// benchmarkWrites runs the write load; tweak, if set, adjusts each node's
// config.
func benchmarkWrites(b *testing.B, groups, writers int, tweak func(*Config)) {
	ranges := testutil.Ranges(groups, 3) // leaders spread
	c := newTestCluster(b, 3, nil, func(cfg *Config) {
		cfg.TickInterval = 50 * time.Millisecond
		if tweak != nil {
			tweak(cfg)
		}
	})
	for _, n := range c.nodes {
		if err := n.CreateGroups(ranges); err != nil {
			b.Fatal(err)
		}
	}
	leaders := make([]uint64, groups)
	for i := range ranges {
		leaders[i] = c.leaderFor(uint64(i + 1))
	}
	clients := map[uint64]*kvstream.Client{}
	for id, kv := range c.clients {
		cl, err := kvstream.New(kv)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		clients[id] = cl
	}
	value := make([]byte, 16)
	var lat []time.Duration
	var latMu sync.Mutex
	var next atomic.Int64
	start := c.nodes[1].Stats()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				g := rng.IntN(groups)
				key := fmt.Appendf(nil, "k%04d-%d", g*10000/groups, rng.Uint32())
				t0 := time.Now()
				resp, err := clients[leaders[g]].Do(&kvpb.Request{Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{Key: key, Value: value}}})
				mine = append(mine, time.Since(t0))
				if err != nil || resp.Error != nil {
					b.Errorf("put: %v %v", err, resp.GetError())
					return
				}
			}
			latMu.Lock()
			lat = append(lat, mine...)
			latMu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	end := c.nodes[1].Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(end.Syncs-start.Syncs)/b.Elapsed().Seconds(), "syncs/s(node1)")
	b.ReportMetric(end.CommandsPerValue, "cmds/value")
	if f := end.Transport.FramesSent; f > 0 {
		b.ReportMetric(float64(end.Transport.MessagesSent)/float64(f), "msgs/frame")
	}
}
