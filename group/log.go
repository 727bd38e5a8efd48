package group

import (
	pb "github.com/shardd/shardd/paxospb"
)

// entryLog is the in-memory copy of an acceptor's log above its truncation
// point. Slots may have holes: Phase 2 messages can arrive out of order, so
// an acceptor may accept slot 9 before slot 8. A hole is an entry of type
// EntryEmpty.
type entryLog struct {
	// offset is the slot of ents[0]: the slot after the truncation point.
	offset uint64
	ents   []pb.Entry
}

func newEntryLog(truncated uint64) entryLog {
	return entryLog{offset: truncated + 1}
}

// last returns the highest slot holding an entry, or offset-1 if none.
func (l *entryLog) last() uint64 { return l.offset + uint64(len(l.ents)) - 1 }

// get returns the entry at slot s, or nil if there is none.
func (l *entryLog) get(s uint64) *pb.Entry {
	if s < l.offset || s > l.last() {
		return nil
	}
	e := &l.ents[s-l.offset]
	if e.Type == pb.EntryEmpty {
		return nil
	}
	return e
}

// set stores e at e.Slot, growing the log with holes as needed. Slots at or
// below the truncation point are ignored.
func (l *entryLog) set(e pb.Entry) {
	if e.Slot < l.offset {
		return
	}
	for e.Slot > l.last() {
		l.ents = append(l.ents, pb.Entry{Slot: l.last() + 1})
	}
	l.ents[e.Slot-l.offset] = e
}

// slice returns copies of the non-empty entries in [lo, hi].
func (l *entryLog) slice(lo, hi uint64) []pb.Entry {
	lo = max(lo, l.offset)
	hi = min(hi, l.last())
	if lo > hi {
		return nil
	}
	out := make([]pb.Entry, 0, hi-lo+1)
	for _, e := range l.ents[lo-l.offset : hi-l.offset+1] {
		if e.Type != pb.EntryEmpty {
			out = append(out, e)
		}
	}
	return out
}

// truncate drops every slot at or below upTo.
func (l *entryLog) truncate(upTo uint64) {
	if upTo < l.offset {
		return
	}
	if upTo >= l.last() {
		l.ents = nil
	} else {
		// Copy so that the dropped prefix can be collected.
		l.ents = append([]pb.Entry(nil), l.ents[upTo+1-l.offset:]...)
	}
	l.offset = upTo + 1
}
