package engine

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func isInjected(err error) bool {
	return errors.Is(err, errorfs.ErrInjected) || strings.Contains(err.Error(), "injected error")
}

// TestErrorInjection fails each filesystem operation in turn (index i of
// every run of the same workload), the shape of Pebble's own TestErrors.
// For every i: Open either fails with the injected error or works; every
// commit either succeeds or fails, and after the first failure every later
// commit and read returns that very error (the engine never succeeds after
// a failed write or fsync); nothing panics or hangs. Then the files are
// reopened without injection and must hold the state after some prefix of
// the attempted batches that includes every acknowledged synced batch.
func TestErrorInjection(t *testing.T) {
	const commits = 24
	// A fixed workload, the same for every i.
	rng := rand.New(rand.NewPCG(7, 7))
	w := &workload{rng: rng, groups: 8, keys: 40, slots: 16}
	batches := make([][]op, commits)
	syncs := make([]bool, commits)
	for i := range batches {
		batches[i] = w.batch()
		syncs[i] = i%2 == 1
	}

	var injectedRuns, openFailures, commitFailures int
	const maxRuns = 5000
	i := int32(0)
	for ; i < maxRuns; i++ {
		mem := vfs.NewMem()
		ctr := &errorfs.Counter{Injector: errorfs.ErrInjected.If(errorfs.OnIndex(i))}
		o := testOptions(errorfs.Wrap(mem, ctr))
		o.MemTableSize = 1 << 20
		o.DisableAutomaticCompactions = true

		run := func() (opened bool, failedAt int) {
			failedAt = -1
			e, err := Open(o)
			if err != nil {
				if !isInjected(err) {
					t.Fatalf("i=%d: Open: unexpected error %v", i, err)
				}
				return false, -1
			}
			defer closeWithin(t, e, i)
			var failure error
			for n, ops := range batches {
				b := newBatchOf(e, ops)
				err := b.Commit(syncs[n])
				b.Close()
				switch {
				case err == nil && failure != nil:
					t.Fatalf("i=%d: commit %d succeeded after a failure (%v)", i, n, failure)
				case err != nil && failure == nil:
					if !errors.Is(err, ErrFailed) || !isInjected(err) {
						t.Fatalf("i=%d: commit %d: error %v does not wrap ErrFailed and the injected error", i, n, err)
					}
					failure, failedAt = err, n
					if e.fatal.Load() {
						// A WAL failure must come back as an error, with
						// Pebble left closable: see commitFatalFormat.
						t.Fatalf("i=%d: commit %d failed fatally (%v); did Pebble change its commit error format?", i, n, err)
					}
				case err != nil && err != failure:
					t.Fatalf("i=%d: commit %d: error %v differs from the first failure %v", i, n, err, failure)
				}
			}
			if failure != nil {
				if _, _, err := e.Get([]byte("key0001")); err != failure {
					t.Fatalf("i=%d: Get after failure = %v, want the sticky error", i, err)
				}
				if err := e.Err(); err != failure {
					t.Fatalf("i=%d: Err() = %v, want the sticky error", i, err)
				}
			}
			return true, failedAt
		}
		opened, failedAt := run()
		injected := ctr.Load() > 0
		if !injected {
			break // i is past the last filesystem operation of the workload
		}
		injectedRuns++
		switch {
		case !opened:
			openFailures++
			continue
		case failedAt >= 0:
			commitFailures++
		}

		// Recovery without injection: the acknowledged prefix is there.
		e, err := Open(testOptions(mem))
		if err != nil {
			t.Fatalf("i=%d: reopen without injection: %v", i, err)
		}
		last := commits - 1 // the last batch that may be visible
		durable := -1       // the last acknowledged synced batch
		for n := range batches {
			if failedAt >= 0 && n > failedAt {
				break
			}
			if syncs[n] && n != failedAt {
				durable = n
			}
		}
		if failedAt >= 0 {
			last = failedAt
		}
		cur := newModel()
		var candidates []*model
		if durable < 0 {
			candidates = append(candidates, cur.clone())
		}
		for n := 0; n <= last; n++ {
			cur.applyAll(batches[n])
			if n >= durable {
				candidates = append(candidates, cur.clone())
			}
		}
		idx, diff, err := matchState(e, candidates)
		if err != nil {
			t.Fatalf("i=%d: reading the recovered engine: %v", i, err)
		}
		if idx < 0 {
			t.Fatalf("i=%d: recovered state is no prefix including batch %d (failed at %d); diff:\n%s", i, durable, failedAt, diff)
		}
		_ = e.Close()
	}
	if i == maxRuns {
		t.Fatalf("workload still hit injected errors after %d runs", maxRuns)
	}
	t.Logf("%d runs with an injected error: %d failed Open, %d failed a commit, the rest absorbed it",
		injectedRuns, openFailures, commitFailures)
	if commitFailures == 0 {
		t.Fatal("no injected error ever failed a commit: the test does not reach the commit path")
	}
}

// closeWithin closes e and fails the test if Close hangs.
func closeWithin(t *testing.T, e *Engine, i int32) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Close()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("i=%d: Close hangs after an injected error", i)
	}
}
