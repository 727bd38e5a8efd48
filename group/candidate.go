package group

import (
	pb "github.com/shardd/shardd/paxospb"
)

// candidate is the state of a replica running Phase 1.
type candidate struct {
	// promises holds, per promiser, the values it accepted above our
	// chosen point when it promised.
	promises map[uint64][]pb.Entry
	// asked is every replica sent our prepare.
	asked map[uint64]bool
	// transfer is the ballot whose lease was handed to us, if any.
	transfer pb.Ballot
}

// campaign starts Phase 1 with a ballot higher than any this replica has
// seen. One Phase 1 covers every open slot at once: that is what makes it
// Multi-Paxos ("Paxos Made Simple", section 3).
func (r *Replica) campaign(transfer pb.Ballot) {
	r.role = Candidate
	r.step = stepCandidate
	r.leader = 0
	r.lead = nil
	r.probe = nil
	r.ballot = r.nextBallot()
	r.maxRound = r.ballot.Round
	r.setPromised(r.ballot)
	r.resetElectionTimer()
	r.cand = &candidate{
		promises: map[uint64][]pb.Entry{r.id: r.log.slice(r.chosen+1, r.log.last())},
		asked:    map[uint64]bool{r.id: true},
		transfer: transfer,
	}
	r.maybeWin() // which asks every member
}

// nextBallot is the ballot this replica would campaign with now: higher
// than any it has seen.
func (r *Replica) nextBallot() pb.Ballot { return pb.Ballot{Round: r.maxRound + 1, Node: r.id} }

func (r *Replica) sendPrepare(to uint64) {
	if r.cand.asked[to] {
		return
	}
	r.cand.asked[to] = true
	r.send(pb.Message{Type: pb.MsgPrepare, To: to, Ballot: r.ballot, Chosen: r.chosen, Transfer: r.cand.transfer})
}

func stepCandidate(r *Replica, m pb.Message) {
	if m.Type != pb.MsgPromise || m.Ballot != r.ballot {
		return
	}
	if m.Reject != pb.RejectNone {
		if m.Reject == pb.RejectBallot && r.ballot.Less(m.Hint) {
			r.becomeFollower(0)
		}
		// Refusals for a lease, membership or a lagging log are retried
		// after the next election timeout, with a probe first.
		return
	}
	// The promiser's entries up to its chosen point are chosen values:
	// learn them, so that only configurations still undecided constrain
	// the win. Otherwise a candidate that lags behind a membership change
	// would need a majority of the older configuration, of which a voter
	// may since have lost its state, and the group would wait for nothing.
	r.learnChosenEntries(m.Entries, m.Chosen)
	r.cand.promises[m.From] = m.Entries
	r.maybeWin()
}

// recovered merges the promises: for every slot above our chosen point the
// value with the highest accepted ballot, which is the only one that may
// already have been chosen (P2c). It also returns the highest such slot.
func (r *Replica) recovered() (map[uint64]pb.Entry, uint64) {
	vals := make(map[uint64]pb.Entry)
	top := r.chosen
	for _, ents := range r.cand.promises {
		for _, e := range ents {
			if e.Slot <= r.chosen || e.Type == pb.EntryEmpty {
				continue
			}
			top = max(top, e.Slot)
			if old, ok := vals[e.Slot]; !ok || old.Ballot.Less(e.Ballot) {
				vals[e.Slot] = e
			}
		}
	}
	if r.cfg.Knobs != nil && r.cfg.Knobs.IgnoreAcceptedValues {
		clear(vals)
	}
	return vals, top
}

// maybeWin becomes leader once the promises form a majority of every
// configuration that may decide a slot we recovered: the one in force at
// our chosen point, and the one after each configuration change among the
// recovered values. A change we don't know is chosen may have been, and
// then later slots were chosen by its new voters.
func (r *Replica) maybeWin() {
	vals, top := r.recovered()
	promised := func(id uint64) bool { _, ok := r.cand.promises[id]; return ok }
	c := r.conf
	for _, id := range members(c) {
		r.sendPrepare(id) // c may have changed with the chosen values we learned
	}
	won := hasMajority(c.Voters, promised)
	for s := r.chosen + 1; s <= top; s++ {
		if e, ok := vals[s]; ok && e.Type == pb.EntryConfChange {
			c = applyEntry(c, &e)
			for _, id := range members(c) {
				r.sendPrepare(id)
			}
			won = won && hasMajority(c.Voters, promised)
		}
	}
	if won {
		r.becomeLeader(vals, top)
	}
}

// becomeLeader re-proposes, at our ballot, the recovered value of every open
// slot up to top and a no-op where there is none, then appends a no-op of
// its own: once that is chosen, everything before it is known.
func (r *Replica) becomeLeader(vals map[uint64]pb.Entry, top uint64) {
	r.role = Leader
	r.step = stepLeader
	r.leader = r.id
	r.cand = nil
	r.heartbeatElapsed = 0
	l := newLeadership(r.chosen + 1)
	r.lead = l
	for s := r.chosen + 1; s <= top; s++ {
		e, ok := vals[s]
		if !ok {
			e = pb.Entry{Type: pb.EntryNoop}
		}
		e.Slot, e.Ballot = s, r.ballot
		r.accept(e)
	}
	l.pendingConf = r.nextConfSlot()
	r.syncProgress()
	r.appendOwn(pb.EntryNoop, nil)
	l.startSlot = r.log.last()
	// Start the lease at once rather than a heartbeat interval from now.
	r.bcastHeartbeat(false)
}

// nextConfSlot returns the lowest unchosen slot holding a configuration
// change, or zero.
func (r *Replica) nextConfSlot() uint64 {
	for s := r.chosen + 1; s <= r.log.last(); s++ {
		if e := r.log.get(s); e != nil && e.Type == pb.EntryConfChange {
			return s
		}
	}
	return 0
}
