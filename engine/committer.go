package engine

import (
	"errors"
	"sync"
	"time"
)

// ErrCommitterClosed is returned by Committer.Commit after Close.
var ErrCommitterClosed = errors.New("engine: committer closed")

// Committer is the node's group commit across goroutines. Many goroutines
// (the scheduler's workers) hand in batches; one committer goroutine takes
// everything queued, merges it into ONE Pebble batch, commits it with ONE
// sync, and wakes every waiter of that round with the shared result.
//
// While a round's fsync is in flight, new batches queue up and form the
// next round, so the number of fsyncs adapts to the disk: a slow disk gets
// fewer, larger commits. There is no goroutine per caller, no timer and no
// batching delay: an idle committer commits a lone batch at once.
//
// Pebble's WAL writer also shares one fsync among concurrent direct
// commits (BenchmarkCommitter measures both ways); the Committer goes
// further and makes the round ONE Pebble commit, so the round is atomic and
// passes the commit pipeline once, and it gives the node one place to count
// its group commits.
//
// All methods are safe for concurrent use. A Committer does not own its
// Engine: Close the Committer before the Engine.
type Committer struct {
	e *Engine

	mu      sync.Mutex
	wake    sync.Cond // signals the loop that queue is non-empty or closing
	queue   []*Batch
	spare   []*Batch // the other half of a double buffer for queue
	sync    bool     // some queued batch asked for sync
	cur     *round   // the round the queued batches will belong to
	closing bool
	stats   CommitterStats

	exited chan struct{}
}

// round is the shared fate of the batches committed together.
type round struct {
	done chan struct{} // closed when err and shared are set
	err  error
	// shared is what the round carried, for the caller's trace.
	shared Round
}

// Round describes the commit a batch joined: the records and batches
// (of every caller) it carried, and whether it was synced.
type Round struct {
	Records, Batches int
	Synced           bool
}

// CommitterStats counts a Committer's work since NewCommitter.
type CommitterStats struct {
	// Batches is the number of non-empty batches handed in.
	Batches uint64
	// Rounds is the number of merged Pebble commits made.
	Rounds uint64
	// Syncs is the number of rounds that were synced: one WAL fsync each.
	Syncs uint64
	// SyncedRecords is the number of records in synced rounds;
	// SyncedRecords/Syncs is the mean number of records per fsync.
	SyncedRecords uint64
	// SyncedBatches is the number of batches in synced rounds;
	// SyncedBatches/Syncs is the mean group-commit width in batches.
	SyncedBatches uint64
	// SyncLatency is the total wall time of synced rounds, merge included.
	SyncLatency time.Duration
	// MaxBatchesPerRound is the widest round so far.
	MaxBatchesPerRound uint64
}

// NewCommitter starts a committer for e. It runs one goroutine until Close.
func NewCommitter(e *Engine) *Committer {
	c := &Committer{
		e:      e,
		cur:    &round{done: make(chan struct{})},
		exited: make(chan struct{}),
	}
	c.wake.L = &c.mu
	go c.loop()
	return c
}

// Commit commits b in the next round and waits for the round's result. With
// sync the round is synced (a round is synced if any of its batches asks).
// b counts as committed afterwards, whatever the result; the caller still
// Closes it. An error is the round's error, shared by all its batches: on a
// storage error the Engine has failed and no batch of the round may be
// assumed durable.
func (c *Committer) Commit(b *Batch, sync bool) error {
	_, err := c.CommitRound(b, sync)
	return err
}

// CommitRound is Commit, and also describes the round b joined.
func (c *Committer) CommitRound(b *Batch, sync bool) (Round, error) {
	if b.done {
		return Round{}, ErrBatchCommitted
	}
	if b.e != c.e {
		return Round{}, errors.New("engine: batch of another engine handed to a committer")
	}
	b.done = true
	if b.Empty() {
		// Nothing to write; still report a failed or closed engine.
		return Round{}, c.e.apply(b.pb, false, 0)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return Round{}, ErrCommitterClosed
	}
	c.queue = append(c.queue, b)
	c.sync = c.sync || sync
	c.stats.Batches++
	r := c.cur
	if len(c.queue) == 1 {
		c.wake.Signal()
	}
	c.mu.Unlock()
	<-r.done
	return r.shared, r.err
}

// Close commits whatever is queued, stops the goroutine and waits for it.
// Commit calls after Close return ErrCommitterClosed. Close is idempotent.
func (c *Committer) Close() {
	c.mu.Lock()
	c.closing = true
	c.wake.Signal()
	c.mu.Unlock()
	<-c.exited
}

// Stats returns the counters so far.
func (c *Committer) Stats() CommitterStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Committer) loop() {
	defer close(c.exited)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closing {
			c.wake.Wait()
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		q, r, sync := c.queue, c.cur, c.sync
		c.queue, c.spare = c.spare[:0], nil
		c.cur, c.sync = &round{done: make(chan struct{})}, false
		c.mu.Unlock()

		start := time.Now()
		records, err := c.commitRound(q, sync)
		d := time.Since(start)
		r.err = err
		r.shared = Round{Records: records, Batches: len(q), Synced: sync}
		close(r.done)

		c.mu.Lock()
		c.stats.Rounds++
		c.stats.MaxBatchesPerRound = max(c.stats.MaxBatchesPerRound, uint64(len(q)))
		if sync {
			c.stats.Syncs++
			c.stats.SyncedRecords += uint64(records)
			c.stats.SyncedBatches += uint64(len(q))
			c.stats.SyncLatency += d
		}
		clear(q) // drop references to the callers' batches
		c.spare = q[:0]
		c.mu.Unlock()
	}
}

// commitRound commits the batches of one round as one Pebble batch. A lone
// batch is committed as is, without a copy.
func (c *Committer) commitRound(q []*Batch, sync bool) (records int, err error) {
	if len(q) == 1 {
		return q[0].records, c.e.apply(q[0].pb, sync, q[0].records)
	}
	size := 0
	for _, b := range q {
		size += b.Len()
		records += b.records
	}
	merged := c.e.db.NewBatchWithSize(size)
	defer func() { _ = merged.Close() }()
	for _, b := range q {
		if err := merged.Apply(b.pb, nil); err != nil {
			return records, err
		}
	}
	return records, c.e.apply(merged, sync, records)
}
