package group

import (
	"cmp"
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// maxRounds bounds the heartbeat rounds a leader remembers for its lease.
const maxRounds = 16

// progress is what a leader knows of one other member.
type progress struct {
	id uint64
	// next is the next slot to send in an accept.
	next uint64
	// chosen is the member's reported chosen point.
	chosen uint64
	// snapshotWait counts down the ticks before another snapshot may be
	// sent, so a slow transfer isn't restarted every heartbeat.
	snapshotWait int
}

// hbRound is one lease round: a heartbeat sent at sentAt and the replicas
// that acknowledged it.
type hbRound struct {
	seq    uint64
	sentAt int64
	ackers []uint64
}

type pendingRead struct {
	ctx   []byte
	index uint64
	seq   uint64
}

// leadership is the state of a replica that won Phase 1.
type leadership struct {
	// startSlot is the slot of the no-op appended on election. Reads wait
	// until it is chosen: before that, values chosen by earlier leaders
	// may be unknown here.
	startSlot uint64
	// acks[i] lists the replicas that accepted slot ackBase+i at our
	// ballot. Slots at or below the chosen point are dropped.
	ackBase uint64
	acks    [][]uint64
	// progress is sorted by id so that output is deterministic.
	progress []*progress

	seq    uint64
	rounds []hbRound
	// roundElapsed counts ticks since the last lease round began. Accepts
	// carry rounds too, so a busy leader needs no separate heartbeats.
	roundElapsed int
	leaseExpiry  int64
	noLease      int // consecutive ticks without a valid lease
	reads        []pendingRead

	// pendingConf is the lowest unchosen slot holding a configuration
	// change. Nothing above it is sent until it is chosen, so every slot
	// in flight is decided by the configuration in force at the chosen
	// point.
	pendingConf     uint64
	transferee      uint64
	transferElapsed int

	// quiesceSeq is the heartbeat round sent as MsgQuiesce, and bound the
	// followers that acknowledged one, with the support epoch of ours they
	// bound themselves at.
	quiesceSeq uint64
	bound      []boundAck
}

type boundAck struct {
	id    uint64
	epoch uint64
}

func newLeadership(base uint64) *leadership {
	return &leadership{ackBase: base}
}

// member returns the progress of replica id, or nil.
func (l *leadership) member(id uint64) *progress {
	for _, p := range l.progress {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (l *leadership) ack(s, id uint64) {
	if s < l.ackBase {
		return
	}
	i := int(s - l.ackBase)
	for i >= len(l.acks) {
		l.acks = append(l.acks, nil)
	}
	if !slices.Contains(l.acks[i], id) {
		l.acks[i] = append(l.acks[i], id)
	}
}

func (l *leadership) acked(s, id uint64) bool {
	if s < l.ackBase || s-l.ackBase >= uint64(len(l.acks)) {
		return false
	}
	return slices.Contains(l.acks[s-l.ackBase], id)
}

// dropAcks forgets the acks of slots at or below s.
func (l *leadership) dropAcks(s uint64) {
	if s < l.ackBase {
		return
	}
	n := min(int(s-l.ackBase+1), len(l.acks))
	l.acks = l.acks[n:]
	l.ackBase = s + 1
}

// syncProgress tracks exactly the other members of the configuration.
func (r *Replica) syncProgress() {
	l := r.lead
	l.progress = slices.DeleteFunc(l.progress, func(p *progress) bool { return !isMember(r.conf, p.id) })
	for _, id := range members(r.conf) {
		if id != r.id && l.member(id) == nil {
			l.progress = append(l.progress, &progress{id: id, next: r.chosen + 1})
		}
	}
	slices.SortFunc(l.progress, func(a, b *progress) int { return cmp.Compare(a.id, b.id) })
}

// sendLimit is the highest slot the leader may have in flight: bounded by
// the pipeline window and by a pending configuration change.
func (r *Replica) sendLimit() uint64 {
	lim := min(r.log.last(), r.chosen+uint64(r.cfg.MaxInflight))
	if pc := r.lead.pendingConf; pc != 0 {
		lim = min(lim, pc)
	}
	return lim
}

func (l *leadership) hasSends(r *Replica) bool {
	lim := r.sendLimit()
	for _, p := range l.progress {
		if p.next <= lim {
			return true
		}
	}
	return false
}

// flush sends every member the accepts it hasn't been sent, batched: many
// proposals between two Readys go out as one message per member. The
// accepts also carry a lease round (at most one new round per tick): an
// acceptor that accepts at our ballot renews our lease as a heartbeat
// would.
func (l *leadership) flush(r *Replica) {
	lim := r.sendLimit()
	for _, p := range l.progress {
		for p.next <= lim {
			if l.roundElapsed > 0 {
				l.newRound(r)
			}
			hi := min(lim, p.next+uint64(r.cfg.MaxEntriesPerMsg)-1)
			r.send(pb.Message{Type: pb.MsgAccept, To: p.id, Ballot: r.ballot, Index: p.next, LastIndex: hi,
				Chosen: r.chosen, Seq: l.seq, Entries: r.log.slice(p.next, hi)})
			p.next = hi + 1
		}
	}
}

// newRound starts a lease round. The leader's own acceptor renews the
// lease it grants itself, so that it refuses other candidates too.
func (l *leadership) newRound(r *Replica) {
	l.seq++
	l.roundElapsed = 0
	r.grantLease(r.ballot)
	l.addRound(r, hbRound{seq: l.seq, sentAt: r.now(), ackers: []uint64{r.id}})
}

func stepLeader(r *Replica, m pb.Message) {
	if m.Ballot != r.ballot {
		return
	}
	l := r.lead
	p := l.member(m.From)
	switch m.Reject {
	case pb.RejectNone:
	case pb.RejectBallot:
		if r.ballot.Less(m.Hint) {
			r.becomeFollower(0)
		}
		return
	case pb.RejectNotMember:
		// The member holds no configuration (see isAcceptor): it is new, or
		// it lost its state, whatever it told us before. A learner's
		// answers count towards no quorum anyway and only track what it
		// stores. A voter's must count for nothing until a snapshot makes
		// it an acceptor again.
		if p == nil {
			return
		}
		p.chosen = m.Chosen
		if r.countsTowardQuorum(m.From) {
			r.offerSnapshot(m.From, p)
			return
		}
	default:
		return
	}
	switch m.Type {
	case pb.MsgAccepted:
		for s := max(m.Index, r.chosen+1); s <= m.LastIndex; s++ {
			l.ack(s, m.From)
		}
		if m.Seq != 0 {
			l.ackRound(r, m.Seq, m.From)
		}
		r.maybeCommit()
	case pb.MsgHeartbeatResp:
		if m.Seq != 0 {
			l.ackRound(r, m.Seq, m.From)
		}
		if m.Seq == l.quiesceSeq && m.Epoch != 0 {
			l.bind(r, m.From, m.Epoch)
		}
		// The member could not advance to the chosen point we told it: it
		// lacks values at our ballot, so teach it the chosen ones.
		if p != nil && m.Chosen < r.chosen && (m.Seq == 0 || m.Chosen < m.Index) {
			p.chosen = max(p.chosen, m.Chosen)
			r.sendCatchUp(m.From, p)
		}
	default:
		return
	}
	if r.role == Leader && p != nil {
		p.chosen = max(p.chosen, m.Chosen)
		r.maybeTransfer()
	}
}

// sendCatchUp sends chosen entries above the member's chosen point, or a
// snapshot if they were truncated.
func (r *Replica) sendCatchUp(to uint64, p *progress) {
	lo := p.chosen + 1
	// A replica that knows no chosen slot may be a new one that doesn't
	// even know the group's initial configuration, which is in no entry:
	// only a snapshot carries it (see initialized).
	if lo <= r.meta.Index || (p.chosen == 0 && r.applied > 0) {
		r.offerSnapshot(to, p)
		return
	}
	hi := min(r.chosen, lo+uint64(r.cfg.MaxEntriesPerMsg)-1)
	r.send(pb.Message{Type: pb.MsgCommit, To: to, Ballot: r.ballot, Index: lo, LastIndex: hi, Entries: r.log.slice(lo, hi)})
}

// offerSnapshot sends a member our applied state, unless a snapshot went
// to it less than an election timeout ago: a slow transfer must not be
// restarted by every heartbeat.
func (r *Replica) offerSnapshot(to uint64, p *progress) {
	if p.snapshotWait == 0 {
		p.snapshotWait = r.cfg.ElectionTicks
		r.sendSnapshot(to)
	}
}

// maybeCommit advances the chosen point over slots accepted by a majority
// of the voters in force.
func (r *Replica) maybeCommit() {
	l := r.lead
	for s := r.chosen + 1; s <= r.log.last(); s++ {
		if !hasMajority(r.conf.Voters, func(id uint64) bool { return l.acked(s, id) }) {
			break
		}
		r.setChosen(s)
		l.dropAcks(s)
		if s == l.pendingConf {
			r.onConfChosen()
			if r.role != Leader {
				return
			}
		}
	}
}

// onConfChosen adopts a newly chosen configuration. A leader that is no
// longer a voter steps down.
func (r *Replica) onConfChosen() {
	l := r.lead
	l.pendingConf = r.nextConfSlot()
	if !isVoter(r.conf, r.id) {
		r.becomeFollower(0)
		return
	}
	r.syncProgress()
	l.recomputeLease(r)
}

func (r *Replica) tickLeader() {
	l := r.lead
	for _, p := range l.progress {
		if p.snapshotWait > 0 {
			p.snapshotWait--
		}
	}
	if l.transferee != 0 {
		l.transferElapsed++
		if l.transferElapsed >= r.cfg.ElectionTicks {
			l.transferee = 0 // the target didn't catch up in time: give up
		}
	}
	// A leader cut off from a majority steps down, so that clients look
	// for the leader the majority elects instead.
	if l.leaseValid(r) {
		l.noLease = 0
	} else if l.noLease++; l.noLease >= 2*r.cfg.ElectionTicks {
		r.becomeFollower(0)
		return
	}
	l.roundElapsed++
	r.heartbeatElapsed++
	if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
		r.heartbeatElapsed = 0
		// Accepts sent since the last heartbeat renewed the lease already.
		if l.roundElapsed >= r.cfg.HeartbeatTicks {
			r.bcastHeartbeat(r.canQuiesce())
		}
		r.retransmit()
	}
}

// canQuiesce reports whether the group is idle: nothing in flight or
// pending, and every follower whose node supports ours caught up. A
// follower whose node is down doesn't hold the group awake.
func (r *Replica) canQuiesce() bool {
	l := r.lead
	if r.cfg.Liveness == nil || len(l.reads) > 0 || l.transferee != 0 || l.pendingConf != 0 ||
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
	l.bound = slices.DeleteFunc(l.bound, func(b boundAck) bool { return b.id == id })
	l.bound = append(l.bound, boundAck{id: id, epoch: epoch})
	if !r.canQuiesce() {
		return
	}
	now := r.now()
	for _, p := range l.progress {
		_, until := r.cfg.Liveness.SupportFrom(p.id)
		if now < until && !slices.ContainsFunc(l.bound, func(b boundAck) bool { return b.id == p.id }) {
			return
		}
	}
	if l.boundLeaseValid(r) {
		r.quiesced = true
	}
}

// boundLeaseValid reports whether the followers bound to us, whose nodes
// still support ours at the epoch they bound at, form a quorum with us.
func (l *leadership) boundLeaseValid(r *Replica) bool {
	if r.cfg.Liveness == nil || len(l.bound) == 0 {
		return false
	}
	now := r.now()
	ackers := []uint64{r.id}
	for _, b := range l.bound {
		if e, until := r.cfg.Liveness.SupportFrom(b.id); e == b.epoch && now < until {
			ackers = append(ackers, b.id)
		}
	}
	return r.quorumOf(ackers)
}

// retransmit rewinds each member to its lowest unacknowledged slot, so that
// accepts lost in the network are sent again by the next flush.
func (r *Replica) retransmit() {
	l := r.lead
	for _, p := range l.progress {
		for s := r.chosen + 1; s < p.next; s++ {
			if !l.acked(s, p.id) {
				p.next = s
				break
			}
		}
	}
}

// bcastHeartbeat starts a lease round, as MsgQuiesce if the group is idle.
func (r *Replica) bcastHeartbeat(quiesce bool) {
	l := r.lead
	l.newRound(r)
	t := pb.MsgHeartbeat
	if quiesce {
		t = pb.MsgQuiesce
		l.quiesceSeq = l.seq
	}
	for _, p := range l.progress {
		r.send(pb.Message{Type: t, To: p.id, Ballot: r.ballot, Chosen: r.chosen, Seq: l.seq})
	}
}

func (l *leadership) addRound(r *Replica, rd hbRound) {
	if len(l.rounds) == maxRounds {
		l.rounds = append(l.rounds[:0], l.rounds[1:]...)
	}
	l.rounds = append(l.rounds, rd)
	l.onRoundAcked(r, &l.rounds[len(l.rounds)-1])
}

func (l *leadership) ackRound(r *Replica, seq, from uint64) {
	for i := range l.rounds {
		rd := &l.rounds[i]
		if rd.seq == seq {
			if !slices.Contains(rd.ackers, from) {
				rd.ackers = append(rd.ackers, from)
				l.onRoundAcked(r, rd)
			}
			return
		}
	}
}

// quorumOf reports whether ackers hold a majority of the voters in force
// and, while a change is pending, of the voters after it.
func (r *Replica) quorumOf(ackers []uint64) bool {
	has := func(id uint64) bool { return slices.Contains(ackers, id) }
	if !hasMajority(r.conf.Voters, has) {
		return false
	}
	if next, ok := r.pendingConfig(); ok {
		return hasMajority(next.Voters, has)
	}
	return true
}

// countsTowardQuorum reports whether replica id's answers may count towards
// a quorum or a lease: it votes in the configuration in force or in the
// one after a pending change.
func (r *Replica) countsTowardQuorum(id uint64) bool {
	if isVoter(r.conf, id) {
		return true
	}
	next, ok := r.pendingConfig()
	return ok && isVoter(next, id)
}

// pendingConfig returns the configuration after the pending change, if
// there is one.
func (r *Replica) pendingConfig() (pb.Config, bool) {
	if pc := r.lead.pendingConf; pc != 0 {
		if e := r.log.get(pc); e != nil {
			return applyEntry(r.conf, e), true
		}
	}
	return pb.Config{}, false
}

// onRoundAcked extends the lease once a round is acknowledged by a quorum.
// It counts from when the round was sent, not when it was acknowledged:
// every acceptor's promise started later than that.
func (l *leadership) onRoundAcked(r *Replica, rd *hbRound) {
	if !r.quorumOf(rd.ackers) {
		return
	}
	l.leaseExpiry = max(l.leaseExpiry, r.leaseEnd(rd))
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
	l.leaseExpiry = 0
	for i := range l.rounds {
		if r.quorumOf(l.rounds[i].ackers) {
			l.leaseExpiry = max(l.leaseExpiry, r.leaseEnd(&l.rounds[i]))
		}
	}
}

func (l *leadership) leaseValid(r *Replica) bool {
	return r.now() < l.leaseExpiry || l.boundLeaseValid(r)
}

// readIndex serves a read at the current chosen point (or our election
// no-op, whichever is later). Under a lease no other leader can have chosen
// anything, so the answer is immediate; otherwise a heartbeat round sent
// after the read arrived must reach a quorum first.
func (r *Replica) readIndex(ctx []byte) error {
	l := r.lead
	idx := max(r.chosen, l.startSlot)
	if l.leaseValid(r) {
		r.readStates = append(r.readStates, ReadState{Ctx: ctx, Index: idx})
		return nil
	}
	r.Unquiesce()
	l.reads = append(l.reads, pendingRead{ctx: ctx, index: idx, seq: l.seq + 1})
	r.bcastHeartbeat(false)
	return nil
}

// maybeTransfer completes a leader transfer once the target knows every
// value: the leader gives up its lease and tells the target to campaign.
// Acceptors let the target past the old lease because the prepare names it.
func (r *Replica) maybeTransfer() {
	l := r.lead
	t := l.transferee
	if t == 0 {
		return
	}
	p := l.member(t)
	if p == nil || r.chosen != r.log.last() || p.chosen < r.chosen {
		return
	}
	b := r.ballot
	r.becomeFollower(t)
	r.send(pb.Message{Type: pb.MsgTimeoutNow, To: t, Ballot: b})
}
