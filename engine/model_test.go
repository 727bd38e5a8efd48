package engine

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
)

// This file holds a reference model of the engine's semantics, written
// without the key layout: plain maps per group and for user data. The
// randomized tests run the same operations on the engine and the model and
// compare what the engine returns through its public reads.

type opKind int

const (
	opHardState opKind = iota
	opEntry
	opDeleteEntries
	opApplied
	opMeta
	opDeleteGroup
	opPut
	opDelete
	opPutRangeLocal
	opDeleteRangeLocal
)

type op struct {
	kind     opKind
	g        GroupID
	slot, to uint64
	key, val []byte
}

func (o op) addTo(b *Batch) {
	switch o.kind {
	case opHardState:
		b.SetHardState(o.g, o.val)
	case opEntry:
		b.PutEntry(o.g, o.slot, o.val)
	case opDeleteEntries:
		b.DeleteEntries(o.g, o.slot, o.to)
	case opApplied:
		b.SetApplied(o.g, o.slot)
	case opMeta:
		b.SetGroupMeta(o.g, o.val)
	case opDeleteGroup:
		b.DeleteGroup(o.g)
	case opPut:
		b.Put(o.key, o.val)
	case opDelete:
		b.Delete(o.key)
	case opPutRangeLocal:
		b.PutRangeLocal(o.g, o.key, o.val)
	case opDeleteRangeLocal:
		b.DeleteRangeLocal(o.g, o.key)
	}
}

type groupModel struct {
	hs, meta   []byte // nil = absent
	applied    uint64
	hasApplied bool
	entries    map[uint64][]byte
	// rangeLocal are the range-local records by suffix.
	rangeLocal map[string][]byte
}

func (g *groupModel) empty() bool {
	return g.hs == nil && g.meta == nil && !g.hasApplied && len(g.entries) == 0 && len(g.rangeLocal) == 0
}

type model struct {
	groups map[GroupID]*groupModel
	data   map[string][]byte
}

func newModel() *model {
	return &model{groups: map[GroupID]*groupModel{}, data: map[string][]byte{}}
}

func (m *model) clone() *model {
	c := newModel()
	for id, g := range m.groups {
		cg := *g
		cg.entries = maps.Clone(g.entries)
		cg.rangeLocal = maps.Clone(g.rangeLocal)
		c.groups[id] = &cg
	}
	c.data = maps.Clone(m.data)
	return c
}

func (m *model) group(g GroupID) *groupModel {
	gm := m.groups[g]
	if gm == nil {
		gm = &groupModel{entries: map[uint64][]byte{}, rangeLocal: map[string][]byte{}}
		m.groups[g] = gm
	}
	return gm
}

func (m *model) apply(o op) {
	v := bytes.Clone(o.val)
	if o.val != nil && v == nil {
		v = []byte{}
	}
	switch o.kind {
	case opHardState:
		m.group(o.g).hs = nonNil(v)
	case opEntry:
		m.group(o.g).entries[o.slot] = nonNil(v)
	case opDeleteEntries:
		gm := m.group(o.g)
		for s := range gm.entries {
			if s >= o.slot && s < o.to {
				delete(gm.entries, s)
			}
		}
	case opApplied:
		gm := m.group(o.g)
		gm.applied, gm.hasApplied = o.slot, true
	case opMeta:
		m.group(o.g).meta = nonNil(v)
	case opDeleteGroup:
		delete(m.groups, o.g)
	case opPut:
		m.data[string(o.key)] = nonNil(v)
	case opDelete:
		delete(m.data, string(o.key))
	case opPutRangeLocal:
		m.group(o.g).rangeLocal[string(o.key)] = nonNil(v)
	case opDeleteRangeLocal:
		delete(m.group(o.g).rangeLocal, string(o.key))
	}
	if gm := m.groups[o.g]; gm != nil && gm.empty() {
		delete(m.groups, o.g)
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// dumpEngine reads the whole engine back into a model through the public
// reads (Groups, LoadGroup, ScanRangeLocal, GetRangeLocal, Scan).
func dumpEngine(e *Engine) (*model, error) {
	m := newModel()
	ids, err := e.Groups()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		st, err := e.LoadGroup(id)
		if err != nil {
			return nil, err
		}
		gm := &groupModel{hs: st.HardState, meta: st.Meta, applied: st.Applied, hasApplied: st.HasApplied,
			entries: map[uint64][]byte{}, rangeLocal: map[string][]byte{}}
		var last []byte
		err = e.ScanRangeLocal(id, nil, func(suffix, v []byte) bool {
			if len(gm.rangeLocal) > 0 && bytes.Compare(last, suffix) >= 0 {
				err = fmt.Errorf("group %d: range-local records not sorted: %q then %q", id, last, suffix)
				return false
			}
			last = bytes.Clone(suffix)
			gm.rangeLocal[string(suffix)] = bytes.Clone(nonNil(v))
			return true
		})
		if err != nil {
			return nil, err
		}
		for suffix, v := range gm.rangeLocal {
			got, ok, err := e.GetRangeLocal(id, []byte(suffix))
			if err != nil || !ok || !bytes.Equal(got, v) {
				return nil, fmt.Errorf("group %d: GetRangeLocal(%q) = %q %v %v, ScanRangeLocal saw %q", id, suffix, got, ok, err, v)
			}
		}
		if !st.Exists() && len(gm.rangeLocal) == 0 {
			return nil, fmt.Errorf("Groups listed %d but LoadGroup and ScanRangeLocal found nothing", id)
		}
		for i, en := range st.Entries {
			if i > 0 && st.Entries[i-1].Slot >= en.Slot {
				return nil, fmt.Errorf("group %d: entries not sorted: %d then %d", id, st.Entries[i-1].Slot, en.Slot)
			}
			gm.entries[en.Slot] = en.Data
		}
		m.groups[id] = gm
	}
	err = e.Scan(nil, nil, 0, func(k, v []byte) bool {
		m.data[string(k)] = bytes.Clone(nonNil(v))
		return true
	})
	return m, err
}

// diff describes the first few differences between want and got, or "".
func (want *model) diff(got *model) string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < 8 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	ids := slices.Sorted(maps.Keys(want.groups))
	for id := range got.groups {
		if want.groups[id] == nil {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		w, g := want.groups[id], got.groups[id]
		switch {
		case w == nil:
			add("group %d: unexpected %+v", id, *g)
			continue
		case g == nil:
			add("group %d: missing", id)
			continue
		}
		if !eqOpt(w.hs, g.hs) {
			add("group %d: hard state %q, want %q", id, g.hs, w.hs)
		}
		if !eqOpt(w.meta, g.meta) {
			add("group %d: meta %q, want %q", id, g.meta, w.meta)
		}
		if w.hasApplied != g.hasApplied || w.applied != g.applied {
			add("group %d: applied %d/%v, want %d/%v", id, g.applied, g.hasApplied, w.applied, w.hasApplied)
		}
		for s, wv := range w.entries {
			if gv, ok := g.entries[s]; !ok || !bytes.Equal(wv, gv) {
				add("group %d slot %d: %q (present %v), want %q", id, s, gv, ok, wv)
			}
		}
		for s, gv := range g.entries {
			if _, ok := w.entries[s]; !ok {
				add("group %d slot %d: unexpected %q", id, s, gv)
			}
		}
		for s, wv := range w.rangeLocal {
			if gv, ok := g.rangeLocal[s]; !ok || !bytes.Equal(wv, gv) {
				add("group %d range-local %q: %q (present %v), want %q", id, s, gv, ok, wv)
			}
		}
		for s, gv := range g.rangeLocal {
			if _, ok := w.rangeLocal[s]; !ok {
				add("group %d range-local %q: unexpected %q", id, s, gv)
			}
		}
	}
	for k, wv := range want.data {
		if gv, ok := got.data[k]; !ok || !bytes.Equal(wv, gv) {
			add("data %q: %q (present %v), want %q", k, gv, ok, wv)
		}
	}
	for k, gv := range got.data {
		if _, ok := want.data[k]; !ok {
			add("data %q: unexpected %q", k, gv)
		}
	}
	return strings.Join(out, "\n")
}

func eqOpt(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// matchState finds which candidate state the engine holds; it returns -1 and
// the diff against the first candidate if none matches.
func matchState(e *Engine, candidates []*model) (int, string, error) {
	got, err := dumpEngine(e)
	if err != nil {
		return -1, "", err
	}
	for i := len(candidates) - 1; i >= 0; i-- {
		if candidates[i].diff(got) == "" {
			return i, "", nil
		}
	}
	return -1, candidates[0].diff(got), nil
}

// workload generates random batches over a fixed set of groups and keys.
type workload struct {
	rng    *rand.Rand
	groups int
	keys   int
	slots  uint64
	// bigEvery makes one value in bigEvery large (1-5 KB), so that
	// unsynced WAL blocks reach the file and memtables rotate; 0 = never.
	bigEvery int
	seq      int
}

func (w *workload) value() []byte {
	n := w.rng.IntN(40)
	if w.bigEvery > 0 && w.rng.IntN(w.bigEvery) == 0 {
		n = 1000 + w.rng.IntN(4000)
	}
	if w.rng.IntN(15) == 0 {
		n = 0
	}
	w.seq++
	v := fmt.Appendf(nil, "v%d:", w.seq)
	for len(v) < n {
		v = append(v, byte('a'+w.rng.IntN(26)))
	}
	return v
}

func (w *workload) batch() []op {
	n := 1 + w.rng.IntN(8)
	ops := make([]op, 0, n)
	for range n {
		o := op{g: GroupID(1 + w.rng.IntN(w.groups))}
		switch r := w.rng.IntN(100); {
		case r < 30:
			o.kind, o.slot, o.val = opEntry, w.rng.Uint64N(w.slots), w.value()
		case r < 45:
			o.kind, o.val = opHardState, w.value()
		case r < 55:
			o.kind, o.slot = opApplied, w.rng.Uint64N(w.slots)
		case r < 60:
			o.kind, o.val = opMeta, w.value()
		case r < 68:
			o.kind, o.slot = opDeleteEntries, w.rng.Uint64N(w.slots)
			o.to = o.slot + w.rng.Uint64N(w.slots/2+1)
		case r < 70:
			o.kind = opDeleteGroup
		case r < 76:
			o.kind, o.key, o.val = opPutRangeLocal, w.suffix(), w.value()
		case r < 78:
			o.kind, o.key = opDeleteRangeLocal, w.suffix()
		case r < 92:
			o.kind, o.key, o.val = opPut, fmt.Appendf(nil, "key%04d", w.rng.IntN(w.keys)), w.value()
		default:
			o.kind, o.key = opDelete, fmt.Appendf(nil, "key%04d", w.rng.IntN(w.keys))
		}
		ops = append(ops, o)
	}
	return ops
}

// suffix is a range-local record's suffix: one of a few client ids, some
// sharing a prefix, and the empty suffix.
func (w *workload) suffix() []byte {
	if w.rng.IntN(10) == 0 {
		return []byte{}
	}
	return fmt.Appendf(nil, "s/%d", w.rng.IntN(12))
}

func (m *model) applyAll(ops []op) {
	for _, o := range ops {
		m.apply(o)
	}
}

func newBatchOf(e *Engine, ops []op) *Batch {
	b := e.NewBatch()
	for _, o := range ops {
		o.addTo(b)
	}
	return b
}
