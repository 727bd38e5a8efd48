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
//	chunk 0        Header (span, applied, hard state, meta) + pairs
//	chunk 1..n-1   pairs
//	chunk n        pairs + Trailer (pair count, checksum)
//
// A stream of one chunk carries both Header and Trailer. The header comes
// first so that a receiver can decide before any data moves whether it
// wants the snapshot (for example, whether its applied point is newer than
// its own); the trailer comes last so that the receiver can check that it
// got every pair, in order, unchanged, before it ingests anything.
type SnapshotChunk struct {
	Group GroupID
	// Seq is the chunk's position in the stream, from 0.
	Seq uint64
	// Header is set in chunk 0 only.
	Header *SnapshotHeader
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
	// Count is the number of pairs in the whole stream.
	Count uint64
	// Checksum is the CRC-32C (Castagnoli) of every pair in stream order,
	// each as uvarint(len(key)) key uvarint(len(value)) value.
	Checksum uint32
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// pairDigest accumulates the trailer of a stream of pairs.
type pairDigest struct {
	count uint64
	crc   uint32
	buf   []byte
}

func (d *pairDigest) add(k, v []byte) {
	d.buf = appendBytes(appendBytes(d.buf[:0], k), v)
	d.crc = crc32.Update(d.crc, crcTable, d.buf)
	d.count++
}

// ExportSnapshot streams group g's snapshot: its metadata and the user data
// in [start, end) (nil end = unbounded), read from one consistent Pebble
// snapshot, so the data matches the applied point exactly even while the
// group keeps writing. fn receives the chunks in order and may keep them;
// an error from fn stops the export and is returned.
//
// A chunk's encoding (EncodedLen) is at most chunkBytes, except a chunk
// holding a single pair, or only the header, that alone is larger. The
// group's log entries are not exported: the snapshot replaces the log.
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
	b := chunkBuilder{budget: chunkBytes - maxTrailerLen}
	b.reset(SnapshotChunk{Group: g, Header: hdr})
	var digest pairDigest
	var ferr error
	lo, hi := dataSpan(start, end)
	err = scanRaw(snap, lo, hi, func(k, v []byte) bool {
		k = k[1:]
		digest.add(k, v)
		if !b.fits(k, v) && (len(b.c.Pairs) > 0 || b.c.Header != nil) {
			if ferr = fn(b.c); ferr != nil {
				return false
			}
			b.reset(SnapshotChunk{Group: g, Seq: b.c.Seq + 1})
		}
		b.add(k, v)
		return true
	})
	if ferr != nil {
		return ferr // unwrapped, so the caller can compare it
	}
	if err != nil {
		return err
	}
	b.c.Trailer = &SnapshotTrailer{Count: digest.count, Checksum: digest.crc}
	return fn(b.c)
}

// maxTrailerLen is the most a trailer adds to a chunk's encoding; the
// budget reserves it so that whichever chunk turns out last stays in bound.
const maxTrailerLen = 10 + 4

// chunkBuilder fills one chunk up to a byte budget.
type chunkBuilder struct {
	c      SnapshotChunk
	size   int // EncodedLen of c as it stands
	budget int
}

func (b *chunkBuilder) reset(c SnapshotChunk) {
	b.c = c
	b.size = c.EncodedLen()
}

// fits reports whether adding (k, v) keeps the chunk within budget.
func (b *chunkBuilder) fits(k, v []byte) bool {
	return b.size+b.growth(k, v) <= b.budget
}

// growth is the exact increase of EncodedLen when (k, v) is added.
func (b *chunkBuilder) growth(k, v []byte) int {
	n := uint64(len(b.c.Pairs))
	return bytesLen(k) + bytesLen(v) + uvarintLen(n+1) - uvarintLen(n)
}

// add copies (k, v) into the chunk; the iterator's slices are reused.
func (b *chunkBuilder) add(k, v []byte) {
	b.size += b.growth(k, v)
	buf := make([]byte, len(k)+len(v))
	copy(buf, k)
	copy(buf[len(k):], v)
	b.c.Pairs = append(b.c.Pairs, KV{Key: buf[:len(k):len(k)], Value: buf[len(k):]})
}
