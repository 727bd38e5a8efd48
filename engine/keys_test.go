package engine

import (
	"bytes"
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// localRec is the decoded identity of a local key, ordered the way the
// layout promises: by group, then kind, then slot.
type localRec struct {
	g      GroupID
	kind   keyKind
	slot   uint64
	suffix string // of a range-local record
}

func (r localRec) key() []byte {
	switch r.kind {
	case kindEntry:
		return entryKey(r.g, r.slot)
	case kindRangeLocal:
		return appendRangeLocalKey(nil, r.g, []byte(r.suffix))
	}
	return localKey(r.g, r.kind)
}

func compareRec(a, b localRec) int {
	return cmp.Or(cmp.Compare(a.g, b.g), cmp.Compare(a.kind, b.kind), cmp.Compare(a.slot, b.slot),
		cmp.Compare(a.suffix, b.suffix))
}

var edgeU64 = []uint64{0, 1, 255, 256, 1 << 32, math.MaxUint64 - 1, math.MaxUint64}

func randU64(rng *rand.Rand) uint64 {
	if rng.IntN(3) == 0 {
		return edgeU64[rng.IntN(len(edgeU64))]
	}
	return rng.Uint64() >> rng.IntN(64)
}

// TestKeyOrder checks that byte order of encoded local keys is the logical
// order (group, kind, slot or suffix): a group's entries sort by slot, its
// range-local records by suffix after all its entries, groups never
// interleave, and all local keys sort before all data keys.
func TestKeyOrder(t *testing.T) {
	forEachSeed(t, 4, func(t *testing.T, rng *rand.Rand) {
		kinds := []keyKind{kindHardState, kindApplied, kindMeta, kindEntry, kindRangeLocal}
		recs := make([]localRec, 2000)
		for i := range recs {
			r := localRec{g: GroupID(randU64(rng)), kind: kinds[rng.IntN(len(kinds))]}
			switch r.kind {
			case kindEntry:
				r.slot = randU64(rng)
			case kindRangeLocal:
				r.suffix = string(randBytes(rng, 12))
			}
			recs[i] = r
		}
		byKey := slices.Clone(recs)
		slices.SortFunc(byKey, func(a, b localRec) int { return bytes.Compare(a.key(), b.key()) })
		slices.SortFunc(recs, compareRec)
		for i := range recs {
			if compareRec(recs[i], byKey[i]) != 0 {
				t.Fatalf("position %d: logical %+v, byte order %+v", i, recs[i], byKey[i])
			}
		}
		for _, r := range recs {
			k := r.key()
			// Inside its group's span, and inside no other group's.
			if bytes.Compare(k, groupPrefix(r.g)) < 0 || bytes.Compare(k, groupPrefixEnd(r.g)) >= 0 {
				t.Fatalf("%+v: key %x outside its group span", r, k)
			}
			if r.g != math.MaxUint64 && bytes.Compare(k, groupPrefix(r.g+1)) >= 0 {
				t.Fatalf("%+v: key %x reaches into group %d", r, k, r.g+1)
			}
			if bytes.Compare(k, dataKey(nil)) >= 0 {
				t.Fatalf("%+v: local key %x not below the data space", r, k)
			}
			g, kind, slot, ok := decodeLocalKey(k)
			got := localRec{g: g, kind: kind, slot: slot}
			if ok && kind == kindRangeLocal {
				got.suffix = string(k[localKeyLen:])
			}
			if !ok || got != r {
				t.Fatalf("decode(%x) = %+v %v, want %+v", k, got, ok, r)
			}
			lo, hi := rangeLocalSpan(r.g)
			inRangeLocal := bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0
			if inRangeLocal != (r.kind == kindRangeLocal) {
				t.Fatalf("%+v: key %x inside the range-local span: %v", r, k, inRangeLocal)
			}
			if r.kind == kindRangeLocal && bytes.Compare(k, entrySpanEnd(r.g, math.MaxUint64)) < 0 {
				t.Fatalf("%+v: range-local key below the all-entries end: DeleteEntries would reach it", r)
			}
			if r.kind == kindEntry {
				if bytes.Compare(k, entrySpanEnd(r.g, math.MaxUint64)) >= 0 {
					t.Fatalf("%+v: entry key not below the all-entries end", r)
				}
				if r.slot < math.MaxUint64 && bytes.Compare(k, entrySpanEnd(r.g, r.slot+1)) >= 0 {
					t.Fatalf("%+v: entry key not below entrySpanEnd(slot+1)", r)
				}
			}
		}
	})
}

func TestGroupPrefixEndMax(t *testing.T) {
	if got := groupPrefixEnd(math.MaxUint64); !bytes.Equal(got, []byte{dataPrefix}) {
		t.Fatalf("groupPrefixEnd(max) = %x", got)
	}
	if got, want := groupPrefixEnd(7), groupPrefix(8); !bytes.Equal(got, want) {
		t.Fatalf("groupPrefixEnd(7) = %x, want %x", got, want)
	}
}

func TestDecodeLocalKeyRejects(t *testing.T) {
	bad := [][]byte{
		nil,
		{localPrefix},
		dataKey([]byte("abcdefghijk")),
		append(localKey(1, kindHardState), 0), // singleton with a suffix
		localKey(1, kindEntry),                // entry without a slot
		append(entryKey(1, 2), 0),             // entry with extra bytes
		append(groupPrefix(1), byte(kindRangeLocalEnd)), // unknown kind
		append(groupPrefix(1), 0),                       // unknown kind
	}
	for _, k := range bad {
		if _, _, _, ok := decodeLocalKey(k); ok {
			t.Errorf("decodeLocalKey(%x) accepted", k)
		}
	}
}

// TestDataKeyOrder checks that the data prefix preserves user key order and
// that dataSpan bounds exactly the user keys in [start, end).
func TestDataKeyOrder(t *testing.T) {
	keys := [][]byte{nil, {0}, {0, 0}, {1}, {0xff}, {0xff, 0xff}, []byte("a"), []byte("ab"), []byte("b")}
	for _, a := range keys {
		for _, b := range keys {
			if got, want := bytes.Compare(dataKey(a), dataKey(b)), bytes.Compare(a, b); got != want {
				t.Fatalf("order of %x vs %x: %d, want %d", a, b, got, want)
			}
		}
	}
	for _, start := range keys {
		for _, end := range append(keys, nil) {
			lo, hi := dataSpan(start, end)
			for _, k := range keys {
				in := bytes.Compare(k, start) >= 0 && (end == nil || bytes.Compare(k, end) < 0)
				dk := dataKey(k)
				got := bytes.Compare(dk, lo) >= 0 && bytes.Compare(dk, hi) < 0
				if in != got {
					t.Fatalf("key %x span [%x,%x): in=%v, bounds say %v", k, start, end, in, got)
				}
			}
		}
	}
	if lo, hi := dataSpan(nil, nil); !bytes.Equal(lo, []byte{dataPrefix}) || !bytes.Equal(hi, []byte{dataPrefixEnd}) {
		t.Fatalf("dataSpan(nil,nil) = %x, %x", lo, hi)
	}
}

func TestAppliedCodec(t *testing.T) {
	for _, v := range edgeU64 {
		got, ok := decodeApplied(encodeApplied(v))
		if !ok || got != v {
			t.Fatalf("applied %d round-trips to %d %v", v, got, ok)
		}
	}
	if _, ok := decodeApplied([]byte{1, 2, 3}); ok {
		t.Fatal("short applied value accepted")
	}
}
