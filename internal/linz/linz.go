// Package linz records what concurrent clients of a key-value store did and
// saw, and checks that history for linearizability with porcupine
// (github.com/anishathalye/porcupine), one register per key.
//
// A worker brackets each operation with History.Invoke and Call.Finish.
// Finish files the operation by its error (see Definite) and records it
// whatever the outcome (Records):
//
//   - no error: the operation happened, somewhere between its invocation
//     and its return, with the output the store reported;
//   - a definite failure: it did not happen (Failed);
//   - any other error (a timeout, a lost connection, router.ErrAmbiguous):
//     its outcome is unknown (Indeterminate), never taken for a failure.
//     A write is checked as possibly applied, with its return moved past
//     the end of the history (Jepsen's :info operation, open forever), so
//     the checker may place it anywhere after its invocation, or nowhere
//     (last). A read with an unknown outcome is counted and recorded but
//     not given to the checker: having returned nothing, it constrains
//     nothing, and porcupine would have to try it at every point.
//
// Values must be non-empty: the empty string stands for an absent key.
package linz

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/shardd/shardd/router"
)

// Kind is the kind of an operation.
type Kind uint8

const (
	// Get reads a key.
	Get Kind = iota
	// Put writes Input.Value.
	Put
	// CAS writes Input.Value if the key holds Input.Expected ("" expects
	// it absent).
	CAS
)

// Input is what an operation asked for.
type Input struct {
	Kind  Kind
	Key   string
	Value string // Put, CAS: the value to write
	// Expected is the value CAS compares with; "" expects the key absent.
	Expected string
}

// Output is what an operation returned.
type Output struct {
	// Unknown marks an operation whose outcome is unknown: it may or may
	// not have taken effect, and the other fields mean nothing.
	Unknown bool
	// Value is the value a Get read, or the value a CAS found ("": the
	// key was absent).
	Value string
	// Swapped reports whether a CAS wrote.
	Swapped bool
}

// Definite reports whether err says for certain that the write it ended
// did not take effect: the router's ErrNotApplied. The check holds the
// router to that claim: a write it calls not applied that was applied
// makes the history illegal. Every other error (router.ErrAmbiguous)
// leaves the outcome unknown: the write may have been applied.
func Definite(err error) bool {
	return errors.Is(err, router.ErrNotApplied)
}

// Outcome is how an operation ended.
type Outcome uint8

const (
	// Returned: the store answered; the operation happened with the
	// output it reported.
	Returned Outcome = iota
	// Indeterminate: the outcome is unknown; a write may or may not have
	// been applied.
	Indeterminate
	// Failed: the operation did not happen, for certain.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Returned:
		return "ok"
	case Indeterminate:
		return "indeterminate"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Record is one operation as it was recorded: its Return is when its
// caller got the answer or gave up, also for an indeterminate one, and
// its Metadata the error's text, if any.
type Record struct {
	porcupine.Operation
	Outcome Outcome
}

// History is the record of every operation of a run. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu      sync.Mutex
	records []Record
	// last is the latest invocation or return time recorded.
	last int64
}

// NewHistory returns an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// now is the time since the history started, on the monotonic clock.
func (h *History) now() int64 { return int64(time.Since(h.start)) }

// Since returns the time since the history started, on the clock of its
// operations' times, so that other events (faults) can be placed among
// them.
func (h *History) Since() time.Duration { return time.Duration(h.now()) }

// Call is an operation that was invoked and has not returned yet.
type Call struct {
	h      *History
	client int
	in     Input
	at     int64
}

// Invoke records that client invokes in now. client numbers the process
// in porcupine's visualization; a worker whose operation stays open to the
// end of the history (see Finish) must take a new one, since a process's
// operations may not overlap (Jepsen does the same with crashed
// processes).
func (h *History) Invoke(client int, in Input) *Call {
	if in.Kind != Get && in.Value == "" {
		panic("linz: a write of the empty string, which stands for an absent key")
	}
	return &Call{h: h, client: client, in: in, at: h.now()}
}

// Finish records how the call ended: with out if err is nil, otherwise
// failed or indeterminate as Definite decides. It returns whether the
// operation stays open to the end of the history: a write whose outcome
// is unknown.
func (c *Call) Finish(out Output, err error) (open bool) {
	h := c.h
	ret := h.now()
	outcome := Returned
	switch {
	case err == nil:
	case Definite(err):
		outcome, out = Failed, Output{}
	default:
		outcome, out = Indeterminate, Output{Unknown: true}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, Record{
		Operation: porcupine.Operation{ClientId: c.client, Input: c.in, Call: c.at, Output: out, Return: ret, Metadata: errText(err)},
		Outcome:   outcome,
	})
	h.last = max(h.last, ret)
	return outcome == Indeterminate && c.in.Kind != Get
}

func errText(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

// Operations returns what the checker is given of the history so far:
// the operations that returned, and the writes whose outcome is unknown
// with their return past the end of the history, so that the checker may
// place them anywhere after their invocation. An unknown write whose
// value no operation reported (no read returned it, no compare-and-swap
// expected or found it) is placed last at once instead (see observed):
// the checker would have to try it at every point of the rest of the
// history for nothing.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := observed(h.records)
	ops := make([]porcupine.Operation, 0, len(h.records))
	var last []porcupine.Operation
	for _, r := range h.records {
		in := r.Input.(Input)
		switch {
		case r.Outcome == Returned:
		case r.Outcome == Indeterminate && in.Kind != Get:
			r.Return = h.last + 1
			if !seen[in.Value] {
				// Nothing else may come after it: it returns after the
				// last invocation.
				r.Call = h.last + 1
				last = append(last, r.Operation)
				continue
			}
		default:
			continue
		}
		ops = append(ops, r.Operation)
	}
	return append(ops, last...)
}

// observed returns the values some operation reported: a read returned
// it, a compare-and-swap found it or expected it. A write whose outcome
// is unknown and whose value is not among them can be linearized last,
// after every other operation, without changing the verdict. Placed
// anywhere else, it leaves a state that no operation reports until the
// next put overwrites it (a read would return its value, a
// compare-and-swap would find it or expect it), so the operations
// between it and that put are puts, and it can move last: a history with
// it is linearizable if and only if the history without it is.
func observed(recs []Record) map[string]bool {
	seen := map[string]bool{}
	for _, r := range recs {
		in, out := r.Input.(Input), r.Output.(Output)
		if out.Value != "" {
			seen[out.Value] = true
		}
		if in.Kind == CAS && in.Expected != "" {
			seen[in.Expected] = true
		}
	}
	return seen
}

// Records returns every operation recorded so far, whatever its outcome,
// in the order of their invocations.
func (h *History) Records() []Record {
	h.mu.Lock()
	recs := slices.Clone(h.records)
	h.mu.Unlock()
	slices.SortStableFunc(recs, func(a, b Record) int { return cmpInt(a.Call, b.Call) })
	return recs
}

// Tally counts operations by outcome and kind.
type Tally struct {
	// Checked counts what the checker is given (see History.Operations):
	// every returned operation and every indeterminate write.
	Checked int
	// By outcome, then by kind (Get, Put, CAS).
	Returned, Indeterminate, Failed [3]int
}

// Tally counts the operations recorded so far.
func (h *History) Tally() Tally {
	var t Tally
	for _, r := range h.Records() {
		k := r.Input.(Input).Kind
		switch r.Outcome {
		case Returned:
			t.Returned[k]++
			t.Checked++
		case Indeterminate:
			t.Indeterminate[k]++
			if k != Get {
				t.Checked++
			}
		case Failed:
			t.Failed[k]++
		}
	}
	return t
}

// Sum adds up counts by kind.
func Sum(byKind [3]int) int { return byKind[0] + byKind[1] + byKind[2] }

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case CAS:
		return "cas"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}
