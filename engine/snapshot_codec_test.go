package engine

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func randBytes(rng *rand.Rand, max int) []byte {
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randOptBytes returns nil (absent) or some bytes, possibly empty.
func randOptBytes(rng *rand.Rand, max int) []byte {
	if rng.IntN(3) == 0 {
		return nil
	}
	return randBytes(rng, max)
}

func randChunk(rng *rand.Rand) SnapshotChunk {
	c := SnapshotChunk{Group: GroupID(randU64(rng)), Seq: randU64(rng)}
	if rng.IntN(2) == 0 {
		h := &SnapshotHeader{Start: randBytes(rng, 8), End: randOptBytes(rng, 8),
			HardState: randOptBytes(rng, 20), Meta: randOptBytes(rng, 20)}
		if rng.IntN(4) > 0 {
			h.Applied, h.HasApplied = randU64(rng), true
		}
		c.Header = h
	}
	for range rng.IntN(3) {
		c.RangeLocal = append(c.RangeLocal, KV{Key: randBytes(rng, 10), Value: randBytes(rng, 200)})
	}
	for range rng.IntN(6) {
		c.Pairs = append(c.Pairs, KV{Key: randBytes(rng, 10), Value: randBytes(rng, 200)})
	}
	if rng.IntN(2) == 0 {
		c.Trailer = &SnapshotTrailer{Count: randU64(rng), RangeLocalCount: randU64(rng), Checksum: rng.Uint32()}
	}
	return c
}

func TestSnapshotCodecRoundTrip(t *testing.T) {
	forEachSeed(t, 2, func(t *testing.T, rng *rand.Rand) {
		for range 2000 {
			c := randChunk(rng)
			enc := c.Encode()
			if len(enc) != c.EncodedLen() {
				t.Fatalf("EncodedLen %d, encoding %d bytes: %+v", c.EncodedLen(), len(enc), c)
			}
			got, err := DecodeSnapshotChunk(enc)
			if err != nil {
				t.Fatalf("decode: %v (%+v)", err, c)
			}
			if !chunksEqual(c, got) {
				t.Fatalf("round trip:\n%+v\n%+v", c, got)
			}
			// The decoded chunk owns its memory.
			for i := range enc {
				enc[i] ^= 0xff
			}
			if !chunksEqual(c, got) {
				t.Fatal("decoded chunk aliases the input")
			}
		}
	})
}

// chunksEqual compares chunks; Start's nil and empty are the same (both
// mean "from the first key"), everything else must match exactly,
// including absent versus empty optional fields.
func chunksEqual(a, b SnapshotChunk) bool {
	if a.Group != b.Group || a.Seq != b.Seq || !kvsEqual(a.RangeLocal, b.RangeLocal) || !kvsEqual(a.Pairs, b.Pairs) ||
		(a.Header == nil) != (b.Header == nil) || !reflect.DeepEqual(a.Trailer, b.Trailer) {
		return false
	}
	if ha, hb := a.Header, b.Header; ha != nil {
		if !bytes.Equal(ha.Start, hb.Start) || !eqOpt(ha.End, hb.End) || !eqOpt(ha.HardState, hb.HardState) ||
			!eqOpt(ha.Meta, hb.Meta) || ha.HasApplied != hb.HasApplied || ha.Applied != hb.Applied {
			return false
		}
	}
	return true
}

func kvsEqual(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func TestDecodeSnapshotChunkRejects(t *testing.T) {
	good := (&SnapshotChunk{Group: 1, Seq: 0, Header: &SnapshotHeader{Start: []byte("a")},
		RangeLocal: []KV{{[]byte("s"), []byte("2")}}, Pairs: []KV{{[]byte("a"), []byte("1")}},
		Trailer: &SnapshotTrailer{Count: 1, RangeLocalCount: 1, Checksum: 5}}).Encode()
	if _, err := DecodeSnapshotChunk(good); err != nil {
		t.Fatal(err)
	}
	const v = snapshotCodecVersion
	cases := map[string][]byte{
		"empty":             nil,
		"old version":       append([]byte{v - 1}, good[1:]...),
		"new version":       append([]byte{v + 1}, good[1:]...),
		"unknown flag":      append([]byte{v, good[1] | 0x80}, good[2:]...),
		"header flags":      {v, flagMeta, 1, 0, 0, 0},
		"trailing":          append(bytes.Clone(good), 0),
		"non-minimal":       {v, 0, 0x81, 0x00, 0, 0, 0},
		"overflow":          {v, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0},
		"huge record count": {v, 0, 1, 0, 0xff, 0xff, 0x03},
		"huge pair count":   {v, 0, 1, 0, 0, 0xff, 0xff, 0x03},
		"long suffix":       {v, 0, 1, 0, 1, 5, 'a'},
		"long key":          {v, 0, 1, 0, 0, 1, 5, 'a'},
		"truncated crc":     good[:len(good)-1],
		"truncated seq":     {v, 0, 1},
		"truncated flag":    {v},
	}
	for name, in := range cases {
		if _, err := DecodeSnapshotChunk(in); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err = %v, want ErrBadChunk", name, err)
		}
	}
	for n := range len(good) {
		if _, err := DecodeSnapshotChunk(good[:n]); err == nil {
			t.Errorf("prefix of %d bytes decoded", n)
		}
	}
}

func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, math.MaxUint32, math.MaxUint64} {
		if got, want := uvarintLen(v), len(appendUvarintForTest(v)); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", v, got, want)
		}
	}
}

func appendUvarintForTest(v uint64) []byte {
	var out []byte
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// FuzzDecodeSnapshotChunk feeds arbitrary bytes to the decoder. It must
// never panic, and whatever it accepts must re-encode to the same bytes
// (the encoding is canonical), so a decoded chunk is exactly what was sent.
func FuzzDecodeSnapshotChunk(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		c := randChunk(rng)
		f.Add(c.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeSnapshotChunk(data)
		if err != nil {
			if !errors.Is(err, ErrBadChunk) {
				t.Fatalf("error %v does not wrap ErrBadChunk", err)
			}
			return
		}
		if enc := c.Encode(); !bytes.Equal(enc, data) {
			t.Fatalf("accepted input re-encodes differently:\n in %x\nout %x", data, enc)
		}
		if c.EncodedLen() != len(data) {
			t.Fatalf("EncodedLen %d != %d", c.EncodedLen(), len(data))
		}
	})
}
