package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteCharts draws two systems' runs, two rounds each, and checks
// that every chart is written in every format, and that a run without
// operations draws too.
func TestWriteCharts(t *testing.T) {
	dir := t.TempDir()
	var series []chartSeries
	for sys, lat := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond} {
		s := chartSeries{label: []string{"shardd", "etcd"}[sys], color: sys, hist: newHist()}
		for range 2 {
			rec := newRecorder(time.Unix(0, 0))
			var samples []sample
			for sec := 1; sec <= 5; sec++ {
				for i := range 200 {
					rec.record(opRead, lat+time.Duration(i)*10*time.Microsecond, nil)
				}
				samples = append(samples, rec.sample(time.Unix(int64(sec), 0)))
			}
			hists, _, _ := rec.totals()
			s.rounds = append(s.rounds, samples)
			s.hist.Merge(hists[opRead])
		}
		series = append(series, s)
	}
	empty := newRecorder(time.Unix(0, 0))
	series = append(series, chartSeries{label: "idle", color: 2,
		rounds: [][]sample{{empty.sample(time.Unix(1, 0))}}, hist: newHist()})
	files, err := writeCharts(dir, "A", "workload A", series)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3*len(chartFormats) {
		t.Errorf("wrote %d files, want %d: %v", len(files), 3*len(chartFormats), files)
	}
	for _, chart := range []string{"throughput", "latency", "distribution"} {
		for _, ext := range chartFormats {
			fi, err := os.Stat(filepath.Join(dir, "A-"+chart+"."+ext))
			if err != nil {
				t.Error(err)
			} else if fi.Size() < 1000 {
				t.Errorf("%s.%s is %d bytes", chart, ext, fi.Size())
			}
		}
	}
	// Nothing to draw at all still makes (empty) charts, not a panic.
	if _, err := writeCharts(dir, "none", "nothing", []chartSeries{{label: "idle", hist: newHist()}}); err != nil {
		t.Fatal(err)
	}
}
