// Package sim runs replicas of one Paxos group in a deterministic simulated
// world and checks the safety invariants after every step. The world has a
// seeded network that drops, duplicates, delays (beyond the lease, at
// times), reorders and partitions messages, one-way link failures
// included; crashes that lose every write the Ready contract did not make
// durable; process pauses, after which a replica resumes with stale state
// and a backlog of messages; clocks that drift and jump within the bound
// the leases allow for; and clients that propose, read, transfer
// leadership and change membership. Profiles add membership churn and
// replicas whose storage was wiped. A run is a pure function of its
// Options, so a failing seed replays exactly, and it counts what it
// exercised (Stats).
package sim

import (
	"cmp"
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
	ms             = 1_000_000
	tick           = 10 * ms // one logical tick of every replica, on its own clock
	electionTicks  = 10
	heartbeatTicks = 2
	leaseDuration  = 10 * tick
	// maxTicksPerStep caps the ticks a replica catches up on at once after
	// a pause or a clock jump, as a runtime's ticker drops the ticks it
	// could not deliver.
	maxTicksPerStep = 3
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
	// JumpScale multiplies the largest forward clock jump. Zero means 1:
	// jumps the lease margin absorbs (maxJump). More plants a fault.
	JumpScale float64
	// Knobs plant bugs in every replica.
	Knobs *group.TestingKnobs
	// SendBeforeSync plants a bug in the caller: it sends Messages before
	// syncing what the Ready asked to persist, so a crash can lose a
	// promise or an acceptance that others have seen.
	SendBeforeSync bool
	// Hostile multiplies the crash and partition rates, as one seed in four
	// does anyway.
	Hostile bool
	// Churn is the membership-churn profile: membership changes ten times
	// as frequent as by default, and more replica ids to add.
	Churn bool
	// Wipes erases the storage of replicas now and then; each comes back
	// empty under its id, as a node creates a replica for a message of a
	// group it does not host, until a membership change re-adds it.
	Wipes bool
	// Trace keeps the last events for a failure report.
	Trace bool
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

// node is one process hosting one replica of the group.
type node struct {
	id    uint64
	r     *group.Replica
	lv    *liveness.Liveness
	up    bool
	store *store
	clock *clock
	// incarnation counts starts, so that support epochs granted after a
	// restart exceed those granted before. It survives a wipe: were it
	// kept in the wiped store, epochs would repeat.
	incarnation uint64
	// pausedUntil is when a paused process resumes (simulated time), or
	// zero. A paused process neither steps nor ticks; its clock runs on.
	pausedUntil int64
	// ticked is the tick of its clock that the replica was ticked up to.
	ticked int64
	// quiesced is the replica's Quiesced() at the last check, to count
	// changes.
	quiesced bool
	// writtenPromise is the promise in the last hard state written in
	// this process life.
	writtenPromise pb.Ballot
	// transferBallot is the ballot the replica campaigns at because a
	// leader handed it leadership.
	transferBallot pb.Ballot
	// serving are reads released by the replica, waiting for it to apply
	// their index.
	serving []group.ReadState
	// wiped: its storage was erased, so it must be removed from the
	// configuration and added back; readded: it was proposed back.
	wiped, readded bool
}

func (n *node) paused() bool { return n.pausedUntil != 0 }

// clock runs at a fixed rate error from a random offset, and may jump
// forward.
type clock struct {
	w      *World
	offset int64
	rate   float64
	// jumped is the sum of its forward jumps; lastJump when (simulated
	// time) it last jumped.
	jumped   int64
	lastJump int64
}

func (c *clock) Now() int64 { return c.offset + c.jumped + int64(float64(c.w.now)*c.rate) }

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
	cut   map[link]bool
	trace []string
	// rateBound is the largest clock rate error of this run: Drift, or
	// less when clocks jump, so that rate error and jumps together stay
	// within the lease margin.
	rateBound float64

	proposed  map[string]bool
	nextValue int
	// chosen is the value applied at each slot by the first replica that
	// applied it; every other replica must apply the same. maxChosen is
	// the highest such slot, conf the configuration after it.
	chosen    map[uint64]string
	maxChosen uint64
	conf      pb.Config
	// knownChosen is the highest slot any replica has known to be chosen:
	// a write there may have been acknowledged.
	knownChosen uint64
	reads       map[uint64]readStart // pending, by id
	nextRead    uint64
	snapshots   map[uint64][]string
	nextSnap    uint64
	err         *Violation
	stats       Stats
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
	if opt.Drift == 0 {
		opt.Drift = 0.04
	}
	if opt.JumpScale == 0 {
		opt.JumpScale = 1
	}
	w := &World{
		opt:       opt,
		rng:       rand.New(rand.NewPCG(opt.Seed, 0x5eed)),
		cut:       make(map[link]bool),
		proposed:  make(map[string]bool),
		chosen:    make(map[uint64]string),
		reads:     make(map[uint64]readStart),
		snapshots: make(map[uint64][]string),
	}
	w.f = drawFaults(w.rng, opt)
	w.rateBound = opt.Drift
	if w.f.clockJump > 0 {
		w.rateBound = opt.Drift / 2
	}
	voters := make([]uint64, opt.Replicas)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	w.conf = group.BootstrapState(voters...).Meta.Config
	for _, id := range voters {
		w.addNode(id, group.BootstrapState(voters...).Meta)
	}
	return w
}

func (w *World) addNode(id uint64, meta pb.Meta) *node {
	n := &node{id: id, store: newStore(meta)}
	n.clock = &clock{w: w, offset: w.rng.Int64N(1 << 40), rate: 1 + (w.rng.Float64()*2-1)*w.rateBound}
	w.nodes = append(w.nodes, n)
	w.start(n)
	return n
}

func (w *World) config(n *node) group.Config {
	var lv group.Liveness
	if n.lv != nil {
		lv = n.lv
	}
	return group.Config{
		Liveness:         lv,
		ID:               n.id,
		ElectionTicks:    electionTicks,
		HeartbeatTicks:   heartbeatTicks,
		LeaseDuration:    leaseDuration,
		MaxClockDrift:    w.margin(),
		MaxInflight:      16,
		MaxEntriesPerMsg: 8,
		LogRetention:     20,
		Clock:            n.clock,
		Rand:             rand.New(rand.NewPCG(w.rng.Uint64(), 0)),
		Knobs:            w.opt.Knobs,
	}
}

// margin is the lease margin of every replica and liveness: clock rates
// within ±Drift disagree about one lease by at most 2*Drift/(1-Drift) of
// it, and a little more gives room for rounding, unless Options overrides
// it (to plant a bug).
func (w *World) margin() int64 {
	if w.opt.MaxClockDrift != nil {
		return *w.opt.MaxClockDrift
	}
	return int64(float64(leaseDuration) * 2.2 * w.opt.Drift)
}

// maxJump is the largest forward jump of one clock, at most once per
// lease, that the lease margin absorbs on top of this run's rate error
// (times JumpScale). An acceptor promises for a lease L on its clock; a
// leader counts L-margin on its own from an earlier instant. With rates
// within ±b their ratio is at most 1+e, e = 2b/(1-b), so the acceptor's
// promise outlasts the leader's lease as long as its clock jumps by at
// most L-(L-margin)(1+e) meanwhile. The same holds for node support.
func (w *World) maxJump() int64 {
	l, b := float64(leaseDuration), w.rateBound
	e := 2 * b / (1 - b)
	j := 0.9 * (l - (l-float64(w.margin()))*(1+e)) // 0.9: room for rounding
	return max(0, int64(j*w.opt.JumpScale))
}

// start rebuilds n's replica from its durable storage, with a new liveness
// whose epochs exceed those of its earlier incarnations.
func (w *World) start(n *node) {
	if w.f.liveness {
		n.incarnation++
		n.lv = liveness.New(liveness.Config{
			NodeID: n.id, Incarnation: n.incarnation, Clock: n.clock,
			SupportDuration: leaseDuration, Interval: 2 * tick, MaxClockDrift: w.margin(),
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
	d := &n.store.durable
	// As the node recovers: the log starts after the applied point, with
	// the configuration stored at it.
	st := group.State{HardState: d.hard, Meta: pb.Meta{Index: d.applied, Config: d.conf}, Applied: d.applied}
	for _, e := range d.entries {
		if e.Slot > d.applied {
			st.Entries = append(st.Entries, e)
		}
	}
	n.writtenPromise = pb.Ballot{}
	slices.SortFunc(st.Entries, func(a, b pb.Entry) int { return cmp.Compare(a.Slot, b.Slot) })
	r, err := group.New(w.config(n), st)
	if err != nil {
		panic(err) // the harness built a bad config: a bug in this file
	}
	n.r, n.up, n.pausedUntil = r, true, 0
	n.ticked = n.clock.Now() / tick
	n.quiesced = false
}

// crash kills n's process: its volatile state is gone, and so are its
// unsynced writes but for a random prefix of them, and the messages on
// their way to it (in a real network they ride a connection that dies
// with the process).
func (w *World) crash(n *node) {
	lost := n.store.crash(w.rng.IntN(len(n.store.unsynced) + 1))
	w.tracef("crash %d, losing %d unsynced writes", n.id, lost)
	if lost > 0 {
		w.count(LostWrites)
	}
	n.up, n.r, n.pausedUntil, n.serving = false, nil, 0, nil
	w.net = slices.DeleteFunc(w.net, func(e envelope) bool { return e.m.To == n.id })
	w.count(Crashes)
}

// pause freezes n's process for d of simulated time: it neither steps nor
// ticks, its clock runs on, and messages for it queue up in the network.
func (w *World) pause(n *node, d int64) {
	n.pausedUntil = w.now + d
	w.count(Pauses)
	w.tracef("pause %d for %dms", n.id, d/ms)
}

// wipe crashes n and erases its storage: it comes back empty under the
// same id, as the node creates a replica for a message of a group it does
// not host (group.New(cfg, group.State{})).
func (w *World) wipe(n *node) {
	if n.up {
		w.crash(n)
	}
	n.store = newStore(pb.Meta{})
	n.wiped, n.readded = true, false
	w.count(Wipes)
	w.tracef("wipe %d", n.id)
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
	w.elapse()
	w.processReadys()
	w.check()
}

// elapse moves time forward a little, delivers the messages due and ticks
// the replicas, leaving their Readys unhandled.
func (w *World) elapse() {
	w.now += 500_000 + w.rng.Int64N(2*ms)
	for _, n := range w.nodes {
		if n.paused() && w.now >= n.pausedUntil {
			n.pausedUntil = 0
			w.tracef("resume %d", n.id)
		}
	}
	w.deliver()
	for _, n := range w.live() {
		w.tickLiveness(n)
		// Each replica ticks on its own clock, so a fast clock ticks more;
		// a quiesced one isn't ticked at all, as in the node runtime.
		now := n.clock.Now() / tick
		t := min(now-n.ticked, maxTicksPerStep)
		n.ticked = now
		for ; t > 0 && !n.r.Quiesced(); t-- {
			n.r.Tick()
		}
	}
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

// live returns the nodes whose process runs: up and not paused.
func (w *World) live() []*node {
	var out []*node
	for _, n := range w.nodes {
		if n.up && !n.paused() {
			out = append(out, n)
		}
	}
	return out
}

// up returns the nodes whose process exists, paused or not: a paused
// leader still holds what it believes, and acts on it when it resumes.
func (w *World) up() []*node {
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

// heal ends every fault and brings every replica back.
func (w *World) heal() {
	w.tracef("heal all")
	clear(w.cut)
	// Whether nodes run node liveness is how the world is built, not a
	// fault: a node brought back here must get a new incarnation like any
	// restarted one, or its epochs repeat and followers stay bound to a
	// leader its new life knows nothing of.
	w.f = faults{liveness: w.f.liveness}
	for _, n := range w.nodes {
		if !n.up {
			w.start(n)
		}
		n.pausedUntil = 0
	}
}
