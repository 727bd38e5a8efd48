package engine

import (
	"encoding/binary"
	"math"
)

// The key layout is documented in doc.go. These helpers are the only code
// that knows it; everything else goes through them.

const (
	// storePrefix starts the store's own records, which belong to no
	// group (its identity).
	storePrefix byte = 0x00
	// localPrefix starts every key of a group's Paxos state.
	localPrefix byte = 0x01
	// dataPrefix starts every user data key. All groups share this space,
	// so a split moves no bytes.
	dataPrefix byte = 0x02
	// dataPrefixEnd is the first byte past the user data space.
	dataPrefixEnd byte = 0x03
)

// storeKind is the byte after storePrefix in a store record's key.
type storeKind byte

const (
	storeKindIdent storeKind = 0x01
	// storeKindTombstone starts the replica tombstones, one per group
	// (8 bytes big-endian) that left the node.
	storeKindTombstone storeKind = 0x02
)

// storeKey returns the key of the store's record of kind k.
func storeKey(k storeKind) []byte { return []byte{storePrefix, byte(k)} }

// tombstoneKey returns the key of group g's replica tombstone.
func tombstoneKey(g GroupID) []byte {
	return binary.BigEndian.AppendUint64(storeKey(storeKindTombstone), uint64(g))
}

// decodeTombstoneKey is the inverse of tombstoneKey.
func decodeTombstoneKey(k []byte) (GroupID, bool) {
	if len(k) != 2+8 || k[0] != storePrefix || storeKind(k[1]) != storeKindTombstone {
		return 0, false
	}
	return GroupID(binary.BigEndian.Uint64(k[2:])), true
}

// keyKind is the byte after the group id in a local key. The small records
// sort before the entries so LoadGroup reads them first; the range-local
// records sort after the entries, so LoadGroup stops before them and
// truncating the log never reaches them.
type keyKind byte

const (
	kindHardState keyKind = 0x01
	kindApplied   keyKind = 0x02
	kindMeta      keyKind = 0x03
	kindEntry     keyKind = 0x04
	// kindEntryEnd is one past kindEntry: the end of a group's entries.
	kindEntryEnd keyKind = kindEntry + 1
	// kindRangeLocal starts a range-local replicated record; a suffix of
	// the caller's follows. It is kindEntryEnd itself: the records begin
	// where the entries end.
	kindRangeLocal keyKind = kindEntryEnd
	// kindRangeLocalEnd is one past kindRangeLocal: the end of a group's
	// range-local records.
	kindRangeLocalEnd keyKind = kindRangeLocal + 1
)

const (
	groupPrefixLen = 1 + 8
	localKeyLen    = groupPrefixLen + 1
	entryKeyLen    = localKeyLen + 8
)

// appendGroupPrefix appends 0x01 | group (8 bytes big-endian). Big-endian
// makes byte order equal numeric order, so groups sort by id and never
// interleave.
func appendGroupPrefix(dst []byte, g GroupID) []byte {
	dst = append(dst, localPrefix)
	return binary.BigEndian.AppendUint64(dst, uint64(g))
}

// groupPrefix returns the first key of group g's local span.
func groupPrefix(g GroupID) []byte {
	return appendGroupPrefix(make([]byte, 0, groupPrefixLen), g)
}

// groupPrefixEnd returns the exclusive end of group g's local span. For the
// largest group id the span ends where user data begins.
func groupPrefixEnd(g GroupID) []byte {
	if g == math.MaxUint64 {
		return []byte{dataPrefix}
	}
	return groupPrefix(g + 1)
}

// appendLocalKey appends the key of a singleton record (hard state, applied,
// meta) of group g.
func appendLocalKey(dst []byte, g GroupID, k keyKind) []byte {
	return append(appendGroupPrefix(dst, g), byte(k))
}

// appendEntryKey appends the key of group g's entry at slot. Slots are
// big-endian so a group's entries sort by slot.
func appendEntryKey(dst []byte, g GroupID, slot uint64) []byte {
	dst = appendLocalKey(dst, g, kindEntry)
	return binary.BigEndian.AppendUint64(dst, slot)
}

// entryKey returns the key of group g's entry at slot.
func entryKey(g GroupID, slot uint64) []byte {
	return appendEntryKey(make([]byte, 0, entryKeyLen), g, slot)
}

// entrySpanEnd returns the exclusive end key for entries below slot to. The
// value math.MaxUint64 means "all entries": it maps past the last possible
// slot, so the entry at slot math.MaxUint64 is covered too.
func entrySpanEnd(g GroupID, to uint64) []byte {
	if to == math.MaxUint64 {
		return appendLocalKey(make([]byte, 0, localKeyLen), g, kindEntryEnd)
	}
	return entryKey(g, to)
}

// localKey returns the key of a singleton record of group g.
func localKey(g GroupID, k keyKind) []byte {
	return appendLocalKey(make([]byte, 0, localKeyLen), g, k)
}

// appendRangeLocalKey appends the key of group g's range-local record with
// the given suffix. The suffix runs to the end of the key, so records sort
// by suffix.
func appendRangeLocalKey(dst []byte, g GroupID, suffix []byte) []byte {
	return append(appendLocalKey(dst, g, kindRangeLocal), suffix...)
}

// rangeLocalSpan returns the bounds of group g's range-local records.
func rangeLocalSpan(g GroupID) (lo, hi []byte) {
	return localKey(g, kindRangeLocal), localKey(g, kindRangeLocalEnd)
}

// decodeLocalKey splits a local key into its group, kind and (for entries)
// slot. ok is false for any key that is not a well-formed local key. The
// suffix of a range-local record is key[localKeyLen:].
func decodeLocalKey(key []byte) (g GroupID, k keyKind, slot uint64, ok bool) {
	if len(key) < localKeyLen || key[0] != localPrefix {
		return 0, 0, 0, false
	}
	g = GroupID(binary.BigEndian.Uint64(key[1:groupPrefixLen]))
	k = keyKind(key[groupPrefixLen])
	switch k {
	case kindHardState, kindApplied, kindMeta:
		if len(key) != localKeyLen {
			return 0, 0, 0, false
		}
	case kindEntry:
		if len(key) != entryKeyLen {
			return 0, 0, 0, false
		}
		slot = binary.BigEndian.Uint64(key[localKeyLen:])
	case kindRangeLocal:
		// Any suffix, the empty one too.
	default:
		return 0, 0, 0, false
	}
	return g, k, slot, true
}

// appendDataKey appends the storage key of user key k.
func appendDataKey(dst, k []byte) []byte {
	return append(append(dst, dataPrefix), k...)
}

// dataKey returns the storage key of user key k.
func dataKey(k []byte) []byte {
	return appendDataKey(make([]byte, 0, 1+len(k)), k)
}

// dataSpan returns the storage bounds of the user span [start, end). A nil
// end means unbounded: the span runs to the end of the user data space.
func dataSpan(start, end []byte) (lo, hi []byte) {
	lo = dataKey(start)
	if end == nil {
		return lo, []byte{dataPrefixEnd}
	}
	return lo, dataKey(end)
}

// encodeApplied encodes an applied point as 8 bytes big-endian.
func encodeApplied(applied uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), applied)
}

// decodeApplied is the inverse of encodeApplied.
func decodeApplied(v []byte) (uint64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}
