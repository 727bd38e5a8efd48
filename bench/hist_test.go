package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRecorderPercentiles records known latencies and checks the table's
// figures against them, within the histogram's 0.1% precision.
func TestRecorderPercentiles(t *testing.T) {
	start := time.Unix(0, 0)
	rec := newRecorder(start)
	// Reads take 1..1000 ms, one of each; one read fails.
	for i := 1; i <= 1000; i++ {
		rec.record(opRead, time.Duration(i)*time.Millisecond, nil)
	}
	rec.record(opRead, time.Second, errors.New("unavailable"))
	rec.record(opUpdate, 2*time.Minute, nil) // beyond the top: kept, at the top
	hists, errs, _ := rec.totals()
	s := statsOf("read", hists[opRead], errs[opRead], 10*time.Second)
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.998 || got > want*1.002 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if s.Count != 1000 || s.Errors != 1 {
		t.Errorf("count %d, errors %d; want 1000 and 1", s.Count, s.Errors)
	}
	near("ops/s", s.OpsPerSec, 100)
	near("p50", s.P50, 500)
	near("p95", s.P95, 950)
	near("p99", s.P99, 990)
	near("p99.9", s.P999, 999)
	near("max", s.Max, 1000)
	u := statsOf("update", hists[opUpdate], 0, time.Second)
	near("update max", u.Max, float64(histMaxMicros)/1000)

	var b strings.Builder
	writeTable(&b, []opStats{s})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("table has %d lines, want a header and a row:\n%s", len(lines), b.String())
	}
	for _, col := range []string{"op", "count", "ops/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header %q lacks %q", lines[0], col)
		}
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "read 1000 100 500 950 990 999 1000 1" {
		t.Errorf("row = %q", lines[1])
	}
}

// TestRecorderSamples checks that each sample covers its own window
// only.
func TestRecorderSamples(t *testing.T) {
	start := time.Unix(0, 0)
	rec := newRecorder(start)
	for range 100 {
		rec.record(opUpdate, 2*time.Millisecond, nil)
	}
	s1 := rec.sample(start.Add(time.Second))
	for range 50 {
		rec.record(opRead, 10*time.Millisecond, nil)
	}
	rec.record(opRead, 0, errors.New("boom"))
	s2 := rec.sample(start.Add(3 * time.Second))
	if s1.OpsPerSec != 100 || s1.P50 < 1.99 || s1.P50 > 2.01 || s1.Errors != 0 || s1.At != 1 {
		t.Errorf("first sample %+v, want 100 ops/s at p50 2 ms, at 1 s", s1)
	}
	if s2.OpsPerSec != 25 || s2.P99 < 9.99 || s2.P99 > 10.01 || s2.Errors != 1 || s2.At != 3 {
		t.Errorf("second sample %+v, want 25 ops/s at p99 10 ms with 1 error, at 3 s", s2)
	}
	if n, _, _, errs := rec.soFar(); n != 150 || errs != 1 {
		t.Errorf("soFar: %d operations and %d errors, want 150 and 1", n, errs)
	}
}
