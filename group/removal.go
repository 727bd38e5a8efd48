package group

import (
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// A replica removed from its group is not told so by the protocol: once
// the change is chosen, the leader stops sending to it, and nothing makes
// it learn the slot that removed it. Its caller must learn it all the
// same, to stop hosting the replica and drop its data. Two ways teach it:
//
//   - The leader that saw the change chosen sends each member the change
//     dropped the chosen entries it lacks up to the change (a snapshot if
//     they were truncated), and again every election timeout until the
//     member reports it has them, at most departedTells times in all: a
//     removed node that is down must not keep the group awake for ever.
//   - A replica that refuses the prepare of a candidate that is no member
//     of its configuration, and knows more chosen slots than the
//     candidate, teaches it those slots in a MsgCommit. A removed replica
//     that missed the leader's word probes (probe.go) once its election
//     timeout passes, and learns its removal from whoever refuses it: a
//     probe is refused and taught as a prepare is (phase1Refusal). A candidate
//     that is a member of a configuration newer than ours is never taught:
//     it knows at least the slot that made it one, which we do not.
//
// Either way the removed replica applies the change that removed it, like
// any chosen entry, and its caller sees a configuration without it.

// departedTells bounds the times a leader tells a removed member of its
// removal.
const departedTells = 4

// departed is a member a chosen change removed, still to be told.
type departed struct {
	id uint64
	// chosen is the member's chosen point as last reported.
	chosen uint64
	// slot is the change that removed it.
	slot uint64
	// tells counts the messages sent; wait counts down the ticks until
	// the next.
	tells, wait int
}

// noteDeparted records the members that the change chosen at slot
// dropped from the configuration, and tells them. It runs before
// syncProgress forgets their progress.
func (r *Replica) noteDeparted(slot uint64) {
	l := r.lead
	for _, p := range l.progress {
		if !isMember(r.conf, p.id) {
			l.departed = slices.DeleteFunc(l.departed, func(d departed) bool { return d.id == p.id })
			l.departed = append(l.departed, departed{id: p.id, chosen: p.chosen, slot: slot})
			r.tellDeparted(&l.departed[len(l.departed)-1])
		}
	}
}

// tellDeparted sends a removed member what it lacks up to its removal.
func (r *Replica) tellDeparted(d *departed) {
	d.tells++
	d.wait = r.cfg.ElectionTicks
	r.teach(d.id, d.chosen, d.slot, r.ballot)
}

// teach sends replica to the chosen entries above its chosen point up to
// slot upTo, as far as one message holds, or our applied state if the log
// no longer holds the first of them, or if it knows no chosen slot: it may
// not know its configuration, and learns no entry without one (a learner
// removed before its first snapshot, whose caller must drop it all the
// same).
func (r *Replica) teach(to, chosen, upTo uint64, b pb.Ballot) {
	lo := chosen + 1
	if lo <= r.meta.Index || (chosen == 0 && r.applied > 0) {
		r.sendSnapshot(to)
		return
	}
	hi := min(upTo, r.chosen, lo+uint64(r.cfg.MaxEntriesPerMsg)-1)
	if lo > hi {
		return
	}
	r.send(pb.Message{Type: pb.MsgCommit, To: to, Ballot: b, Index: lo, LastIndex: hi, Entries: r.log.slice(lo, hi)})
}

// tickDeparted retells, every election timeout, the removed members that
// have not reported their removal, and forgets those told often enough.
func (r *Replica) tickDeparted() {
	l := r.lead
	keep := l.departed[:0]
	for _, d := range l.departed {
		if d.wait--; d.wait <= 0 {
			if d.tells >= departedTells {
				continue
			}
			r.tellDeparted(&d)
		}
		keep = append(keep, d)
	}
	l.departed = keep
}

// departedReport takes a removed member's answer: its chosen point. Once
// that covers its removal, it needs telling no more.
func (r *Replica) departedReport(id, chosen uint64) {
	l := r.lead
	l.departed = slices.DeleteFunc(l.departed, func(d departed) bool { return d.id == id && chosen >= d.slot })
	for i := range l.departed {
		if d := &l.departed[i]; d.id == id {
			d.chosen = max(d.chosen, chosen)
		}
	}
}

// teachRemoved answers the prepare m of a candidate that is no member of
// our configuration with the chosen slots it lacks, if we know more.
func (r *Replica) teachRemoved(m pb.Message) {
	if r.isAcceptor() && !isMember(r.conf, m.From) && m.Chosen < r.chosen {
		r.teach(m.From, m.Chosen, r.chosen, r.promised)
	}
}
