package group

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// The harness below is a tiny deterministic world for protocol tests, in
// the spirit of etcd raft's interaction tests: every replica has a fake
// clock that only the test moves, a seeded Rand, and an in-memory disk that
// holds exactly what its Readys asked to persist. Messages sit in one FIFO
// queue until the test delivers them, one at a time if it wants to.
//
// The harness checks, on every Ready and after every delivery and tick:
//   - a durable promise and chosen point never go back;
//   - replicas apply slots in order, and never two values at one slot;
//   - at most one replica reports LeaseValid at a time (unless a test
//     turns that off, see network.leaseCheck).

// Fake time: one tick is 100ms, a lease is ten ticks, like ElectionTicks.
const (
	testTick  int64 = 100_000_000
	testLease       = 10 * testTick
	testDrift       = testTick
	// testEpoch is where every fake clock starts, so that a zero time in
	// the replica can't pass for a real one.
	testEpoch int64 = 1_000_000_000_000
)

type fakeClock struct{ now int64 }

func (c *fakeClock) Now() int64 { return c.now }

// storage is what survives a crash: what the Readys asked to persist, and
// the applied state machine (the value of every slot up to applied).
type storage struct {
	hard    pb.HardState
	meta    pb.Meta
	entries map[uint64]pb.Entry
	applied uint64
	app     []string
}

func (s *storage) state() State {
	st := State{HardState: s.hard, Meta: cloneMeta(s.meta), Applied: s.applied}
	for _, e := range s.entries {
		st.Entries = append(st.Entries, e)
	}
	slices.SortFunc(st.Entries, func(a, b pb.Entry) int { return cmp.Compare(a.Slot, b.Slot) })
	return st
}

func cloneMeta(m pb.Meta) pb.Meta { return pb.Meta{Index: m.Index, Config: cloneConfig(m.Config)} }

func cloneEntry(e pb.Entry) pb.Entry {
	e.Data = slices.Clone(e.Data)
	return e
}

// testReplica is one replica of the world and everything the test may
// want to look at afterwards.
type testReplica struct {
	*Replica
	clock    *fakeClock
	disk     storage
	restarts int
	// reads are the ReadStates handed out, in order.
	reads []ReadState
	// metas are the Ready.Meta values persisted, in order.
	metas []pb.Meta
	// installed are the snapshots this replica installed.
	installed []pb.Meta
}

type network struct {
	t     testing.TB
	seed  uint64
	tweak func(*Config)
	nodes map[uint64]*testReplica
	queue []pb.Message
	// deaf drops every message addressed to a replica; cut drops messages
	// on one directed link.
	deaf map[uint64]bool
	cut  map[[2]uint64]bool
	// sent is every message handed out by a Ready, in order, and what
	// became of it; the determinism test compares it across runs.
	sent []string
	// values is the value of every slot applied anywhere.
	values map[uint64]string
	// snapshots holds the data of every snapshot sent; a snapshot's Data is
	// its index here.
	snapshots [][]string
	// leaseCheck fails the test as soon as two replicas report a valid
	// lease at once. It is on by default.
	leaseCheck bool
	// next picks the queued message to deliver next; nil is FIFO.
	next func(queue []pb.Message) int
}

// lifo delivers the newest message first.
func lifo(queue []pb.Message) int { return len(queue) - 1 }

// shuffled delivers queued messages in an order drawn from a seeded Rand.
func shuffled(seed uint64) func([]pb.Message) int {
	rng := rand.New(rand.NewPCG(seed, 0xde11))
	return func(queue []pb.Message) int { return rng.IntN(len(queue)) }
}

// order is a named delivery order for network.next.
type order struct {
	name string
	next func(queue []pb.Message) int
}

// deliveryOrders are the orders that tests of multi-message exchanges run
// under: the protocol must be safe and live under any of them.
func deliveryOrders() []order {
	out := []order{{"fifo", nil}, {"lifo", lifo}}
	for id := uint64(1); id <= 3; id++ {
		out = append(out, order{fmt.Sprintf("starve-%d", id), starve(id)})
	}
	for seed := uint64(1); seed <= 5; seed++ {
		out = append(out, order{fmt.Sprintf("shuffled-%d", seed), shuffled(seed)})
	}
	return out
}

// starve delivers messages to id only when nothing else is queued, as if
// every link into id were slow.
func starve(id uint64) func([]pb.Message) int {
	return func(queue []pb.Message) int {
		for i, m := range queue {
			if m.To != id {
				return i
			}
		}
		return 0
	}
}

func voters(ids ...uint64) pb.Config { return pb.Config{Voters: ids} }

// newNetwork builds a group whose members all start from conf, with seed 1.
func newNetwork(t testing.TB, conf pb.Config, tweak func(*Config)) *network {
	return newSeededNetwork(t, 1, conf, tweak)
}

// newSeededNetwork builds a group whose members all start from conf. Every
// clock is then moved one lease ahead, past the lease a replica assumes on
// start, so that the group can elect a leader at once.
func newSeededNetwork(t testing.TB, seed uint64, conf pb.Config, tweak func(*Config)) *network {
	n := &network{
		t:          t,
		seed:       seed,
		tweak:      tweak,
		nodes:      make(map[uint64]*testReplica),
		deaf:       make(map[uint64]bool),
		cut:        make(map[[2]uint64]bool),
		values:     make(map[uint64]string),
		leaseCheck: true,
	}
	for _, id := range members(conf) {
		n.addReplica(id, State{Meta: pb.Meta{Config: cloneConfig(conf)}})
	}
	n.advanceClocks(testLease)
	return n
}

func (n *network) config(tr *testReplica, id uint64) Config {
	c := Config{
		ID:               id,
		ElectionTicks:    10,
		HeartbeatTicks:   2,
		LeaseDuration:    testLease,
		MaxClockDrift:    testDrift,
		MaxInflight:      16,
		MaxEntriesPerMsg: 8,
		Clock:            tr.clock,
		Rand:             rand.New(rand.NewPCG(n.seed, id<<16|uint64(tr.restarts))),
	}
	if n.tweak != nil {
		n.tweak(&c)
	}
	return c
}

// addReplica starts replica id from st, with its clock at testEpoch.
func (n *network) addReplica(id uint64, st State) *testReplica {
	n.t.Helper()
	tr := &testReplica{clock: &fakeClock{now: testEpoch}}
	tr.disk = storage{hard: st.HardState, meta: cloneMeta(st.Meta), entries: make(map[uint64]pb.Entry), applied: st.Applied}
	for _, e := range st.Entries {
		tr.disk.entries[e.Slot] = cloneEntry(e)
	}
	n.nodes[id] = tr
	n.start(id)
	return tr
}

// start (re)builds replica id from its disk.
func (n *network) start(id uint64) {
	n.t.Helper()
	tr := n.nodes[id]
	r, err := New(n.config(tr, id), tr.disk.state())
	if err != nil {
		n.t.Fatalf("New(%d): %v", id, err)
	}
	tr.Replica = r
}

// removeReplica takes id out of the world; messages to it are lost.
func (n *network) removeReplica(id uint64) { delete(n.nodes, id) }

func (n *network) node(id uint64) *testReplica {
	n.t.Helper()
	tr, ok := n.nodes[id]
	if !ok {
		n.t.Fatalf("no replica %d", id)
	}
	return tr
}

func (n *network) ids() []uint64 {
	ids := make([]uint64, 0, len(n.nodes))
	for id := range n.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// crashAndRestart loses everything replica id did not persist and rebuilds
// it with New from its disk.
func (n *network) crashAndRestart(id uint64) {
	n.t.Helper()
	tr := n.node(id)
	tr.restarts++
	n.start(id)
}

// wipe loses everything replica id ever persisted and rebuilds it empty
// under the same id, as a node whose data directory was wiped creates it
// for the first message of a group it no longer hosts.
func (n *network) wipe(id uint64) {
	n.t.Helper()
	tr := n.node(id)
	tr.disk = storage{entries: make(map[uint64]pb.Entry)}
	tr.restarts++
	n.start(id)
}

func (n *network) advanceClocks(d int64) {
	for _, id := range n.ids() {
		n.nodes[id].clock.now += d
	}
	n.check()
}

func (n *network) advanceClock(id uint64, d int64) {
	n.t.Helper()
	n.node(id).clock.now += d
	n.check()
}

// dropTo drops every message addressed to id until heal.
func (n *network) dropTo(id uint64) { n.deaf[id] = true }

// isolate cuts id off from everyone in both directions until heal.
func (n *network) isolate(id uint64) {
	for _, o := range n.ids() {
		if o != id {
			n.cut[[2]uint64{id, o}] = true
			n.cut[[2]uint64{o, id}] = true
		}
	}
}

func (n *network) heal() {
	clear(n.deaf)
	clear(n.cut)
}

// processReady handles one Ready of replica id as the Ready contract says:
// persist, send, apply, Advance. It reports whether there was one. Tests
// that need a caller to stop between the steps (a crash before persisting,
// an Advance that comes late) call the steps themselves.
func (n *network) processReady(id uint64) bool {
	n.t.Helper()
	tr := n.node(id)
	if !tr.HasReady() {
		return false
	}
	rd := tr.Ready()
	n.persist(id, rd)
	n.transmit(id, append(rd.SendFirst, rd.Messages...))
	n.apply(id, rd)
	tr.Advance(rd)
	return true
}

// persist is step 1 of the Ready contract: it writes to replica id's disk
// what rd asks to persist and installs its snapshot.
func (n *network) persist(id uint64, rd Ready) {
	n.t.Helper()
	tr := n.node(id)
	d := &tr.disk
	if hs := rd.HardState; hs != nil {
		if hs.Promised.Less(d.hard.Promised) {
			n.t.Errorf("replica %d: durable promise goes back from %v to %v", id, d.hard.Promised, hs.Promised)
		}
		if hs.Chosen < d.hard.Chosen {
			n.t.Errorf("replica %d: durable chosen point goes back from %d to %d", id, d.hard.Chosen, hs.Chosen)
		}
		d.hard = *hs
	}
	if rd.Meta != nil {
		d.meta = cloneMeta(*rd.Meta)
		for s := range d.entries {
			if s <= rd.Meta.Index {
				delete(d.entries, s)
			}
		}
		tr.metas = append(tr.metas, cloneMeta(*rd.Meta))
	}
	for _, e := range rd.Entries {
		if e.Slot <= d.meta.Index {
			n.t.Errorf("replica %d: asked to persist slot %d at or below its truncation point %d", id, e.Slot, d.meta.Index)
		}
		d.entries[e.Slot] = cloneEntry(e)
	}
	if s := rd.Snapshot; s != nil {
		app := n.snapshots[binary.BigEndian.Uint64(s.Data)]
		if uint64(len(app)) != s.Meta.Index {
			n.t.Errorf("replica %d: snapshot at %d holds %d slots", id, s.Meta.Index, len(app))
		}
		for i, v := range app {
			n.learn(id, uint64(i+1), v)
		}
		d.app = slices.Clone(app)
		d.applied = s.Meta.Index
		tr.installed = append(tr.installed, cloneMeta(s.Meta))
	}
}

// transmit is step 2 (and 0, for SendFirst): it queues replica id's
// messages on the network, attaching the state machine's data to
// snapshots.
func (n *network) transmit(id uint64, msgs []pb.Message) {
	n.t.Helper()
	d := &n.node(id).disk
	for _, m := range msgs {
		if m.From != id {
			n.t.Errorf("replica %d sends a message from %d: %s", id, m.From, describeMsg(m))
		}
		if m.Type == pb.MsgSnapshot {
			if uint64(len(d.app)) != m.Snapshot.Meta.Index {
				n.t.Errorf("replica %d asked to snapshot at %d but applied %d", id, m.Snapshot.Meta.Index, len(d.app))
			}
			n.snapshots = append(n.snapshots, slices.Clone(d.app))
			key := binary.BigEndian.AppendUint64(nil, uint64(len(n.snapshots)-1))
			m.Snapshot = &pb.Snapshot{Meta: cloneMeta(m.Snapshot.Meta), Data: key}
		}
		n.sent = append(n.sent, describeMsg(m))
		n.queue = append(n.queue, m)
	}
}

// apply is step 3: it applies rd's committed entries to replica id's state
// machine and collects its read states.
func (n *network) apply(id uint64, rd Ready) {
	n.t.Helper()
	tr := n.node(id)
	d := &tr.disk
	for _, e := range rd.Committed {
		if e.Slot != d.applied+1 {
			n.t.Errorf("replica %d applies slot %d after %d", id, e.Slot, d.applied)
		}
		v := entryValue(e)
		n.learn(id, e.Slot, v)
		d.app = append(d.app, v)
		d.applied = e.Slot
	}
	tr.reads = append(tr.reads, rd.ReadStates...)
}

// learn records that replica id applied v at slot s and fails the test if
// another value was applied there before.
func (n *network) learn(id, s uint64, v string) {
	n.t.Helper()
	if old, ok := n.values[s]; ok && old != v {
		n.t.Errorf("slot %d: replica %d applies %q, but %q was applied before", s, id, v, old)
		return
	}
	n.values[s] = v
}

// processAll handles Readys until no replica has one.
func (n *network) processAll() {
	n.t.Helper()
	for range 1000 {
		busy := false
		for _, id := range n.ids() {
			if n.processReady(id) {
				busy = true
			}
		}
		if !busy {
			return
		}
	}
	n.t.Fatalf("replicas still have Readys after 1000 rounds")
}

func (n *network) blocked(m pb.Message) bool {
	_, ok := n.nodes[m.To]
	return !ok || n.deaf[m.To] || n.cut[[2]uint64{m.From, m.To}]
}

// deliver steps m into its recipient, unless the network drops it.
func (n *network) deliver(m pb.Message) {
	n.t.Helper()
	if n.blocked(m) {
		n.sent = append(n.sent, "dropped "+describeMsg(m))
		return
	}
	n.nodes[m.To].Step(m)
	n.check()
}

// deliverOne delivers the next queued message (the oldest, unless n.next
// says otherwise) and reports whether there was one.
func (n *network) deliverOne() bool {
	n.t.Helper()
	if len(n.queue) == 0 {
		return false
	}
	i := 0
	if n.next != nil {
		i = n.next(n.queue)
	}
	m := n.queue[i]
	n.queue = slices.Delete(n.queue, i, i+1)
	n.deliver(m)
	return true
}

// deliverAll delivers every queued message, one at a time, without
// processing Readys in between.
func (n *network) deliverAll() {
	n.t.Helper()
	for n.deliverOne() {
	}
}

// deliverMatching delivers, in order, the queued messages for which pred
// holds, leaving the others queued. It returns how many it delivered.
func (n *network) deliverMatching(pred func(pb.Message) bool) int {
	n.t.Helper()
	var keep, todo []pb.Message
	for _, m := range n.queue {
		if pred(m) {
			todo = append(todo, m)
		} else {
			keep = append(keep, m)
		}
	}
	n.queue = keep
	for _, m := range todo {
		n.deliver(m)
	}
	return len(todo)
}

// take removes and returns the queued messages sent by from.
func (n *network) take(from uint64) []pb.Message {
	var out, keep []pb.Message
	for _, m := range n.queue {
		if m.From == from {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	n.queue = keep
	return out
}

// handle steps m into replica m.To (whatever the network's faults),
// processes its Readys and returns the messages it sent, which are taken
// off the network. It is for tests that play the other replicas by hand.
func (n *network) handle(m pb.Message) []pb.Message {
	n.t.Helper()
	n.node(m.To).Step(m)
	n.check()
	for n.processReady(m.To) {
	}
	return n.take(m.To)
}

// stabilize delivers messages one at a time, each followed by the Readys
// it caused, until nothing is left to do. Nothing ticks, so it always ends
// unless replicas ping-pong.
func (n *network) stabilize() {
	n.t.Helper()
	for range 100000 {
		n.processAll()
		if !n.deliverOne() {
			return
		}
	}
	n.t.Fatalf("network did not stabilize; queue: %v", describeMsgs(n.queue))
}

// tickAll moves every clock one tick ahead, ticks every replica and
// stabilizes, k times.
func (n *network) tickAll(k int) {
	n.t.Helper()
	for range k {
		for _, id := range n.ids() {
			n.nodes[id].clock.now += testTick
		}
		for _, id := range n.ids() {
			n.nodes[id].Tick()
			n.check()
		}
		n.stabilize()
	}
}

// tick moves replica id's clock one tick ahead and ticks it, without
// processing anything.
func (n *network) tick(id uint64) {
	n.t.Helper()
	tr := n.node(id)
	tr.clock.now += testTick
	tr.Tick()
	n.check()
}

// waitFor ticks the world until cond holds, at most maxTicks times.
func (n *network) waitFor(what string, maxTicks int, cond func() bool) {
	n.t.Helper()
	for range maxTicks {
		if cond() {
			return
		}
		n.tickAll(1)
	}
	if !cond() {
		n.t.Fatalf("%s: not within %d ticks\n%s", what, maxTicks, n.status())
	}
}

// elect makes id campaign now, as an election timeout would, and
// stabilizes. It fails the test unless id wins: use it when no lease binds
// the acceptors, and transfer otherwise.
func (n *network) elect(id uint64) {
	n.t.Helper()
	tr := n.node(id)
	if tr.role == Leader {
		return
	}
	tr.campaign(pb.Ballot{})
	n.stabilize()
	if tr.role != Leader {
		n.t.Fatalf("replica %d did not win its election\n%s", id, n.status())
	}
}

// transfer hands leadership from the leader to id and ticks until id leads.
func (n *network) transfer(from, to uint64) {
	n.t.Helper()
	if err := n.node(from).TransferLeader(to); err != nil {
		n.t.Fatalf("TransferLeader(%d) on %d: %v", to, from, err)
	}
	n.stabilize()
	n.waitFor(fmt.Sprintf("transfer %d -> %d", from, to), 50, func() bool { return n.node(to).role == Leader })
}

// leaders returns the replicas whose role is Leader, stale ones included.
func (n *network) leaders() []uint64 {
	var out []uint64
	for _, id := range n.ids() {
		if n.nodes[id].role == Leader {
			out = append(out, id)
		}
	}
	return out
}

func (n *network) propose(id uint64, v string) {
	n.t.Helper()
	if err := n.node(id).Propose([]byte(v)); err != nil {
		n.t.Fatalf("Propose(%q) on %d: %v", v, id, err)
	}
}

// check runs the invariants that must hold at every moment.
func (n *network) check() {
	n.t.Helper()
	if !n.leaseCheck {
		return
	}
	var holders []string
	for _, id := range n.ids() {
		if tr := n.nodes[id]; tr.LeaseValid() {
			holders = append(holders, fmt.Sprintf("%d (ballot %v, clock %d)", id, tr.ballot, tr.clock.now))
		}
	}
	if len(holders) > 1 {
		n.t.Fatalf("replicas %v report valid leases at once\n%s", holders, n.status())
	}
}

func (n *network) status() string {
	var b strings.Builder
	for _, id := range n.ids() {
		fmt.Fprintf(&b, "  %+v\n", n.nodes[id].Status())
	}
	return b.String()
}

// entryValue is what the harness's state machine stores for an entry.
func entryValue(e pb.Entry) string {
	switch e.Type {
	case pb.EntryNoop:
		return "noop"
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := cc.Unmarshal(e.Data); err != nil {
			return "conf:?"
		}
		return fmt.Sprintf("conf:%v:%d", cc.Type, cc.Replica)
	case pb.EntryEmpty:
		return "empty"
	}
	return string(e.Data)
}

func describeEntry(e pb.Entry) string {
	return fmt.Sprintf("%d@%v:%s", e.Slot, e.Ballot, entryValue(e))
}

func describeEntries(es []pb.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = describeEntry(e)
	}
	return out
}

var rejectNames = map[pb.RejectReason]string{
	pb.RejectBallot: "ballot", pb.RejectLease: "lease", pb.RejectBehind: "behind", pb.RejectNotMember: "not-member",
}

// describeMsg formats m on one line, etcd raft style.
func describeMsg(m pb.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %v b=%v", m.From, m.To, m.Type, m.Ballot)
	if m.Index != 0 || m.LastIndex != 0 {
		fmt.Fprintf(&b, " idx=%d..%d", m.Index, m.LastIndex)
	}
	if m.Chosen != 0 {
		fmt.Fprintf(&b, " chosen=%d", m.Chosen)
	}
	if m.Seq != 0 {
		fmt.Fprintf(&b, " seq=%d", m.Seq)
	}
	if m.Reject != pb.RejectNone {
		fmt.Fprintf(&b, " reject=%s hint=%v", rejectNames[m.Reject], m.Hint)
	}
	if !m.Transfer.IsZero() {
		fmt.Fprintf(&b, " transfer=%v", m.Transfer)
	}
	if len(m.Entries) > 0 {
		fmt.Fprintf(&b, " ents=%v", describeEntries(m.Entries))
	}
	if m.Snapshot != nil {
		fmt.Fprintf(&b, " snap=%d conf=%v", m.Snapshot.Meta.Index, m.Snapshot.Meta.Config)
	}
	return b.String()
}

// errorRecorder stands in for a test's TB where a test expects the harness
// to complain: it records Error and Errorf instead of failing.
type errorRecorder struct {
	testing.TB
	errs []string
}

func (r *errorRecorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func describeMsgs(ms []pb.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = describeMsg(m)
	}
	return out
}
