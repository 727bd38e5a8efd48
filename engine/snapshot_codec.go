package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// The wire encoding of a SnapshotChunk (version 2). Integers are uvarints
// in their shortest form; "bytes" is uvarint(len) followed by the bytes.
//
//	version    1 byte, = 2
//	flags      1 byte, see chunkFlag*
//	group      uvarint
//	seq        uvarint
//	header     if flagHeader:
//	             start bytes
//	             end bytes           if flagEnd (absent = unbounded)
//	             applied uvarint     if flagApplied
//	             hard state bytes    if flagHardState
//	             meta bytes          if flagMeta
//	nlocal     uvarint
//	local      nlocal x (suffix bytes, value bytes)
//	npairs     uvarint
//	pairs      npairs x (key bytes, value bytes)
//	trailer    if flagTrailer: count uvarint, range-local count uvarint,
//	           checksum 4 bytes little-endian
//
// Version 2 added the range-local records; version 1 is not read.
//
// The encoding is canonical: Decode rejects every input that Encode would
// not produce (unknown flags, non-minimal uvarints, trailing bytes), so a
// decoded chunk re-encodes to the same bytes.

const snapshotCodecVersion = 2

const (
	flagHeader byte = 1 << iota
	flagTrailer
	flagEnd
	flagApplied
	flagHardState
	flagMeta

	flagsKnown     = flagHeader | flagTrailer | flagEnd | flagApplied | flagHardState | flagMeta
	flagsOfHeader  = flagEnd | flagApplied | flagHardState | flagMeta
	trailerCRCSize = 4
)

// ErrBadChunk is matched by every DecodeSnapshotChunk error.
var ErrBadChunk = errors.New("engine: malformed snapshot chunk")

func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func (c *SnapshotChunk) flags() byte {
	var f byte
	if h := c.Header; h != nil {
		f |= flagHeader
		if h.End != nil {
			f |= flagEnd
		}
		if h.HasApplied {
			f |= flagApplied
		}
		if h.HardState != nil {
			f |= flagHardState
		}
		if h.Meta != nil {
			f |= flagMeta
		}
	}
	if c.Trailer != nil {
		f |= flagTrailer
	}
	return f
}

// EncodedLen returns the length of c's encoding.
func (c *SnapshotChunk) EncodedLen() int {
	n := 2 + uvarintLen(uint64(c.Group)) + uvarintLen(c.Seq)
	if h := c.Header; h != nil {
		n += bytesLen(h.Start)
		if h.End != nil {
			n += bytesLen(h.End)
		}
		if h.HasApplied {
			n += uvarintLen(h.Applied)
		}
		if h.HardState != nil {
			n += bytesLen(h.HardState)
		}
		if h.Meta != nil {
			n += bytesLen(h.Meta)
		}
	}
	n += kvsLen(c.RangeLocal) + kvsLen(c.Pairs)
	if t := c.Trailer; t != nil {
		n += uvarintLen(t.Count) + uvarintLen(t.RangeLocalCount) + trailerCRCSize
	}
	return n
}

// kvsLen is the length of a list's encoding: its count and its items.
func kvsLen(kvs []KV) int {
	n := uvarintLen(uint64(len(kvs)))
	for _, p := range kvs {
		n += bytesLen(p.Key) + bytesLen(p.Value)
	}
	return n
}

func appendKVs(dst []byte, kvs []KV) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(kvs)))
	for _, p := range kvs {
		dst = appendBytes(appendBytes(dst, p.Key), p.Value)
	}
	return dst
}

// AppendEncode appends c's encoding to dst. Applied is encoded only when
// HasApplied is set.
func (c *SnapshotChunk) AppendEncode(dst []byte) []byte {
	dst = append(dst, snapshotCodecVersion, c.flags())
	dst = binary.AppendUvarint(dst, uint64(c.Group))
	dst = binary.AppendUvarint(dst, c.Seq)
	if h := c.Header; h != nil {
		dst = appendBytes(dst, h.Start)
		if h.End != nil {
			dst = appendBytes(dst, h.End)
		}
		if h.HasApplied {
			dst = binary.AppendUvarint(dst, h.Applied)
		}
		if h.HardState != nil {
			dst = appendBytes(dst, h.HardState)
		}
		if h.Meta != nil {
			dst = appendBytes(dst, h.Meta)
		}
	}
	dst = appendKVs(appendKVs(dst, c.RangeLocal), c.Pairs)
	if t := c.Trailer; t != nil {
		dst = binary.AppendUvarint(dst, t.Count)
		dst = binary.AppendUvarint(dst, t.RangeLocalCount)
		dst = binary.LittleEndian.AppendUint32(dst, t.Checksum)
	}
	return dst
}

// Encode returns c's encoding.
func (c *SnapshotChunk) Encode() []byte {
	return c.AppendEncode(make([]byte, 0, c.EncodedLen()))
}

// chunkDecoder reads the fields of an encoding. Every method checks bounds
// and records the first error; later reads then return zero values.
type chunkDecoder struct {
	buf []byte
	off int
	err error
}

func (d *chunkDecoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at offset %d: %s", ErrBadChunk, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *chunkDecoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.failf("truncated")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

func (d *chunkDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		d.failf("truncated uvarint")
		return 0
	case n < 0:
		d.failf("uvarint overflows 64 bits")
		return 0
	case n != uvarintLen(v):
		d.failf("non-minimal uvarint")
		return 0
	}
	d.off += n
	return v
}

// bytes returns a slice of the decoder's own buffer, never nil.
func (d *chunkDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)-d.off) {
		d.failf("length %d beyond end", n)
		return nil
	}
	b := d.buf[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

// kvs reads a list of items (records or pairs); an empty list is nil.
func (d *chunkDecoder) kvs(what string) []KV {
	n := d.uvarint()
	// Each item takes at least two bytes, which bounds the allocation by
	// the input size whatever the count claims.
	if d.err == nil && n > uint64(len(d.buf)-d.off)/2 {
		d.failf("%s count %d beyond end", what, n)
	}
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]KV, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.bytes()
		v := d.bytes()
		out = append(out, KV{Key: k, Value: v})
	}
	return out
}

// DecodeSnapshotChunk decodes an encoding made by Encode. It never panics on
// any input, and the decoded chunk does not alias data (one copy is made).
// The returned error wraps ErrBadChunk.
func DecodeSnapshotChunk(data []byte) (SnapshotChunk, error) {
	d := chunkDecoder{buf: append(make([]byte, 0, len(data)), data...)}
	var c SnapshotChunk
	if v := d.byte1(); d.err == nil && v != snapshotCodecVersion {
		d.failf("version %d, want %d", v, snapshotCodecVersion)
	}
	f := d.byte1()
	if d.err == nil && (f&^flagsKnown != 0 || (f&flagHeader == 0 && f&flagsOfHeader != 0)) {
		d.failf("bad flags %#x", f)
	}
	c.Group = GroupID(d.uvarint())
	c.Seq = d.uvarint()
	if f&flagHeader != 0 {
		h := &SnapshotHeader{Start: d.bytes()}
		if f&flagEnd != 0 {
			h.End = d.bytes()
		}
		if f&flagApplied != 0 {
			h.Applied, h.HasApplied = d.uvarint(), true
		}
		if f&flagHardState != 0 {
			h.HardState = d.bytes()
		}
		if f&flagMeta != 0 {
			h.Meta = d.bytes()
		}
		c.Header = h
	}
	c.RangeLocal = d.kvs("range-local record")
	c.Pairs = d.kvs("pair")
	if f&flagTrailer != 0 {
		t := &SnapshotTrailer{Count: d.uvarint(), RangeLocalCount: d.uvarint()}
		if d.err == nil {
			if len(d.buf)-d.off < trailerCRCSize {
				d.failf("truncated checksum")
			} else {
				t.Checksum = binary.LittleEndian.Uint32(d.buf[d.off:])
				d.off += trailerCRCSize
			}
		}
		c.Trailer = t
	}
	if d.err == nil && d.off != len(d.buf) {
		d.failf("%d trailing bytes", len(d.buf)-d.off)
	}
	if d.err != nil {
		return SnapshotChunk{}, d.err
	}
	return c, nil
}
