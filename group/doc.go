// Package group implements one replica of a Multi-Paxos group as a pure,
// deterministic state machine, in the shape of etcd's raft package: the
// algorithm is a value that takes inputs and returns outputs, and the
// caller does all I/O. It reads no wall clock (leases use the injected
// Clock), draws no global randomness (timeouts use the injected Rand),
// starts no goroutine and touches no disk or network. That is what lets
// group/sim run thousands of replicas deterministically and replay a
// failing seed exactly.
//
// # The protocol
//
// Every replica is an acceptor and a learner; one at a time is the leader
// (the distinguished proposer of "Paxos Made Simple", section 3).
//
//   - Ballots are (round, node id): totally ordered, unique per proposer.
//   - Phase 1 (MsgPrepare/MsgPromise) runs once per leadership, for every
//     slot above the candidate's chosen point at once. The new leader
//     re-proposes, for every open slot, the value with the highest ballot
//     any promiser accepted, fills the gaps with no-ops and appends a no-op
//     of its own.
//   - Phase 2 (MsgAccept/MsgAccepted) runs per slot, pipelined up to
//     Config.MaxInflight slots. A slot is chosen once a majority of the
//     voters in force accepted it; the chosen point rides on later accepts
//     and heartbeats. A replica that can't learn a chosen value that way
//     (it accepted another ballot's value) gets it in a MsgCommit, or a
//     snapshot when the leader truncated it.
//   - Leases (Spanner style): an acceptor that hears from a leader promises
//     nobody else for Config.LeaseDuration on its own clock. The leader
//     counts its lease from when it sent the heartbeat (or accepts) that a
//     quorum acknowledged, never from when the acknowledgements arrived,
//     minus Config.MaxClockDrift, so it expires before any acceptor's
//     promise does. Under a valid lease the leader serves reads locally
//     (ReadIndex answers at once); otherwise a read waits for a quorum
//     round. A restarted acceptor refuses every Phase 1 for a full lease,
//     since it can't remember whom it promised.
//   - Quiescence: an idle leader sends its heartbeat round as MsgQuiesce.
//     A follower whose node supports the leader's node (Config.Liveness)
//     binds its acceptor to the leader's ballot at that support epoch and
//     stops ticking; once a quorum is bound the leader stops too, and its
//     lease rests on node-to-node support, which costs nothing per group.
//     Any request or message that needs the group wakes it (Unquiesce). A
//     leader that steps down sends MsgRelease to followers that may be
//     bound to it until each acknowledges (MsgReleaseResp).
//   - Elections: a voter that hears nothing from a leader for a randomized
//     election timeout, and is not bound by a lease, first probes
//     (MsgProbe/MsgProbeResp, Raft's PreVote): it campaigns only once a
//     majority would promise its ballot. A probe changes no state, so a
//     replica cut off from its group never raises a promise that would
//     depose a healthy leader once it is back (probe.go).
//   - Leader transfer: the leader keeps proposing while the target
//     catches up, then stops once it has, and waits until every value in
//     flight is chosen and the target knows it (telling it at once, not at
//     the next heartbeat). It gives up its lease and sends MsgTimeoutNow;
//     the target campaigns at once, and its prepare names the released
//     lease, so acceptors let it through. There is no moment at which
//     both hold one, and nothing waits for a timer. Transferring tells the
//     caller when to hold proposals rather than fail them.
//   - Membership changes go through the log, one voter at a time: add a
//     learner, promote it once it holds its configuration and has caught
//     up, remove a replica. A change takes effect for the slots after it
//     once chosen, and the leader sends nothing beyond a pending change,
//     so every slot in flight is decided by one configuration. A
//     candidate must win a majority of every configuration it finds among
//     the values it recovers. A removed replica is taught the chosen
//     slots up to its removal, by the leader and by peers that refuse its
//     campaigns (removal.go), so that its caller learns to drop it.
//   - Log truncation: applied entries beyond Config.LogRetention are
//     dropped; a replica that needs them gets a snapshot.
//   - A replica with no state (no configuration: a new learner, or a voter
//     whose disk was wiped and that the node re-created empty) is no
//     acceptor: it refuses every prepare, and answers accepts and
//     heartbeats with RejectNotMember so that no leader counts them, until
//     a snapshot or a bootstrap gives it a configuration. A wiped voter
//     forgot its promises; counting it could break the quorum a candidate
//     won with. The snapshot that brings it back raises its promise to its
//     sender's, which is all it can know; the node keeps wiped stores out
//     in the first place (store identity), and replacing a wiped voter by
//     a new replica through membership changes is the fully safe way back.
//
// lease.go holds the lease and quiescence state and rules, with the full
// argument for them; the leader's heartbeat timing (tickLeader, flush)
// and the followers' grants (acceptFromLeader) call into it.
//
// # Using a Replica
//
// The caller owns the replica and calls it from one goroutine at a time:
//
//	for {
//		// Feed input: r.Tick() every tick, r.Step(m) for every message
//		// received, r.Propose(data), r.ReadIndex(ctx), ...
//		if !r.HasReady() {
//			continue
//		}
//		rd := r.Ready()
//		// 1. Persist rd.HardState, rd.Entries and rd.Meta (deleting the
//		//    entries at or below rd.Meta.Index); install rd.Snapshot with
//		//    its applied point. Durably: fsync (one per batch of groups).
//		// 2. Send rd.Messages, attaching the state machine's data as of
//		//    its applied point to any MsgSnapshot.
//		// 3. Apply rd.Committed in order, persisting the applied point
//		//    with the data; serve each rd.ReadStates once its Index is
//		//    applied.
//		// 4. r.Advance(rd)
//	}
//
// Persisting before sending is the crux: an acceptor's promise or
// acceptance is only ever seen by others once it would survive a crash.
//
// After a crash, rebuild the replica with New from what was persisted
// (State). A new replica joining an existing group starts from an empty
// State; it learns the configuration from its first snapshot.
package group
