package engine

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// ErrBatchCommitted is returned by Commit on a Batch that was already
// committed (directly or through a Committer).
var ErrBatchCommitted = errors.New("engine: batch already committed")

// Batch collects writes of any number of groups and user data. Its Commit is
// atomic: after a crash either every record of the batch is visible or none
// is. One synced Commit is one fsync however many groups the batch carries;
// that is the node's group commit.
//
// A Batch is not safe for concurrent use. The writer methods copy their
// arguments, so callers may reuse their buffers. A Batch must not be written
// after Commit; Close it when done (also after a failed Commit).
type Batch struct {
	e       *Engine
	pb      *pebble.Batch
	records int
	scratch []byte
	done    bool
}

// NewBatch returns an empty batch for this engine.
func (e *Engine) NewBatch() *Batch {
	return &Batch{e: e, pb: e.db.NewBatch()}
}

// set adds one Set record. Pebble's batch methods only fail on a closed or
// committed batch, which is a programming error, so they panic then.
func (b *Batch) set(key, value []byte) {
	must(b.pb.Set(key, value, nil))
	b.records++
}

func (b *Batch) del(key []byte) {
	must(b.pb.Delete(key, nil))
	b.records++
}

func (b *Batch) delRange(start, end []byte) {
	must(b.pb.DeleteRange(start, end, nil))
	b.records++
}

func must(err error) {
	if err != nil {
		panic("engine: batch write: " + err.Error())
	}
}

// SetHardState records group g's hard state (for example its promised
// ballot). The data is opaque to the engine.
func (b *Batch) SetHardState(g GroupID, data []byte) {
	b.scratch = appendLocalKey(b.scratch[:0], g, kindHardState)
	b.set(b.scratch, data)
}

// PutEntry records the entry that group g accepted at slot, replacing any
// earlier entry at that slot.
func (b *Batch) PutEntry(g GroupID, slot uint64, data []byte) {
	b.scratch = appendEntryKey(b.scratch[:0], g, slot)
	b.set(b.scratch, data)
}

// DeleteEntries removes group g's entries in [from, to) with one range
// tombstone, so truncating a long log costs one record. A to of
// math.MaxUint64 removes every entry from from on, including the slot
// math.MaxUint64 itself. from >= to is a no-op.
func (b *Batch) DeleteEntries(g GroupID, from, to uint64) {
	if from >= to {
		return
	}
	b.delRange(entryKey(g, from), entrySpanEnd(g, to))
}

// SetApplied records group g's applied point. Put it in the same batch as
// the user data writes of the entries it covers: the batch is atomic, so
// after a crash the applied point never runs ahead of (or behind) the data.
func (b *Batch) SetApplied(g GroupID, applied uint64) {
	b.scratch = appendLocalKey(b.scratch[:0], g, kindApplied)
	b.scratch = append(b.scratch, encodeApplied(applied)...)
	b.set(b.scratch[:localKeyLen], b.scratch[localKeyLen:])
}

// SetGroupMeta records group g's opaque metadata (membership, range bounds).
func (b *Batch) SetGroupMeta(g GroupID, data []byte) {
	b.scratch = appendLocalKey(b.scratch[:0], g, kindMeta)
	b.set(b.scratch, data)
}

// PutRangeLocal records group g's range-local record under suffix, for
// example a client session of exactly-once writes. Range-local records are
// part of the group's replicated state, like the user data of its span:
// write them in the batch that applies the entry they come from (with
// SetApplied), so that after a crash they match the applied point. They
// travel in the group's snapshots, an ingested snapshot replaces them
// wholesale, DeleteGroup removes them, and DeleteEntries leaves them alone.
func (b *Batch) PutRangeLocal(g GroupID, suffix, value []byte) {
	b.scratch = appendRangeLocalKey(b.scratch[:0], g, suffix)
	b.set(b.scratch, value)
}

// DeleteRangeLocal removes group g's range-local record under suffix.
func (b *Batch) DeleteRangeLocal(g GroupID, suffix []byte) {
	b.scratch = appendRangeLocalKey(b.scratch[:0], g, suffix)
	b.del(b.scratch)
}

// DeleteGroup removes all of group g's state (hard state, entries, applied
// point, meta, range-local records) with one range tombstone. User data is
// shared by all groups and is not touched: a range removed from this node
// is cleared by deleting its span of user data separately.
func (b *Batch) DeleteGroup(g GroupID) {
	b.delRange(groupPrefix(g), groupPrefixEnd(g))
}

// Put sets user key to value in the shared user data space.
func (b *Batch) Put(key, value []byte) {
	b.scratch = appendDataKey(b.scratch[:0], key)
	b.set(b.scratch, value)
}

// Delete removes user key.
func (b *Batch) Delete(key []byte) {
	b.scratch = appendDataKey(b.scratch[:0], key)
	b.del(b.scratch)
}

// DeleteSpan removes the user data in [start, end) with one range
// tombstone; a nil end means unbounded. Used when a replica of a range
// leaves this node.
func (b *Batch) DeleteSpan(start, end []byte) {
	lo, hi := dataSpan(start, end)
	b.delRange(lo, hi)
}

// Count returns the number of records in the batch. A range deletion counts
// as one record.
func (b *Batch) Count() int { return b.records }

// Len returns the size of the batch's encoding in bytes.
func (b *Batch) Len() int { return b.pb.Len() }

// Empty reports whether the batch holds no records.
func (b *Batch) Empty() bool { return b.records == 0 }

// Commit makes the batch's records visible atomically. With sync it returns
// after they are durable (one WAL fsync for the whole batch); without sync
// they are durable once a later synced commit returns, or may be lost in a
// crash before that. Committing an empty batch is a no-op that still
// reports a failed or closed engine.
func (b *Batch) Commit(sync bool) error {
	if b.done {
		return ErrBatchCommitted
	}
	b.done = true
	return b.e.apply(b.pb, sync, b.records)
}

// Close releases the batch. Calling Close twice is safe.
func (b *Batch) Close() {
	if b.pb == nil {
		return
	}
	_ = b.pb.Close()
	b.pb = nil
}
