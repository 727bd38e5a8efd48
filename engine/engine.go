package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
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

	// mu is held shared by every operation that touches db and exclusively
	// by Close, because Pebble panics on use after close.
	mu     sync.RWMutex
	closed bool

	failure atomic.Pointer[failedError]
	stats   statsRecorder
	// tmpSeq names the temporary files of snapshot ingestion.
	tmpSeq atomic.Uint64
}

// failLogger forwards to the user's Logger and turns Fatalf into a failed
// Engine first. Pebble reports a failed WAL write or fsync ONLY through
// Fatalf (DB.Apply returns nil when Fatalf returns), so this interception is
// what makes commit errors visible at all.
type failLogger struct {
	e     *Engine
	inner Logger
}

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
	l.inner.Fatalf(format, args...)
}

// Open opens (creating if needed) the engine in opts.Dir on opts.FS.
func Open(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		FS:                          opts.FS,
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
	if err := opts.FS.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: create %s: %w", opts.Dir, err)
	}
	// Leftovers of snapshot ingests that a crash interrupted are garbage:
	// the ingest never reached Pebble (see snapshot_writer.go).
	if err := opts.FS.RemoveAll(e.tmpDir()); err != nil {
		return nil, fmt.Errorf("engine: clean %s: %w", e.tmpDir(), err)
	}
	db, err := openPebble(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("engine: open %s: %w", opts.Dir, err)
	}
	e.db = db
	if f := e.failure.Load(); f != nil {
		_ = db.Close()
		return nil, f
	}
	return e, nil
}

// openPebble opens Pebble and turns a panic during open (Pebble panics on
// some corrupt states) into an error, so a bad disk never crashes a caller
// that can report it.
func openPebble(dir string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pebble panicked during open: %v", r)
		}
	}()
	return pebble.Open(dir, po)
}

// Close closes the engine. It waits for in-flight operations. Calls after
// Close return ErrClosed. Close of a failed engine still releases Pebble's
// resources and returns the sticky error.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	err := e.db.Close()
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

// acquire takes the shared lock and checks that the engine is usable. The
// caller must call e.mu.RUnlock when err is nil.
func (e *Engine) acquire() error {
	if f := e.failure.Load(); f != nil {
		return f
	}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// apply commits pb to Pebble and accounts for it. records is the number of
// engine records in pb, for the statistics.
func (e *Engine) apply(pb *pebble.Batch, sync bool, records int) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.mu.RUnlock()
	if pb.Empty() {
		return nil
	}
	start := time.Now()
	err := e.db.Apply(pb, &pebble.WriteOptions{Sync: sync})
	d := time.Since(start)
	if err != nil {
		e.fail(err)
	}
	// A WAL error reaches us through Logger.Fatalf, not through err.
	if f := e.failure.Load(); f != nil {
		return f
	}
	e.stats.recordCommit(sync, records, pb.Len(), d)
	return nil
}
