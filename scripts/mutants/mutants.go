package main

// mutant is one planted bug: in File, the text Old (which must occur
// exactly once) becomes New.
type mutant struct {
	// Name identifies the mutant in the table and in -run.
	Name string
	// File is relative to the repository root.
	File string
	// Old is the exact original text, usually one line or part of one;
	// New replaces it.
	Old, New string
	// Desc says, in one line, what bug this is.
	Desc string
	// Equivalent, if set, says in one line why the mutant cannot change
	// behaviour, so that no test can catch it.
	Equivalent string
}

// mutants is the one list of planted bugs. When the code changes under a
// snippet, the script stops with the mutant's name: re-anchor Old on the
// new code (keep the bug the same), or drop the mutant if the code it
// broke is gone. TestEveryMutantMatchesOnce checks the whole list in CI.
var mutants = []mutant{
	// Liveness: support between node pairs (liveness/liveness.go).
	{
		Name: "liveness/support-from-receipt",
		File: "liveness/liveness.go",
		Old:  "until := int64(m.Seq) + l.cfg.SupportDuration - l.cfg.MaxClockDrift",
		New:  "until := now + l.cfg.SupportDuration - l.cfg.MaxClockDrift",
		Desc: "the requester counts support from when the response arrived, not from when it asked",
	},
	{
		Name: "liveness/no-drift-margin",
		File: "liveness/liveness.go",
		Old:  "until := int64(m.Seq) + l.cfg.SupportDuration - l.cfg.MaxClockDrift",
		New:  "until := int64(m.Seq) + l.cfg.SupportDuration",
		Desc: "the requester does not subtract the clock drift margin from support",
	},
	{
		Name: "liveness/supporter-uses-requester-clock",
		File: "liveness/liveness.go",
		Old:  "p.forUntil = now + l.cfg.SupportDuration",
		New:  "p.forUntil = int64(m.Seq) + l.cfg.SupportDuration",
		Desc: "the supporter counts support on the requester's clock reading instead of its own",
	},
	{
		Name: "liveness/epoch-kept-after-lapse",
		File: "liveness/liveness.go",
		Old:  "if now >= p.forUntil || m.Epoch != p.forIncarnation {",
		New:  "if m.Epoch != p.forIncarnation {",
		Desc: "support that lapsed is renewed at the same epoch (epoch not bumped)",
	},
	{
		Name: "liveness/epoch-kept-after-peer-restart",
		File: "liveness/liveness.go",
		Old:  "if now >= p.forUntil || m.Epoch != p.forIncarnation {",
		New:  "if now >= p.forUntil {",
		Desc: "a restarted peer keeps the epoch its previous life was supported at",
	},
	{
		Name: "liveness/epochs-restart-at-zero",
		File: "liveness/liveness.go",
		Old:  "p = &peer{forEpoch: l.cfg.Incarnation << 32,",
		New:  "p = &peer{forEpoch: 0,",
		Desc: "a restarted supporter grants epochs its previous incarnation already granted",
	},
	{
		Name: "liveness/restart-not-reported",
		File: "liveness/liveness.go",
		Old:  "if (!p.forLapsed && now >= p.forUntil) || p.restarted {",
		New:  "if !p.forLapsed && now >= p.forUntil {",
		Desc: "the end of a restarted peer's old epoch is not reported, so its groups never wake",
	},
	{
		Name: "liveness/regained-not-reported",
		File: "liveness/liveness.go",
		Old:  "p.fromLapsed = false\n\t\t\tp.regained = true",
		New:  "p.fromLapsed = false",
		Desc: "support that resumes after a lapse is not reported, so a follower that missed commits is not caught up",
	},
	{
		Name: "liveness/stale-epoch-accepted",
		File: "liveness/liveness.go",
		Old:  "case m.Epoch > p.fromEpoch:",
		New:  "case m.Epoch != p.fromEpoch:",
		Desc: "a delayed response at an older epoch rolls the supported epoch back",
	},
	{
		Name: "liveness/remove-unbinds-at-once",
		File: "liveness/liveness.go",
		Old:  "p.removed = true",
		New:  "delete(l.peers, id)",
		Desc: "RemovePeer withdraws granted support at once instead of letting it run out",
	},
	{
		Name: "liveness/removed-peer-renewed",
		File: "liveness/liveness.go",
		Old:  "if p.removed || m.Epoch < p.forIncarnation {",
		New:  "if m.Epoch < p.forIncarnation {",
		Desc: "a removed peer's requests still renew its support",
	},
	{
		Name: "liveness/request-from-old-life-accepted",
		File: "liveness/liveness.go",
		Old:  "if p.removed || m.Epoch < p.forIncarnation {",
		New:  "if p.removed {",
		Desc: "a request delayed from a peer's previous life ends the support its current life holds",
	},
	{
		Name: "liveness/response-from-old-life-accepted",
		File: "liveness/liveness.go",
		Old:  "if m.Index != l.cfg.Incarnation || !l.sent || int64(m.Seq) > l.lastSent {",
		New:  "if !l.sent || int64(m.Seq) > l.lastSent {",
		Desc: "a response to our previous life's request counts, with a request time from the old clock",
	},
	{
		Name: "liveness/response-outruns-request",
		File: "liveness/liveness.go",
		Old:  "if m.Index != l.cfg.Incarnation || !l.sent || int64(m.Seq) > l.lastSent {",
		New:  "if m.Index != l.cfg.Incarnation {",
		Desc: "a response may set support beyond our latest request's send time + duration",
	},
	{
		Name: "liveness/pacing-off-by-one",
		File: "liveness/liveness.go",
		Old:  "if l.sent && now-l.lastSent < l.cfg.Interval {",
		New:  "if l.sent && now-l.lastSent <= l.cfg.Interval {",
		Desc: "support requests go out one Interval late",
	},

	// The Paxos core (group/).
	{
		Name: "group/promise-before-persist",
		File: "group/replica.go",
		Old:  "case pb.MsgAccept, pb.MsgHeartbeat, pb.MsgQuiesce, pb.MsgCommit, pb.MsgRelease, pb.MsgTimeoutNow:",
		New:  "case pb.MsgAccept, pb.MsgPromise, pb.MsgHeartbeat, pb.MsgQuiesce, pb.MsgCommit, pb.MsgRelease, pb.MsgTimeoutNow:",
		Desc: "a promise leaves in SendFirst, before the promised ballot is persisted",
	},
	{
		Name: "group/accepted-before-persist",
		File: "group/replica.go",
		Old:  "case pb.MsgAccept, pb.MsgHeartbeat, pb.MsgQuiesce, pb.MsgCommit, pb.MsgRelease, pb.MsgTimeoutNow:",
		New:  "case pb.MsgAccept, pb.MsgAccepted, pb.MsgHeartbeat, pb.MsgQuiesce, pb.MsgCommit, pb.MsgRelease, pb.MsgTimeoutNow:",
		Desc: "an acceptance leaves in SendFirst, before the accepted entry is persisted",
	},
	{
		Name: "group/own-accept-counted-early",
		File: "group/replica.go",
		Old:  "r.accept(pb.Entry{Slot: s, Ballot: r.ballot, Type: t, Data: data})",
		New:  "r.accept(pb.Entry{Slot: s, Ballot: r.ballot, Type: t, Data: data}); r.lead.ack(s, r.id)",
		Desc: "the leader counts its own acceptance of a new value before it is persisted",
	},
	{
		Name: "group/lease-from-ack",
		File: "group/lease.go",
		Old:  "return rd.sentAt + r.cfg.LeaseDuration - r.cfg.MaxClockDrift",
		New:  "return r.now() + r.cfg.LeaseDuration - r.cfg.MaxClockDrift",
		Desc: "the leader's lease counts from when the quorum's acks arrived, not from when the heartbeat was sent",
	},
	{
		Name: "group/lease-no-drift-margin",
		File: "group/lease.go",
		Old:  "return rd.sentAt + r.cfg.LeaseDuration - r.cfg.MaxClockDrift",
		New:  "return rd.sentAt + r.cfg.LeaseDuration",
		Desc: "the leader's lease does not subtract the clock drift margin",
	},
	{
		Name: "group/no-lease-after-restart",
		File: "group/replica.go",
		Old:  "r.lease.grant(pb.Ballot{}, cfg.Clock.Now()+cfg.LeaseDuration)",
		New:  "r.lease.grant(pb.Ballot{}, cfg.Clock.Now())",
		Desc: "a restarted acceptor does not refuse Phase 1 for a lease, though it forgot whom it promised",
	},
	{
		Name: "group/acceptor-lease-not-renewed",
		File: "group/replica.go",
		Old:  "\tr.grantLease(m.Ballot)\n\tr.electionElapsed = 0",
		New:  "\tr.lease.ballot = m.Ballot\n\tr.electionElapsed = 0",
		Desc: "an acceptor does not renew the leader's lease when it hears from the leader",
	},
	{
		Name: "group/campaign-through-own-lease",
		File: "group/replica.go",
		Old:  "return isVoter(r.conf, r.id) && !r.leaseBlocks(pb.Message{Ballot: pb.Ballot{Node: r.id}})",
		New:  "return isVoter(r.conf, r.id)",
		Desc: "a replica campaigns (and promises itself) while its own acceptor is bound by another leader's lease",
	},
	{
		Name: "group/transfer-any-ballot",
		File: "group/lease.go",
		Old:  "return m.Transfer.IsZero() || m.Transfer != holder",
		New:  "return m.Transfer.IsZero()",
		Desc: "a prepare naming any transferred lease gets past the lease of the current holder",
	},
	{
		Name: "group/commit-counts-learners",
		File: "group/leader.go",
		Old:  "if !hasMajority(r.conf.Voters, func(id uint64) bool { return l.acked(s, id) }) {",
		New:  "if !hasMajority(members(r.conf), func(id uint64) bool { return l.acked(s, id) }) {",
		Desc: "a slot counts as chosen by a majority of voters and learners",
	},
	{
		Name: "group/send-past-pending-conf",
		File: "group/leader.go",
		Old:  "lim = min(lim, pc)",
		New:  "lim = max(lim, pc)",
		Desc: "the leader sends accepts beyond a pending membership change",
	},
	{
		Name: "group/prepare-from-non-member",
		File: "group/replica.go",
		Old:  "case !r.isAcceptor() || !isVoter(r.conf, m.From):",
		New:  "case !r.isAcceptor() || isLearner(r.conf, m.From):",
		Desc: "an acceptor promises a prepare from a replica that is no longer a member",
	},
	{
		Name: "group/promise-lower-ballot",
		File: "group/replica.go",
		Old:  "case m.Ballot.Less(r.promised):\n\t\treturn pb.RejectBallot",
		New:  "case m.Ballot.Less(r.promised) && m.Ballot.Round < r.promised.Round:\n\t\treturn pb.RejectBallot",
		Desc: "an acceptor promises a lower ballot of the same round (ballots compared by round only)",
	},
	{
		Name: "group/adopt-lowest-ballot",
		File: "group/candidate.go",
		Old:  "if old, ok := vals[e.Slot]; !ok || old.Ballot.Less(e.Ballot) {",
		New:  "if old, ok := vals[e.Slot]; !ok || e.Ballot.Less(old.Ballot) {",
		Desc: "a new leader re-proposes the lowest-ballot value it learned in Phase 1, not the highest",
	},
	{
		Name:       "group/adopt-equal-ballot",
		File:       "group/candidate.go",
		Old:        "if old, ok := vals[e.Slot]; !ok || old.Ballot.Less(e.Ballot) {",
		New:        "if old, ok := vals[e.Slot]; !ok || !e.Ballot.Less(old.Ballot) {",
		Desc:       "Phase 1 compares accepted ballots with >= instead of >",
		Equivalent: "a leader proposes one value per slot per ballot, so two promises at the same ballot carry the same value",
	},
	{
		Name: "group/promise-omits-values",
		File: "group/replica.go",
		Old:  "Entries: r.log.slice(m.Chosen+1, r.log.last()),",
		New:  "Entries: r.log.slice(r.chosen+1, r.log.last()),",
		Desc: "a promise reports accepted values only above the acceptor's chosen point, not the candidate's",
	},
	{
		Name: "group/quorum-off-by-one",
		File: "group/conf.go",
		Old:  "return len(voters) > 0 && 2*n > len(voters)",
		New:  "return len(voters) > 0 && 2*n >= len(voters)",
		Desc: "half of an even number of voters counts as a majority",
	},
	{
		Name: "group/win-under-either-config",
		File: "group/candidate.go",
		Old:  "won = won && hasMajority(c.Voters, promised)",
		New:  "won = won || hasMajority(c.Voters, promised)",
		Desc: "a candidate wins with a majority of either configuration around a recovered change, not of both",
	},
	{
		Name: "group/lease-ignores-pending-conf",
		File: "group/leader.go",
		Old:  "\tif next, ok := r.pendingConfig(); ok {\n\t\treturn hasMajority(next.Voters, has)\n\t}\n",
		New:  "",
		Desc: "while a membership change is pending, a lease needs a quorum of the old voters only",
	},
	{
		Name: "group/lease-kept-across-conf",
		File: "group/leader.go",
		Old:  "\tr.syncProgress()\n\tl.recomputeLease(r)\n",
		New:  "\tr.syncProgress()\n",
		Desc: "a lease granted by the old voters outlives a membership change",
	},
	{
		Name: "group/learn-chosen-any-ballot",
		File: "group/replica.go",
		Old:  "if e == nil || e.Ballot != b {",
		New:  "if e == nil {",
		Desc: "a follower learns as chosen a value it accepted at another ballot than the leader's",
	},
	{
		Name: "group/binding-outlives-epoch",
		File: "group/lease.go",
		Old:  "e, until := lv.SupportFor(s.bound.Node)\n\t\tif e == s.boundEpoch && now < until {",
		New:  "_, until := lv.SupportFor(s.bound.Node)\n\t\tif now < until {",
		Desc: "a quiesce binding survives a new support epoch (the old epoch's lease stays alive)",
	},
	{
		Name: "group/bound-lease-any-epoch",
		File: "group/lease.go",
		Old:  "if e, until := r.cfg.Liveness.SupportFrom(b.id); e == b.epoch && now < until {",
		New:  "if _, until := r.cfg.Liveness.SupportFrom(b.id); now < until {",
		Desc: "a quiesced leader counts a follower's binding under any support epoch",
	},
	{
		Name: "group/rebind-after-release",
		File: "group/lease.go",
		Old:  "r.cfg.Liveness == nil ||\n\t\t!r.lease.releasedFrom.Less(m.Ballot) {",
		New:  "r.cfg.Liveness == nil {",
		Desc: "a delayed MsgQuiesce binds a follower again to a leader that released it",
	},
	{
		Name: "group/read-before-noop",
		File: "group/leader.go",
		Old:  "idx := max(r.chosen, l.startSlot)",
		New:  "idx := r.chosen",
		Desc: "a new leader serves reads before its election no-op is chosen",
	},
	{
		Name: "group/read-on-old-round",
		File: "group/leader.go",
		Old:  "l.reads = append(l.reads, pendingRead{ctx: ctx, index: idx, seq: l.lease.seq + 1})",
		New:  "l.reads = append(l.reads, pendingRead{ctx: ctx, index: idx, seq: l.lease.seq})",
		Desc: "a read without a lease is released by a heartbeat round sent before it arrived",
	},
	{
		Name: "group/stale-snapshot-installed",
		File: "group/replica.go",
		Old:  "func (r *Replica) AcceptsSnapshot(index uint64) bool { return index > r.chosen }",
		New:  "func (r *Replica) AcceptsSnapshot(index uint64) bool { return index >= r.meta.Index }",
		Desc: "a snapshot older than the chosen point is installed and moves the chosen point back",
	},
	{
		Name: "group/candidate-learns-unchosen",
		File: "group/candidate.go",
		Old:  "r.learnChosenEntries(m.Entries, m.Chosen)",
		New:  "r.learnChosenEntries(m.Entries, m.Chosen+1)",
		Desc: "a candidate takes the slot after a promiser's chosen point for chosen too",
	},
	{
		Name: "group/quiesce-binds-any-epoch",
		File: "group/lease.go",
		Old:  "if e, until := r.cfg.Liveness.SupportFor(m.From); e == m.Epoch && r.now() < until {",
		New:  "if e, until := r.cfg.Liveness.SupportFor(m.From); r.now() < until {",
		Desc: "a quiesce binds at whatever epoch the follower's node grants now, though it names another",
	},
	{
		Name: "group/catch-up-from-highest-report",
		File: "group/leader.go",
		Old:  "\t\t\tp.chosen = m.Chosen\n\t\t\tr.sendCatchUp(m.From, p)",
		New:  "\t\t\tp.chosen = max(p.chosen, m.Chosen)\n\t\t\tr.sendCatchUp(m.From, p)",
		Desc: "a member that reports less than it did before is caught up from the most it ever reported",
	},
	{
		Name:       "group/overwrite-chosen-slot",
		File:       "group/replica.go",
		Old:        "if e.Slot > r.chosen && e.Slot > r.meta.Index {",
		New:        "if e.Slot > r.meta.Index {",
		Desc:       "an accept overwrites a slot this replica already knows is chosen",
		Equivalent: "by P2c any later ballot proposes the chosen value again, so the slot's value is unchanged",
	},
	{
		Name: "group/probe-promises",
		File: "group/probe.go",
		Old:  "} else if m.Chosen < r.chosen {",
		New:  "} else if r.setPromised(m.Ballot); m.Chosen < r.chosen {",
		Desc: "an acceptor promises the ballot of a probe it grants, as if it were a prepare",
	},
	{
		Name: "group/probe-wakes",
		File: "group/lease.go",
		Old:  "case pb.MsgQuiesce, pb.MsgHeartbeatResp, pb.MsgReleaseResp, pb.MsgProbe, pb.MsgProbeResp:",
		New:  "case pb.MsgQuiesce, pb.MsgHeartbeatResp, pb.MsgReleaseResp, pb.MsgProbeResp:",
		Desc: "a probe wakes a quiesced group, so a flapping node keeps its peers' groups awake",
	},
	{
		Name: "group/probe-without-own-acceptor",
		File: "group/probe.go",
		Old:  "return id == r.id || p.granted[id]",
		New:  "return p.granted[id]",
		Desc: "a probe counts only the other voters' grants, not its own acceptor's",
	},
	{
		Name: "group/quiesced-leader-promises",
		File: "group/lease.go",
		Old:  "if r.role == Leader && m.Ballot.Node != r.id && r.lead.leaseValid(r) {",
		New:  "if r.role == Leader && m.Ballot.Node != r.id && r.now() < r.lead.lease.expiry {",
		Desc: "a leader's own acceptor honours its lease only while it sends rounds, not while it rests on bindings",
	},
	{
		Name: "group/transfer-before-voters-know-conf",
		File: "group/leader.go",
		Old:  "if conf := r.lastConfSlot(); !r.quorumKnows(conf) {",
		New:  "if conf := r.lastConfSlot(); !r.quorumKnows(r.meta.Index) {",
		Desc: "a leader hands over to a just-promoted voter before a majority know it is one, and they refuse its election",
	},
	{
		Name: "group/busy-leader-no-catch-up",
		File: "group/leader.go",
		Old:  "return p.heard < r.lead.beatChosen",
		New:  "return false",
		Desc: "a busy leader never heartbeats a member that lags, which stays behind for as long as writes flow",
	},
}
