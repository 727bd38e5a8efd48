package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chartSeries is one system's runs of a workload: its label in the
// legend, its color (by index), the time series of each run (a
// comparison alternates several rounds) and the latencies of all its runs
// together.
type chartSeries struct {
	label  string
	color  int
	rounds [][]sample
	hist   *hdrhistogram.Histogram
}

// chartFormats are the files every chart is written as: PNG to look at,
// SVG to zoom into.
var chartFormats = []string{"png", "svg"}

// writeCharts draws three charts of the runs in series, all runs on the
// same axes, into dir as prefix-throughput, prefix-latency and
// prefix-distribution, each in every chartFormats format. title names
// the workload. It returns the files written.
func writeCharts(dir, prefix, title string, series []chartSeries) ([]string, error) {
	charts := []struct {
		name string
		draw func(string, []chartSeries) (*plot.Plot, error)
	}{
		{"throughput", throughputChart},
		{"latency", latencyChart},
		{"distribution", distributionChart},
	}
	var files []string
	for _, c := range charts {
		p, err := c.draw(title, series)
		if err != nil {
			return files, fmt.Errorf("%s chart: %w", c.name, err)
		}
		for _, ext := range chartFormats {
			f := filepath.Join(dir, fmt.Sprintf("%s-%s.%s", prefix, c.name, ext))
			if err := p.Save(20*vg.Centimeter, 12*vg.Centimeter, f); err != nil {
				return files, err
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// throughputChart draws operations per second over time, a line per
// run.
func throughputChart(title string, series []chartSeries) (*plot.Plot, error) {
	p := newPlot(title+": throughput", "seconds since the run started", "operations per second")
	var top float64
	for _, s := range series {
		for round, samples := range s.rounds {
			xys := make(plotter.XYs, len(samples))
			for j, smp := range samples {
				xys[j] = plotter.XY{X: smp.At, Y: smp.OpsPerSec}
				top = max(top, smp.OpsPerSec)
			}
			if err := addLine(p, xys, legendOnce(s, round, ""), s.color, 0); err != nil {
				return nil, err
			}
		}
	}
	// Room above the lines for the legend.
	p.Y.Min, p.Y.Max = 0, 1.4*top
	return p, nil
}

// legendOnce labels the first round's line of a series (suffixed by what)
// and no other, so a comparison's legend has an entry per system rather
// than per run.
func legendOnce(s chartSeries, round int, what string) string {
	if round > 0 {
		return ""
	}
	label := s.label
	if len(s.rounds) > 1 {
		label += fmt.Sprintf(" (%d runs)", len(s.rounds))
	}
	if what != "" {
		label += " " + what
	}
	return label
}

// latencyChart draws p50, p99 and p99.9 over time on a log scale, one
// dash pattern per percentile.
func latencyChart(title string, series []chartSeries) (*plot.Plot, error) {
	p := newPlot(title+": latency percentiles per second", "seconds since the run started", "latency, ms (log scale)")
	percentiles := []struct {
		name string
		of   func(sample) float64
	}{
		{"p50", func(s sample) float64 { return s.P50 }},
		{"p99", func(s sample) float64 { return s.P99 }},
		{"p99.9", func(s sample) float64 { return s.P999 }},
	}
	var top float64
	for _, s := range series {
		for k, pc := range percentiles {
			for round, samples := range s.rounds {
				var xys plotter.XYs
				for _, smp := range samples {
					// A window without operations has no latency
					// to show, and a log scale has no place for
					// zero.
					if v := pc.of(smp); v > 0 {
						xys = append(xys, plotter.XY{X: smp.At, Y: v})
						top = max(top, v)
					}
				}
				if len(xys) == 0 {
					continue
				}
				if err := addLine(p, xys, legendOnce(s, round, pc.name), s.color, k); err != nil {
					return nil, err
				}
				logY(p)
			}
		}
	}
	if top > 0 {
		// Room above the lines for the legend: a decade on the log
		// scale.
		p.Y.Max = 10 * top
	}
	return p, nil
}

// logY puts p's y axis on a log scale, once it has a line to place: an
// empty log axis has no range to tick.
func logY(p *plot.Plot) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
}

// distributionChart draws the latency distribution as HDR Histogram's
// percentile spectrum: latency against percentile, with the x axis
// stretched as 1/(1-q) so the tail from p90 to p99.99 gets as much room
// as the body. Each system's runs are drawn as one line.
func distributionChart(title string, series []chartSeries) (*plot.Plot, error) {
	p := newPlot(title+": latency distribution", "percentile", "latency, ms (log scale)")
	// The lines rise from the left: the legend goes where they are low.
	p.Legend.Left = true
	var ticks plot.ConstantTicks
	for _, q := range []float64{0, 90, 99, 99.9, 99.99, 99.999} {
		ticks = append(ticks, plot.Tick{Value: stretch(q), Label: fmt.Sprintf("%g%%", q)})
	}
	for _, s := range series {
		xys := percentileSpectrum(s.hist)
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, xys, s.label, s.color, 0); err != nil {
			return nil, err
		}
		logY(p)
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks
		p.X.Min = 1
	}
	return p, nil
}

// stretch maps percentile q to the distribution chart's x axis.
func stretch(q float64) float64 { return 1 / (1 - q/100) }

// percentileSpectrum returns the latency in ms at percentiles spaced
// evenly on the stretched axis (twenty a decade: 0, 10.9, 20.6 ... 90,
// ... 99, ... 99.9 ...), as far as h has values to tell them apart: up
// to the percentile whose tail holds one operation.
func percentileSpectrum(h *hdrhistogram.Histogram) plotter.XYs {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var xys plotter.XYs
	for k := 0; ; k++ {
		x := math.Pow(10, float64(k)/20)
		if x > float64(h.TotalCount()) {
			break
		}
		q := 100 * (1 - 1/x)
		if v := h.ValueAtQuantile(q); v > 0 {
			xys = append(xys, plotter.XY{X: x, Y: ms(v)})
		}
	}
	return xys
}

// logTicks marks a log axis at 1, 2 and 5 times each power of ten,
// labelled, with unlabelled ticks between: plot.LogTicks labels only the
// powers of ten, which leaves a chart spanning less than a decade with one
// label or none.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// addLine adds a line colored and dashed by index, with an entry in the
// legend unless label is empty.
func addLine(p *plot.Plot, xys plotter.XYs, label string, color, dash int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(color)
	l.Dashes = plotutil.Dashes(dash)
	l.Width = vg.Points(1.5)
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
	return nil
}
