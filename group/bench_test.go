package group_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shardd/shardd/group"
	pb "github.com/shardd/shardd/paxospb"
)

type fixedClock struct{ t int64 }

func (c *fixedClock) Now() int64 { return c.t }

// benchGroup is three replicas wired directly to each other: no I/O, no
// encoding, so the benchmark measures the state machine alone.
type benchGroup struct {
	rs    map[uint64]*group.Replica
	queue []pb.Message
}

func newBenchGroup(b *testing.B) *benchGroup {
	g := &benchGroup{rs: make(map[uint64]*group.Replica)}
	clock := &fixedClock{}
	for id := uint64(1); id <= 3; id++ {
		cfg := group.DefaultConfig()
		cfg.ID, cfg.Clock, cfg.Rand = id, clock, rand.New(rand.NewPCG(id, 1))
		cfg.MaxInflight = 1024
		r, err := group.New(cfg, group.BootstrapState(1, 2, 3))
		if err != nil {
			b.Fatal(err)
		}
		g.rs[id] = r
	}
	// Restarted replicas refuse Phase 1 for a lease; start past it.
	clock.t = 2 * group.DefaultConfig().LeaseDuration
	for range 100 {
		g.rs[1].Tick()
		g.stabilize()
		if g.rs[1].Status().Role == group.Leader {
			return g
		}
	}
	b.Fatal("no leader elected")
	return nil
}

// stabilize processes Readys and delivers messages until all is quiet.
func (g *benchGroup) stabilize() (applied int) {
	for {
		busy := false
		for id := uint64(1); id <= 3; id++ {
			r := g.rs[id]
			if !r.HasReady() {
				continue
			}
			busy = true
			rd := r.Ready()
			g.queue = append(g.queue, rd.SendFirst...)
			g.queue = append(g.queue, rd.Messages...)
			if id == 1 {
				applied += len(rd.Committed)
			}
			r.Advance(rd)
		}
		q := g.queue
		g.queue = nil
		for _, m := range q {
			busy = true
			g.rs[m.To].Step(m)
		}
		if !busy {
			return applied
		}
	}
}

// BenchmarkThreeReplicas measures entries chosen and applied per second by
// a 3-replica group with batch proposals between Readys, as the node
// runtime would make them.
func BenchmarkThreeReplicas(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			g := newBenchGroup(b)
			leader := g.rs[1]
			data := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			total := 0
			for total < b.N {
				n := min(batch, b.N-total)
				for range n {
					if err := leader.Propose(data); err != nil {
						b.Fatal(err)
					}
				}
				total += n
				g.stabilize()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
