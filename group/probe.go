package group

import (
	pb "github.com/shardd/shardd/paxospb"
)

// Probes: Raft's PreVote (Raft thesis, section 9.6), for Paxos.
//
// Phase 1 raises the promise of every acceptor it reaches, the
// candidate's own first, and an acceptor that promised above the leader's
// ballot refuses the leader's accepts and heartbeats (RejectBallot), on
// which the leader steps down (stepLeader). A replica cut off from its
// group times out and campaigns in vain; once the network heals, its
// raised promise deposes the healthy leader of every group it belongs
// to, all at once (issue 10, "no stall for bystanders").
//
// So a replica whose election timer fires probes first: it asks the
// members whether they would promise the ballot it would campaign with
// (MsgProbe), and runs Phase 1 only once a majority of the voters would,
// its own acceptor first (evaluated locally, without a message). An
// acceptor answers by the rules of a prepare (phase1Refusal): a ballot
// not below its promise, from a voter of its configuration, that no
// lease it granted forbids, from a replica that does not need a snapshot
// first. It promises, grants and records nothing, resets no election
// timer and wakes no quiesced group (wakes), so probes change no
// acceptor's state and safety rests on Phase 1 alone, as before. A
// leader's followers refuse while its lease binds them, so a replica
// probes in vain until the leader is gone or cut off from a majority,
// which is when an election is wanted.
//
//	  election timeout          majority would promise
//	follower ────────> probing ────────────────────────> candidate (Phase 1)
//	   ^                 │  │
//	   └─────────────────┘  └── no majority: probe again at the next timeout
//	   heard from a leader
//
// The probe must not be more pessimistic than Phase 1, or a group that
// Phase 1 would elect a leader for waits for good. Phase 1 asks every
// member, learners included, and learns from each promise the chosen
// values its promiser knows, so that a candidate that lags behind a
// membership change counts the voters of the configuration in force, not
// of the one it knows (maybeWin). A probe does the same: it asks every
// member, and a grant carries the chosen values above the prober's
// chosen point, which the prober learns (a chosen value is a fact,
// whoever reports it) before it counts. Phase 1 may also need majorities
// of configurations among values not yet known to be chosen; the probe
// ignores those, so it is a forecast, and a campaign it lets through may
// still fail.
//
// A probing replica stays a follower (its role, and the leader it
// believes in, are unchanged). A probe that fails is retried at the next
// randomized election timeout, with the ballot this replica would use
// then: refusals carry the acceptor's promise as a hint, so the next
// ballot is above it. A candidate whose election times out probes again
// too, rather than preparing a still higher ballot that may not win
// either. Explicit campaigns skip the probe: Campaign (a new group's
// designated leader, the right half of a split) and MsgTimeoutNow (a
// leader transfer, for which the old leader gave up its lease).

// probe is the state of a replica probing whether it could win Phase 1.
type probe struct {
	// ballot is the ballot it would campaign with.
	ballot pb.Ballot
	// asked is every member sent the probe; granted, those that answered
	// they would promise it.
	asked, granted map[uint64]bool
}

// startProbe probes the members for the ballot this replica would
// campaign with, and campaigns at once if its own answer is a majority
// (a group of one).
func (r *Replica) startProbe() {
	if r.role != Follower {
		r.becomeFollower(0)
	}
	r.resetElectionTimer()
	r.probe = &probe{ballot: r.nextBallot(), asked: map[uint64]bool{r.id: true}, granted: make(map[uint64]bool)}
	r.maybeEndProbe()
}

// handleProbe answers whether this acceptor would promise the probe's
// ballot now, and with a grant the chosen values the prober lacks. It
// changes nothing here.
func (r *Replica) handleProbe(m pb.Message) {
	if r.role == Leader && m.Chosen < r.chosen && r.lead.member(m.From) != nil {
		// A member behind us probes because it hears nothing from us:
		// we quiesced while its node did not support ours, so it was
		// neither caught up nor bound, and no wake-up reached us since.
		// Wake, so that our rounds catch it up and bind it. A member
		// that is caught up wakes nothing (a flapping node must not
		// keep idle groups awake).
		r.Unquiesce()
	}
	if r.role == Leader && r.lease.quiesced && m.Chosen == r.chosen {
		r.rebind(m.From)
	}
	resp := pb.Message{Type: pb.MsgProbeResp, To: m.From, Ballot: m.Ballot, Chosen: r.chosen, Reject: r.phase1Refusal(m)}
	if resp.Reject != pb.RejectNone {
		resp.Hint = r.promised
	} else if m.Chosen < r.chosen {
		resp.Entries = r.log.slice(m.Chosen+1, r.chosen)
	}
	r.send(resp)
}

// handleProbeResp counts an answer to our probe.
func (r *Replica) handleProbeResp(m pb.Message) {
	p := r.probe
	if p == nil || m.Ballot != p.ballot || m.Reject != pb.RejectNone {
		return
	}
	r.learnChosenEntries(m.Entries, m.Chosen)
	p.granted[m.From] = true
	r.maybeEndProbe()
}

// maybeEndProbe campaigns once a majority of the voters would promise the
// probe's ballot, our own acceptor first; until then it asks the members
// not yet asked (the configuration may have changed with the chosen
// values a grant taught us). Our own answer is taken now: a probe whose
// ballot our acceptor would refuse (it promised another candidate since,
// or we are no longer a voter) ends.
func (r *Replica) maybeEndProbe() {
	p := r.probe
	if r.promiseRefusal(pb.Message{From: r.id, Ballot: p.ballot}) != pb.RejectNone {
		r.probe = nil
		return
	}
	if hasMajority(r.conf.Voters, func(id uint64) bool { return id == r.id || p.granted[id] }) {
		r.campaign(pb.Ballot{})
		return
	}
	for _, id := range members(r.conf) {
		if !p.asked[id] {
			p.asked[id] = true
			r.send(pb.Message{Type: pb.MsgProbe, To: id, Ballot: p.ballot, Chosen: r.chosen})
		}
	}
}
