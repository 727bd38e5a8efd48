// Package sim runs replicas of one Paxos group in a deterministic simulated
// world: a seeded network that drops, duplicates, delays, reorders and
// partitions messages; crashes that lose everything not persisted; clocks
// that drift; and clients that propose, transfer leadership and change
// membership. After every step it checks the safety invariants. A run is a
// pure function of its Options, so a failing seed replays exactly.
package sim

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/liveness"
	pb "github.com/shardd/shardd/paxospb"
)

// Simulated time is in nanoseconds.
const (
	tick     = 10_000_000 // one logical tick of every replica, on its own clock
	ms       = 1_000_000
	maxNodes = 9 // replica ids ever started in one run, so removals can't go on forever
)

// Options describe one run. Seed decides everything else that is left zero.
type Options struct {
	Seed     uint64
	Replicas int // initial voters: 3 or 5
	// Steps is the number of steps with faults; then the world heals and
	// the group must make progress within LivenessTicks.
	Steps         int
	LivenessTicks int
	// Drift is the largest clock rate error, e.g. 0.04 for 4%.
	Drift float64
	// MaxClockDrift overrides the replicas' lease margin when non-nil.
	MaxClockDrift *int64
	// Knobs plant bugs in every replica.
	Knobs *group.TestingKnobs
	// Hostile multiplies the crash and partition rates, as one seed in four
	// does anyway.
	Hostile bool
	// Trace keeps the last events for a failure report.
	Trace bool
}

// faults are the rates of one run, drawn from its seed so that seeds cover
// calm and hostile worlds alike.
type faults struct {
	drop, dup, longDelay   float64
	partition, heal        float64
	isolateLeader          float64
	crash, restart         float64
	crashMidReady          float64
	propose, transfer, cfg float64
	read                   float64
	// liveness turns on node-level support, and with it quiescence.
	liveness bool
}

// Violation is a broken invariant, with what is needed to replay it.
type Violation struct {
	Seed  uint64
	Step  int
	What  string
	Trace []string
}

func (v *Violation) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, step %d: %s", v.Seed, v.Step, v.What)
	if len(v.Trace) > 0 {
		b.WriteString("\nlast events:\n  ")
		b.WriteString(strings.Join(v.Trace, "\n  "))
	}
	return b.String()
}

// disk is what survives a crash: everything the replica's Readys asked to
// persist, and the state machine with its applied point.
type disk struct {
	hard    pb.HardState
	meta    pb.Meta
	entries map[uint64]pb.Entry
	applied uint64
	// app is the applied value of every slot from 1 to applied.
	app []string
}

type node struct {
	id    uint64
	r     *group.Replica
	lv    *liveness.Liveness
	up    bool
	disk  disk
	clock *clock
	// incarnation counts restarts, so that support epochs granted after a
	// restart exceed those granted before.
	incarnation uint64
}

// clock runs at a fixed rate error from a random offset.
type clock struct {
	w      *World
	offset int64
	rate   float64
}

func (c *clock) Now() int64 { return c.offset + int64(float64(c.w.now)*c.rate) }

type envelope struct {
	at  int64
	seq uint64 // breaks ties in delivery order deterministically
	m   pb.Message
}

// World is one simulated run.
type World struct {
	opt   Options
	f     faults
	rng   *rand.Rand
	now   int64
	step  int
	nodes []*node // by id - 1
	net   []envelope
	seq   uint64
	cut   map[[2]uint64]bool
	trace []string

	proposed  map[string]bool
	nextValue int
	// chosen is the value applied at each slot by the first replica that
	// applied it; every other replica must apply the same.
	chosen    map[uint64]string
	maxChosen uint64
	// reads maps a pending read to the highest slot applied anywhere when
	// it was asked: a linearizable read must reflect at least that.
	reads     map[uint64]uint64
	snapshots map[uint64][]string
	nextSnap  uint64
	err       *Violation
	stats     Stats
}

// Stats summarize a run, so tests can show the simulation did real work.
type Stats struct {
	Chosen, Proposed, Delivered, Dropped, Crashes, Elections, Transfers, ConfChanges, Snapshots, Reads int
	// Quiesced counts steps that ended with a quiesced leader holding a
	// valid lease.
	Quiesced int
}

// Run executes one run and returns its first violation, if any.
func Run(opt Options) (Stats, error) {
	w := newWorld(opt)
	w.run()
	if w.err != nil {
		return w.stats, w.err
	}
	return w.stats, nil
}

func newWorld(opt Options) *World {
	if opt.Replicas == 0 {
		opt.Replicas = 3
	}
	if opt.Steps == 0 {
		opt.Steps = 2000
	}
	if opt.LivenessTicks == 0 {
		opt.LivenessTicks = 300
	}
	w := &World{
		opt:       opt,
		rng:       rand.New(rand.NewPCG(opt.Seed, 0x5eed)),
		cut:       make(map[[2]uint64]bool),
		proposed:  make(map[string]bool),
		chosen:    make(map[uint64]string),
		reads:     make(map[uint64]uint64),
		snapshots: make(map[uint64][]string),
	}
	if w.opt.Drift == 0 {
		w.opt.Drift = 0.04
	}
	r := w.rng
	w.f = faults{
		drop:          r.Float64() * 0.15,
		dup:           r.Float64() * 0.05,
		longDelay:     r.Float64() * 0.05,
		partition:     r.Float64() * 0.01,
		isolateLeader: r.Float64() * 0.005,
		heal:          0.01 + r.Float64()*0.05,
		crash:         r.Float64() * 0.005,
		restart:       0.01 + r.Float64()*0.05,
		crashMidReady: r.Float64() * 0.01,
		propose:       r.Float64() * 0.6,
		transfer:      r.Float64() * 0.01,
		cfg:           r.Float64() * 0.01,
		read:          r.Float64() * 0.1,
		liveness:      r.IntN(4) != 0,
	}
	if r.IntN(3) == 0 {
		w.f.propose *= 0.02 // mostly idle, so groups quiesce
	}
	if r.IntN(4) == 0 || opt.Hostile {
		w.f.partition *= 5
		w.f.isolateLeader *= 5
		w.f.crash *= 5
		w.f.crashMidReady *= 5
		w.f.restart *= 5
	}
	voters := make([]uint64, opt.Replicas)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	for _, id := range voters {
		w.addNode(id, group.BootstrapState(voters...).Meta)
	}
	return w
}

func (w *World) addNode(id uint64, meta pb.Meta) *node {
	n := &node{id: id, disk: disk{meta: meta, entries: make(map[uint64]pb.Entry)}}
	n.clock = &clock{w: w, offset: w.rng.Int64N(1 << 40), rate: 1 + (w.rng.Float64()*2-1)*w.opt.Drift}
	w.nodes = append(w.nodes, n)
	w.start(n)
	return n
}

func (w *World) config(n *node) group.Config {
	var lv group.Liveness
	if n.lv != nil {
		lv = n.lv
	}
	c := group.Config{
		Liveness:         lv,
		ID:               n.id,
		ElectionTicks:    10,
		HeartbeatTicks:   2,
		LeaseDuration:    10 * tick,
		MaxClockDrift:    w.margin(),
		MaxInflight:      16,
		MaxEntriesPerMsg: 8,
		LogRetention:     20,
		Clock:            n.clock,
		Rand:             rand.New(rand.NewPCG(w.rng.Uint64(), 0)),
		Knobs:            w.opt.Knobs,
	}
	return c
}

// margin is the lease margin of every replica and liveness: clock rates
// within ±Drift disagree about one lease by at most 2*Drift/(1-Drift) of
// it, and a little more gives room for rounding, unless Options overrides
// it (to plant a bug).
func (w *World) margin() int64 {
	if w.opt.MaxClockDrift != nil {
		return *w.opt.MaxClockDrift
	}
	return int64(float64(10*tick) * 2.2 * w.opt.Drift)
}

// start rebuilds n's replica from its disk, with a new liveness whose
// epochs exceed those of its earlier incarnations.
func (w *World) start(n *node) {
	if w.f.liveness {
		n.incarnation++
		n.lv = liveness.New(liveness.Config{
			NodeID: n.id, Incarnation: n.incarnation, Clock: n.clock,
			SupportDuration: 10 * tick, Interval: 2 * tick, MaxClockDrift: w.margin(),
		})
		for _, o := range w.nodes {
			if o != n {
				n.lv.AddPeer(o.id)
				if o.lv != nil {
					o.lv.AddPeer(n.id)
				}
			}
		}
	}
	st := group.State{HardState: n.disk.hard, Meta: n.disk.meta, Applied: n.disk.applied}
	for _, e := range n.disk.entries {
		st.Entries = append(st.Entries, e)
	}
	slices.SortFunc(st.Entries, func(a, b pb.Entry) int { return cmp.Compare(a.Slot, b.Slot) })
	r, err := group.New(w.config(n), st)
	if err != nil {
		panic(err) // the harness built a bad config: a bug in this file
	}
	n.r, n.up = r, true
}

func (w *World) tracef(format string, args ...any) {
	if !w.opt.Trace {
		return
	}
	if len(w.trace) == 400 {
		w.trace = w.trace[1:]
	}
	w.trace = append(w.trace, fmt.Sprintf("%d t=%dms ", w.step, w.now/ms)+fmt.Sprintf(format, args...))
}

func (w *World) fail(format string, args ...any) {
	if w.err == nil {
		w.err = &Violation{Seed: w.opt.Seed, Step: w.step, What: fmt.Sprintf(format, args...), Trace: w.trace}
	}
}

func (w *World) run() {
	for w.step = 0; w.step < w.opt.Steps && w.err == nil; w.step++ {
		w.faultStep()
		w.advance()
	}
	if w.err != nil {
		return
	}
	w.heal()
	w.checkLiveness()
}

// advance moves time forward a little and lets everything due happen.
func (w *World) advance() {
	prev := w.now
	w.now += 500_000 + w.rng.Int64N(2*ms)
	w.deliver()
	for _, n := range w.live() {
		w.tickLiveness(n)
		// Each replica ticks on its own clock, so a fast clock ticks more;
		// a quiesced one isn't ticked at all, as in the node runtime.
		before := (n.clock.offset + int64(float64(prev)*n.clock.rate)) / tick
		for t := n.clock.Now()/tick - before; t > 0 && !n.r.Quiesced(); t-- {
			n.r.Tick()
		}
	}
	w.processReadys()
	w.check()
}

// tickLiveness sends n's support requests and wakes its group when support
// it depends on lapsed, as the node runtime does.
func (w *World) tickLiveness(n *node) {
	if n.lv == nil {
		return
	}
	msgs, lapses := n.lv.Tick()
	for _, m := range msgs {
		w.send(m)
	}
	st := n.r.Status()
	for _, id := range lapses.NotSupporting {
		if st.Leader == id {
			n.r.Unquiesce()
		}
	}
	if len(lapses.NotSupported) > 0 && st.Role == group.Leader {
		n.r.Unquiesce()
	}
}

func (w *World) live() []*node {
	var out []*node
	for _, n := range w.nodes {
		if n.up {
			out = append(out, n)
		}
	}
	return out
}

func (w *World) node(id uint64) *node {
	if id == 0 || id > uint64(len(w.nodes)) {
		return nil
	}
	return w.nodes[id-1]
}

func (w *World) chance(p float64) bool { return w.rng.Float64() < p }

func (w *World) pick(ns []*node) *node {
	if len(ns) == 0 {
		return nil
	}
	return ns[w.rng.IntN(len(ns))]
}

func (w *World) leaders() []*node {
	var out []*node
	for _, n := range w.live() {
		if n.r.Status().Role == group.Leader {
			out = append(out, n)
		}
	}
	return out
}

// faultStep injects this step's faults and client requests.
func (w *World) faultStep() {
	f := w.f
	if w.chance(f.partition) {
		w.partition()
	}
	if w.chance(f.isolateLeader) {
		if l := w.pick(w.leaders()); l != nil {
			w.isolate(l)
		}
	}
	if len(w.cut) > 0 && w.chance(f.heal) {
		w.tracef("heal")
		clear(w.cut)
	}
	if w.chance(f.crash) {
		if n := w.pick(w.live()); n != nil {
			w.crash(n)
		}
	}
	for _, n := range w.nodes {
		if !n.up && w.chance(f.restart) {
			w.tracef("restart %d", n.id)
			w.start(n)
		}
	}
	if w.chance(f.propose) {
		w.propose(w.pick(w.live()))
	}
	if w.chance(f.read) {
		if n := w.pick(w.live()); n != nil {
			id := uint64(len(w.reads) + 1)
			if n.r.ReadIndex(binary.BigEndian.AppendUint64(nil, id)) == nil {
				w.reads[id] = w.maxChosen
			}
		}
	}
	if w.chance(f.transfer) {
		if l := w.pick(w.leaders()); l != nil {
			to := w.pick(w.live())
			if to != nil && l.r.TransferLeader(to.id) == nil {
				w.tracef("transfer %d -> %d", l.id, to.id)
				w.stats.Transfers++
			}
		}
	}
	if w.chance(f.cfg) {
		w.changeConfig()
	}
}

// partition replaces the current partition by a random one: usually a
// clean split, sometimes a bridge, where one replica still talks to both
// sides (Jepsen's "bridge" nemesis): connectivity is then not transitive.
func (w *World) partition() {
	ns := w.live()
	if len(ns) < 2 {
		return
	}
	clear(w.cut)
	side := make(map[uint64]int)
	for _, n := range ns {
		side[n.id] = w.rng.IntN(2)
	}
	if w.chance(0.3) {
		side[w.pick(ns).id] = 2 // the bridge
	}
	for _, a := range w.nodes {
		for _, b := range w.nodes {
			if sa, sb := side[a.id], side[b.id]; sa != sb && sa != 2 && sb != 2 {
				w.cut[[2]uint64{a.id, b.id}] = true
			}
		}
	}
	w.tracef("partition %v", side)
}

// isolate cuts n off from everyone: the partition that tests leases
// hardest, since the old leader keeps believing in its lease while the
// others elect a new one.
func (w *World) isolate(n *node) {
	clear(w.cut)
	for _, o := range w.nodes {
		if o != n {
			w.cut[[2]uint64{n.id, o.id}] = true
			w.cut[[2]uint64{o.id, n.id}] = true
		}
	}
	w.tracef("isolate %d", n.id)
}

// crash loses n's volatile state, and the messages on their way to it: in
// a real network they ride a connection that dies with the process.
func (w *World) crash(n *node) {
	w.tracef("crash %d", n.id)
	n.up, n.r = false, nil
	w.net = slices.DeleteFunc(w.net, func(e envelope) bool { return e.m.To == n.id })
	w.stats.Crashes++
}

func (w *World) propose(n *node) {
	if n == nil {
		return
	}
	v := fmt.Sprintf("v%d", w.nextValue)
	if n.r.Propose([]byte(v)) == nil {
		w.nextValue++
		w.proposed[v] = true
		w.stats.Proposed++
	}
}

// changeConfig asks a leader for the next sensible membership change: add
// a learner, promote it, or remove a voter to get back to the initial size.
// Replica ids are never reused: a wiped replica under an old id could
// promise what its predecessor had refused.
func (w *World) changeConfig() {
	l := w.pick(w.leaders())
	if l == nil {
		return
	}
	c := l.r.Status().Config
	var cc pb.ConfChange
	switch {
	case len(c.Learners) > 0:
		cc = pb.ConfChange{Type: pb.ConfPromote, Replica: c.Learners[0]}
	case len(c.Voters) > w.opt.Replicas:
		cc = pb.ConfChange{Type: pb.ConfRemove, Replica: c.Voters[w.rng.IntN(len(c.Voters))]}
	case len(w.nodes) < maxNodes:
		cc = pb.ConfChange{Type: pb.ConfAddLearner, Replica: uint64(len(w.nodes) + 1)}
	default:
		return
	}
	if err := l.r.ProposeConfChange(cc); err != nil {
		return
	}
	w.tracef("%d proposes %v %d", l.id, cc.Type, cc.Replica)
	w.stats.ConfChanges++
	if cc.Type == pb.ConfAddLearner {
		// The new replica starts empty and learns everything from the group.
		w.addNode(cc.Replica, pb.Meta{})
	}
}

// send puts a message on the simulated network, where it may be lost,
// duplicated, delayed or cut by a partition.
func (w *World) send(m pb.Message) {
	if w.cut[[2]uint64{m.From, m.To}] || w.chance(w.f.drop) {
		w.stats.Dropped++
		return
	}
	copies := 1
	if w.chance(w.f.dup) {
		copies = 2
	}
	for range copies {
		delay := 100_000 + w.rng.Int64N(3*ms)
		if w.chance(w.f.longDelay) {
			delay += w.rng.Int64N(60 * ms)
		}
		w.seq++
		w.net = append(w.net, envelope{at: w.now + delay, seq: w.seq, m: m})
	}
}

func (w *World) deliver() {
	slices.SortFunc(w.net, func(a, b envelope) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq))
	})
	i := 0
	for ; i < len(w.net) && w.net[i].at <= w.now; i++ {
		m := w.net[i].m
		n := w.node(m.To)
		if n == nil || !n.up || w.cut[[2]uint64{m.From, m.To}] {
			continue
		}
		w.stats.Delivered++
		if m.Type == pb.MsgSupportRequest || m.Type == pb.MsgSupportResponse {
			if n.lv != nil {
				if resp, ok := n.lv.Handle(m); ok {
					w.send(resp)
				}
			}
			continue
		}
		if m.Type == pb.MsgQuiesce || m.Type == pb.MsgRelease {
			w.tracef("%d -> %d: %v %v chosen %d", m.From, m.To, m.Type, m.Ballot, m.Chosen)
		}
		n.r.Step(m)
	}
	w.net = append(w.net[:0], w.net[i:]...)
}

func (w *World) processReadys() {
	for round := 0; round < 10; round++ {
		busy := false
		for _, n := range w.live() {
			if n.r.HasReady() {
				busy = true
				w.handleReady(n)
			}
		}
		if !busy {
			return
		}
	}
}

// handleReady does what the Ready contract says, in order. A crash may
// strike between persisting and sending, or between sending and applying.
func (w *World) handleReady(n *node) {
	rd := n.r.Ready()
	if rd.SoftState != nil && rd.SoftState.Role == group.Leader {
		w.stats.Elections++
		st := n.r.Status()
		w.tracef("%d leads with %v, chosen %d, config %v", n.id, st.Ballot, st.Chosen, st.Config)
	}
	for _, m := range rd.SendFirst {
		w.send(m)
	}
	if w.chance(w.f.crashMidReady) {
		w.crash(n) // the leader's accepts are out, its own copy is not
		return
	}
	d := &n.disk
	if rd.HardState != nil {
		d.hard = *rd.HardState
	}
	if rd.Meta != nil {
		d.meta = *rd.Meta
		for s := range d.entries {
			if s <= rd.Meta.Index {
				delete(d.entries, s)
			}
		}
	}
	for _, e := range rd.Entries {
		d.entries[e.Slot] = e
	}
	if rd.Snapshot != nil {
		w.installSnapshot(n, rd.Snapshot)
	}
	if w.chance(w.f.crashMidReady) {
		w.crash(n)
		return
	}
	for _, m := range rd.Messages {
		if m.Type == pb.MsgSnapshot {
			m.Snapshot = w.takeSnapshot(n, m.Snapshot.Meta)
		}
		w.send(m)
	}
	if w.chance(w.f.crashMidReady) {
		w.crash(n)
		return
	}
	for _, e := range rd.Committed {
		w.apply(n, e)
	}
	for _, rs := range rd.ReadStates {
		// The caller would serve the read once it applied rs.Index.
		need := w.reads[binary.BigEndian.Uint64(rs.Ctx)]
		if rs.Index < need {
			w.fail("replica %d serves a read at %d, but slot %d was applied before the read began", n.id, rs.Index, need)
		}
		w.stats.Reads++
	}
	n.r.Advance(rd)
}

func value(e pb.Entry) string {
	switch e.Type {
	case pb.EntryNoop:
		return "noop"
	case pb.EntryConfChange:
		var cc pb.ConfChange
		_ = cc.Unmarshal(e.Data)
		return fmt.Sprintf("conf:%v:%d", cc.Type, cc.Replica)
	}
	return string(e.Data)
}

// apply checks and applies one chosen entry.
func (w *World) apply(n *node, e pb.Entry) {
	d := &n.disk
	if e.Slot != d.applied+1 {
		w.fail("replica %d applied slot %d after %d", n.id, e.Slot, d.applied)
		return
	}
	v := value(e)
	if e.Type == pb.EntryNormal && !w.proposed[v] {
		w.fail("replica %d applied %q at slot %d, which nobody proposed", n.id, v, e.Slot)
	}
	w.learn(n.id, e.Slot, v)
	d.app = append(d.app, v)
	d.applied = e.Slot
}

// learn records v as the value of slot s, or reports that another value
// was applied there before: two values chosen for one slot.
func (w *World) learn(id, s uint64, v string) {
	if old, ok := w.chosen[s]; ok {
		if old != v {
			w.fail("slot %d: replica %d applied %q but %q was applied before", s, id, v, old)
		}
		return
	}
	w.chosen[s] = v
	w.maxChosen = max(w.maxChosen, s)
	w.stats.Chosen++
	w.tracef("slot %d chosen: %s (learned by %d)", s, v, id)
}

// takeSnapshot attaches n's applied state up to meta.Index. The group asks
// for its applied point, so the state machine is exactly there.
func (w *World) takeSnapshot(n *node, meta pb.Meta) *pb.Snapshot {
	if uint64(len(n.disk.app)) != meta.Index {
		w.fail("replica %d asked to snapshot at %d but applied %d", n.id, meta.Index, len(n.disk.app))
	}
	w.nextSnap++
	w.snapshots[w.nextSnap] = slices.Clone(n.disk.app)
	w.stats.Snapshots++
	return &pb.Snapshot{Meta: meta, Data: binary.BigEndian.AppendUint64(nil, w.nextSnap)}
}

func (w *World) installSnapshot(n *node, s *pb.Snapshot) {
	app := w.snapshots[binary.BigEndian.Uint64(s.Data)]
	if uint64(len(app)) != s.Meta.Index {
		w.fail("snapshot at %d holds %d slots", s.Meta.Index, len(app))
		return
	}
	for i, v := range app {
		w.learn(n.id, uint64(i+1), v)
	}
	n.disk.app = slices.Clone(app)
	n.disk.applied = s.Meta.Index
	w.tracef("%d installs snapshot at %d", n.id, s.Meta.Index)
}

// check verifies the invariants that must hold after every step.
func (w *World) check() {
	var holders []uint64
	for _, n := range w.live() {
		if n.r.LeaseValid() {
			holders = append(holders, n.id)
			if n.r.Quiesced() {
				w.stats.Quiesced++
			}
		}
		st := n.r.Status()
		if st.Applied > st.Chosen {
			w.fail("replica %d applied %d beyond chosen %d", n.id, st.Applied, st.Chosen)
		}
	}
	if len(holders) > 1 {
		var b strings.Builder
		for _, id := range holders {
			fmt.Fprintf(&b, " %+v;", w.node(id).r.Status())
		}
		w.fail("replicas %v hold valid leases at once:%s", holders, b.String())
	}
}

// heal ends every fault and brings every replica back.
func (w *World) heal() {
	w.tracef("heal all")
	clear(w.cut)
	w.f = faults{}
	for _, n := range w.nodes {
		if !n.up {
			w.start(n)
		}
	}
}

// checkLiveness requires that, in a healed world, a leader is elected and
// a new value is chosen and applied by every voter within LivenessTicks.
// Like a real client, it proposes again when a leader lost its proposal.
func (w *World) checkLiveness() {
	var values []string
	var lastTry int64
	deadline := w.now + int64(w.opt.LivenessTicks)*tick
	for ; w.now < deadline && w.err == nil; w.step++ {
		if w.now-lastTry > 20*tick {
			for _, l := range w.leaders() {
				v := fmt.Sprintf("live-%d-%d", w.opt.Seed, len(values))
				if l.r.Propose([]byte(v)) == nil {
					w.proposed[v] = true
					values = append(values, v)
					lastTry = w.now
					w.tracef("%d takes liveness proposal %s", l.id, v)
				}
			}
		}
		w.advance()
		for _, v := range values {
			if w.appliedEverywhere(v) {
				return
			}
		}
	}
	if w.err == nil {
		var b strings.Builder
		for _, n := range w.live() {
			fmt.Fprintf(&b, " %+v;", n.r.Status())
		}
		w.fail("no progress within %d ticks after healing (proposed %v):%s", w.opt.LivenessTicks, values, b.String())
	}
}

// appliedEverywhere reports whether every voter of the live configuration
// has applied v.
func (w *World) appliedEverywhere(v string) bool {
	ls := w.leaders()
	if len(ls) == 0 {
		return false
	}
	for _, id := range ls[0].r.Status().Config.Voters {
		n := w.node(id)
		if n == nil || !slices.Contains(n.disk.app, v) {
			return false
		}
	}
	return true
}
