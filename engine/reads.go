package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Entry is one accepted log entry of a group.
type Entry struct {
	Slot uint64
	Data []byte
}

// GroupState is everything the engine holds for one group, as LoadGroup
// returns it at node start. A nil HardState or Meta means none was written
// (an empty one was written as empty).
type GroupState struct {
	ID        GroupID
	HardState []byte
	Meta      []byte
	// Applied is the applied point; HasApplied tells 0 from "never set".
	Applied    uint64
	HasApplied bool
	// Entries are sorted by slot.
	Entries []Entry
}

// Exists reports whether any durable record of the group was found.
func (s GroupState) Exists() bool {
	return s.HardState != nil || s.Meta != nil || s.HasApplied || len(s.Entries) > 0
}

// ErrInvalidSpan is returned for a span whose start is after its end.
var ErrInvalidSpan = errors.New("engine: span start is after end")

// ErrCorrupt is matched by errors about records the engine cannot decode.
var ErrCorrupt = errors.New("engine: corrupt record")

// Get returns a copy of the value of user key, and whether it exists.
func (e *Engine) Get(key []byte) ([]byte, bool, error) {
	if err := e.acquire(); err != nil {
		return nil, false, err
	}
	defer e.release()
	return e.get(dataKey(key))
}

// get reads one storage key; the caller holds acquire.
func (e *Engine) get(key []byte) ([]byte, bool, error) {
	v, closer, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := cloneNonNil(v)
	return out, true, closer.Close()
}

// Scan calls fn for each user key in [start, end) in key order, at most
// limit times (limit <= 0 means no limit), and stops early when fn returns
// false. A nil end means unbounded. The slices passed to fn are valid only
// until fn returns. Scan reads one consistent view of the data.
func (e *Engine) Scan(start, end []byte, limit int, fn func(k, v []byte) bool) error {
	if end != nil && bytes.Compare(start, end) > 0 {
		return ErrInvalidSpan
	}
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	lo, hi := dataSpan(start, end)
	return scanRaw(e.db, lo, hi, func(k, v []byte) bool {
		if !fn(k[1:], v) {
			return false
		}
		limit--
		return limit != 0
	})
}

// scanRaw iterates the storage keys in [lo, hi) of r until fn returns false.
func scanRaw(r pebble.Reader, lo, hi []byte, fn func(k, v []byte) bool) (err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if !fn(it.Key(), v) {
			return nil
		}
	}
	return it.Error()
}

// LoadGroup returns the durable Paxos records of group g: hard state,
// applied point, meta and entries. Range-local records are not part of the
// result (read them with GetRangeLocal and ScanRangeLocal). A group with
// no such records yields a GroupState whose Exists is false.
func (e *Engine) LoadGroup(g GroupID) (GroupState, error) {
	if err := e.acquire(); err != nil {
		return GroupState{}, err
	}
	defer e.release()
	return loadGroup(e.db, g, true)
}

// loadGroup reads group g from r; withEntries false skips the log.
func loadGroup(r pebble.Reader, g GroupID, withEntries bool) (GroupState, error) {
	s := GroupState{ID: g}
	hi := entrySpanEnd(g, math.MaxUint64)
	if !withEntries {
		hi = localKey(g, kindEntry)
	}
	var derr error
	err := scanRaw(r, groupPrefix(g), hi, func(k, v []byte) bool {
		_, kind, slot, ok := decodeLocalKey(k)
		if !ok {
			derr = fmt.Errorf("%w: local key %x", ErrCorrupt, k)
			return false
		}
		switch kind {
		case kindHardState:
			s.HardState = cloneNonNil(v)
		case kindMeta:
			s.Meta = cloneNonNil(v)
		case kindApplied:
			s.Applied, ok = decodeApplied(v)
			if !ok {
				derr = fmt.Errorf("%w: applied value %x of group %d", ErrCorrupt, v, g)
				return false
			}
			s.HasApplied = true
		case kindEntry:
			s.Entries = append(s.Entries, Entry{Slot: slot, Data: cloneNonNil(v)})
		}
		return true
	})
	return s, errors.Join(err, derr)
}

// GetRangeLocal returns a copy of group g's range-local record under
// suffix, and whether it exists.
func (e *Engine) GetRangeLocal(g GroupID, suffix []byte) ([]byte, bool, error) {
	if err := e.acquire(); err != nil {
		return nil, false, err
	}
	defer e.release()
	return e.get(appendRangeLocalKey(nil, g, suffix))
}

// ScanRangeLocal calls fn for each of group g's range-local records whose
// suffix starts with prefix (all of them for an empty prefix), in suffix
// order, from one consistent view, until fn returns false. The slices
// passed to fn are valid only until fn returns.
func (e *Engine) ScanRangeLocal(g GroupID, prefix []byte, fn func(suffix, value []byte) bool) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	lo, hi := rangeLocalSpan(g)
	if len(prefix) > 0 {
		lo = appendRangeLocalKey(nil, g, prefix)
		hi = keyUpperBound(lo)
	}
	return scanRaw(e.db, lo, hi, func(k, v []byte) bool { return fn(k[localKeyLen:], v) })
}

// keyUpperBound returns the smallest key greater than every key with
// prefix p, or nil if there is none (p is all 0xff).
func keyUpperBound(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Entries returns group g's entries with slots in [from, to), sorted by
// slot. A to of math.MaxUint64 includes the last possible slot.
func (e *Engine) Entries(g GroupID, from, to uint64) ([]Entry, error) {
	if from >= to {
		return nil, nil
	}
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	var out []Entry
	var derr error
	err := scanRaw(e.db, entryKey(g, from), entrySpanEnd(g, to), func(k, v []byte) bool {
		_, kind, slot, ok := decodeLocalKey(k)
		if !ok || kind != kindEntry {
			derr = fmt.Errorf("%w: entry key %x", ErrCorrupt, k)
			return false
		}
		out = append(out, Entry{Slot: slot, Data: cloneNonNil(v)})
		return true
	})
	return out, errors.Join(err, derr)
}

// Groups returns the id of every group with at least one durable record,
// sorted. It seeks once per group, so it costs O(groups), not O(records).
func (e *Engine) Groups() (out []GroupID, err error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{localPrefix},
		UpperBound: []byte{dataPrefix},
	})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	for valid := it.First(); valid; {
		g, _, _, ok := decodeLocalKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("%w: local key %x", ErrCorrupt, it.Key())
		}
		out = append(out, g)
		if g == math.MaxUint64 {
			break
		}
		valid = it.SeekGE(groupPrefix(g + 1))
	}
	return out, it.Error()
}

// cloneNonNil copies v; an empty value stays distinguishable from "absent".
func cloneNonNil(v []byte) []byte {
	out := make([]byte, len(v))
	copy(out, v)
	return out
}
