package group

import (
	"math"
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// State is a replica's durable state as its caller persisted it from
// earlier Readys, used to rebuild the replica after a restart.
type State struct {
	HardState pb.HardState
	Meta      pb.Meta
	// Entries are the persisted entries above Meta.Index, in slot order.
	Entries []pb.Entry
	// Applied is the caller's applied point, persisted atomically with the
	// state machine it describes. It is at least Meta.Index.
	Applied uint64
	// LeaseHolder, if set, is a ballot the replica starts bound to by a
	// lease, as if it had just heard from its leader: a group split from
	// another starts with the lease its parent's acceptor granted, so that
	// no candidate but the parent's leader can win the new group while the
	// parent's lease may still cover its keys (see SplitState).
	LeaseHolder pb.Ballot
}

// SplitState is the durable state of a replica of a group split from
// another, derived only from the split entry, so that every replica
// builds the same group without a snapshot: the parent's configuration,
// a promise to the ballot b that chose the split and a lease to it, and
// the split itself as slot SplitIndex, applied (the state machine starts
// from the parent's data, which a snapshot at that index describes). The
// parent's leader (b's owner) may thus become the new group's first
// leader at once, preparing a higher ballot, while other candidates wait
// for a lease, as they would have for the parent's.
func SplitState(conf pb.Config, b pb.Ballot) State {
	return State{
		HardState:   pb.HardState{Promised: b},
		Meta:        pb.Meta{Index: SplitIndex, Config: cloneConfig(conf)},
		Applied:     SplitIndex,
		LeaseHolder: b,
	}
}

// SplitIndex is the slot a group split from another starts applied at.
const SplitIndex = 1

// BootstrapState is the durable state of a replica of a new group whose
// voters are known up front.
func BootstrapState(voters ...uint64) State {
	return State{Meta: pb.Meta{Config: pb.Config{Voters: slices.Sorted(slices.Values(voters))}}}
}

type stepFunc func(r *Replica, m pb.Message)

// Replica is one Multi-Paxos replica of one group: acceptor, learner and,
// when elected, proposer. It is a pure state machine: all input arrives
// through Tick, Step, Propose and friends, all output leaves through
// Ready, and it never blocks, sleeps or performs I/O.
type Replica struct {
	cfg Config
	id  uint64

	role Role
	step stepFunc
	// leader is the replica believed to lead, for hints; zero if unknown.
	leader uint64

	// Acceptor state. promised is durable; see pb.HardState.
	promised pb.Ballot
	log      entryLog
	chosen   uint64
	applied  uint64
	meta     pb.Meta
	// leaderChosen is the highest chosen point a leader reported in its
	// accepts and heartbeats: how far chosen and applied are behind it is
	// what tells an operator that this replica has not caught up.
	leaderChosen uint64
	// conf is the configuration after every chosen entry: the one that
	// decides quorums for slot chosen+1.
	conf pb.Config

	// lease is what this replica promised leaders beyond promised, by
	// leases and quiesce bindings, and whom it must release as a former
	// leader; see lease.go.
	lease leaseState

	// ballot is this replica's own ballot as candidate or leader.
	ballot pb.Ballot
	// maxRound is the highest round seen anywhere, so that a new ballot
	// beats every ballot this replica knows of.
	maxRound uint64

	electionElapsed  int
	electionTimeout  int
	heartbeatElapsed int
	// handoffTicks counts down, in a former leader that handed its lease
	// to r.leader in a transfer, the ticks it still waits to hear from a
	// new leader (see Transferring). It names r.leader as leader until
	// then; once heard from, it is the leader for sure.
	handoffTicks int

	cand *candidate
	lead *leadership
	// probe is the probe this replica runs before it campaigns, if any;
	// see probe.go.
	probe *probe

	// Output not yet handed out by Ready.
	early         []pb.Message // see sendFirst
	msgs          []pb.Message
	unstable      []uint64 // slots to persist; may repeat
	prevHard      pb.HardState
	prevSoft      SoftState
	metaDirty     bool
	snapshot      *pb.Snapshot
	readStates    []ReadState
	pendingCommit []pb.Entry // committed entries handed out, awaiting Advance
}

// New builds a replica from its durable state. A replica whose state holds
// no configuration can't campaign; it waits for a leader to teach it one.
func New(cfg Config, st State) (*Replica, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{
		cfg:      cfg,
		id:       cfg.ID,
		promised: st.HardState.Promised,
		meta:     pb.Meta{Index: st.Meta.Index, Config: cloneConfig(st.Meta.Config)},
		log:      newEntryLog(st.Meta.Index),
	}
	for _, e := range st.Entries {
		if e.Slot > st.Meta.Index && e.Type != pb.EntryEmpty {
			r.log.set(e)
		}
	}
	if cfg.Knobs != nil && cfg.Knobs.ForgetPromiseOnRestart {
		r.promised = pb.Ballot{}
	}
	r.applied = max(st.Applied, st.Meta.Index)
	r.chosen = max(st.HardState.Chosen, r.applied)
	// Entries at or below the chosen point were persisted before the chosen
	// point that covers them, so they are all present.
	r.conf = r.configAt(r.chosen)
	r.maxRound = r.promised.Round
	for _, e := range r.log.ents {
		r.maxRound = max(r.maxRound, e.Ballot.Round)
	}
	// A promise not to help other proposers is not persisted, so after a
	// restart this replica assumes it made one a moment ago to somebody it
	// can't remember, and refuses every Phase 1 for a full lease. A replica
	// that never promised anything (a new group) has nothing to honor.
	switch {
	case !st.LeaseHolder.IsZero():
		r.grantLease(st.LeaseHolder)
	case !st.HardState.Promised.IsZero() || len(st.Entries) > 0 || st.Applied > 0:
		r.lease.grant(pb.Ballot{}, cfg.Clock.Now()+cfg.LeaseDuration)
	}
	r.prevHard = r.hardState()
	r.becomeFollower(0)
	r.prevSoft = r.softState()
	return r, nil
}

func (r *Replica) hardState() pb.HardState {
	return pb.HardState{Promised: r.promised, Chosen: r.chosen}
}

func (r *Replica) softState() SoftState { return SoftState{Role: r.role, Leader: r.leader} }

// configAt returns the configuration in force after slot s, replaying the
// chosen entries between the truncation point and s.
func (r *Replica) configAt(s uint64) pb.Config {
	c := r.meta.Config
	for i := r.meta.Index + 1; i <= s; i++ {
		if e := r.log.get(i); e != nil {
			c = applyEntry(c, e)
		}
	}
	return c
}

func (r *Replica) now() int64 { return r.cfg.Clock.Now() }

func (r *Replica) resetElectionTimer() {
	r.electionElapsed = 0
	r.electionTimeout = r.cfg.ElectionTicks + r.cfg.Rand.IntN(r.cfg.ElectionTicks)
}

func (r *Replica) send(m pb.Message) {
	m.From = r.id
	if sendFirst(m.Type) {
		r.early = append(r.early, m)
		return
	}
	r.msgs = append(r.msgs, m)
}

// sendFirst reports whether a message type claims nothing about its
// sender's durable state, so that it may leave before the Ready that made
// it is persisted. A leader's accepts are the point: it asks others to
// accept while it persists its own copy (Raft thesis 10.2.1), and counts
// its own acceptance only once that is durable (Advance). Promises and
// acceptances are claims and wait.
func sendFirst(t pb.MessageType) bool {
	switch t {
	case pb.MsgAccept, pb.MsgHeartbeat, pb.MsgQuiesce, pb.MsgCommit, pb.MsgRelease, pb.MsgTimeoutNow:
		return true
	case pb.MsgProbe, pb.MsgProbeResp:
		return true // "I would promise" is no promise (probe.go)
	}
	return false
}

// accept stores e as accepted (or learned) and marks it for persistence.
func (r *Replica) accept(e pb.Entry) {
	r.log.set(e)
	r.unstable = append(r.unstable, e.Slot)
}

func (r *Replica) observe(b pb.Ballot) {
	r.maxRound = max(r.maxRound, b.Round)
}

// setPromised records a promise; a promise to another ballot ends the
// quiesce binding.
func (r *Replica) setPromised(b pb.Ballot) {
	r.promised = b
	r.lease.notePromise(b)
}

// becomeFollower makes the replica a follower of leader (zero if unknown).
func (r *Replica) becomeFollower(leader uint64) {
	if r.role == Leader && r.lead.lease.quiesceSeq != 0 {
		r.startReleasing()
		defer r.sendReleases()
	}
	r.lease.quiesced = false
	r.role = Follower
	r.step = stepFollower
	r.leader = leader
	r.handoffTicks = 0
	r.cand = nil
	r.lead = nil
	r.probe = nil
	r.resetElectionTimer()
}

// Tick advances logical time by one tick.
func (r *Replica) Tick() {
	switch r.role {
	case Leader:
		r.tickLeader()
	default:
		r.electionElapsed++
		if r.handoffTicks > 0 {
			if r.handoffTicks--; r.handoffTicks == 0 {
				// No leader spoke up: the one we handed off to is not
				// confirmed (its MsgTimeoutNow may have been lost), so we
				// name none rather than one that may not lead.
				r.leader = 0
			}
		}
		if r.heartbeatElapsed++; r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
			r.heartbeatElapsed = 0
			r.sendReleases()
		}
		if r.electionElapsed >= r.electionTimeout {
			if r.canCampaign() {
				r.startProbe()
			} else {
				r.requiesce()
			}
		}
	}
}

// Campaign starts Phase 1 now, without the probe an election timeout
// sends first (see probe.go): the caller knows this replica should lead.
// The node runtime uses it to elect a chosen replica of a new group at
// once, and to move leadership where placement wants it. It does nothing
// on a replica that may not campaign (not a voter, or bound by another's
// lease).
func (r *Replica) Campaign() {
	if r.role != Leader && r.canCampaign() {
		r.Unquiesce()
		r.campaign(pb.Ballot{})
	}
}

// canCampaign: only voters campaign, and not while this replica's own
// acceptor is bound by another leader's lease (it would refuse itself).
func (r *Replica) canCampaign() bool {
	return isVoter(r.conf, r.id) && !r.leaseBlocks(pb.Message{Ballot: pb.Ballot{Node: r.id}})
}

// Step feeds a message from another replica of the group. Messages from
// the past or for another role are answered or ignored as the protocol
// says; Step never fails on a message it doesn't expect.
func (r *Replica) Step(m pb.Message) {
	if m.From == r.id || m.From == 0 {
		return
	}
	if m.Type != pb.MsgProbe && m.Type != pb.MsgProbeResp {
		// A probe's ballot is one its sender may never use, and an answer
		// echoes ours (probe.go).
		r.observe(m.Ballot)
	}
	r.observe(m.Hint)
	if wakes(m.Type) {
		r.Unquiesce()
	}
	switch m.Type {
	case pb.MsgPrepare:
		r.handlePrepare(m)
	case pb.MsgAccept:
		r.handleAccept(m)
	case pb.MsgHeartbeat, pb.MsgQuiesce:
		r.handleHeartbeat(m)
	case pb.MsgCommit:
		r.handleCommit(m)
	case pb.MsgSnapshot:
		r.handleSnapshot(m)
	case pb.MsgRelease:
		r.handleRelease(m)
	case pb.MsgReleaseResp:
		r.handleReleaseResp(m)
	case pb.MsgProbe:
		r.handleProbe(m)
	case pb.MsgProbeResp:
		r.handleProbeResp(m)
	case pb.MsgTimeoutNow:
		// A transfer skips the probe: the leader gave up its lease for us.
		if r.role == Follower && m.Ballot == r.promised && isVoter(r.conf, r.id) {
			r.campaign(m.Ballot)
		}
	default:
		r.step(r, m)
	}
}

// stepFollower handles responses addressed to a role this replica no
// longer has; they are stale and dropped.
func stepFollower(*Replica, pb.Message) {}

// handlePrepare is the acceptor's Phase 1b ("Paxos Made Simple", 2.2: an
// acceptor promises never to accept a proposal numbered less than n, and
// answers with the highest-numbered proposal it has accepted).
func (r *Replica) handlePrepare(m pb.Message) {
	reject := func(why pb.RejectReason) {
		r.send(pb.Message{Type: pb.MsgPromise, To: m.From, Ballot: m.Ballot, Reject: why, Hint: r.promised, Chosen: r.chosen})
	}
	if why := r.phase1Refusal(m); why != pb.RejectNone {
		reject(why)
		return
	}
	if r.role != Follower && r.ballot.Less(m.Ballot) {
		r.becomeFollower(0)
	}
	// A promise grants no lease: a candidate that loses would keep its
	// promisers from anyone else, and candidates that split the voters
	// would block each other for good. The winner's first heartbeat round
	// starts its lease.
	r.setPromised(m.Ballot)
	r.resetElectionTimer()
	r.send(pb.Message{
		Type: pb.MsgPromise, To: m.From, Ballot: m.Ballot, Chosen: r.chosen,
		Entries: r.log.slice(m.Chosen+1, r.log.last()),
	})
}

// phase1Refusal returns why this acceptor refuses prepare m, or
// RejectNone if it promises. A probe is answered by the same rules
// (probe.go).
func (r *Replica) phase1Refusal(m pb.Message) pb.RejectReason {
	why := r.promiseRefusal(m)
	switch {
	case why == pb.RejectNotMember:
		// A candidate removed from the group may not know it yet: see
		// teachRemoved.
		r.teachRemoved(m)
	case why == pb.RejectNone && m.Chosen < r.meta.Index:
		// We no longer hold the slots the candidate needs to learn; teach
		// it our applied state instead.
		why = pb.RejectBehind
		r.sendSnapshot(m.From)
	}
	return why
}

// promiseRefusal returns why this acceptor would refuse to promise the
// ballot of prepare m now, or RejectNone if it would promise it.
func (r *Replica) promiseRefusal(m pb.Message) pb.RejectReason {
	switch {
	case m.Ballot.Less(r.promised):
		return pb.RejectBallot
	case !r.isAcceptor() || !isVoter(r.conf, m.From):
		// Only a voter campaigns, and only a replica that knows its
		// configuration promises (see isAcceptor).
		return pb.RejectNotMember
	case r.leaseBlocks(m):
		return pb.RejectLease
	}
	return pb.RejectNone
}

// acceptFromLeader is the common part of every message from a leader:
// refuse a stale ballot, otherwise follow it and renew its lease. It
// reports whether the message may be acted on.
func (r *Replica) acceptFromLeader(m pb.Message, respType pb.MessageType) bool {
	if m.Ballot.Less(r.promised) {
		r.send(pb.Message{Type: respType, To: m.From, Ballot: m.Ballot, Reject: pb.RejectBallot, Hint: r.promised,
			Index: m.Index, LastIndex: m.LastIndex, Seq: m.Seq, Chosen: r.chosen})
		return false
	}
	if r.role != Follower && r.ballot != m.Ballot {
		r.becomeFollower(m.From)
	}
	r.probe = nil // a leader is in reach: no need to campaign
	r.setPromised(m.Ballot)
	r.leader = m.From
	r.handoffTicks = 0 // a transfer we handed off is complete
	r.grantLease(m.Ballot)
	r.electionElapsed = 0
	return true
}

// handleAccept is the acceptor's Phase 2b.
func (r *Replica) handleAccept(m pb.Message) {
	if !r.acceptFromLeader(m, pb.MsgAccepted) {
		return
	}
	for _, e := range m.Entries {
		// A chosen slot keeps its value; any later ballot proposes the same
		// one anyway (P2c), and keeping it makes that visible in tests.
		if e.Slot > r.chosen && e.Slot > r.meta.Index {
			e.Ballot = m.Ballot
			r.accept(e)
		}
	}
	r.leaderChosen = max(r.leaderChosen, m.Chosen)
	r.learnChosen(m.Chosen, m.Ballot)
	r.send(pb.Message{Type: pb.MsgAccepted, To: m.From, Ballot: m.Ballot, Index: m.Index, LastIndex: m.LastIndex,
		Chosen: r.chosen, Seq: m.Seq, Reject: r.acceptorReject()})
}

func (r *Replica) handleHeartbeat(m pb.Message) {
	if !r.acceptFromLeader(m, pb.MsgHeartbeatResp) {
		return
	}
	r.leaderChosen = max(r.leaderChosen, m.Chosen)
	r.learnChosen(m.Chosen, m.Ballot)
	resp := pb.Message{Type: pb.MsgHeartbeatResp, To: m.From, Ballot: m.Ballot, Seq: m.Seq, Index: m.Chosen, Chosen: r.chosen,
		Reject: r.acceptorReject()}
	r.maybeBind(m, &resp)
	r.send(resp)
}

// learnChosen advances the chosen point up to leaderChosen over slots whose
// value this replica accepted at ballot b. The leader of b proposes one
// value per slot, so such a value is the chosen one. A slot accepted at
// another ballot may hold a different value and waits for MsgCommit.
func (r *Replica) learnChosen(leaderChosen uint64, b pb.Ballot) {
	if !r.initialized() {
		return
	}
	s := r.chosen
	for s < leaderChosen {
		e := r.log.get(s + 1)
		if e == nil || e.Ballot != b {
			break
		}
		s++
	}
	r.setChosen(s)
}

// initialized reports whether the replica knows its group's membership. A
// new replica doesn't until its first snapshot: the initial configuration
// is in no log entry. Until then it stores the values it is sent as a
// learner does, but learns nothing as chosen, so it keeps reporting chosen
// 0 and its leader keeps offering it a snapshot (sendCatchUp).
func (r *Replica) initialized() bool { return len(r.conf.Voters)+len(r.conf.Learners) > 0 }

// isAcceptor reports whether this replica's promises, acceptances and lease
// acknowledgements may count towards a quorum. A replica that holds no
// configuration may not: it may be a new learner, but it may as well be a
// voter that lost its state (the node creates an empty replica for a
// message to a group it does not host, as after its data directory was
// wiped). That one forgot what it promised; counting it would let a quorum
// that its former self was part of, and that some candidate won Phase 1
// with, miss the values chosen with it now ("Paxos Made Live", 5.1, and
// CockroachDB and TiKV likewise never let a replica with no state vote).
// It becomes one when a snapshot or a bootstrap gives it a configuration.
func (r *Replica) isAcceptor() bool { return r.initialized() }

// acceptorReject is the refusal that a response to a leader carries so
// that the leader does not count it: RejectNotMember from a replica that
// is no acceptor yet (isAcceptor). The leader sends it a snapshot instead.
func (r *Replica) acceptorReject() pb.RejectReason {
	if r.isAcceptor() {
		return pb.RejectNone
	}
	return pb.RejectNotMember
}

// setChosen moves the chosen point to s, applying configuration changes.
func (r *Replica) setChosen(s uint64) {
	for r.chosen < s {
		r.chosen++
		if e := r.log.get(r.chosen); e != nil {
			r.conf = applyEntry(r.conf, e)
		}
	}
}

// learnChosenEntries adopts the entries that extend our chosen point, up
// to slot upTo, as chosen: a chosen value is a fact, whoever reports it.
// A replica with no configuration learns nothing this way (it would not
// know the configuration the entries change); a snapshot teaches it.
func (r *Replica) learnChosenEntries(ents []pb.Entry, upTo uint64) {
	if !r.initialized() {
		return
	}
	for _, e := range ents {
		if e.Slot == r.chosen+1 && e.Slot <= upTo {
			r.accept(e)
			r.setChosen(e.Slot)
		}
	}
}

// handleCommit learns chosen entries from a replica that knows them. A
// chosen value is a fact, whoever reports it, so no ballot check applies
// to a follower or a candidate.
//
// A leader is different: its chosen point is what its own Phase 2 decided
// (maybeCommit), and moving it from outside would skip what goes with it:
// the acks it drops, a pending configuration change it adopts, the lease
// it re-derives under that configuration. A commit past a pending change
// would leave the change below the chosen point, where nothing ever clears
// it, and the send limit would hold every later slot back for good. The
// leader needs no commit anyway: it re-proposed every value it recovered,
// and those are the chosen ones (P2c), so its own quorum will choose them
// again. A commit can only come from the leader of another ballot: from a
// lower one (our Phase 1 ended its reign) it is refused as any other
// request of that ballot, which tells the stale leader to step down; from
// a higher one we are the stale leader, so we step down and learn.
func (r *Replica) handleCommit(m pb.Message) {
	if r.role == Leader {
		if !r.ballot.Less(m.Ballot) {
			r.send(pb.Message{Type: pb.MsgHeartbeatResp, To: m.From, Ballot: m.Ballot, Reject: pb.RejectBallot,
				Hint: r.promised, Chosen: r.chosen})
			return
		}
		r.becomeFollower(m.From)
	}
	if !m.Ballot.Less(r.promised) && m.Ballot.Node == m.From {
		r.leader = m.From
		r.electionElapsed = 0
	}
	r.learnChosenEntries(m.Entries, math.MaxUint64)
	r.send(pb.Message{Type: pb.MsgHeartbeatResp, To: m.From, Ballot: m.Ballot, Chosen: r.chosen})
}

// handleSnapshot replaces everything up to the snapshot's index. Accepted
// entries above it are acceptor state and are kept.
func (r *Replica) handleSnapshot(m pb.Message) {
	s := m.Snapshot
	if s != nil && r.AcceptsSnapshot(s.Meta.Index) {
		if !r.isAcceptor() && r.promised.Less(m.Ballot) {
			// A replica that may have lost its state becomes an acceptor
			// now. It can't know what its former self promised; the
			// sender's promise is the best floor it has, so it refuses
			// anything older from now on, as if it had promised it.
			r.setPromised(m.Ballot)
		}
		r.meta = pb.Meta{Index: s.Meta.Index, Config: cloneConfig(s.Meta.Config)}
		r.log.truncate(s.Meta.Index)
		r.chosen = s.Meta.Index
		r.conf = r.meta.Config
		r.metaDirty = true
		r.snapshot = &pb.Snapshot{Meta: r.meta, Data: s.Data}
		// Snapshots we were about to send describe the state machine as it
		// was before this one replaces it; the caller could not fill them.
		r.msgs = slices.DeleteFunc(r.msgs, func(m pb.Message) bool { return m.Type == pb.MsgSnapshot })
		if r.role == Leader {
			r.becomeFollower(0)
		}
	}
	r.send(pb.Message{Type: pb.MsgHeartbeatResp, To: m.From, Ballot: m.Ballot, Chosen: r.chosen})
}

// AcceptsSnapshot reports whether the replica would adopt a snapshot of
// its group's state at index, if stepped now: only one ahead of every slot
// it knows to be chosen replaces its log. A caller that installs a
// snapshot before stepping it asks this first (see Ready).
func (r *Replica) AcceptsSnapshot(index uint64) bool { return index > r.chosen }

// sendSnapshot asks the caller to send our applied state to a replica that
// needs slots we truncated. The caller attaches the data.
func (r *Replica) sendSnapshot(to uint64) {
	if r.snapshot != nil || r.applied == 0 {
		return // our own state machine is not at r.applied yet, or is empty
	}
	r.send(pb.Message{Type: pb.MsgSnapshot, To: to, Ballot: r.promised,
		Snapshot: &pb.Snapshot{Meta: pb.Meta{Index: r.applied, Config: r.configAt(r.applied)}}})
}

// Propose asks the leader to choose data in a new slot. It returns a
// *NotLeaderError on a non-leader and ErrProposalDropped when the leader
// can't take it now. The caller must not modify data afterwards.
func (r *Replica) Propose(data []byte) error {
	return r.propose(pb.EntryNormal, data)
}

// ProposeConfChange proposes a membership change. Only one may be in
// flight (ErrConfChangeInFlight otherwise); a learner is promoted only
// once it has caught up (ErrLearnerBehind otherwise; see canPromote).
func (r *Replica) ProposeConfChange(cc pb.ConfChange) error {
	if r.role != Leader {
		return &NotLeaderError{Leader: r.leader}
	}
	if err := checkConfChange(r.conf, cc); err != nil {
		return err
	}
	if cc.Type == pb.ConfPromote && !r.canPromote(cc.Replica) {
		return ErrLearnerBehind
	}
	if r.lead.pendingConf != 0 {
		return ErrConfChangeInFlight
	}
	return r.propose(pb.EntryConfChange, cc.Marshal())
}

// canPromote reports whether learner id may become a voter. It must hold
// the configuration that made it a learner: a voter that knows no
// configuration can never campaign (canCampaign), and once the voters that
// do are removed the group is stuck for good. Its reported chosen point
// says so: a replica's chosen point only moves once it knows its
// configuration (initialized), and reaching the slot of the last chosen
// change means it has applied it. It must also lag the chosen point by no
// more than the pipeline window, so that as a voter it helps choose new
// slots at once instead of holding a quorum back while it catches up.
func (r *Replica) canPromote(id uint64) bool {
	p := r.lead.member(id)
	return p != nil && p.chosen >= r.lastConfSlot() && p.chosen+uint64(r.cfg.MaxInflight) >= r.chosen
}

// lastConfSlot returns the slot of the last chosen configuration change.
// If the log no longer holds it, the truncation point stands in for it: the
// change is at or below it.
func (r *Replica) lastConfSlot() uint64 {
	for s := r.chosen; s > r.meta.Index; s-- {
		if e := r.log.get(s); e != nil && e.Type == pb.EntryConfChange {
			return s
		}
	}
	return r.meta.Index
}

func (r *Replica) propose(t pb.EntryType, data []byte) error {
	if r.role != Leader {
		return &NotLeaderError{Leader: r.leader}
	}
	r.Unquiesce()
	l := r.lead
	if (l.transfer != nil && l.transfer.draining) || l.pendingConf != 0 || r.log.last()-r.chosen >= uint64(r.cfg.MaxInflight) {
		return ErrProposalDropped
	}
	r.appendOwn(t, data)
	return nil
}

// appendOwn appends a value at the leader's ballot in the next slot. The
// leader's own acceptor accepts it, but counts towards a quorum only once
// it is persisted (Advance).
func (r *Replica) appendOwn(t pb.EntryType, data []byte) {
	s := r.log.last() + 1
	r.accept(pb.Entry{Slot: s, Ballot: r.ballot, Type: t, Data: data})
	if t == pb.EntryConfChange {
		r.lead.pendingConf = s
	}
}

// ReadIndex requests a linearizable read identified by ctx. The leader
// answers at once while it holds a lease; otherwise it confirms with a
// quorum first. The answer arrives as a ReadState.
func (r *Replica) ReadIndex(ctx []byte) error {
	if r.role != Leader {
		return &NotLeaderError{Leader: r.leader}
	}
	return r.readIndex(ctx)
}

// TransferLeader hands leadership to a voter. The leader gives up its
// lease before the target campaigns, so no two replicas ever both hold
// one. Proposals go on while the target catches up, and wait
// (ErrProposalDropped; see Transferring) only once it has: while the
// last values are chosen and it learns them, which takes a round trip or
// two. The transfer is abandoned if it has not completed within one
// election timeout. With Liveness, a target whose node does not support
// this one is refused at once (ErrTransferTargetDown).
func (r *Replica) TransferLeader(to uint64) error {
	if r.role != Leader {
		return &NotLeaderError{Leader: r.leader}
	}
	if to == r.id {
		return nil
	}
	if !isVoter(r.conf, to) {
		return ErrInvalidConfChange
	}
	if lv := r.cfg.Liveness; lv != nil {
		if _, until := lv.SupportFrom(to); r.now() >= until {
			return ErrTransferTargetDown
		}
	}
	if t := r.lead.transfer; t != nil && t.to == to {
		// Already under way. Its deadline stands: a caller that keeps
		// asking for a target that never catches up must not keep it
		// going, and proposals waiting, for longer than one timeout.
		return nil
	}
	r.Unquiesce()
	r.lead.newRound(r)
	t := &transfer{to: to, start: r.chosen, seq: r.lead.lease.seq}
	r.lead.transfer = t
	r.hurryTransfer(t)
	return nil
}

// Transferring reports whether a leader transfer that involves this
// replica is about to complete: as the leader waiting for its values in
// flight to be chosen and for the target to learn them (the draining step,
// see transfer), as the former leader that handed its lease to Leader()
// and has not yet heard from a new leader, or as the target campaigning
// on the lease it was handed. Each lasts at most an election timeout,
// normally a few round trips. Proposals meanwhile are refused
// (ErrProposalDropped or NotLeaderError); a caller that holds them
// instead until Transferring turns false then proposes them here, if the
// transfer was abandoned or this replica took over, or sends them to the
// new Leader(), and its clients see no refusal.
func (r *Replica) Transferring() bool {
	switch r.role {
	case Leader:
		return r.lead.transfer != nil && r.lead.transfer.draining
	case Candidate:
		return !r.cand.transfer.IsZero() && r.electionElapsed < r.cfg.ElectionTicks
	}
	return r.handoffTicks > 0
}

// HasReady reports whether Ready would return anything.
func (r *Replica) HasReady() bool {
	if r.role == Leader && r.lead.hasSends(r) {
		return true
	}
	return len(r.msgs) > 0 || len(r.early) > 0 || len(r.unstable) > 0 || r.metaDirty || r.snapshot != nil ||
		len(r.readStates) > 0 || r.chosen > r.applied || r.hardState() != r.prevHard || r.softState() != r.prevSoft
}

// Ready returns what the caller must persist, send and apply; see Ready.
// Each Ready must be followed by Advance before the next.
func (r *Replica) Ready() Ready {
	if r.role == Leader {
		r.lead.flush(r)
	}
	var rd Ready
	if ss := r.softState(); ss != r.prevSoft {
		rd.SoftState = &ss
		r.prevSoft = ss
	}
	if hs := r.hardState(); hs != r.prevHard {
		rd.HardState = &hs
		r.prevHard = hs
	}
	if len(r.unstable) > 0 {
		slices.Sort(r.unstable)
		r.unstable = slices.Compact(r.unstable)
		rd.Entries = make([]pb.Entry, 0, len(r.unstable))
		for _, s := range r.unstable {
			if e := r.log.get(s); e != nil {
				rd.Entries = append(rd.Entries, *e)
			}
		}
		r.unstable = r.unstable[:0]
	}
	if r.metaDirty {
		m := pb.Meta{Index: r.meta.Index, Config: cloneConfig(r.meta.Config)}
		rd.Meta = &m
		r.metaDirty = false
	}
	rd.Snapshot, r.snapshot = r.snapshot, nil
	rd.Messages, r.msgs = r.msgs, nil
	rd.SendFirst, r.early = r.early, nil
	from := r.applied
	if rd.Snapshot != nil {
		from = rd.Snapshot.Meta.Index
	}
	if r.chosen > from {
		hi := min(r.chosen, from+uint64(r.cfg.MaxCommittedPerReady))
		rd.Committed = r.log.slice(from+1, hi)
	}
	r.pendingCommit = rd.Committed
	rd.ReadStates, r.readStates = r.readStates, nil
	return rd
}

// Advance tells the replica that rd has been persisted, sent and applied.
func (r *Replica) Advance(rd Ready) {
	if r.role == Leader {
		// Our own acceptances are durable now: count them.
		for i := range rd.Entries {
			if rd.Entries[i].Ballot == r.ballot {
				r.lead.ack(rd.Entries[i].Slot, r.id)
			}
		}
		r.maybeCommit()
	}
	if rd.Snapshot != nil {
		r.applied = max(r.applied, rd.Snapshot.Meta.Index)
	}
	if n := len(r.pendingCommit); n > 0 {
		r.applied = max(r.applied, r.pendingCommit[n-1].Slot)
		r.pendingCommit = nil
	}
	if r.role == Leader {
		r.maybeTransfer() // it may have waited for these values to be applied
	}
	r.maybeTruncate()
}

// maybeTruncate drops applied entries beyond LogRetention once twice that
// many accumulate, so truncation work is amortized.
func (r *Replica) maybeTruncate() {
	keep := r.cfg.LogRetention
	if r.applied < r.meta.Index+2*keep {
		return
	}
	idx := r.applied - keep
	r.meta = pb.Meta{Index: idx, Config: r.configAt(idx)}
	r.log.truncate(idx)
	r.metaDirty = true
}

// Status returns a snapshot of the replica's state.
func (r *Replica) Status() Status {
	st := Status{
		ID: r.id, Role: r.role, Leader: r.leader, Ballot: r.ballot, Promised: r.promised, Transferring: r.Transferring(),
		Chosen: r.chosen, Applied: r.applied, LeaderChosen: r.LeaderChosen(), LastIndex: r.log.last(), FirstIndex: r.meta.Index + 1,
		Config: cloneConfig(r.conf), LeaseValid: r.LeaseValid(), Quiesced: r.lease.quiesced,
		Bound: r.boundNow(),
	}
	if r.role == Leader && r.lead.transfer != nil {
		st.Transferee = r.lead.transfer.to
	}
	return st
}

// Applied returns the applied point as of the last Advance.
func (r *Replica) Applied() uint64 { return r.applied }

// Chosen returns the chosen point.
func (r *Replica) Chosen() uint64 { return r.chosen }

// LeaderChosen returns the highest chosen point a leader has reported to
// this replica, or its own chosen point if that is higher (on a leader, it
// always is). A replica whose Chosen or Applied is below it has not caught
// up with its group.
func (r *Replica) LeaderChosen() uint64 { return max(r.leaderChosen, r.chosen) }

// LastIndex returns the last slot of the log: right after a successful
// Propose, the slot the value was given.
func (r *Replica) LastIndex() uint64 { return r.log.last() }

// Leader returns the replica believed to lead, or zero.
func (r *Replica) Leader() uint64 { return r.leader }

// ID returns the replica's id.
func (r *Replica) ID() uint64 { return r.id }
