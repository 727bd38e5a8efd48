package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/router"
)

// This file is a client workload whose every operation and outcome is
// recorded, and a checker of the recorded history against one register
// per key. It checks conditions that every linearizable history of puts,
// gets and compare-and-swaps meets, cheaply and with a message that names
// the operations at fault; it is not a complete linearizability check
// (porcupine's is), but each condition below is what a lost write, a
// write applied twice or a result handed to the wrong caller breaks.

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opCAS
)

func (k opKind) String() string { return [...]string{"get", "put", "cas"}[k] }

// fate is what the client knows of an operation's outcome.
type fate uint8

const (
	fateOK         fate = iota // completed; its result is known
	fateAmbiguous              // a write that may or may not have been applied
	fateNotApplied             // a write that certainly was not applied
	fateFailed                 // a read that returned an error: it observed nothing
)

func (f fate) String() string { return [...]string{"ok", "ambiguous", "not-applied", "failed"}[f] }

// histOp is one operation of a history. Times are since the history's
// start; an ambiguous write's end is never (math.MaxInt64): it may be
// applied at any time after it started.
type histOp struct {
	worker     int
	kind       opKind
	key        string
	start, end time.Duration
	fate       fate
	err        error
	// value is what a put or a CAS writes; expected and expectAbsent are
	// a CAS's condition.
	value        string
	expected     string
	expectAbsent bool
	// The result: a get's found and value, a CAS's swapped and the value
	// it found before (current).
	swapped bool
	found   bool
	current string
}

func (o *histOp) String() string {
	end := "never"
	if o.end != math.MaxInt64 {
		end = o.end.String()
	}
	s := fmt.Sprintf("w%d %s(%s", o.worker, o.kind, o.key)
	switch o.kind {
	case opPut:
		s += fmt.Sprintf(", %q", o.value)
	case opCAS:
		if o.expectAbsent {
			s += fmt.Sprintf(", absent -> %q", o.value)
		} else {
			s += fmt.Sprintf(", %q -> %q", o.expected, o.value)
		}
	}
	s += fmt.Sprintf(") [%v, %s] %s", o.start, end, o.fate)
	if o.fate == fateOK {
		switch o.kind {
		case opGet:
			s += fmt.Sprintf(" found=%v %q", o.found, o.current)
		case opCAS:
			s += fmt.Sprintf(" swapped=%v found=%v %q", o.swapped, o.found, o.current)
		}
	}
	if o.err != nil {
		s += ": " + o.err.Error()
	}
	return s
}

// mayHaveWritten reports whether the op's value may be in the key.
func (o *histOp) mayHaveWritten() bool {
	switch o.kind {
	case opPut:
		return o.fate == fateOK || o.fate == fateAmbiguous
	case opCAS:
		return o.fate == fateAmbiguous || (o.fate == fateOK && o.swapped)
	}
	return false
}

// acked reports whether the op is a write the client was told applied.
func (o *histOp) acked() bool {
	return o.fate == fateOK && (o.kind == opPut || (o.kind == opCAS && o.swapped))
}

// history records operations from many goroutines.
type history struct {
	base time.Time
	mu   sync.Mutex
	ops  []*histOp
}

func newHistory() *history { return &history{base: time.Now()} }

func (h *history) now() time.Duration { return time.Since(h.base) }

func (h *history) add(o *histOp) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

// writeFate classifies a write's error with the router's typed fates.
func writeFate(err error) fate {
	switch {
	case err == nil:
		return fateOK
	case errors.Is(err, router.ErrNotApplied):
		return fateNotApplied
	default:
		return fateAmbiguous
	}
}

// do runs one operation with clients, recording it.
func (h *history) do(ctx context.Context, c *router.Client, o *histOp) {
	o.start = h.now()
	var err error
	switch o.kind {
	case opGet:
		var v []byte
		v, o.found, err = c.Get(ctx, []byte(o.key))
		o.current = string(v)
		if err != nil {
			o.fate = fateFailed
		}
	case opPut:
		err = c.Put(ctx, []byte(o.key), []byte(o.value))
		o.fate = writeFate(err)
	case opCAS:
		var res router.CASResult
		cas := router.CAS{Key: []byte(o.key), ExpectAbsent: o.expectAbsent, NewValue: []byte(o.value)}
		if !o.expectAbsent {
			cas.Expected = []byte(o.expected)
		}
		res, err = c.CompareAndSwap(ctx, cas)
		o.swapped, o.found, o.current = res.Swapped, res.Found, string(res.Current)
		o.fate = writeFate(err)
	}
	o.err = err
	o.end = h.now()
	if o.fate == fateAmbiguous {
		o.end = math.MaxInt64
	}
	h.add(o)
}

// workload is clients writing unique values (key=w<worker>.<n>) and CAS
// chains to a few keys per range, with reads in between, until stopped.
type workload struct {
	h       *history
	clients []*router.Client
	keys    []string
	// opTimeout bounds one operation, retries included; one that runs
	// out is recorded with its fate (ambiguous, for a write).
	opTimeout time.Duration
	stop      chan struct{}
	halted    sync.Once
	wg        sync.WaitGroup
}

// start runs workers goroutines, worker i with its own seeded choices and
// client i%len(clients) (each client is one exactly-once session).
func (w *workload) start(workers int, seed uint64) {
	w.stop = make(chan struct{})
	for i := range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.worker(i, rand.New(rand.NewPCG(seed, uint64(i))))
		}()
	}
}

// halt stops the workers and waits for them; it is idempotent.
func (w *workload) halt() {
	w.halted.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// worker issues one operation at a time. A CAS expects the last value the
// worker saw in the key (by its own write or a read), so CAS chains form
// wherever no other worker wrote in between.
func (w *workload) worker(id int, rng *rand.Rand) {
	c := w.clients[id%len(w.clients)]
	seen := make(map[string]string) // key -> last value seen ("" = absent)
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := w.keys[rng.IntN(len(w.keys))]
		o := &histOp{worker: id, key: key, value: fmt.Sprintf("%s=w%d.%d", key, id, n)}
		switch p := rng.IntN(10); {
		case p < 3:
			o.kind, o.value = opGet, ""
		case p < 6:
			o.kind = opPut
		default:
			o.kind = opCAS
			o.expected = seen[key]
			o.expectAbsent = o.expected == ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		w.h.do(ctx, c, o)
		cancel()
		switch {
		case o.kind == opGet && o.fate == fateOK, o.kind == opCAS && o.fate == fateOK && !o.swapped:
			seen[key] = o.current
		case o.kind != opGet && o.fate != fateNotApplied:
			seen[key] = o.value
		}
	}
}

// finalReads reads every key once more after the load stopped; the
// reads are observations the checker holds to the same rules.
func (w *workload) finalReads(t testing.TB) {
	for _, k := range w.keys {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		o := &histOp{worker: -1, kind: opGet, key: k}
		w.h.do(ctx, w.clients[0], o)
		cancel()
		if o.fate != fateOK {
			t.Errorf("final read of %s failed: %v", k, o.err)
		}
	}
}

// historyStats counts a history's operations by kind and fate.
func (h *history) stats() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var acked, ambiguous, notApplied, swapped, reads int
	for _, o := range h.ops {
		switch {
		case o.kind == opGet && o.fate == fateOK:
			reads++
		case o.acked():
			acked++
			if o.kind == opCAS {
				swapped++
			}
		}
		switch o.fate {
		case fateAmbiguous:
			ambiguous++
		case fateNotApplied:
			notApplied++
		}
	}
	return fmt.Sprintf("%d ops: %d acknowledged writes (%d CAS swaps), %d reads, %d ambiguous, %d not applied",
		len(h.ops), acked, swapped, reads, ambiguous, notApplied)
}

// check returns every violation in the history, key by key. An
// observation is what a read, or a CAS, saw in its key at one instant of
// its [start, end] (a swapped CAS saw its expected value, one that did not
// swap saw the value it reports). For each:
//
//   - the value must have been written to this key by a write that may
//     have applied (not a failed CAS, nor a write refused as not applied):
//     else the result belongs to another key's or another command's;
//   - its write must have started before the observation ended;
//   - no acknowledged write may lie entirely between the end of the
//     observed write and the start of the observation: that write would
//     have to come later and be seen, so it was lost (or the observed
//     value was written again);
//
// and a value is the expectation of at most one swapped CAS (values are
// unique, so a key holds each at most once in a row). A swapped CAS must
// report its expected value as the one it found; one that did not swap
// must report another.
func (h *history) check() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	byKey := make(map[string][]*histOp)
	for _, o := range h.ops {
		byKey[o.key] = append(byKey[o.key], o)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, checkKey(byKey[k])...)
	}
	return out
}

func checkKey(ops []*histOp) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	writer := make(map[string]*histOp) // value -> the op that wrote it
	var acked []*histOp
	for _, o := range ops {
		if o.kind == opPut || o.kind == opCAS {
			writer[o.value] = o
		}
		if o.acked() {
			acked = append(acked, o)
		}
	}
	// latest[i] is, among the acknowledged writes ending no later than
	// acked[i] (by end), the one that started last.
	slices.SortFunc(acked, func(a, b *histOp) int { return cmp.Compare(a.end, b.end) })
	latest := make([]*histOp, len(acked))
	for i, o := range acked {
		latest[i] = o
		if i > 0 && latest[i-1].start > o.start {
			latest[i] = latest[i-1]
		}
	}
	// lastCompletedBefore returns the acknowledged write that started last
	// among those that ended before t, or nil.
	lastCompletedBefore := func(t time.Duration) *histOp {
		i := sort.Search(len(acked), func(i int) bool { return acked[i].end >= t })
		if i == 0 {
			return nil
		}
		return latest[i-1]
	}
	swappedFrom := make(map[string]*histOp) // expected value ("" = absent) -> the CAS that swapped from it
	for _, o := range ops {
		if o.fate != fateOK || o.kind == opPut {
			continue
		}
		var found bool
		var v string
		switch {
		case o.kind == opGet:
			found, v = o.found, o.current
		case o.swapped:
			found, v = !o.expectAbsent, o.expected
			if o.found != found || (found && o.current != o.expected) {
				bad("%s: swapped, yet reports finding another value than it expected", o)
			}
			if prev := swappedFrom[v]; prev != nil {
				bad("two CAS swapped from the same value (a write applied twice, or a result handed to the wrong caller):\n\t%s\n\t%s", prev, o)
			}
			swappedFrom[v] = o
		default:
			found, v = o.found, o.current
			if (o.expectAbsent && !found) || (!o.expectAbsent && found && v == o.expected) {
				bad("%s: did not swap, yet reports finding what it expected", o)
			}
		}
		wEnd := time.Duration(-1) // the initial absence ended before anything started
		var w *histOp
		if found {
			w = writer[v]
			switch {
			case w == nil:
				bad("%s: observed %q, which no operation wrote to %s (another key's or another command's result?)", o, v, o.key)
				continue
			case !w.mayHaveWritten():
				bad("%s: observed the value of a write that did not apply: %s", o, w)
				continue
			case w.start >= o.end:
				bad("%s: observed the value of a write that started after it ended: %s", o, w)
				continue
			}
			wEnd = w.end
		}
		if later := lastCompletedBefore(o.start); later != nil && later.start > wEnd {
			what := "absence"
			if w != nil {
				what = "value of " + w.String()
			}
			bad("%s: observed the %s, but a later acknowledged write completed before it started, and is lost: %s", o, what, later)
		}
	}
	return out
}

// summarize joins the first limit violations into one message.
func summarize(violations []string, limit int) string {
	if len(violations) > limit {
		return strings.Join(violations[:limit], "\n") + fmt.Sprintf("\n... and %d more", len(violations)-limit)
	}
	return strings.Join(violations, "\n")
}

// TestHistoryCheck proves the checker on small histories: a clean one
// passes, and each defect the crash tests look for is reported.
func TestHistoryCheck(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	put := func(v string, start, end int) *histOp {
		return &histOp{kind: opPut, key: "k", value: v, start: ms(start), end: ms(end)}
	}
	get := func(v string, start, end int) *histOp {
		return &histOp{kind: opGet, key: "k", found: v != "", current: v, start: ms(start), end: ms(end)}
	}
	cas := func(from, to string, swapped bool, current string, start, end int) *histOp {
		return &histOp{kind: opCAS, key: "k", expected: from, expectAbsent: from == "", value: to, swapped: swapped,
			found: current != "", current: current, start: ms(start), end: ms(end)}
	}
	ambiguous := func(o *histOp) *histOp { o.fate, o.end = fateAmbiguous, math.MaxInt64; return o }
	notApplied := func(o *histOp) *histOp { o.fate = fateNotApplied; return o }
	for _, tc := range []struct {
		name string
		ops  []*histOp
		bad  bool
	}{
		{"clean", []*histOp{put("k=a", 0, 1), cas("k=a", "k=b", true, "k=a", 2, 3), get("k=b", 4, 5),
			cas("k=a", "k=c", false, "k=b", 6, 7)}, false},
		{"concurrent writes, either order", []*histOp{put("k=a", 0, 10), put("k=b", 1, 9), get("k=a", 11, 12)}, false},
		{"an ambiguous write may land late", []*histOp{put("k=a", 0, 1), ambiguous(put("k=b", 2, 0)),
			put("k=c", 3, 4), get("k=b", 5, 6)}, false},
		{"lost acknowledged write", []*histOp{put("k=a", 0, 1), put("k=b", 2, 3), get("k=a", 4, 5)}, true},
		{"lost, seen as absence", []*histOp{put("k=a", 0, 1), get("", 2, 3)}, true},
		{"write applied twice", []*histOp{put("k=a", 0, 1), cas("k=a", "k=b", true, "k=a", 2, 3),
			ambiguous(put("k=a", 4, 0)), cas("k=a", "k=c", true, "k=a", 5, 6)}, true},
		{"another key's value", []*histOp{put("k=a", 0, 1), get("j=a", 2, 3)}, true},
		{"a write refused as not applied", []*histOp{notApplied(put("k=a", 0, 1)), get("k=a", 2, 3)}, true},
		{"a value from the future", []*histOp{get("k=a", 0, 1), ambiguous(put("k=a", 2, 0))}, true},
		{"swapped, reporting another value", []*histOp{put("k=a", 0, 1), cas("k=a", "k=b", true, "k=x", 2, 3)}, true},
		{"not swapped, reporting the expected value", []*histOp{put("k=a", 0, 1), cas("k=a", "k=b", false, "k=a", 2, 3)}, true},
	} {
		h := newHistory()
		for _, o := range tc.ops {
			h.add(o)
		}
		if v := h.check(); (len(v) > 0) != tc.bad {
			t.Errorf("%s: violations %q, want any: %v", tc.name, v, tc.bad)
		}
	}
}
