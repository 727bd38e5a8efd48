package engine

import (
	"bytes"
	"fmt"
	"hash/crc32"
)

// KV is one user data pair of a snapshot. Keys are user keys (without the
// engine's prefix).
type KV struct {
	Key, Value []byte
}

// SnapshotChunk is one bounded piece of a snapshot stream of one group:
//
//	chunk 0        Header (span, applied, hard state, meta) + records + pairs
//	chunk 1..n-1   records + pairs
//	chunk n        records + pairs + Trailer (counts, checksum)
//
// The group's range-local records come first in the stream, then the user
// data pairs of its span: a chunk may hold both, at the boundary, but no
// record comes after a pair. A stream of one chunk carries both Header and
// Trailer. The header comes first so that a receiver can decide before any
// data moves whether it wants the snapshot (for example, whether its
// applied point is newer than its own); the trailer comes last so that the
// receiver can check that it got every record and pair, in order,
// unchanged, before it ingests anything.
type SnapshotChunk struct {
	Group GroupID
	// Seq is the chunk's position in the stream, from 0.
	Seq uint64
	// Header is set in chunk 0 only.
	Header *SnapshotHeader
	// RangeLocal are the group's range-local records (Key is the suffix),
	// sorted by suffix, across chunks too.
	RangeLocal []KV
	// Pairs are sorted by key, across chunks too, and lie in the header's
	// span.
	Pairs []KV
	// Trailer is set in the last chunk only.
	Trailer *SnapshotTrailer
}

// SnapshotHeader is the group's Paxos metadata and span, read from the same
// consistent view as the data.
type SnapshotHeader struct {
	// Start and End bound the user data span [Start, End); a nil End means
	// unbounded.
	Start, End []byte
	// Applied is the group's applied point; the data reflects exactly the
	// entries up to it. HasApplied is false if the group never set one.
	Applied    uint64
	HasApplied bool
	// HardState and Meta are the group's opaque records, nil if absent.
	HardState []byte
	Meta      []byte
}

// SnapshotTrailer closes a stream.
type SnapshotTrailer struct {
	// Count is the number of user data pairs in the whole stream.
	Count uint64
	// RangeLocalCount is the number of range-local records in the stream.
	RangeLocalCount uint64
	// Checksum is the CRC-32C (Castagnoli) of every record and pair in
	// stream order, each as a tag byte ('l' for a range-local record, 'd'
	// for a data pair) then uvarint(len(key)) key uvarint(len(value))
	// value. The tag keeps a record from passing for a pair.
	Checksum uint32
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Tags of the checksummed items; see SnapshotTrailer.
const (
	tagRangeLocal byte = 'l'
	tagData       byte = 'd'
)

// streamDigest accumulates the trailer of a stream.
type streamDigest struct {
	pairs, records uint64
	crc            uint32
	buf            []byte
}

func (d *streamDigest) add(tag byte, k, v []byte) {
	d.buf = appendBytes(appendBytes(append(d.buf[:0], tag), k), v)
	d.crc = crc32.Update(d.crc, crcTable, d.buf)
	if tag == tagRangeLocal {
		d.records++
	} else {
		d.pairs++
	}
}

func (d *streamDigest) trailer() *SnapshotTrailer {
	return &SnapshotTrailer{Count: d.pairs, RangeLocalCount: d.records, Checksum: d.crc}
}

// ExportSnapshot streams group g's snapshot: its metadata, its range-local
// records and the user data in [start, end) (nil end = unbounded), read
// from one consistent Pebble snapshot, so the data and records match the
// applied point exactly even while the group keeps writing. fn receives
// the chunks in order and may keep them; an error from fn stops the export
// and is returned.
//
// A chunk's encoding (EncodedLen) is at most chunkBytes, except a chunk
// holding a single record or pair, or only the header, that alone is
// larger. The group's log entries are not exported: the snapshot replaces
// the log.
//
// The export holds the engine open: Close waits for it to return.
func (e *Engine) ExportSnapshot(g GroupID, start, end []byte, chunkBytes int, fn func(SnapshotChunk) error) error {
	if chunkBytes <= 0 {
		return fmt.Errorf("engine: ExportSnapshot chunkBytes = %d, must be positive", chunkBytes)
	}
	if end != nil && bytes.Compare(start, end) > 0 {
		return ErrInvalidSpan
	}
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	snap := e.db.NewSnapshot()
	defer func() { _ = snap.Close() }()

	st, err := loadGroup(snap, g, false)
	if err != nil {
		return err
	}
	hdr := &SnapshotHeader{
		Start:      bytes.Clone(start),
		End:        bytes.Clone(end),
		Applied:    st.Applied,
		HasApplied: st.HasApplied,
		HardState:  st.HardState,
		Meta:       st.Meta,
	}
	if hdr.Start == nil {
		hdr.Start = []byte{}
	}
	b := chunkBuilder{budget: chunkBytes - maxTrailerLen, fn: fn}
	b.reset(SnapshotChunk{Group: g, Header: hdr})
	lo, hi := rangeLocalSpan(g)
	err = scanRaw(snap, lo, hi, func(k, v []byte) bool { return b.add(tagRangeLocal, k[localKeyLen:], v) })
	if err == nil && b.err == nil {
		lo, hi = dataSpan(start, end)
		err = scanRaw(snap, lo, hi, func(k, v []byte) bool { return b.add(tagData, k[1:], v) })
	}
	if b.err != nil {
		return b.err // unwrapped, so the caller can compare it
	}
	if err != nil {
		return err
	}
	b.c.Trailer = b.digest.trailer()
	return fn(b.c)
}

// maxTrailerLen is the most a trailer adds to a chunk's encoding; the
// budget reserves it so that whichever chunk turns out last stays in bound.
const maxTrailerLen = 10 + 10 + 4

// chunkBuilder cuts a stream of records and pairs into chunks of at most a
// byte budget, and hands each full chunk to fn.
type chunkBuilder struct {
	c      SnapshotChunk
	size   int // EncodedLen of c as it stands
	budget int
	digest streamDigest
	fn     func(SnapshotChunk) error
	err    error // fn's error, which stops the stream
}

func (b *chunkBuilder) reset(c SnapshotChunk) {
	b.c = c
	b.size = c.EncodedLen()
}

// add copies the record or pair (k, v) into the chunk, first handing the
// chunk to fn if (k, v) would not fit and the chunk holds anything. It
// reports whether the stream goes on.
func (b *chunkBuilder) add(tag byte, k, v []byte) bool {
	b.digest.add(tag, k, v)
	empty := b.c.Header == nil && len(b.c.RangeLocal) == 0 && len(b.c.Pairs) == 0
	if b.size+b.growth(tag, k, v) > b.budget && !empty {
		if b.err = b.fn(b.c); b.err != nil {
			return false
		}
		b.reset(SnapshotChunk{Group: b.c.Group, Seq: b.c.Seq + 1})
	}
	b.size += b.growth(tag, k, v)
	list := b.list(tag)
	*list = append(*list, copyKV(k, v))
	return true
}

// list returns the chunk's list that items with tag go to.
func (b *chunkBuilder) list(tag byte) *[]KV {
	if tag == tagRangeLocal {
		return &b.c.RangeLocal
	}
	return &b.c.Pairs
}

// growth is the exact increase of EncodedLen when (k, v) is added to the
// list of tag.
func (b *chunkBuilder) growth(tag byte, k, v []byte) int {
	n := uint64(len(*b.list(tag)))
	return bytesLen(k) + bytesLen(v) + uvarintLen(n+1) - uvarintLen(n)
}

// copyKV copies (k, v) into one allocation; the iterator's slices are
// reused.
func copyKV(k, v []byte) KV {
	buf := make([]byte, len(k)+len(v))
	copy(buf, k)
	copy(buf[len(k):], v)
	return KV{Key: buf[:len(k):len(k)], Value: buf[len(k):]}
}
