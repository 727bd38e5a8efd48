package sim

import (
	"errors"
	"strings"
	"testing"

	"github.com/shardd/shardd/group"
)

// TestPlantedBugs proves the checkers are not vacuous: each planted bug
// must be reported within a bounded number of seeds.
func TestPlantedBugs(t *testing.T) {
	noMargin := int64(1) // zero would mean the default
	for _, tc := range []struct {
		name string
		opt  Options
		// stuckOK: the bug may also wedge the group, and a seed where it
		// does so before it breaks safety is passed over.
		stuckOK bool
	}{
		{name: "forget-promise-on-restart", opt: Options{Knobs: &group.TestingKnobs{ForgetPromiseOnRestart: true}}},
		{name: "ignore-accepted-values", opt: Options{Knobs: &group.TestingKnobs{IgnoreAcceptedValues: true}}},
		// Without the margin a lease outlives the acceptors' promises by
		// up to the clocks' rate error over a lease: at 30% a seed in
		// about 500 catches it (at 20%, one in about 700, too close to the
		// bound for a test whose seeds' paths shift with any change).
		{name: "lease-without-drift-margin", opt: Options{MaxClockDrift: &noMargin, Drift: 0.3}},
		// Clock jumps the margin does not absorb. An election timeout is
		// about a lease long, so only jumps near a lease let a new leader
		// in before the old lease ends.
		{name: "clock-jumps-beyond-margin", opt: Options{JumpScale: 40}},
		// A caller that breaks the Ready contract: a crash before the sync
		// loses what its messages claimed. A follower whose reported
		// chosen point goes back can also be left behind for good: its
		// leader sends commits from the point it reported before.
		{name: "send-before-sync", opt: Options{SendBeforeSync: true}, stuckOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const maxSeeds = 2000
			for seed := uint64(1); seed <= maxSeeds; seed++ {
				opt := tc.opt
				opt.Seed, opt.Replicas, opt.Hostile = seed, 3, true
				_, err := Run(opt)
				var v *Violation
				if errors.As(err, &v) {
					if strings.HasPrefix(v.What, "no progress") {
						if tc.stuckOK {
							continue
						}
						t.Fatalf("seed %d: the planted bug broke liveness before safety: %s", seed, v.What)
					}
					t.Logf("found after %d seeds: %s", seed, v.What)
					return
				}
			}
			t.Fatalf("the simulation missed a planted bug in %d seeds", maxSeeds)
		})
	}
}
