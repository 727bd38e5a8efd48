package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// committerBatch fills a batch for worker w's i-th commit: the records of
// its own group plus a user key, so each batch is identifiable after a crash.
func committerBatch(e *Engine, w, i int) *Batch {
	g := GroupID(w*1000 + i)
	b := e.NewBatch()
	b.SetHardState(g, fmt.Appendf(nil, "hs-%d-%d", w, i))
	b.PutEntry(g, uint64(i), fmt.Appendf(nil, "entry-%d-%d", w, i))
	b.SetApplied(g, uint64(i))
	b.Put(fmt.Appendf(nil, "w%02d/%04d", w, i), []byte("v"))
	return b
}

// checkCommitterBatch reports whether every record of (w, i) is in e.
func checkCommitterBatch(e *Engine, w, i int) error {
	g := GroupID(w*1000 + i)
	st, err := e.LoadGroup(g)
	if err != nil {
		return err
	}
	if string(st.HardState) != fmt.Sprintf("hs-%d-%d", w, i) || !st.HasApplied || st.Applied != uint64(i) ||
		len(st.Entries) != 1 || string(st.Entries[0].Data) != fmt.Sprintf("entry-%d-%d", w, i) {
		return fmt.Errorf("batch %d/%d: group state %+v", w, i, st)
	}
	if _, ok, err := e.Get(fmt.Appendf(nil, "w%02d/%04d", w, i)); err != nil || !ok {
		return fmt.Errorf("batch %d/%d: user key missing (%v)", w, i, err)
	}
	return nil
}

// TestCommitterConcurrent has many goroutines commit batches of different
// groups through one Committer while another goroutine crash-clones the
// FS. Every batch acknowledged before a clone was taken must be whole in
// that clone; all are durable at the end; and rounds merge batches, so
// there are no more syncs than batches.
func TestCommitterConcurrent(t *testing.T) {
	forEachSeed(t, 2, func(t *testing.T, rng *rand.Rand) {
		fs := vfs.NewCrashableMem()
		o := testOptions(fs)
		e := mustOpen(t, o)
		defer func() { _ = e.Close() }()
		c := NewCommitter(e)

		const workers, perWorker = 8, 60
		type ack struct{ w, i int }
		var (
			mu    sync.Mutex
			acked []ack
		)
		type clone struct {
			fs    *vfs.MemFS
			acked []ack
		}
		var clones []clone
		stop := make(chan struct{})
		crasherDone := make(chan struct{})
		crashRNG := rand.New(rand.NewPCG(rng.Uint64(), 1))
		go func() {
			defer close(crasherDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				snap := append([]ack(nil), acked...)
				mu.Unlock()
				if len(snap) < 50*len(clones) {
					// Spread the crashes over the run.
					time.Sleep(50 * time.Microsecond)
					continue
				}
				// Everything acknowledged so far must survive this crash.
				clones = append(clones, clone{crashClone(fs, crashRNG, randomPct(crashRNG)), snap})
				if len(clones) >= 8 {
					return
				}
			}
		}()

		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					b := committerBatch(e, w, i)
					err := c.Commit(b, true)
					b.Close()
					if err != nil {
						t.Errorf("worker %d commit %d: %v", w, i, err)
						return
					}
					mu.Lock()
					acked = append(acked, ack{w, i})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-crasherDone
		c.Close()
		if t.Failed() {
			return
		}

		clones = append(clones, clone{crashClone(fs, rng, 0), acked})
		for n, cl := range clones {
			o2 := o
			o2.FS = cl.fs
			e2 := mustOpen(t, o2)
			for _, a := range cl.acked {
				if err := checkCommitterBatch(e2, a.w, a.i); err != nil {
					t.Fatalf("clone %d (%d acknowledged): %v", n, len(cl.acked), err)
				}
			}
			_ = e2.Close()
		}

		st := c.Stats()
		total := uint64(workers * perWorker)
		if st.Batches != total || st.SyncedBatches != total || st.SyncedRecords != 4*total {
			t.Fatalf("stats %+v, want %d batches of 4 records, all synced", st, total)
		}
		if st.Syncs > st.Batches || st.Syncs != st.Rounds || st.Syncs == 0 {
			t.Fatalf("stats %+v: syncs must be rounds and at most batches", st)
		}
		if es := e.Stats(); es.Syncs != st.Syncs || es.SyncedRecords != st.SyncedRecords {
			t.Fatalf("engine stats %+v disagree with committer stats %+v", es, st)
		}
		t.Logf("%d batches in %d syncs: %.2f batches/sync, max %d per round, mean sync %v, %d crash clones checked",
			st.Batches, st.Syncs, float64(st.SyncedBatches)/float64(st.Syncs), st.MaxBatchesPerRound,
			st.SyncLatency/time.Duration(st.Syncs), len(clones))
	})
}

// TestCommitterSyncFailure fails the WAL fsync while goroutines commit
// through a Committer: every caller of the failed round gets the error,
// and every commit after it returns the same sticky error; none succeeds
// after the failure.
func TestCommitterSyncFailure(t *testing.T) {
	var armed atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.HasSuffix(op.Path, ".log") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			return errorfs.ErrInjected
		}
		return nil
	})
	o := testOptions(errorfs.Wrap(vfs.NewMem(), inj))
	e := mustOpen(t, o)
	defer func() { _ = e.Close() }()
	c := NewCommitter(e)
	defer c.Close()

	// Healthy first.
	b := committerBatch(e, 0, 0)
	if err := c.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()

	armed.Store(true)
	const workers, perWorker = 6, 20
	var failedSeen atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 1; w <= workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				b := committerBatch(e, w, i)
				err := c.Commit(b, true)
				b.Close()
				if err == nil && failedSeen.Load() {
					t.Errorf("worker %d: commit %d succeeded after a failed sync", w, i)
				}
				if err != nil {
					failedSeen.Store(true)
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if err != e.Err() || !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
			t.Fatalf("commit error %v is not the engine's sticky error %v", err, e.Err())
		}
	}
	if n != workers*perWorker {
		t.Fatalf("%d of %d commits failed; with every WAL sync failing, all must", n, workers*perWorker)
	}
	// A direct commit fails the same way.
	b = e.NewBatch()
	b.Put([]byte("x"), nil)
	if err := b.Commit(false); err != e.Err() {
		t.Fatalf("direct commit after failure: %v", err)
	}
	b.Close()
}

func TestCommitterCloseAndMisuse(t *testing.T) {
	e := openMem(t)
	c := NewCommitter(e)
	empty := e.NewBatch()
	if err := c.Commit(empty, true); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := c.Commit(empty, true); !errors.Is(err, ErrBatchCommitted) {
		t.Fatalf("re-commit: %v", err)
	}
	empty.Close()
	other := openMem(t)
	ob := other.NewBatch()
	ob.Put([]byte("k"), nil)
	if err := c.Commit(ob, true); err == nil {
		t.Fatal("batch of another engine accepted")
	}
	ob.Close()
	// A mix of synced and unsynced batches: a round syncs if any asks.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := committerBatch(e, 1, i)
			defer b.Close()
			if err := c.Commit(b, i%2 == 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c.Close()
	c.Close() // idempotent
	for i := range 10 {
		if err := checkCommitterBatch(e, 1, i); err != nil {
			t.Fatal(err)
		}
	}
	b := committerBatch(e, 2, 0)
	defer b.Close()
	if err := c.Commit(b, true); !errors.Is(err, ErrCommitterClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	if st := c.Stats(); st.Batches != 10 || st.Rounds == 0 || st.Rounds > 10 {
		t.Fatalf("stats %+v", st)
	}
}
