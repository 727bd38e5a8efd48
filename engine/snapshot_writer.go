package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// tmpDirName is the directory, inside the engine's Dir, where snapshot
// ingestion stages its sstables. Open removes it: whatever is there belongs
// to an ingest that never reached Pebble.
const tmpDirName = "engine-snapshot-tmp"

func (e *Engine) tmpDir() string { return e.opts.FS.PathJoin(e.opts.Dir, tmpDirName) }

// IngestOptions tunes a SnapshotWriter.
type IngestOptions struct {
	// ReplaceHardState makes the ingest write the snapshot's hard state
	// over the local one (or delete the local one if the snapshot has
	// none). By default the local hard state is kept: it records this
	// replica's own promises, which it must never forget (Paxos Made
	// Simple, section 2.2, P1a), and the engine cannot compare opaque
	// records. The caller, who can, opts in. The default value is false.
	ReplaceHardState bool
}

// SnapshotWriter ingests a snapshot stream of one group, replacing the
// group's state on this node. When Finish returns nil, atomically:
//
//   - the user data in the header's span [Start, End) is exactly the
//     stream's pairs (everything else in the span is deleted),
//   - every log entry of the group at or below the header's applied point
//     is deleted: the snapshot covers those slots. Entries above it are
//     acceptor state (values this replica accepted but that may not be
//     chosen yet) and a replica must never forget them, so they stay,
//   - the group's applied point and meta are the header's (deleted if the
//     header has none), and its hard state too with ReplaceHardState,
//   - the group's range-local records are exactly the stream's (every old
//     one is deleted).
//
// Crash safety: Add streams the pairs into one sstable in a staging
// directory, and the group's own records (from the header), the range
// tombstones of its entries and range-local records, and the stream's
// range-local records into a second one, holding O(1) memory however large
// the snapshot. Finish syncs both and hands them to Pebble's Ingest, which
// adds them to the LSM in
// ONE atomic, durable version edit (as if one batch held all of it). A
// crash before that edit is durable leaves the old state untouched and only
// garbage in the staging directory, which Open removes; a crash after it
// leaves the new state. No reader ever sees the snapshot's applied point
// with part of its data. Finish also syncs the WAL before the ingest, so
// every commit that returned before Finish was called is durable whenever
// the snapshot is (the ingest alone would not sync the WAL).
//
// A SnapshotWriter is not safe for concurrent use. Writers of different
// groups with disjoint spans may run concurrently. The caller must not
// write the group's records or span while its ingest runs.
type SnapshotWriter struct {
	e    *Engine
	g    GroupID
	opts IngestOptions

	hdr        *SnapshotHeader
	nextSeq    uint64
	lastKey    []byte // last pair's key, to check order
	lastSuffix []byte // last range-local record's suffix, likewise
	digest     streamDigest
	done       bool // trailer seen

	dataPath  string
	localPath string
	data      *sstable.Writer
	dataKeys  bool // the data sstable holds at least one key or tombstone
	local     *sstable.Writer
	scratch   []byte

	err      error // sticky: after an error only Abort is useful
	finished bool
}

// NewSnapshotWriter starts an ingest for group g.
func (e *Engine) NewSnapshotWriter(g GroupID, opts IngestOptions) *SnapshotWriter {
	return &SnapshotWriter{e: e, g: g, opts: opts}
}

func (w *SnapshotWriter) failf(format string, args ...any) error {
	w.err = fmt.Errorf("engine: snapshot ingest of group %d: %s", w.g, fmt.Sprintf(format, args...))
	return w.err
}

// Add consumes the next chunk. It checks the stream's shape: chunks in
// order, header first, trailer last, range-local records before pairs,
// suffixes and keys sorted, keys inside the span.
func (w *SnapshotWriter) Add(c SnapshotChunk) error {
	if w.err != nil {
		return w.err
	}
	switch {
	case w.finished:
		return w.failf("Add after Finish")
	case c.Group != w.g:
		return w.failf("chunk of group %d", c.Group)
	case c.Seq != w.nextSeq:
		return w.failf("chunk %d, want %d", c.Seq, w.nextSeq)
	case w.done:
		return w.failf("chunk %d after the trailer", c.Seq)
	case (c.Seq == 0) != (c.Header != nil):
		return w.failf("chunk %d: header must come in chunk 0 only", c.Seq)
	}
	w.nextSeq++
	if c.Header != nil {
		if err := w.start(c.Header); err != nil {
			return err
		}
	}
	for _, r := range c.RangeLocal {
		if err := w.addRangeLocal(r); err != nil {
			return err
		}
	}
	for _, p := range c.Pairs {
		if err := w.addPair(p); err != nil {
			return err
		}
	}
	if t := c.Trailer; t != nil {
		w.done = true
		if got := w.digest.trailer(); *t != *got {
			return w.failf("trailer says %d pairs %d range-local records crc %08x, stream had %d, %d, crc %08x",
				t.Count, t.RangeLocalCount, t.Checksum, got.Count, got.RangeLocalCount, got.Checksum)
		}
	}
	return nil
}

// start opens the two sstables, writes the span's range tombstone into the
// data one, and the group's own records into the local one (see
// startLocal). A tombstone's sequence number at ingest is the same as the
// keys' of its sstable, and a tombstone deletes only older keys, so it
// clears the old state but not the new.
func (w *SnapshotWriter) start(h *SnapshotHeader) error {
	if h.End != nil && bytes.Compare(h.Start, h.End) > 0 {
		return w.failf("span start %q after end %q", h.Start, h.End)
	}
	w.hdr = h
	fs := w.e.opts.FS
	if err := fs.MkdirAll(w.e.tmpDir(), 0o755); err != nil {
		w.err = err
		return err
	}
	seq := w.e.tmpSeq.Add(1)
	w.dataPath = fs.PathJoin(w.e.tmpDir(), fmt.Sprintf("%d-g%d-data.sst", seq, w.g))
	w.localPath = fs.PathJoin(w.e.tmpDir(), fmt.Sprintf("%d-g%d-local.sst", seq, w.g))
	sw, err := w.e.newSSTWriter(w.dataPath)
	if err != nil {
		w.err = err
		return err
	}
	w.data = sw
	if h.End == nil || bytes.Compare(h.Start, h.End) < 0 {
		lo, hi := dataSpan(h.Start, h.End)
		if err := w.data.DeleteRange(lo, hi); err != nil {
			w.err = err
			return err
		}
		w.dataKeys = true
	}
	if err := w.startLocal(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// startLocal opens the sstable of the group's own records and writes, in
// key order: hard state, applied, meta (point keys), then the tombstones of
// the entries and of the range-local records; the stream's range-local
// records follow as they arrive.
func (w *SnapshotWriter) startLocal() error {
	sw, err := w.e.newSSTWriter(w.localPath)
	if err != nil {
		return err
	}
	w.local = sw
	h := w.hdr
	put := func(k keyKind, present bool, v []byte) error {
		if present {
			return sw.Set(localKey(w.g, k), v)
		}
		return sw.Delete(localKey(w.g, k))
	}
	if w.opts.ReplaceHardState {
		err = put(kindHardState, h.HardState != nil, h.HardState)
	}
	if err == nil {
		err = put(kindApplied, h.HasApplied, encodeApplied(h.Applied))
	}
	if err == nil {
		err = put(kindMeta, h.Meta != nil, h.Meta)
	}
	if err == nil {
		end := entrySpanEnd(w.g, math.MaxUint64)
		if h.Applied < math.MaxUint64 {
			end = entrySpanEnd(w.g, h.Applied+1)
		}
		err = sw.DeleteRange(entryKey(w.g, 0), end)
	}
	if err == nil {
		err = sw.DeleteRange(rangeLocalSpan(w.g))
	}
	return err
}

func (w *SnapshotWriter) addRangeLocal(r KV) error {
	switch {
	case w.digest.pairs > 0:
		return w.failf("range-local record %q after the data", r.Key)
	case w.digest.records > 0 && bytes.Compare(r.Key, w.lastSuffix) <= 0:
		return w.failf("range-local record %q not after %q", r.Key, w.lastSuffix)
	}
	w.lastSuffix = append(w.lastSuffix[:0], r.Key...)
	w.digest.add(tagRangeLocal, r.Key, r.Value)
	w.scratch = appendRangeLocalKey(w.scratch[:0], w.g, r.Key)
	if err := w.local.Set(w.scratch, r.Value); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *SnapshotWriter) addPair(p KV) error {
	h := w.hdr
	switch {
	case bytes.Compare(p.Key, h.Start) < 0 || (h.End != nil && bytes.Compare(p.Key, h.End) >= 0):
		return w.failf("key %q outside span [%q, %q)", p.Key, h.Start, h.End)
	case w.digest.pairs > 0 && bytes.Compare(p.Key, w.lastKey) <= 0:
		return w.failf("key %q not after %q", p.Key, w.lastKey)
	}
	w.lastKey = append(w.lastKey[:0], p.Key...)
	w.digest.add(tagData, p.Key, p.Value)
	w.scratch = appendDataKey(w.scratch[:0], p.Key)
	if err := w.data.Set(w.scratch, p.Value); err != nil {
		w.err = err
		return err
	}
	w.dataKeys = true
	return nil
}

// Finish ingests the snapshot atomically (see SnapshotWriter). On error the
// staging files are removed; if the error came from Pebble's ingest itself
// the Engine has failed, because a half-done ingest may have hit the disk.
func (w *SnapshotWriter) Finish() error {
	if w.err != nil {
		w.Abort()
		return w.err
	}
	if !w.done {
		w.Abort()
		return w.failf("Finish before the trailer (after %d chunks)", w.nextSeq)
	}
	w.finished = true
	// Close flushes, syncs and closes a file.
	err := errors.Join(w.data.Close(), w.local.Close())
	w.data, w.local = nil, nil
	if err == nil {
		err = w.ingest()
	}
	if err != nil {
		w.err = err
	}
	w.removeFiles()
	return err
}

func (w *SnapshotWriter) ingest() error {
	// Sync the WAL first. An ingest that does not overlap the memtable is
	// durable through the MANIFEST alone, without syncing the WAL, so a
	// crash could otherwise keep the snapshot but lose unsynced commits
	// made before it: a state that no prefix of the commits explains. The
	// barrier keeps "everything before a durable write is durable" true.
	barrier := w.e.db.NewBatch()
	must(barrier.LogData([]byte("engine: snapshot ingest barrier"), nil))
	err := w.e.apply(barrier, true, 0)
	_ = barrier.Close()
	if err != nil {
		return err
	}
	paths := []string{w.localPath}
	if w.dataKeys {
		paths = append(paths, w.dataPath)
	}
	if err := w.e.acquire(); err != nil {
		return err
	}
	defer w.e.release()
	if err := w.e.guard(func() error { return w.e.db.Ingest(context.Background(), paths) }); err != nil {
		w.e.fail(err)
	}
	return w.e.Err()
}

// Abort drops the ingest and its staging files. It is safe to call at any
// time, also after Finish.
func (w *SnapshotWriter) Abort() {
	for _, sw := range []**sstable.Writer{&w.data, &w.local} {
		if *sw != nil {
			_ = (*sw).Close()
			*sw = nil
		}
	}
	if w.err == nil {
		w.err = errors.New("engine: snapshot ingest aborted")
	}
	w.finished = true
	w.removeFiles()
}

func (w *SnapshotWriter) removeFiles() {
	for _, p := range []string{w.dataPath, w.localPath} {
		if p != "" {
			if err := w.e.opts.FS.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				w.e.opts.Logger.Errorf("engine: remove %s: %v", p, err)
			}
		}
	}
}

// newSSTWriter creates an sstable for ingestion, in the newest table format
// the DB accepts. The file is synced as it is written, every
// Options.BytesPerSync, as Pebble syncs the sstables it writes itself: a
// snapshot's hundred megabytes synced at once when it is finished held the
// disk for tens of milliseconds while every commit's fsync on the node
// waited behind it (and, with the nodes of a test on one disk, the range's
// leader's: its writes stopped for 70 ms).
func (e *Engine) newSSTWriter(path string) (*sstable.Writer, error) {
	f, err := e.opts.FS.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	f = vfs.NewSyncingFile(f, vfs.SyncingFileOptions{BytesPerSync: e.popts.BytesPerSync})
	if err := e.acquire(); err != nil {
		_ = f.Close()
		return nil, err
	}
	format := e.db.FormatMajorVersion().MaxTableFormat()
	e.release()
	wo := e.popts.MakeWriterOptions(0, format)
	return sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo), nil
}
