package main

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to a minute, to three
// significant digits (an error of at most 0.1% at any value).
const (
	histMinMicros = 1
	histMaxMicros = int64(time.Minute / time.Microsecond)
	histSigFigs   = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
}

// recorder collects the latencies and errors of a run's operations, from
// every client goroutine at once. Each kind of operation has a histogram
// for the whole run and one for the current sampling window, which
// sample swaps out. One mutex serves: a record takes tens of nanoseconds,
// and a store here serves at most some 100,000 operations a second.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   [numOps]opRecord
	// windowStart is when the current sampling window began.
	windowStart time.Time
	// conflicts counts the compare-and-swaps of read-modify-writes that
	// lost to another write and were tried again.
	conflicts int64
}

type opRecord struct {
	total, window *hdrhistogram.Histogram
	errors        int64
	windowErrors  int64
	// firstError is the first error's message, which tells a user what
	// the errors column counts.
	firstError string
}

func newRecorder(start time.Time) *recorder {
	r := &recorder{start: start, windowStart: start}
	for i := range r.ops {
		r.ops[i] = opRecord{total: newHist(), window: newHist()}
	}
	return r
}

// record notes one operation that took d, or failed with err.
func (r *recorder) record(op opKind, d time.Duration, err error) {
	// An operation slower than the histogram's top counts at the top
	// rather than vanishing.
	us := min(max(d.Microseconds(), histMinMicros), histMaxMicros)
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.ops[op]
	if err != nil {
		o.errors++
		o.windowErrors++
		if o.firstError == "" {
			o.firstError = err.Error()
		}
		return
	}
	o.total.RecordValue(us)
	o.window.RecordValue(us)
}

func (r *recorder) conflict() {
	r.mu.Lock()
	r.conflicts++
	r.mu.Unlock()
}

// sample is one window of a run: throughput, latency percentiles of all
// operations together, and errors.
type sample struct {
	// At is the end of the window, in seconds since the run started.
	At        float64 `json:"at_s"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p999_ms"`
	Errors    int64   `json:"errors"`
}

// sample closes the current window at now and starts the next.
func (r *recorder) sample(now time.Time) sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := newHist()
	var errs int64
	for i := range r.ops {
		o := &r.ops[i]
		all.Merge(o.window)
		o.window.Reset()
		errs += o.windowErrors
		o.windowErrors = 0
	}
	secs := now.Sub(r.windowStart).Seconds()
	r.windowStart = now
	s := sample{At: now.Sub(r.start).Seconds(), Errors: errs,
		P50: ms(all.ValueAtQuantile(50)), P99: ms(all.ValueAtQuantile(99)), P999: ms(all.ValueAtQuantile(99.9))}
	if secs > 0 {
		s.OpsPerSec = float64(all.TotalCount()) / secs
	}
	return s
}

// totals returns the whole run's histogram of every operation kind, and
// its errors. The histograms are copies.
func (r *recorder) totals() (hists [numOps]*hdrhistogram.Histogram, errs [numOps]int64, conflicts int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.ops {
		hists[i] = r.ops[i].total.Clone()
		errs[i] = r.ops[i].errors
	}
	return hists, errs, r.conflicts
}

// firstErrors returns the first error of each kind of operation that
// had one, by the operation's name.
func (r *recorder) firstErrors() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out map[string]string
	for i := range r.ops {
		if e := r.ops[i].firstError; e != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[opKind(i).String()] = e
		}
	}
	return out
}

// soFar returns the operations done, their p50 and p99 so far, and the
// errors so far, for the progress line.
func (r *recorder) soFar() (ops int64, p50, p99 time.Duration, errs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := newHist()
	for i := range r.ops {
		all.Merge(r.ops[i].total)
		errs += r.ops[i].errors
	}
	return all.TotalCount(), micros(all.ValueAtQuantile(50)), micros(all.ValueAtQuantile(99)), errs
}

func ms(us int64) float64 { return float64(us) / 1000 }

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// opStats is one row of a run's table: one kind of operation over the
// whole run.
type opStats struct {
	Op        string  `json:"op"`
	Count     int64   `json:"count"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p999_ms"`
	Max       float64 `json:"max_ms"`
	Errors    int64   `json:"errors"`
}

// statsOf summarizes a histogram of an operation over elapsed.
func statsOf(op string, h *hdrhistogram.Histogram, errors int64, elapsed time.Duration) opStats {
	s := opStats{Op: op, Count: h.TotalCount(), Errors: errors,
		P50: ms(h.ValueAtQuantile(50)), P95: ms(h.ValueAtQuantile(95)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
	if elapsed > 0 {
		s.OpsPerSec = float64(s.Count) / elapsed.Seconds()
	}
	return s
}

// writeTable prints rows as an aligned table, latencies in milliseconds.
func writeTable(w io.Writer, rows []opStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tcount\tops/s\tp50 ms\tp95 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", r.Op, r.Count, r.OpsPerSec,
			fmtMs(r.P50), fmtMs(r.P95), fmtMs(r.P99), fmtMs(r.P999), fmtMs(r.Max), r.Errors)
	}
	tw.Flush()
}

// fmtMs prints a latency in milliseconds with three significant digits,
// the histogram's precision.
func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
