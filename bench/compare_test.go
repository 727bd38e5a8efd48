package main

import (
	"math"
	"strings"
	"testing"
)

func TestSpreadAndRatio(t *testing.T) {
	s := spreadOf([]float64{10, 12, 14})
	if s.Mean != 12 || s.SD != 2 || s.Min != 10 || s.Max != 14 {
		t.Errorf("spreadOf(10, 12, 14) = %+v", s)
	}
	r := ratioOf([]float64{10, 30, 20, 40}, []float64{10, 10, 10, 10})
	if r.Median != 2.5 || r.Min != 1 || r.Max != 4 || len(r.Rounds) != 4 || r.Rounds[1] != 3 {
		t.Errorf("ratioOf = %+v, want median 2.5 over 1..4, rounds in order", r)
	}
	if r := ratioOf([]float64{1}, []float64{0}); r.Median != 0 || len(r.Rounds) != 0 {
		t.Errorf("a ratio over zero = %+v, want none", r)
	}
}

// TestCompareRounds sums up alternating runs of two systems and prints
// them.
func TestCompareRounds(t *testing.T) {
	run := func(sys string, ops, p99 float64) *runResult {
		return &runResult{System: sys, OpsPerSec: ops, All: opStats{P50: 1, P99: p99},
			CPU: &cpuPerOp{StoreMicros: 100, LoadMicros: 20}}
	}
	c := compare("A", "shardd", "etcd", []*runResult{
		run("shardd", 2000, 10), run("etcd", 1000, 20),
		run("shardd", 2200, 12), run("etcd", 1000, 20),
		run("shardd", 1800, 8), run("etcd", 1200, 16),
	})
	if c.Rounds != 3 || math.Abs(c.OpsPerSec[0].Mean-2000) > 1e-9 || math.Abs(c.OpsPerSec[1].Mean-3200.0/3) > 1e-9 {
		t.Errorf("comparison %+v", c)
	}
	if c.OpsRatio.Median != 2 || c.OpsRatio.Min != 1.5 || math.Abs(c.OpsRatio.Max-2.2) > 1e-9 {
		t.Errorf("ops ratio %+v, want median 2 over 1.5..2.2", c.OpsRatio)
	}
	if c.P99Ratio.Median != 0.5 || c.CPURatio.Median != 1 {
		t.Errorf("p99 ratio %+v, CPU ratio %+v", c.P99Ratio, c.CPURatio)
	}
	var b strings.Builder
	printComparison(&b, c)
	for _, want := range []string{"workload A, 3 rounds, shardd against etcd", "ops/s", "2000 ± 200", "2.00 (1.50–2.20)", "CPU µs/op"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("comparison printout lacks %q:\n%s", want, b.String())
		}
	}
}
