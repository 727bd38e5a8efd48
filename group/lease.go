package group

import (
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// Leases and quiescence.
//
// What a lease promises. An acceptor that hears from the leader of ballot
// b (an accept, a heartbeat or a MsgQuiesce) promises that for
// Config.LeaseDuration on its own clock it will answer no prepare but
// those of b's owner (preparing a higher ballot) and of a candidate that
// names b as the lease it was handed in a leader transfer. So while a
// quorum's promises last, no other proposer can finish Phase 1, and the
// leader may serve reads from its own state (Spanner, section 4.1.1).
// A restarted acceptor can't remember whom it promised, so it refuses
// every prepare for one lease (New).
//
// When the leader counts it from. The leader stamps every lease round, a
// heartbeat broadcast or the first accepts of a tick, with its clock
// reading when it sends it (newRound). Once a quorum acknowledged a round,
// its lease runs to that send time plus LeaseDuration, less the drift
// margin (leaseEnd). It is never counted from the arrival of the
// acknowledgements: every acceptor started its promise when the round
// reached it, after it was sent, so counting from the send makes the
// leader's lease the shorter one.
//
// The drift margin. Each side measures LeaseDuration on its own clock, and
// clocks tick at slightly different rates. Config.MaxClockDrift bounds how
// much two clocks disagree over one lease; taking it off the leader's end
// makes the lease run out on the leader's clock before any acceptor's
// promise runs out on its own. A leader that holds no valid lease for two
// election timeouts steps down, so that clients look for the leader that
// a majority elects.
//
// Quiescence. An idle group costs nothing: no ticks, no per-group
// heartbeats. Once nothing is in flight, every follower whose node
// supports ours is caught up, and we hold a lease, the leader sends its
// heartbeat round as MsgQuiesce (canQuiesce). A follower whose node
// supports the leader's node (Config.Liveness) binds its acceptor to the
// leader's ballot at that support epoch, reports the epoch and stops
// ticking: the binding refuses other candidates as a lease would, for as
// long as its node's support for the leader's node lasts at that epoch,
// which node-to-node heartbeats shared by every group keep alive. Once
// every supported follower is bound and they form a quorum with it, the
// leader stops ticking too; its lease then rests on the same support
// (boundLeaseValid). A proposal, a read that needs a quorum round, a
// transfer, any message other than a MsgQuiesce, a heartbeat response or a
// release response, or Unquiesce (the node calls it when it sees support
// lapse) wakes the group.
//
// MsgRelease. A leader that stops leading while followers may be bound to
// it sends each a MsgRelease until it acknowledges with a MsgReleaseResp,
// its node's support for ours moves to a new epoch (the binding ended
// with it), or we promise a newer ballot (whose leader overrides the
// binding). Without it, followers would stay bound to a leader that no
// longer leads, for as long as its node lives. A released follower drops
// its binding and the leader's lease, and remembers the ballot so that a
// MsgQuiesce of it that the network delayed can't bind it again.

// leaseState is what a replica promised leaders beyond its Paxos promise,
// and, as a former leader, whom it must still release.
type leaseState struct {
	// Until until on this replica's clock it promises nobody but ballot's
	// owner. A zero ballot with a future until (after a restart) refuses
	// everybody.
	ballot pb.Ballot
	until  int64
	// bound is the leader ballot this acceptor acknowledged a MsgQuiesce
	// from, at support epoch boundEpoch of the leader's node. Until that
	// support lapses it promises nobody else, as under a lease. It holds
	// only while the acceptor's promise is still bound.
	bound      pb.Ballot
	boundEpoch uint64
	// quiesced: the group is idle and the caller need not tick it.
	quiesced bool
	// released is the ballot this replica stopped leading at, and
	// releasing the followers that may be bound to it and have not yet
	// acknowledged a MsgRelease.
	released  pb.Ballot
	releasing []boundAck
	// releasedFrom is the highest ballot whose leader released us: a
	// MsgQuiesce from it that the network delayed must not bind us again.
	releasedFrom pb.Ballot
}

// boundAck is a follower bound to a leader at a support epoch of the
// leader's node.
type boundAck struct {
	id    uint64
	epoch uint64
}

// grant promises, until the given time, that no ballot other than b's
// owner gets a promise from us.
func (s *leaseState) grant(b pb.Ballot, until int64) {
	s.ballot = b
	s.until = until
}

// notePromise notes a promise to b: a promise to another ballot than the
// one we are bound to ends the binding.
func (s *leaseState) notePromise(b pb.Ballot) {
	if b != s.bound {
		s.bound, s.boundEpoch = pb.Ballot{}, 0
	}
}

// holder returns the ballot this acceptor is bound to at now, by a lease or
// by a quiesce binding, and whether it is bound at all. A zero ballot that
// is bound means "somebody": it just restarted.
func (s *leaseState) holder(now int64, lv Liveness) (pb.Ballot, bool) {
	if now < s.until {
		return s.ballot, true
	}
	if !s.bound.IsZero() && lv != nil {
		e, until := lv.SupportFor(s.bound.Node)
		if e == s.boundEpoch && now < until {
			return s.bound, true
		}
	}
	return pb.Ballot{}, false
}

// blocks reports whether the lease forbids promising prepare m at now.
func (s *leaseState) blocks(m pb.Message, now int64, lv Liveness) bool {
	holder, bound := s.holder(now, lv)
	switch {
	case !bound:
		return false
	case holder.IsZero():
		return true // restarted: the holder is unknown
	case holder.Node == m.Ballot.Node:
		return false // the holder itself, preparing a higher ballot
	}
	return m.Transfer.IsZero() || m.Transfer != holder
}

// release frees this acceptor from the leader of b, which gave up: its
// quiesce binding and its lease. The leader no longer believes in either.
func (s *leaseState) release(b pb.Ballot) {
	if s.bound == b {
		s.bound, s.boundEpoch = pb.Ballot{}, 0
	}
	if s.releasedFrom.Less(b) {
		s.releasedFrom = b
	}
	if s.ballot == b {
		s.until = 0
	}
}

// grantLease promises, until LeaseDuration from now on this replica's
// clock, that no ballot other than b's owner gets a promise from us.
func (r *Replica) grantLease(b pb.Ballot) {
	r.lease.grant(b, r.now()+r.cfg.LeaseDuration)
}

// leaseHolder returns the ballot this acceptor is bound to right now; see
// leaseState.holder.
func (r *Replica) leaseHolder() (pb.Ballot, bool) {
	return r.lease.holder(r.now(), r.cfg.Liveness)
}

func (r *Replica) boundNow() pb.Ballot {
	b, _ := r.leaseHolder()
	return b
}

// leaseBlocks reports whether the acceptor's lease forbids promising m. A
// leader's own acceptor is one of the quorum its lease rests on, so while
// the lease holds it refuses other candidates too. An active leader renews
// that promise with every round (newRound); a quiesced one sends no
// rounds, and its lease rests on its followers' bindings alone
// (boundLeaseValid), so its own acceptor would otherwise promise the first
// candidate to ask and its leader step down: a replica that rejoins after a
// cut, and probes before the leader's heartbeat reaches it, would depose
// every idle leader of its groups that way.
func (r *Replica) leaseBlocks(m pb.Message) bool {
	if r.role == Leader && m.Ballot.Node != r.id && r.lead.leaseValid(r) {
		return true
	}
	return r.lease.blocks(m, r.now(), r.cfg.Liveness)
}

// wakes reports whether a message of type t wakes a quiesced group. The
// messages of a quiesce round and of a release don't: they are how a
// group goes, or stays, to sleep. Nor do probes and their answers: they
// change nothing (probe.go), and a flapping node that probes every
// election timeout would otherwise keep its groups awake for good.
func wakes(t pb.MessageType) bool {
	switch t {
	case pb.MsgQuiesce, pb.MsgHeartbeatResp, pb.MsgReleaseResp, pb.MsgProbe, pb.MsgProbeResp:
		return false
	}
	return true
}

// Quiesced reports whether the group is idle: the caller may stop ticking
// it until it is woken by a message, a request or Unquiesce.
func (r *Replica) Quiesced() bool { return r.lease.quiesced }

// Unquiesce wakes the group, for example because node liveness reports
// that the leader's node, or a follower's, lost support.
func (r *Replica) Unquiesce() {
	if r.lease.quiesced {
		r.lease.quiesced = false
		r.resetElectionTimer()
		r.heartbeatElapsed = 0
	}
}

// maybeBind binds this follower to the leader of a MsgQuiesce m, for as
// long as our node supports its node at the current epoch, and tells it
// which epoch that is in resp. It binds only if it knows every value the
// leader does, and not to a leader that already released us.
func (r *Replica) maybeBind(m pb.Message, resp *pb.Message) {
	if m.Type != pb.MsgQuiesce || resp.Reject != pb.RejectNone || r.chosen != m.Chosen || r.cfg.Liveness == nil ||
		!r.lease.releasedFrom.Less(m.Ballot) {
		return
	}
	// The quiesce names the epoch at which the leader's node believes we
	// support it: one delayed from the leader node's earlier process life
	// names an older epoch than we grant its new one, and binds nothing.
	if e, until := r.cfg.Liveness.SupportFor(m.From); e == m.Epoch && r.now() < until {
		r.lease.quiesced = true
		r.lease.bound, r.lease.boundEpoch = m.Ballot, e
		resp.Epoch = e
	}
}

// requiesce puts a follower woken by its election timer back to sleep if
// it is still bound to a live leader that is idle: there is nothing to do.
func (r *Replica) requiesce() {
	if r.role != Follower || r.lease.bound.IsZero() {
		return
	}
	if _, ok := r.leaseHolder(); ok {
		r.lease.quiesced = true
		r.resetElectionTimer()
	}
}

// startReleasing is called by a leader that steps down after it sent a
// MsgQuiesce: any member may have bound itself to us, and its
// acknowledgement may have been lost, so every member is released.
func (r *Replica) startReleasing() {
	r.lease.released, r.lease.releasing = r.ballot, nil
	for _, p := range r.lead.progress {
		e, _ := r.cfg.Liveness.SupportFrom(p.id)
		r.lease.releasing = append(r.lease.releasing, boundAck{id: p.id, epoch: e})
	}
}

// sendReleases tells the followers that may still be bound to the ballot we
// stopped leading at that they are free, until each acknowledged it, its
// node supports ours at a new epoch (it restarted and forgot the binding,
// or withdrew support, which ended it), or we promised a newer ballot
// (whose leader will override the binding). A lapse seen only from our
// side proves nothing: our view of support is the conservative one.
func (r *Replica) sendReleases() {
	s := &r.lease
	if len(s.releasing) == 0 {
		return
	}
	if r.promised != s.released {
		s.releasing = nil
		return
	}
	s.releasing = slices.DeleteFunc(s.releasing, func(b boundAck) bool {
		e, _ := r.cfg.Liveness.SupportFrom(b.id)
		return e != b.epoch
	})
	for _, b := range s.releasing {
		r.send(pb.Message{Type: pb.MsgRelease, To: b.id, Ballot: s.released, Chosen: r.chosen})
	}
}

// handleRelease frees this acceptor from a leader that gave up (see
// leaseState.release) and learns the chosen point it reports.
func (r *Replica) handleRelease(m pb.Message) {
	r.lease.release(m.Ballot)
	if r.promised == m.Ballot {
		r.learnChosen(m.Chosen, m.Ballot)
	}
	r.send(pb.Message{Type: pb.MsgReleaseResp, To: m.From, Ballot: m.Ballot, Chosen: r.chosen})
}

// handleReleaseResp stops releasing a follower that acknowledged it.
func (r *Replica) handleReleaseResp(m pb.Message) {
	if m.Ballot == r.lease.released {
		r.lease.releasing = slices.DeleteFunc(r.lease.releasing, func(b boundAck) bool { return b.id == m.From })
	}
}

// maxRounds bounds the heartbeat rounds a leader remembers for its lease.
const maxRounds = 16

// leaderLease is a leader's side of its lease: the rounds it sent and who
// acknowledged them, and the followers bound to it while it is quiesced.
type leaderLease struct {
	// seq numbers the rounds; followers echo it in their answers.
	seq    uint64
	rounds []hbRound
	// roundElapsed counts ticks since the last lease round began. Accepts
	// carry rounds too, so a busy leader needs no separate heartbeats.
	roundElapsed int
	// expiry is when the lease runs out on our clock (leaseEnd of the
	// latest round a quorum acknowledged).
	expiry  int64
	noLease int // consecutive ticks without a valid lease
	// quiesceSeq is the heartbeat round sent as MsgQuiesce, and bound the
	// followers that acknowledged one, with the support epoch of ours they
	// bound themselves at.
	quiesceSeq uint64
	bound      []boundAck
}

// hbRound is one lease round: a heartbeat (or accepts) sent at sentAt and
// the replicas that acknowledged it.
type hbRound struct {
	seq    uint64
	sentAt int64
	ackers []uint64
}

// newRound starts a lease round. The leader's own acceptor renews the
// lease it grants itself, so that it refuses other candidates too.
func (l *leadership) newRound(r *Replica) {
	l.lease.seq++
	l.lease.roundElapsed = 0
	r.grantLease(r.ballot)
	l.addRound(r, hbRound{seq: l.lease.seq, sentAt: r.now(), ackers: []uint64{r.id}})
}

// tickLease counts a tick of the leader's lease and reports whether the
// leader went without one for so long that it must step down.
func (l *leadership) tickLease(r *Replica) (stepDown bool) {
	if l.leaseValid(r) {
		l.lease.noLease = 0
	} else if l.lease.noLease++; l.lease.noLease >= 2*r.cfg.ElectionTicks {
		return true
	}
	l.lease.roundElapsed++
	return false
}

// canQuiesce reports whether the group is idle: nothing in flight or
// pending, and every follower whose node supports ours caught up. A
// follower whose node is down doesn't hold the group awake.
func (r *Replica) canQuiesce() bool {
	l := r.lead
	if r.cfg.Liveness == nil || len(l.reads) > 0 || l.transfer != nil || l.pendingConf != 0 || len(l.departed) > 0 ||
		r.chosen != r.log.last() || r.applied != r.chosen || !l.leaseValid(r) {
		return false
	}
	now := r.now()
	for _, p := range l.progress {
		if _, until := r.cfg.Liveness.SupportFrom(p.id); now < until && p.chosen != r.chosen {
			return false
		}
	}
	return true
}

// bind records that a follower bound itself to us at a support epoch. Once
// every supported follower did, and they are a quorum, the leader quiesces
// too: its lease now rests on node support (boundLeaseValid).
func (l *leadership) bind(r *Replica, id, epoch uint64) {
	l.lease.bound = slices.DeleteFunc(l.lease.bound, func(b boundAck) bool { return b.id == id })
	l.lease.bound = append(l.lease.bound, boundAck{id: id, epoch: epoch})
	if !r.canQuiesce() {
		return
	}
	now := r.now()
	for _, p := range l.progress {
		_, until := r.cfg.Liveness.SupportFrom(p.id)
		if now < until && !slices.ContainsFunc(l.lease.bound, func(b boundAck) bool { return b.id == p.id }) {
			return
		}
	}
	if l.boundLeaseValid(r) {
		r.lease.quiesced = true
	}
}

// rebind sends member id, caught up but probing us, the quiesce round
// again, if its node supports ours now and it is not bound to us at that
// support epoch: it missed the round (its node did not support ours
// then), so it keeps ticking and probing while we sleep, and no other
// message would ever reach it. The quiesce binds it and stops it ticking;
// the leader stays asleep (a flapping node costs one message a probe).
func (r *Replica) rebind(id uint64) {
	l := r.lead
	if l.member(id) == nil {
		return
	}
	e, until := r.cfg.Liveness.SupportFrom(id)
	if r.now() >= until || slices.Contains(l.lease.bound, boundAck{id: id, epoch: e}) {
		return
	}
	r.sendRound(pb.MsgQuiesce, id, l.lease.quiesceSeq)
}

// boundLeaseValid reports whether the followers bound to us, whose nodes
// still support ours at the epoch they bound at, form a quorum with us.
func (l *leadership) boundLeaseValid(r *Replica) bool {
	if r.cfg.Liveness == nil || len(l.lease.bound) == 0 {
		return false
	}
	now := r.now()
	ackers := []uint64{r.id}
	for _, b := range l.lease.bound {
		if e, until := r.cfg.Liveness.SupportFrom(b.id); e == b.epoch && now < until {
			ackers = append(ackers, b.id)
		}
	}
	return r.quorumOf(ackers)
}

// bcastHeartbeat starts a lease round, as MsgQuiesce if the group is idle.
func (r *Replica) bcastHeartbeat(quiesce bool) {
	l := r.lead
	l.newRound(r)
	t := pb.MsgHeartbeat
	if quiesce {
		t = pb.MsgQuiesce
		l.lease.quiesceSeq = l.lease.seq
	}
	for _, p := range l.progress {
		r.sendRound(t, p.id, l.lease.seq)
	}
}

// sendRound sends member to our chosen point in lease round seq, as a
// heartbeat or a MsgQuiesce (which names the epoch at which our node
// believes to's node supports ours, see maybeBind).
func (r *Replica) sendRound(t pb.MessageType, to, seq uint64) {
	m := pb.Message{Type: t, To: to, Ballot: r.ballot, Chosen: r.chosen, Seq: seq}
	if t == pb.MsgQuiesce {
		m.Epoch, _ = r.cfg.Liveness.SupportFrom(to)
	}
	r.send(m)
}

func (l *leadership) addRound(r *Replica, rd hbRound) {
	if len(l.lease.rounds) == maxRounds {
		l.lease.rounds = append(l.lease.rounds[:0], l.lease.rounds[1:]...)
	}
	l.lease.rounds = append(l.lease.rounds, rd)
	l.onRoundAcked(r, &l.lease.rounds[len(l.lease.rounds)-1])
}

func (l *leadership) ackRound(r *Replica, seq, from uint64) {
	for i := range l.lease.rounds {
		rd := &l.lease.rounds[i]
		if rd.seq == seq {
			if !slices.Contains(rd.ackers, from) {
				rd.ackers = append(rd.ackers, from)
				l.onRoundAcked(r, rd)
			}
			return
		}
	}
}

// onRoundAcked extends the lease once a round is acknowledged by a quorum.
// It counts from when the round was sent, not when it was acknowledged:
// every acceptor's promise started later than that. The round also
// confirms the reads that waited for it: no other leader can have chosen
// anything before it was sent.
func (l *leadership) onRoundAcked(r *Replica, rd *hbRound) {
	if !r.quorumOf(rd.ackers) {
		return
	}
	l.lease.expiry = max(l.lease.expiry, r.leaseEnd(rd))
	n := 0
	for _, pr := range l.reads {
		if pr.seq <= rd.seq {
			r.readStates = append(r.readStates, ReadState{Ctx: pr.ctx, Index: pr.index})
		} else {
			l.reads[n] = pr
			n++
		}
	}
	l.reads = l.reads[:n]
}

// leaseEnd is when a lease granted by a quorum for round rd runs out on
// our clock: from when the round was sent, less the drift margin.
func (r *Replica) leaseEnd(rd *hbRound) int64 {
	return rd.sentAt + r.cfg.LeaseDuration - r.cfg.MaxClockDrift
}

// recomputeLease re-derives the lease under a new configuration: rounds
// acknowledged by a quorum of the old voters may not be one of the new.
func (l *leadership) recomputeLease(r *Replica) {
	l.lease.expiry = 0
	for i := range l.lease.rounds {
		if r.quorumOf(l.lease.rounds[i].ackers) {
			l.lease.expiry = max(l.lease.expiry, r.leaseEnd(&l.lease.rounds[i]))
		}
	}
}

func (l *leadership) leaseValid(r *Replica) bool {
	return r.now() < l.lease.expiry || l.boundLeaseValid(r)
}

// LeaseValid reports whether this replica is a leader holding a valid lease
// right now, on its own clock.
func (r *Replica) LeaseValid() bool {
	return r.role == Leader && r.lead.leaseValid(r)
}
