package sim

import (
	"flag"
	"fmt"
	"testing"
)

var (
	flagSeeds = flag.Int("sim.seeds", 500, "seeds to run per configuration")
	flagSeed  = flag.Uint64("sim.seed", 0, "run only this seed (replays a failure)")
	flagSteps = flag.Int("sim.steps", 2000, "faulty steps per run")
)

// seeds returns the seeds to run: the one asked for, or the first
// -sim.seeds (fewer under -short, which the race detector run uses).
func seeds() []uint64 {
	if *flagSeed != 0 {
		return []uint64{*flagSeed}
	}
	n := *flagSeeds
	if testing.Short() {
		n = min(n, 50)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func TestSimulation(t *testing.T) {
	for _, replicas := range []int{3, 5} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			t.Parallel()
			var total Stats
			for _, seed := range seeds() {
				st, err := Run(Options{Seed: seed, Replicas: replicas, Steps: *flagSteps})
				if err != nil {
					// Replay with the trace on, so the report shows how it happened.
					_, err = Run(Options{Seed: seed, Replicas: replicas, Steps: *flagSteps, Trace: true})
					t.Fatalf("%v\nreplay: go test ./group/sim -run 'TestSimulation/replicas=%d$' -sim.seed=%d -sim.steps=%d",
						err, replicas, seed, *flagSteps)
				}
				total.add(st)
			}
			t.Logf("%d seeds: %+v", len(seeds()), total)
			// The world must have exercised what it claims to.
			if total.Chosen == 0 || total.Crashes == 0 || total.Elections == 0 || total.Dropped == 0 || total.Quiesced == 0 {
				t.Fatalf("the simulation did not exercise the protocol: %+v", total)
			}
		})
	}
}

func (s *Stats) add(o Stats) {
	s.Chosen += o.Chosen
	s.Proposed += o.Proposed
	s.Delivered += o.Delivered
	s.Dropped += o.Dropped
	s.Crashes += o.Crashes
	s.Elections += o.Elections
	s.Transfers += o.Transfers
	s.ConfChanges += o.ConfChanges
	s.Snapshots += o.Snapshots
	s.Reads += o.Reads
	s.Quiesced += o.Quiesced
}
