package linz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// op builds an operation with times in milliseconds.
func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call * 1e6, Output: out, Return: ret * 1e6}
}

func put(k, v string) Input          { return Input{Kind: Put, Key: k, Value: v} }
func get(k string) Input             { return Input{Kind: Get, Key: k} }
func cas(k, from, to string) Input   { return Input{Kind: CAS, Key: k, Expected: from, Value: to} }
func read(v string) Output           { return Output{Value: v} }
func swapped() Output                { return Output{Swapped: true} }
func notSwapped(found string) Output { return Output{Value: found} }

var unknown = Output{Unknown: true}

// historyOf is ops as History.Operations returns them: the unknown
// outcomes' returns moved to the end.
func historyOf(ops []porcupine.Operation) []porcupine.Operation {
	h := &History{}
	for _, o := range ops {
		outcome := Returned
		if o.Output.(Output).Unknown {
			outcome = Indeterminate
		}
		h.records = append(h.records, Record{Operation: o, Outcome: outcome})
		h.last = max(h.last, o.Return)
	}
	return h.Operations()
}

func check(t *testing.T, ops []porcupine.Operation) Result {
	t.Helper()
	res, err := Check(ops, 10*time.Second, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestLinearizableHistories(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
	}{
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, get("k"), read("")),
			op(0, 2, 3, put("k", "a"), Output{}),
			op(0, 4, 5, cas("k", "a", "b"), swapped()),
			op(0, 6, 7, cas("k", "a", "c"), notSwapped("b")),
			op(0, 8, 9, cas("j", "", "x"), swapped()),
			op(0, 10, 11, get("k"), read("b")),
		}},
		{"concurrent writes read in either order", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), Output{}),
			op(1, 0, 10, put("k", "b"), Output{}),
			op(2, 11, 12, get("k"), read("a")),
		}},
		// A write whose outcome is unknown may have happened, at any
		// time after its invocation ...
		{"unknown put applied late", []porcupine.Operation{
			op(0, 0, 1, put("k", "a"), unknown),
			op(1, 5, 6, put("k", "b"), Output{}),
			op(1, 7, 8, get("k"), read("a")),
		}},
		// ... or not at all.
		{"unknown put never applied", []porcupine.Operation{
			op(0, 0, 1, put("k", "a"), unknown),
			op(1, 5, 6, get("k"), read("")),
		}},
		{"unknown cas", []porcupine.Operation{
			op(0, 0, 1, put("k", "a"), Output{}),
			op(1, 2, 3, cas("k", "a", "b"), unknown),
			op(0, 4, 5, get("k"), read("b")),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := check(t, historyOf(tc.ops)); res.Verdict != porcupine.Ok {
				t.Errorf("verdict %v, want Ok: %+v", res.Verdict, res)
			}
		})
	}
}

// TestIssue9History is the smallest violation issue #9 reports (key k1, a
// partition run), with times in ms: worker 8's put is acknowledged; worker
// 14 reads it; worker 3's later put is acknowledged; then worker 8's CAS
// finds worker 8's value again, because the router retried worker 8's put
// and the nodes applied it twice. One application cannot explain it,
// whether worker 8's put returned or its outcome stayed unknown.
func TestIssue9History(t *testing.T) {
	history := func(put8 Output) []porcupine.Operation {
		return historyOf([]porcupine.Operation{
			op(8, 34702, 35966, put("k1", "8.4417"), put8),
			op(14, 35950, 35954, get("k1"), read("8.4417")),
			op(3, 35955, 35957, put("k1", "3.4400"), Output{}),
			op(8, 35971, 35975, cas("k1", "8.4417", "8.4420"), swapped()),
			op(5, 0, 1, put("k2", "5.1"), Output{}), // another key, linearizable
		})
	}
	for _, put8 := range []Output{{}, unknown} {
		dir := t.TempDir()
		res, err := Check(history(put8), 10*time.Second, dir)
		if err != nil {
			t.Fatal(err)
		}
		if res.Verdict != porcupine.Illegal || len(res.Illegal) != 1 || res.Illegal[0] != "k1" {
			t.Fatalf("put8 %+v: verdict %v on %v, want Illegal on k1", put8, res.Verdict, res.Illegal)
		}
		if fi, err := os.Stat(res.Visualization); err != nil || fi.Size() == 0 || !strings.HasPrefix(res.Visualization, dir) {
			t.Errorf("visualization %q: %v", res.Visualization, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "history.txt")); err != nil || strings.Count(string(b), "\n") != 4 {
			t.Errorf("history.txt: %v:\n%s", err, b)
		}
		if !strings.Contains(res.Explanation, `cas(k1, "8.4417" -> "8.4420") -> swapped`) {
			t.Errorf("the explanation does not name the CAS that cannot linearize:\n%s", res.Explanation)
		}
		t.Logf("put8 %+v:\n%s", put8, res.Explanation)
	}
}

func TestIllegalCASOutcomes(t *testing.T) {
	for name, ops := range map[string][]porcupine.Operation{
		"swapped on a mismatch": {
			op(0, 0, 1, put("k", "a"), Output{}),
			op(0, 2, 3, cas("k", "b", "c"), swapped()),
		},
		"failed on a match": {
			op(0, 0, 1, put("k", "a"), Output{}),
			op(0, 2, 3, cas("k", "a", "c"), notSwapped("a")),
		},
		"failed reporting a value never there": {
			op(0, 0, 1, put("k", "a"), Output{}),
			op(0, 2, 3, cas("k", "b", "c"), notSwapped("z")),
		},
		"read of a definitely failed write": {
			op(0, 0, 1, get("k"), read("a")),
		},
	} {
		if res := check(t, ops); res.Verdict != porcupine.Illegal {
			t.Errorf("%s: verdict %v, want Illegal", name, res.Verdict)
		}
	}
}

// TestFinish checks how Finish files an operation by its error: every
// operation is recorded and counted; the checker gets those that
// returned and the writes whose outcome is unknown, open to the end.
func TestFinish(t *testing.T) {
	h := NewHistory()
	ambiguous := fmt.Errorf("stream broke with requests in flight: %w", router.ErrAmbiguous)
	refused := fmt.Errorf("key too long: %w", router.ErrNotApplied)
	if h.Invoke(0, put("k", "a")).Finish(Output{}, refused) {
		t.Error("a refused put stays open")
	}
	if !h.Invoke(0, put("k", "b")).Finish(Output{}, ambiguous) {
		t.Error("a put that broke in flight does not stay open")
	}
	if h.Invoke(1, get("k")).Finish(Output{}, context.DeadlineExceeded) {
		t.Error("a get that timed out stays open")
	}
	h.Invoke(2, get("k")).Finish(read("b"), nil)
	ops := h.Operations()
	if len(ops) != 2 {
		t.Fatalf("%d operations given to the checker, want the unknown put and the get", len(ops))
	}
	if ops[0].Return <= ops[1].Return {
		t.Errorf("the unknown put returns at %d, not after the end of the history (%d)", ops[0].Return, ops[1].Return)
	}
	want := Tally{Checked: 2, Returned: [3]int{Get: 1}, Indeterminate: [3]int{Get: 1, Put: 1}, Failed: [3]int{Put: 1}}
	if got := h.Tally(); got != want {
		t.Errorf("tally %+v, want %+v", got, want)
	}
	recs := h.Records()
	var outcomes []Outcome
	for _, r := range recs {
		outcomes = append(outcomes, r.Outcome)
	}
	if !slices.Equal(outcomes, []Outcome{Failed, Indeterminate, Indeterminate, Returned}) {
		t.Errorf("records' outcomes %v, want every operation in the order of invocation", outcomes)
	}
	if recs[2].Metadata != context.DeadlineExceeded.Error() || recs[2].Return < recs[2].Call {
		t.Errorf("the indeterminate get's record %+v: want its error and the time it gave up", recs[2])
	}
	if res := check(t, ops); res.Verdict != porcupine.Ok {
		t.Errorf("verdict %v", res.Verdict)
	}
}

func TestDefinite(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("put: %w", router.ErrNotApplied), true},
		{fmt.Errorf("put: %w", router.ErrAmbiguous), false},
		// A bare status says nothing of the write's fate.
		{status.Error(codes.InvalidArgument, "empty key"), false},
		{status.Error(codes.Unavailable, "leadership changed while the write was in flight"), false},
		{context.DeadlineExceeded, false},
		{errors.New("plain"), false},
	} {
		if got := Definite(tc.err); got != tc.want {
			t.Errorf("Definite(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestViolationArtifacts checks what a run keeps of a violation: the
// visualization shows the annotations (a nemesis's faults) beside the
// operations, and WriteRecords lists every operation with its outcome,
// the failed and indeterminate ones too.
func TestViolationArtifacts(t *testing.T) {
	h := NewHistory()
	h.Invoke(0, put("k", "a")).Finish(Output{}, nil)
	h.Invoke(1, put("k", "b")).Finish(Output{}, fmt.Errorf("refused: %w", router.ErrNotApplied))
	h.Invoke(2, put("k", "c")).Finish(Output{}, context.DeadlineExceeded)
	h.Invoke(3, get("k")).Finish(Output{}, context.DeadlineExceeded)
	h.Invoke(4, get("k")).Finish(read("b"), nil) // reads the write that failed for certain
	dir := t.TempDir()
	res, err := CheckAnnotated(h.Operations(), 10*time.Second, dir, []porcupine.Annotation{
		{Tag: "nemesis", Start: 0, End: int64(h.Since()), Description: "node 2 paused"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != porcupine.Illegal {
		t.Fatalf("verdict %v, want Illegal", res.Verdict)
	}
	if b, err := os.ReadFile(res.Visualization); err != nil || !strings.Contains(string(b), "node 2 paused") {
		t.Errorf("the visualization %s does not show the annotation: %v", res.Visualization, err)
	}
	path := filepath.Join(dir, "records.txt")
	if err := WriteRecords(path, h.Records()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ok: put(k, "a")`, `failed: put(k, "b") -> ? (refused: `, `indeterminate: put(k, "c") -> ? (context deadline exceeded)`,
		"indeterminate: get(k) -> ?", `ok: get(k) -> "b"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the records lack %q:\n%s", want, b)
		}
	}
}

// TestUnobservedUnknownWritesGoLast checks how the checker is given
// writes whose outcome is unknown: one whose value an operation reported
// stays where it was invoked, open to the end, so that a read before its
// invocation cannot explain its value; one whose value nobody reported
// is placed after every other operation, which changes no verdict.
func TestUnobservedUnknownWritesGoLast(t *testing.T) {
	ops := historyOf([]porcupine.Operation{
		op(0, 0, 1, put("k", "a"), Output{}),
		op(1, 2, 3, put("k", "b"), unknown), // never reported: goes last
		op(2, 4, 5, cas("k", "a", "c"), unknown),
		op(3, 6, 7, get("k"), read("c")),
		op(4, 8, 9, put("k", "d"), Output{}),
	})
	if len(ops) != 5 {
		t.Fatalf("%d operations given to the checker, want 5", len(ops))
	}
	last := ops[len(ops)-1]
	if in := last.Input.(Input); in.Value != "b" || last.Call <= int64(9e6) {
		t.Errorf("the last operation is %+v, want the unreported put of b invoked after every other returned", last)
	}
	for _, o := range ops {
		if in := o.Input.(Input); in.Value == "c" && o.Call != 4e6 {
			t.Errorf("the reported CAS to c was moved to %d", o.Call)
		}
	}
	if res := check(t, ops); res.Verdict != porcupine.Ok {
		t.Errorf("verdict %v, want Ok", res.Verdict)
	}
	// A read of a value that an unknown write wrote only after the read
	// returned is a violation: that write stays where it was invoked.
	ops = historyOf([]porcupine.Operation{
		op(0, 0, 1, get("k"), read("x")),
		op(1, 2, 3, put("k", "x"), unknown),
	})
	if res := check(t, ops); res.Verdict != porcupine.Illegal {
		t.Errorf("a read of a later unknown write's value: verdict %v, want Illegal", res.Verdict)
	}
}
