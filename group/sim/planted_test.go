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
	}{
		{"forget-promise-on-restart", Options{Knobs: &group.TestingKnobs{ForgetPromiseOnRestart: true}}},
		{"ignore-accepted-values", Options{Knobs: &group.TestingKnobs{IgnoreAcceptedValues: true}}},
		{"lease-without-drift-margin", Options{MaxClockDrift: &noMargin, Drift: 0.2}},
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
