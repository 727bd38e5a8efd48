package kvsm

import (
	"errors"
	"testing"
)

// TestSplitCutsTheRangeAtItsPointInTheLog: in one value, the commands
// before a split write either half, those after it only the left half; a
// right-half write after it applies nothing, touches no session, and can
// be applied by the right half's range afterwards.
func TestSplitCutsTheRangeAtItsPointInTheLog(t *testing.T) {
	var m Range
	m.SetBounds([]byte("a"), nil)
	st := newMemStore()
	got := apply(t, &m, st, 1,
		put(1, 1, "x", "before"),
		NewSplit([]byte("m"), 7),
		put(1, 2, "b", "left"),
		put(1, 3, "x", "after"),
	)
	if !got[0].res.Succeeded || got[0].res.Outcome != Applied {
		t.Fatalf("write before the split: %+v", got[0].res)
	}
	if !got[1].res.Succeeded || got[1].c.NewRange != 7 {
		t.Fatalf("split: %+v of %+v", got[1].res, got[1].c)
	}
	if got[2].res.Outcome != Applied {
		t.Fatalf("left write after the split: %+v", got[2].res)
	}
	if got[3].res.Outcome != OutOfRange {
		t.Fatalf("right write after the split: outcome %d, want OutOfRange", got[3].res.Outcome)
	}
	if v := value(st, "x"); v != "before" {
		t.Fatalf("x = %q: the left range wrote a key of the right", v)
	}
	if start, end := m.Bounds(); string(start) != "a" || string(end) != "m" {
		t.Fatalf("bounds after the split [%q, %q)", start, end)
	}
	// The out-of-range write left no result behind: the right range,
	// which starts with a copy of the sessions, applies its retry.
	var right Range
	right.SetBounds([]byte("m"), nil)
	again := apply(t, &right, st, 2, put(1, 3, "x", "after"))
	if again[0].res.Outcome != Applied || value(st, "x") != "after" {
		t.Fatalf("retry at the right range: %+v, x = %q", again[0].res, value(st, "x"))
	}
}

// TestSplitOutsideTheRangeChangesNothing: a split at the range's start,
// outside it, or retried after it applied fails and leaves the bounds.
func TestSplitOutsideTheRangeChangesNothing(t *testing.T) {
	var m Range
	m.SetBounds([]byte("c"), []byte("p"))
	st := newMemStore()
	for _, key := range []string{"c", "a", "p", "z"} {
		if got := apply(t, &m, st, 1, NewSplit([]byte(key), 9)); got[0].res.Succeeded {
			t.Fatalf("split at %q succeeded in [c, p)", key)
		}
	}
	apply(t, &m, st, 2, NewSplit([]byte("k"), 9))
	if got := apply(t, &m, st, 3, NewSplit([]byte("k"), 9)); got[0].res.Succeeded {
		t.Fatal("a retried split cut the range again")
	}
	if start, end := m.Bounds(); string(start) != "c" || string(end) != "k" {
		t.Fatalf("bounds [%q, %q)", start, end)
	}
	// A batch with one key on each side of the split is out of range as
	// a whole.
	b := Command{Session: Session{ClientID: 1, Seq: 1}, Op: OpBatch, Ops: []Command{
		{Op: OpPut, Key: []byte("d"), Value: []byte("1")}, {Op: OpPut, Key: []byte("m"), Value: []byte("2")}}}
	if got := apply(t, &m, st, 4, b); got[0].res.Outcome != OutOfRange || value(st, "d") != "<absent>" {
		t.Fatalf("straddling batch: %+v, d = %q", got[0].res, value(st, "d"))
	}
}

func TestSplitIsRejectedInsideABatchOrASession(t *testing.T) {
	inSession := NewSplit([]byte("k"), 2)
	inSession.Session = Session{ClientID: 1, Seq: 1}
	if _, err := Decode(Encode(nil, 1, []Command{inSession})); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("split with a session decoded: %v", err)
	}
	batch := Command{Op: OpBatch, Ops: []Command{NewSplit([]byte("k"), 2)}}
	if _, err := Decode(Encode(nil, 1, []Command{batch})); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("split inside a batch decoded: %v", err)
	}
}
