package linz

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is the verdict on a history.
type Result struct {
	// Verdict is porcupine's: Ok, Illegal, or Unknown if the check ran
	// out of time on some key without finding a violation.
	Verdict porcupine.CheckResult
	// Illegal lists the keys whose histories are not linearizable, and
	// TimedOut the ones whose check ran out of time.
	Illegal, TimedOut []string
	// Visualization is the path of porcupine's HTML visualization of the
	// illegal keys' histories, written only if there are any, beside
	// history.txt, their operations one per line.
	Visualization string
	// Explanation describes, for each illegal key, where the longest
	// linearization the checker found gets stuck.
	Explanation string
}

// Check checks ops key by key, each within timeout. If a key's history is
// not linearizable it writes porcupine's visualization of the illegal
// keys into dir (created if missing) and explains the violations.
func Check(ops []porcupine.Operation, timeout time.Duration, dir string) (Result, error) {
	return CheckAnnotated(ops, timeout, dir, nil)
}

// CheckAnnotated is Check whose visualization also shows annotations,
// such as the faults a nemesis injected, on the same time axis as the
// operations (their Start and End in nanoseconds since the history
// began).
func CheckAnnotated(ops []porcupine.Operation, timeout time.Duration, dir string, annotations []porcupine.Annotation) (Result, error) {
	var res Result
	var illegal []porcupine.Operation
	for _, part := range partitionByKey(ops) {
		key := part[0].Input.(Input).Key
		switch porcupine.CheckOperationsTimeout(Model, part, timeout) {
		case porcupine.Illegal:
			res.Illegal = append(res.Illegal, key)
			illegal = append(illegal, part...)
		case porcupine.Unknown:
			res.TimedOut = append(res.TimedOut, key)
		}
	}
	switch {
	case len(res.Illegal) > 0:
		res.Verdict = porcupine.Illegal
	case len(res.TimedOut) > 0:
		res.Verdict = porcupine.Unknown
		return res, nil
	default:
		res.Verdict = porcupine.Ok
		return res, nil
	}
	verdict, info := porcupine.CheckOperationsVerbose(Model, illegal, timeout)
	if verdict != porcupine.Illegal {
		return res, fmt.Errorf("linz: the illegal keys %v checked %v the second time", res.Illegal, verdict)
	}
	res.Explanation = explain(illegal, info)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	info.AddAnnotations(annotations)
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return res, err
	}
	res.Visualization = path
	return res, writeHistory(filepath.Join(dir, "history.txt"), illegal)
}

// writeHistory writes ops, one line each in the order of their
// invocations, for reading and grep.
func writeHistory(path string, ops []porcupine.Operation) error {
	ops = slices.Clone(ops)
	slices.SortStableFunc(ops, func(a, b porcupine.Operation) int { return cmpInt(a.Call, b.Call) })
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "%s %s\n", op.Input.(Input).Key, line(op))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// WriteRecords writes recs, one line each in their order, for reading and
// grep: the whole history of a run, every operation with its outcome.
func WriteRecords(path string, recs []Record) error {
	var b strings.Builder
	for _, r := range recs {
		in, out := r.Input.(Input), r.Output.(Output)
		if r.Outcome != Returned {
			out = Output{Unknown: true} // no output: shown as "?"
		}
		fmt.Fprintf(&b, "%s client %d [%.3fs, %.3fs] %s: %s", in.Key, r.ClientId, time.Duration(r.Call).Seconds(),
			time.Duration(r.Return).Seconds(), r.Outcome, describe(in, out))
		if r.Metadata != nil {
			fmt.Fprintf(&b, " (%v)", r.Metadata)
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// explain describes each illegal key's violation: the end of the longest
// linearization found, then the operations that could come next (those
// invoked before the first of the rest returned), none of which can.
func explain(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var b strings.Builder
	parts := partitionByKey(ops)
	for i, partials := range info.PartialLinearizationsOperations() {
		if i >= len(parts) || len(partials) == 0 {
			continue
		}
		longest := slices.MaxFunc(partials, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
		if len(longest) == len(parts[i]) {
			continue // this key is linearizable
		}
		in := func(op porcupine.Operation) bool {
			return slices.ContainsFunc(longest, func(l porcupine.Operation) bool { return sameOp(l, op) })
		}
		var rest []porcupine.Operation
		for _, op := range parts[i] {
			if !in(op) {
				rest = append(rest, op)
			}
		}
		firstReturn := slices.MinFunc(rest, func(a, b porcupine.Operation) int { return cmpInt(a.Return, b.Return) }).Return
		fmt.Fprintf(&b, "key %s: %d of %d operations linearize; the last of them:\n", parts[i][0].Input.(Input).Key, len(longest), len(parts[i]))
		for _, op := range longest[max(0, len(longest)-6):] {
			fmt.Fprintf(&b, "  %s\n", line(op))
		}
		b.WriteString("  and none of these can come next:\n")
		var stuck []porcupine.Operation
		for _, op := range rest {
			if op.Call <= firstReturn {
				stuck = append(stuck, op)
				fmt.Fprintf(&b, "  %s\n", line(op))
			}
		}
		shown := slices.Concat(longest[max(0, len(longest)-6):], stuck)
		if writers := writersOf(parts[i], shown); len(writers) > 0 {
			b.WriteString("  where the values they expected or found were written by:\n")
			for _, op := range writers {
				fmt.Fprintf(&b, "  %s\n", line(op))
			}
		}
		if seen := firstSeen(parts[i], shown); len(seen) > 0 {
			b.WriteString("  and first seen by:\n")
			for _, op := range seen {
				fmt.Fprintf(&b, "  %s\n", line(op))
			}
		}
	}
	return b.String()
}

// shownValues returns the values that shown expected or found.
func shownValues(shown []porcupine.Operation) map[string]bool {
	values := map[string]bool{}
	for _, op := range shown {
		in, out := op.Input.(Input), op.Output.(Output)
		values[in.Expected] = true
		if !out.Unknown {
			values[out.Value] = true
		}
	}
	delete(values, "")
	return values
}

// firstSeen returns, for each value that shown expected or found, the
// first operation to return that saw it (a get that read it, a CAS that
// found it), unless shown has it: a value seen, overwritten and seen
// again with no write in between is a write applied twice.
func firstSeen(ops, shown []porcupine.Operation) []porcupine.Operation {
	first := map[string]porcupine.Operation{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		var v string
		switch {
		case out.Unknown || in.Kind == Put:
			continue
		case in.Kind == CAS && out.Swapped:
			v = in.Expected
		default:
			v = out.Value
		}
		if f, ok := first[v]; v != "" && (!ok || op.Return < f.Return) {
			first[v] = op
		}
	}
	var seen []porcupine.Operation
	for v := range shownValues(shown) {
		if op, ok := first[v]; ok && !slices.ContainsFunc(shown, func(s porcupine.Operation) bool { return sameOp(s, op) }) {
			seen = append(seen, op)
		}
	}
	slices.SortFunc(seen, func(a, b porcupine.Operation) int { return cmpInt(a.Return, b.Return) })
	return seen
}

// writersOf returns the writes in ops of the values that shown expected or
// found, in the order of ops: a value written twice is the sign of a write
// applied twice, and a value read long after it was written, of a lost
// overwrite.
func writersOf(ops, shown []porcupine.Operation) []porcupine.Operation {
	values := shownValues(shown)
	var writers []porcupine.Operation
	for _, op := range ops {
		if in := op.Input.(Input); in.Kind != Get && values[in.Value] && !slices.ContainsFunc(shown, func(s porcupine.Operation) bool { return sameOp(s, op) }) {
			writers = append(writers, op)
		}
	}
	return writers
}

func sameOp(a, b porcupine.Operation) bool {
	return a.ClientId == b.ClientId && a.Call == b.Call && a.Input == b.Input
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// line prints an operation with its times in seconds since the history
// began.
func line(op porcupine.Operation) string {
	ret := fmt.Sprintf("%.3fs", time.Duration(op.Return).Seconds())
	if op.Output.(Output).Unknown {
		ret = "end"
	}
	s := fmt.Sprintf("client %d [%.3fs, %s] %s", op.ClientId, time.Duration(op.Call).Seconds(), ret, describe(op.Input.(Input), op.Output.(Output)))
	if op.Metadata != nil {
		s += fmt.Sprintf(" (%v)", op.Metadata)
	}
	return s
}
