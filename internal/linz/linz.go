// Package linz records what concurrent clients of a key-value store did and
// saw, and checks that history for linearizability with porcupine
// (github.com/anishathalye/porcupine), one register per key.
//
// A worker brackets each operation with History.Invoke and Call.Finish.
// Finish files the operation by its error (see Definite):
//
//   - no error: the operation happened, somewhere between its invocation
//     and its return, with the output the store reported;
//   - a definite failure: it did not happen, and it is left out;
//   - any other error: its outcome is unknown. A write is then kept as
//     possibly applied, with its return moved to the end of the history,
//     so the checker may place it anywhere after its invocation, or
//     nowhere (last). A read with an unknown outcome changes nothing, so
//     it is left out.
//
// Values must be non-empty: the empty string stands for an absent key.
package linz

import (
	"errors"
	"fmt"
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

// History is the record of every operation of a run. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// unknown indexes the operations in ops whose return is moved to the
	// end of the history.
	unknown []int
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
// in porcupine's visualization; a worker whose operation's outcome is
// unknown should take a new one, since that operation stays open to the
// end of the history (as Jepsen does with crashed processes).
func (h *History) Invoke(client int, in Input) *Call {
	if in.Kind != Get && in.Value == "" {
		panic("linz: a write of the empty string, which stands for an absent key")
	}
	return &Call{h: h, client: client, in: in, at: h.now()}
}

// Finish records how the call ended: with out if err is nil, otherwise as
// Definite decides. It returns whether the outcome is unknown.
func (c *Call) Finish(out Output, err error) (unknown bool) {
	h := c.h
	ret := h.now()
	switch {
	case err == nil:
	case c.in.Kind == Get || Definite(err):
		return false
	default:
		out, unknown = Output{Unknown: true}, true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if unknown {
		h.unknown = append(h.unknown, len(h.ops))
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: c.client, Input: c.in, Call: c.at, Output: out, Return: ret, Metadata: errText(err)})
	h.last = max(h.last, ret)
	return unknown
}

func errText(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

// Operations returns the history so far for porcupine, with every unknown
// outcome's return at the end of the history.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	for _, i := range h.unknown {
		ops[i].Return = h.last + 1
	}
	return ops
}

// Counts tallies a history's operations: by kind, how many had a known
// outcome and how many an unknown one.
func Counts(ops []porcupine.Operation) (known, unknown [3]int) {
	for _, op := range ops {
		k := op.Input.(Input).Kind
		if op.Output.(Output).Unknown {
			unknown[k]++
		} else {
			known[k]++
		}
	}
	return known, unknown
}

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
