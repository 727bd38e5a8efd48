package engine

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// GroupID names a Paxos group. The engine gives it no meaning beyond being
// a key prefix.
type GroupID uint64

// ErrClosed is returned by every call on an Engine after Close.
var ErrClosed = errors.New("engine: closed")

// ErrFailed is matched (errors.Is) by the sticky error of a failed Engine.
// The error also wraps the storage error that caused the failure.
var ErrFailed = errors.New("engine: failed")

// failedError is the sticky error of a failed Engine. One value is created
// and every later call returns that same value.
type failedError struct {
	cause error
}

func (f *failedError) Error() string {
	return "engine: failed after a storage error, the node must stop: " + f.cause.Error()
}

func (f *failedError) Unwrap() []error { return []error{ErrFailed, f.cause} }

// fatalError is what Pebble reported through Logger.Fatalf. It keeps the
// first error argument so that errors.Is sees the root cause.
type fatalError struct {
	msg   string
	cause error
}

func (f *fatalError) Error() string { return f.msg }
func (f *fatalError) Unwrap() error { return f.cause }

// Engine is a node's one durable store: the Paxos state of every group the
// node hosts and the user data they replicate, in one Pebble DB. All methods
// are safe for concurrent use.
//
// An Engine fails for good on the first storage error of a commit (or any
// Pebble fatal error): from then on every commit and read returns the same
// error wrapping ErrFailed. Pebble has by then already applied the batch to
// its memtable, so reads could see data that is not durable, and after a
// failed fsync the OS may have dropped dirty pages, so a retry could report
// success for lost data. A node must stop and recover from disk.
type Engine struct {
	opts  Options
	popts *pebble.Options
	db    *pebble.DB

	// mu guards closed and inflight. Every operation that touches db is
	// counted in inflight, and Close waits for the count to drain, because
	// Pebble panics on use after close. A count, unlike a read lock, lets
	// an operation nest another (an ExportSnapshot callback that reads)
	// without deadlocking against a pending Close: the nested call just
	// gets ErrClosed.
	mu       sync.Mutex
	drained  sync.Cond
	closed   bool
	inflight int

	failure atomic.Pointer[failedError]
	// fatal is set when Pebble stopped in the middle of an operation (see
	// failLogger); Close then leaves Pebble alone, since the interrupted
	// operation may hold its locks.
	fatal atomic.Bool
	stats statsRecorder
	// metrics are the engine's instruments (metrics.go).
	metrics engineMetrics
	// tmpSeq names the temporary files of snapshot ingestion.
	tmpSeq atomic.Uint64
	// lock is the directory's lock (lockDir), held from before Pebble
	// opens until after it closes.
	lock *pebble.Lock
}

// commitFatalFormat is the format of the one Fatalf call of Pebble's commit
// pipeline: a failed WAL write or sync. DB.Apply returns nil after it, so
// this call is the only way a commit error becomes visible at all.
// TestErrorInjection fails if a Pebble upgrade changes it.
const commitFatalFormat = "pebble: fatal commit error: %v"

// failLogger forwards to the user's Logger and turns every Fatalf into a
// failed Engine first.
//
// A commit error (commitFatalFormat) returns into Pebble: nothing after that
// call touches the disk, and the engine reports the error from the commit
// and from every later call instead. Any other Fatalf (a failed MANIFEST
// write, an invariant violation) must never return: Pebble's code after it
// assumes the process is gone, and would for example delete the sstables
// of a failed ingest that a half-written MANIFEST may still reference. So
// after the user's Fatalf, failLogger panics. The engine recovers that
// panic where it called Pebble itself (Open, commits, ingest) and reports
// the failure; in Pebble's background goroutines (flushes, compactions) the
// panic stops the process, as Pebble's own default logger would.
type failLogger struct {
	e     *Engine
	inner Logger
}

// fatalPanic is what failLogger panics with.
type fatalPanic struct{ err *fatalError }

func (l failLogger) Infof(format string, args ...any)  { l.inner.Infof(format, args...) }
func (l failLogger) Errorf(format string, args ...any) { l.inner.Errorf(format, args...) }

func (l failLogger) Fatalf(format string, args ...any) {
	fe := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			fe.cause = err
			break
		}
	}
	l.e.fail(fe)
	if format == commitFatalFormat {
		l.inner.Errorf(format, args...)
		return
	}
	l.e.fatal.Store(true)
	l.inner.Fatalf(format, args...)
	panic(&fatalPanic{err: fe})
}

// guard runs f, a call into Pebble from the engine's caller's goroutine,
// and turns a panic raised in it into the engine's sticky error. Pebble
// panics on its own for some I/O errors (a failed marker move during Open,
// for one), and failLogger panics on fatal errors. Either way Pebble was
// interrupted mid-operation, so the engine marks itself fatal and never
// calls into Pebble again.
func (e *Engine) guard(f func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if fp, ok := r.(*fatalPanic); ok {
			e.fail(fp.err)
		} else {
			e.fail(fmt.Errorf("pebble panicked: %v", r))
			e.opts.Logger.Errorf("engine: pebble panicked: %v\n%s", r, debug.Stack())
		}
		e.fatal.Store(true)
		err = e.Err()
	}()
	return f()
}

// Open opens (creating if needed) the engine in opts.Dir on opts.FS.
func Open(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts}
	e.drained.L = &e.mu
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	pfs := opts.FS
	if opts.WALPreallocation > 0 {
		pfs = walPreallocFS{FS: pfs, chunk: opts.WALPreallocation}
	}
	po := &pebble.Options{
		FS:                          pfs,
		Cache:                       cache,
		MemTableSize:                opts.MemTableSize,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      failLogger{e: e, inner: opts.Logger},
		DisableAutomaticCompactions: opts.DisableAutomaticCompactions,
		// Table stats are loaded by a background reader; skipping them
		// keeps error-injection runs deterministic. The engine does not use
		// them for anything.
		DisableTableStats: opts.DisableAutomaticCompactions,
		EventListener: &pebble.EventListener{
			BackgroundError: func(error) { e.stats.recordBackgroundError() },
		},
	}
	maxComp := opts.MaxConcurrentCompactions
	po.CompactionConcurrencyRange = func() (int, int) { return 1, maxComp }
	po.EnsureDefaults()
	e.popts = po
	if err := mkdirAllSynced(opts.FS, opts.Dir); err != nil {
		return nil, fmt.Errorf("engine: create %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.FS, opts.Dir)
	if err != nil {
		return nil, err
	}
	po.Lock, e.lock = lock, lock
	// Leftovers of snapshot ingests that a crash interrupted are garbage:
	// the ingest never reached Pebble (see snapshot_writer.go).
	if err := opts.FS.RemoveAll(e.tmpDir()); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("engine: clean %s: %w", e.tmpDir(), err)
	}
	var db *pebble.DB
	err = e.guard(func() (err error) {
		db, err = pebble.Open(opts.Dir, po)
		return err
	})
	if err != nil {
		if !e.fatal.Load() {
			_ = lock.Close()
		}
		return nil, fmt.Errorf("engine: open %s: %w", opts.Dir, err)
	}
	e.db = db
	if f := e.failure.Load(); f != nil {
		_ = db.Close()
		_ = lock.Close()
		return nil, f
	}
	if err := e.newMetrics(opts.MeterProvider); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: metrics: %w", err)
	}
	return e, nil
}

// mkdirAllSynced creates dir and its missing parents, one level at a time,
// and makes every level it creates durable: it syncs the parent that holds
// the new entry, and the new directory itself. A plain MkdirAll is not
// enough: Pebble syncs only the immediate parent of its directory, so
// after a power loss a new "data/shardd/node1" could vanish with every
// synced commit in it, and the node would come back as an empty acceptor
// that forgot its promises (issue 9, defect 3).
func mkdirAllSynced(fs vfs.FS, dir string) error {
	var missing []string // deepest first
	for d := dir; ; d = fs.PathDir(d) {
		_, err := fs.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if fs.PathDir(d) == d {
			break // a root that does not exist; MkdirAll reports it
		}
	}
	for _, d := range slices.Backward(missing) {
		if err := fs.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := syncDir(fs, fs.PathDir(d)); err != nil {
			return err
		}
		if err := syncDir(fs, d); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory, making its entries durable.
func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// Close closes the engine. It waits for in-flight operations. Calls after
// Close return ErrClosed. Close of a failed engine returns the sticky error;
// it releases Pebble's resources unless Pebble stopped in the middle of an
// operation (see failLogger), in which case the process should exit.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.closed = true
	for e.inflight > 0 {
		e.drained.Wait()
	}
	e.mu.Unlock()
	e.metrics.close()
	if e.fatal.Load() {
		return e.Err() // the lock stays held too, until the process exits
	}
	err := e.guard(e.db.Close)
	if !e.fatal.Load() {
		err = errors.Join(err, e.lock.Close())
	}
	if f := e.failure.Load(); f != nil {
		return f
	}
	return err
}

// Stats returns the commit counters since Open.
func (e *Engine) Stats() CommitStats { return e.stats.snapshot() }

// Err returns the sticky error of a failed engine, or nil.
func (e *Engine) Err() error {
	if f := e.failure.Load(); f != nil {
		return f
	}
	return nil
}

// fail puts the engine in its failed state. The first cause wins.
func (e *Engine) fail(cause error) {
	e.failure.CompareAndSwap(nil, &failedError{cause: cause})
}

// acquire checks that the engine is usable and counts an operation in
// flight. The caller must call e.release when err is nil.
func (e *Engine) acquire() error {
	if f := e.failure.Load(); f != nil {
		return f
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.inflight++
	return nil
}

// release ends an operation started by acquire.
func (e *Engine) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inflight--
	if e.inflight == 0 && e.closed {
		e.drained.Broadcast()
	}
}

// apply commits pb to Pebble and accounts for it. records is the number of
// engine records in pb, for the statistics.
func (e *Engine) apply(pb *pebble.Batch, sync bool, records int) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	if pb.Empty() {
		return nil
	}
	start := time.Now()
	err := e.guard(func() error { return e.db.Apply(pb, &pebble.WriteOptions{Sync: sync}) })
	d := time.Since(start)
	if err != nil {
		e.fail(err)
	}
	// A WAL error reaches us through Logger.Fatalf, not through err.
	if f := e.failure.Load(); f != nil {
		return f
	}
	e.stats.recordCommit(sync, records, pb.Len(), d)
	if sync {
		e.metrics.recordSync(records, d)
	}
	return nil
}
