package group

import (
	"cmp"
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// progress is what a leader knows of one other member.
type progress struct {
	id uint64
	// next is the next slot to send in an accept.
	next uint64
	// chosen is the member's reported chosen point; heard, the one in its
	// latest answer, which may be lower (it restarted knowing less).
	chosen, heard uint64
	// snapshotWait counts down the ticks before another snapshot may be
	// sent, so a slow transfer isn't restarted every heartbeat.
	snapshotWait int
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
	// beatChosen is our chosen point at the last heartbeat tick; see
	// beatLagging.
	beatChosen uint64

	// lease is the leader's side of its lease; see lease.go.
	lease leaderLease
	reads []pendingRead

	// pendingConf is the lowest unchosen slot holding a configuration
	// change. Nothing above it is sent until it is chosen, so every slot
	// in flight is decided by the configuration in force at the chosen
	// point.
	pendingConf uint64
	// transfer is the leader transfer under way, if any.
	transfer *transfer
	// departed are members a chosen change removed that may not know it
	// yet; see removal.go.
	departed []departed
}

// transfer is a leader transfer under way (TransferLeader). It runs in two
// steps, so that proposals wait only for a target that is ready to take
// over at once:
//
//   - Catching up: proposals go on as usual. The leader tells the target
//     its chosen point at once, and the target's answers bring it up to
//     date as they would any follower. A target that does not answer (it
//     is down, or this node cannot reach it yet after it restarted) costs
//     the writers nothing.
//   - Draining: once the target answered a message sent since the
//     transfer began, knowing every value chosen when it began, new
//     proposals are refused (Transferring tells
//     the caller to hold them) while the values in flight are chosen and
//     the target learns them. Then the leader gives up its lease and
//     sends MsgTimeoutNow: the target campaigns at once, naming the lease.
//
// The transfer is abandoned an election timeout after it began, whatever
// step it is at.
type transfer struct {
	to      uint64
	elapsed int // ticks since it began
	// start is the chosen point when it began: the target must know it
	// before proposals stop. seq is the lease round begun with it: only an
	// answer to a message of that round or a later one shows that the
	// target hears us now (one to a message sent before the transfer began
	// proves nothing about a link that broke since).
	start, seq uint64
	draining   bool
	// told is the chosen point last sent to the target to hurry it along,
	// toldVoters the one last sent to the voters that may not know the
	// configuration in force (hurryVoters).
	told, toldVoters uint64
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
			if l.lease.roundElapsed > 0 {
				l.newRound(r)
			}
			hi := min(lim, p.next+uint64(r.cfg.MaxEntriesPerMsg)-1)
			r.send(pb.Message{Type: pb.MsgAccept, To: p.id, Ballot: r.ballot, Index: p.next, LastIndex: hi,
				Chosen: r.chosen, Seq: l.lease.seq, Entries: r.log.slice(p.next, hi)})
			p.next = hi + 1
		}
	}
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
		// it lost its state, whatever it told us before. Only a snapshot
		// gives it one; offer it whatever the answer is to (a busy leader
		// sends accepts and no heartbeats). A learner's answers count
		// towards no quorum anyway and only track what it stores. A
		// voter's must count for nothing until a snapshot makes it an
		// acceptor again.
		if p == nil || (m.Type != pb.MsgAccepted && m.Type != pb.MsgHeartbeatResp) {
			return
		}
		p.chosen = m.Chosen
		r.offerSnapshot(m.From, p)
		if r.countsTowardQuorum(m.From) {
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
		if p == nil {
			r.departedReport(m.From, m.Chosen)
		}
		if m.Seq != 0 {
			l.ackRound(r, m.Seq, m.From)
		}
		if m.Seq == l.lease.quiesceSeq && m.Epoch != 0 {
			l.bind(r, m.From, m.Epoch)
		}
		// The member could not advance to the chosen point we told it: it
		// lacks values at our ballot, so teach it the chosen ones.
		// Its report is what it knows now: it may know less than it told
		// us before (it restarted without its chosen hint, or was wiped),
		// so catch it up from there, not from the most it ever reported.
		if p != nil && m.Chosen < r.chosen && (m.Seq == 0 || m.Chosen < m.Index) {
			p.chosen = m.Chosen
			r.sendCatchUp(m.From, p)
		}
	default:
		return
	}
	if r.role == Leader && p != nil {
		p.chosen = max(p.chosen, m.Chosen)
		p.heard = m.Chosen
		if t := l.transfer; t != nil && t.to == m.From && m.Seq >= t.seq && p.chosen >= t.start {
			t.draining = true
		}
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
	r.noteDeparted(l.pendingConf)
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
	r.tickDeparted()
	if t := l.transfer; t != nil {
		if t.elapsed++; t.elapsed >= r.cfg.ElectionTicks {
			l.transfer = nil // the target didn't catch up in time: give up
		}
	}
	// A leader cut off from a majority steps down, so that clients look
	// for the leader the majority elects instead.
	if l.tickLease(r) {
		r.becomeFollower(0)
		return
	}
	r.heartbeatElapsed++
	if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
		r.heartbeatElapsed = 0
		// Accepts sent since the last heartbeat renewed the lease already.
		if l.lease.roundElapsed >= r.cfg.HeartbeatTicks {
			r.bcastHeartbeat(r.canQuiesce())
		} else {
			r.beatLagging()
		}
		l.beatChosen = r.chosen
		r.retransmit()
	}
}

// beatLagging sends a heartbeat to each member whose latest answer shows
// it below our chosen point of the last heartbeat tick: any accept sent
// since told it that point, so it lacks chosen values it cannot learn
// from accepts (a gap left while it was cut off or down). Only heartbeat
// answers start a catch-up (stepLeader), and a busy leader's accepts
// renew its lease without heartbeat rounds, so without this a lagging
// member stays behind for as long as writes flow. A member merely slow to
// answer costs one heartbeat a tick; its answer catches up nothing.
func (r *Replica) beatLagging() {
	r.beatMembers(func(p *progress) bool { return p.heard < r.lead.beatChosen })
}

// beatMembers sends the members that want says to, a heartbeat of the
// current lease round: our chosen point now, not at the next round.
func (r *Replica) beatMembers(want func(*progress) bool) {
	for _, p := range r.lead.progress {
		if want(p) {
			r.sendRound(pb.MsgHeartbeat, p.id, r.lead.lease.seq)
		}
	}
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
	l.reads = append(l.reads, pendingRead{ctx: ctx, index: idx, seq: l.lease.seq + 1})
	r.bcastHeartbeat(false)
	return nil
}

// maybeTransfer completes a draining transfer once every value is chosen
// and applied, the target knows them all and a majority of the voters
// know the configuration in force: the leader gives up its lease and
// tells the target to campaign. Acceptors let the target past the old
// lease because its prepare names it. Until the target knows, it hears of
// every new chosen point at once (hurryTransfer) rather than at the next
// heartbeat, and so do the voters that may not know the configuration
// (hurryVoters): an acceptor that has not learned that the change which
// made the target a voter was chosen refuses it as a non-member, and a
// target promoted a moment ago would then campaign in vain while nobody
// leads, until an election timeout. Values chosen but not applied here
// would leave their callers unanswered by a former leader, so the
// hand-off waits for Advance to apply them.
func (r *Replica) maybeTransfer() {
	l := r.lead
	t := l.transfer
	if t == nil || !t.draining || r.chosen != r.log.last() {
		return
	}
	p := l.member(t.to)
	if p == nil {
		l.transfer = nil // the target left the group
		return
	}
	ready := true
	if p.chosen < r.chosen {
		if t.told < r.chosen {
			r.hurryTransfer(t)
		}
		ready = false
	}
	if conf := r.lastConfSlot(); !r.quorumKnows(conf) {
		if t.toldVoters < r.chosen {
			r.hurryVoters(t, conf)
		}
		ready = false
	}
	if !ready || r.applied != r.chosen {
		return
	}
	b := r.ballot
	r.becomeFollower(t.to)
	r.handoffTicks = r.cfg.ElectionTicks
	r.send(pb.Message{Type: pb.MsgTimeoutNow, To: t.to, Ballot: b})
}

// quorumKnows reports whether a majority of the voters are known to know
// slot s chosen; the leader counts itself. With s the last configuration
// change (lastConfSlot), they hold the configuration in force.
func (r *Replica) quorumKnows(s uint64) bool {
	l := r.lead
	return hasMajority(r.conf.Voters, func(id uint64) bool {
		p := l.member(id)
		return id == r.id || (p != nil && p.chosen >= s)
	})
}

// hurryVoters sends our chosen point now to the voters other than the
// transfer's target not known to know slot conf chosen (the last
// configuration change), in a heartbeat of the current lease round, as
// hurryTransfer does for the target.
func (r *Replica) hurryVoters(t *transfer, conf uint64) {
	t.toldVoters = r.chosen
	for _, id := range r.conf.Voters {
		if p := r.lead.member(id); id != r.id && id != t.to && p != nil && p.chosen < conf {
			r.sendRound(pb.MsgHeartbeat, id, r.lead.lease.seq)
		}
	}
}

// TellChosen sends each member, if we lead, a heartbeat of the current
// lease round now, so that it learns our chosen point at once rather than
// with the next accept or heartbeat tick. It is for a value that others
// wait on the followers to apply: a split's right half, whose new leader
// needs a majority of replicas that applied the split to promise it, would
// otherwise wait up to two heartbeat intervals when its left half gets no
// writes.
func (r *Replica) TellChosen() {
	if r.role == Leader {
		r.beatMembers(func(*progress) bool { return true })
	}
}

// hurryTransfer sends the transfer's target our chosen point now, in a
// heartbeat of the current lease round, rather than at the next
// heartbeat. Its answer says whether it knows every chosen value, and if
// not, brings it the ones it lacks (sendCatchUp).
func (r *Replica) hurryTransfer(t *transfer) {
	t.told = r.chosen
	r.sendRound(pb.MsgHeartbeat, t.to, r.lead.lease.seq)
}
