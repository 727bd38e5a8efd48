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

// chartSeries is one run to draw: its label in the legend, the system it
// ran against (one color per system, so runs of the same system share
// it), its time series and its latency histogram.
type chartSeries struct {
	label   string
	system  int
	samples []sample
	hist    *hdrhistogram.Histogram
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

// throughputChart draws operations per second over time.
func throughputChart(title string, series []chartSeries) (*plot.Plot, error) {
	p := newPlot(title+": throughput", "seconds since the run started", "operations per second")
	for i, s := range series {
		xys := make(plotter.XYs, len(s.samples))
		for j, smp := range s.samples {
			xys[j] = plotter.XY{X: smp.At, Y: smp.OpsPerSec}
		}
		if err := addLine(p, xys, s.label, s.system, i); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return p, nil
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
	for _, s := range series {
		for k, pc := range percentiles {
			var xys plotter.XYs
			for _, smp := range s.samples {
				// A window without operations has no latency to
				// show, and a log scale has no place for zero.
				if v := pc.of(smp); v > 0 {
					xys = append(xys, plotter.XY{X: smp.At, Y: v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			if err := addLine(p, xys, s.label+" "+pc.name, s.system, k); err != nil {
				return nil, err
			}
			logY(p)
		}
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
// as the body.
func distributionChart(title string, series []chartSeries) (*plot.Plot, error) {
	p := newPlot(title+": latency distribution", "percentile", "latency, ms (log scale)")
	var ticks plot.ConstantTicks
	for _, q := range []float64{0, 90, 99, 99.9, 99.99, 99.999} {
		ticks = append(ticks, plot.Tick{Value: stretch(q), Label: fmt.Sprintf("%g%%", q)})
	}
	for i, s := range series {
		xys := percentileSpectrum(s.hist)
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, xys, s.label, s.system, i); err != nil {
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

// addLine adds a line colored by its system and dashed by its index among
// that system's lines.
func addLine(p *plot.Plot, xys plotter.XYs, label string, system, dash int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(system)
	l.Dashes = plotutil.Dashes(dash)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}
