package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placement/client"
)

// faultKind is a kind of fault the nemesis injects.
type faultKind struct {
	name string
	// weight is how often the nemesis draws it, against the other kinds'.
	weight int
	// inject injects the fault at node id (a range's leader three times
	// in four; kinds aimed at the placement service or at a range choose
	// their own target), heals it, and says what it did. The move, which
	// runs in the background, has none (see nemesis.startMove).
	inject func(n *nemesis, t *testing.T, id uint64) string
}

// The kinds of faults and operations of the fault suite. Kills come most
// often: a leader killed with writes accepted but not yet acknowledged is
// what leaves their outcome unknown while the next leader applies them,
// so that other clients see them.
var (
	faultKill           = faultKind{"kill", 15, (*nemesis).kill}
	faultKillPlacement  = faultKind{"kill-placement", 5, (*nemesis).killPlacement}
	faultPause          = faultKind{"pause", 10, (*nemesis).pauseNode}
	faultPausePlacement = faultKind{"pause-placement", 5, (*nemesis).pausePlacement}
	faultClock          = faultKind{"clock", 8, (*nemesis).jumpClock}
	faultIsolate        = faultKind{"isolate", 8, func(n *nemesis, t *testing.T, id uint64) string { return n.isolate(t, id, false) }}
	faultIsolateAll     = faultKind{"isolate-all", 5, func(n *nemesis, t *testing.T, id uint64) string { return n.isolate(t, id, true) }}
	faultOneWay         = faultKind{"one-way", 7, (*nemesis).oneWay}
	faultClients        = faultKind{"clients", 6, (*nemesis).cutClients}
	faultSplit          = faultKind{"split", 7, func(n *nemesis, t *testing.T, _ uint64) string { return n.split(t) }}
	faultDrain          = faultKind{"drain", 6, (*nemesis).drain}
	faultMove           = faultKind{"move", 10, nil}
	faultTransfer       = faultKind{"transfer", 8, func(n *nemesis, t *testing.T, _ uint64) string { return n.transfer(t) }}
)

// allFaults is the fault suite's mix.
var allFaults = []faultKind{faultKill, faultKillPlacement, faultPause, faultPausePlacement, faultClock,
	faultIsolate, faultIsolateAll, faultOneWay, faultClients, faultSplit, faultDrain, faultMove, faultTransfer}

// nodeTiming is the nodes' lease and drift bound: node.Config's defaults
// at shardd start's default --tick, which the suite's nodes run with.
func nodeTiming() (lease, maxDrift time.Duration) {
	cfg := node.Config{TickInterval: 100 * time.Millisecond}
	cfg.EnsureDefaults()
	return cfg.LeaseDuration, cfg.MaxClockDrift
}

// nemesis injects one fault at a time, at random, and records when. A
// replica move runs in the background (one at a time) while the next
// faults strike.
type nemesis struct {
	c     *faultCluster
	pc    *client.Client
	rng   *rand.Rand
	h     *linz.History
	kinds []faultKind
	// lease and maxDrift are the nodes' (nodeTiming).
	lease, maxDrift time.Duration
	// jumped is when each node's clock last jumped.
	jumped map[uint64]time.Time

	moves  sync.WaitGroup
	moving atomic.Bool // a move runs in the background
	// movers are the source and target of the move just started: the
	// next fault strikes soon after it started, at one of them half the
	// time, so that it hits the move before it ends (a move of the test's
	// small ranges takes a few hundred milliseconds).
	movers []uint64

	mu     sync.Mutex
	events []nemesisEvent
}

func newNemesis(c *faultCluster, pc *client.Client, h *linz.History, kinds []faultKind, seed uint64) *nemesis {
	lease, maxDrift := nodeTiming()
	return &nemesis{c: c, pc: pc, rng: rand.New(rand.NewPCG(seed, 1<<32)), h: h, kinds: kinds,
		lease: lease, maxDrift: maxDrift, jumped: map[uint64]time.Time{}}
}

type nemesisEvent struct {
	start, end time.Duration // since the history began
	kind, what string
}

// randDuration returns a random duration in [lo, hi).
func (n *nemesis) randDuration(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)))
}

func (n *nemesis) pause(lo, hi time.Duration) { time.Sleep(n.randDuration(lo, hi)) }

// record adds ev, which ends now, to the events, and logs it.
func (n *nemesis) record(t *testing.T, ev nemesisEvent) {
	ev.end = n.h.Since()
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
	t.Logf("nemesis [%.3fs, %.3fs] %s", ev.start.Seconds(), ev.end.Seconds(), ev.what)
}

// others returns the nodes other than id.
func others(id uint64) []uint64 {
	var ids []uint64
	for o := uint64(1); o <= faultNodes; o++ {
		if o != id {
			ids = append(ids, o)
		}
	}
	return ids
}

// target picks the node a fault hits: three times in four the leader of
// a random range, as some node reports it, since a leader has writes in
// flight whose outcome a fault can make unknown; else any node.
func (n *nemesis) target(t *testing.T) uint64 {
	if n.rng.IntN(4) > 0 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		resp, err := n.c.admin[uint64(1+n.rng.IntN(faultNodes))].Ranges(ctx, &kvpb.RangesRequest{})
		cancel()
		if err == nil && len(resp.Ranges) > 0 {
			if lead := resp.Ranges[n.rng.IntN(len(resp.Ranges))].LeaderNodeId; lead >= 1 && lead <= faultNodes {
				return lead
			}
		}
	}
	return uint64(1 + n.rng.IntN(faultNodes))
}

// pick draws a kind of fault by weight.
func (n *nemesis) pick() faultKind {
	total := 0
	for _, k := range n.kinds {
		total += k.weight
	}
	r := n.rng.IntN(total)
	for _, k := range n.kinds {
		if r < k.weight {
			return k
		}
		r -= k.weight
	}
	panic("unreachable")
}

// run injects faults for d, then leaves every process running and healed,
// and waits for the move under way, if any.
func (n *nemesis) run(t *testing.T, d time.Duration) {
	t.Helper()
	defer n.moves.Wait()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		id := uint64(0)
		if movers := n.movers; movers != nil {
			n.movers = nil
			n.pause(time.Millisecond, 200*time.Millisecond)
			if n.rng.IntN(2) == 0 {
				id = movers[n.rng.IntN(len(movers))]
			}
		} else {
			n.pause(300*time.Millisecond, time.Second)
		}
		if id == 0 {
			id = n.target(t)
		}
		ev := nemesisEvent{start: n.h.Since()}
		k := n.pick()
		if k.name == faultMove.name && n.moving.Load() {
			k = faultTransfer // one move at a time
		}
		ev.kind = k.name
		if k.inject == nil {
			n.startMove(t, ev)
			continue // recorded when it ends
		}
		ev.what = k.inject(n, t, id)
		n.record(t, ev)
	}
}

// restartOffset is a restarted node's --clock-offset: any offset will do
// (no node reads another's clock), so a random one within the drift bound.
func (n *nemesis) restartOffset() time.Duration { return n.randDuration(0, n.maxDrift) }

// kill kills node id with SIGKILL and restarts it.
func (n *nemesis) kill(t *testing.T, id uint64) string {
	n.c.procs[id].kill(t)
	n.pause(500*time.Millisecond, 2*time.Second)
	offset := n.restartOffset()
	n.c.start(t, id, offset)
	return fmt.Sprintf("kill -9 node %d, restart it (--clock-offset %v)", id, offset.Round(time.Millisecond))
}

// drain stops node id with SIGTERM, which drains it first, and restarts
// it.
func (n *nemesis) drain(t *testing.T, id uint64) string {
	if code := n.c.procs[id].terminate(t); code != 0 {
		t.Errorf("node %d exited %d after SIGTERM", id, code)
	}
	offset := n.restartOffset()
	n.c.start(t, id, offset)
	return fmt.Sprintf("SIGTERM node %d (it drains, then stops), restart it (--clock-offset %v)", id, offset.Round(time.Millisecond))
}

// placementTarget picks the placement process a fault hits: the leader
// three times in four, else any.
func (n *nemesis) placementTarget(t *testing.T) uint64 {
	pl := n.c.placementLeader(t.Context())
	if pl == 0 || n.rng.IntN(4) == 0 {
		pl = uint64(1 + n.rng.IntN(faultPlacements))
	}
	return pl
}

// killPlacement kills a placement process with SIGKILL and restarts it.
func (n *nemesis) killPlacement(t *testing.T, _ uint64) string {
	pl := n.placementTarget(t)
	n.c.plProcs[pl].kill(t)
	n.pause(500*time.Millisecond, 2*time.Second)
	n.c.startPlacement(t, pl)
	return fmt.Sprintf("kill -9 placement process %d, restart it", pl)
}

// pauseFor is how long a paused process stays stopped: longer than the
// lease, so that its leases and the support it gave run out while it
// cannot tell, and it wakes believing what it believed before.
func (n *nemesis) pauseFor() time.Duration {
	return n.randDuration(n.lease+n.lease/5, 4*n.lease)
}

// pauseProc stops p with SIGSTOP for pauseFor, then resumes it with
// SIGCONT, and returns how long it was stopped.
func (n *nemesis) pauseProc(t *testing.T, p *proc) time.Duration {
	d := n.pauseFor()
	p.send(t, syscall.SIGSTOP)
	time.Sleep(d)
	p.send(t, syscall.SIGCONT)
	return d
}

// pauseNode pauses node id for longer than a lease.
func (n *nemesis) pauseNode(t *testing.T, id uint64) string {
	led := n.ledBy(t, id)
	d := n.pauseProc(t, n.c.procs[id])
	return fmt.Sprintf("SIGSTOP node %d (leader of %d ranges) for %v, then SIGCONT", id, led, d.Round(time.Millisecond))
}

// ledBy returns how many ranges node id says it leads (-1: it did not
// answer).
func (n *nemesis) ledBy(t *testing.T, id uint64) int {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	resp, err := n.c.admin[id].Ranges(ctx, &kvpb.RangesRequest{})
	if err != nil {
		return -1
	}
	led := 0
	for _, d := range resp.Ranges {
		if d.LeaderNodeId == id {
			led++
		}
	}
	return led
}

// pausePlacement pauses a placement process for longer than a lease.
func (n *nemesis) pausePlacement(t *testing.T, _ uint64) string {
	pl := n.placementTarget(t)
	leader := n.c.placementLeader(t.Context()) == pl
	d := n.pauseProc(t, n.c.plProcs[pl])
	return fmt.Sprintf("SIGSTOP placement process %d (the leader: %v) for %v, then SIGCONT", pl, leader, d.Round(time.Millisecond))
}

// jumpClock moves a node's clock forward by up to 90% of the drift bound
// (the margin absorbs rounding), at most once per node per two leases, so
// that no lease or support period sees two jumps of one clock: the model
// of the group simulation's clock jumps (group/sim/faults.go). A jump
// makes the node's promises to leaders and the support it gives end early
// by its size, which the leaders' drift margin must absorb. Node id if it
// may jump, else another that may.
func (n *nemesis) jumpClock(t *testing.T, id uint64) string {
	now := time.Now()
	ids := append([]uint64{id}, others(id)...)
	for _, j := range ids {
		if last, ok := n.jumped[j]; ok && now.Sub(last) < 2*n.lease {
			continue
		}
		n.jumped[j] = now
		d := n.randDuration(n.maxDrift/10, n.maxDrift*9/10)
		offset := n.c.jumpClock(t, j, d)
		return fmt.Sprintf("node %d's clock jumps %v forward (drift bound %v; offset now %v)", j, d.Round(time.Microsecond), n.maxDrift, offset.Round(time.Millisecond))
	}
	return "clock: every node's clock jumped within two leases; none jumps"
}

// isolate cuts node id off from its peers both ways, and from its
// clients too if withClients, for a while.
func (n *nemesis) isolate(t *testing.T, id uint64, withClients bool) string {
	n.c.setFaults(t, id, &kvpb.SetFaultsRequest{DropOutgoing: others(id), DropIncoming: others(id), CutClients: withClients})
	d := n.randDuration(time.Second, 4*time.Second)
	time.Sleep(d)
	n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
	return fmt.Sprintf("node %d cut off from its peers both ways (clients cut too: %v) for %v", id, withClients, d.Round(time.Millisecond))
}

// oneWay loses the messages of one direction of a link of node id.
func (n *nemesis) oneWay(t *testing.T, id uint64) string {
	peer := others(id)[n.rng.IntN(faultNodes-1)]
	req := &kvpb.SetFaultsRequest{DropOutgoing: []uint64{peer}}
	what := fmt.Sprintf("node %d's messages to node %d lost", id, peer)
	if n.rng.IntN(2) == 0 {
		req = &kvpb.SetFaultsRequest{DropIncoming: []uint64{peer}}
		what = fmt.Sprintf("node %d's messages from node %d lost", id, peer)
	}
	n.c.setFaults(t, id, req)
	d := n.randDuration(time.Second, 4*time.Second)
	time.Sleep(d)
	n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
	return fmt.Sprintf("%s for %v", what, d.Round(time.Millisecond))
}

// cutClients cuts node id's KV service off from its clients for a while.
func (n *nemesis) cutClients(t *testing.T, id uint64) string {
	n.c.setFaults(t, id, &kvpb.SetFaultsRequest{CutClients: true})
	d := n.randDuration(500*time.Millisecond, 2*time.Second)
	time.Sleep(d)
	n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
	return fmt.Sprintf("node %d's KV service cut off from its clients for %v", id, d.Round(time.Millisecond))
}

// split splits the range holding a random key through the placement
// service and says what happened.
func (n *nemesis) split(t *testing.T) string {
	key := faultKeys[n.rng.IntN(len(faultKeys))] + string(rune('a'+n.rng.IntN(26)))
	if n.rng.IntN(2) == 0 {
		key = key[:len(key)-1] // the key itself: the next write to it goes to the new range
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	resp, err := n.pc.SplitRange(ctx, []byte(key))
	cancel()
	what := fmt.Sprintf("split at %q", key)
	switch {
	case err == nil:
		return what + fmt.Sprintf(": ranges %d and %d", resp.Left.RangeId, resp.Right.RangeId)
	case status.Code(err) == codes.FailedPrecondition:
		return what + fmt.Sprintf(": refused (%v)", status.Convert(err).Message())
	default:
		return what + fmt.Sprintf(": %v", err) // under way; placement finishes it
	}
}

// pickRange returns a random range of the placement map, or nil and why
// not.
func (n *nemesis) pickRange(t *testing.T) (*kvpb.RangeDescriptor, string) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	descs, err := n.pc.AllRanges(ctx, 0)
	if err != nil {
		return nil, fmt.Sprintf("no map: %v", err)
	}
	return descs[n.rng.IntN(len(descs))], ""
}

// startMove moves, in the background with `shardd move`, a replica of a
// random range to the node that lacks it: the leader's replica half the
// time, so that the move includes a leader move. The move is recorded when
// the command returns.
func (n *nemesis) startMove(t *testing.T, ev nemesisEvent) {
	d, why := n.pickRange(t)
	if d == nil {
		ev.what = "move: " + why
		n.record(t, ev)
		return
	}
	var lacking []uint64
	for id := uint64(1); id <= faultNodes; id++ {
		if !placement.Holds(d, id) {
			lacking = append(lacking, id)
		}
	}
	voters := placement.VoterNodes(d)
	if len(lacking) == 0 || len(voters) == 0 {
		ev.what = fmt.Sprintf("move: range %d has no voter or no node lacks it (%v)", d.RangeId, d.Replicas)
		n.record(t, ev)
		return
	}
	from, to := voters[n.rng.IntN(len(voters))], lacking[n.rng.IntN(len(lacking))]
	if d.LeaderNodeId != 0 && n.rng.IntN(2) == 0 {
		from = d.LeaderNodeId
	}
	ev.what = fmt.Sprintf("move range %d's replica from node %d to node %d (leader %d)", d.RangeId, from, to, d.LeaderNodeId)
	t.Logf("nemesis [%.3fs] %s: started", ev.start.Seconds(), ev.what)
	n.movers = []uint64{from, to}
	n.moving.Store(true)
	n.moves.Add(1)
	go func() {
		defer n.moves.Done()
		defer n.moving.Store(false)
		code, stdout, stderr, err := tryBinary(n.c.shardd, "move", "--json", "--placement", n.c.placement,
			strconv.FormatUint(d.RangeId, 10), "--from", strconv.FormatUint(from, 10), "--to", strconv.FormatUint(to, 10), "--timeout", "30s")
		ev.what += ": " + describeChange(code, stdout, stderr, err)
		n.record(t, ev)
	}()
}

// transfer moves the leadership of a random range to another of its
// voters with `shardd transfer` and says what happened.
func (n *nemesis) transfer(t *testing.T) string {
	d, why := n.pickRange(t)
	if d == nil {
		return "transfer: " + why
	}
	var to []uint64
	for _, v := range placement.VoterNodes(d) {
		if v != d.LeaderNodeId {
			to = append(to, v)
		}
	}
	if len(to) == 0 {
		return fmt.Sprintf("transfer: range %d has no voter but its leader (%v)", d.RangeId, d.Replicas)
	}
	target := to[n.rng.IntN(len(to))]
	code, stdout, stderr, err := tryBinary(n.c.shardd, "transfer", "--json", "--placement", n.c.placement,
		strconv.FormatUint(d.RangeId, 10), "--to", strconv.FormatUint(target, 10), "--timeout", "10s")
	return fmt.Sprintf("transfer range %d's leadership from node %d to node %d: %s", d.RangeId, d.LeaderNodeId, target,
		describeChange(code, stdout, stderr, err))
}

// describeChange says how a `shardd move` or `shardd transfer --json`
// ended: the range's replicas and leader and the time taken, or the error.
func describeChange(code int, stdout, stderr string, err error) string {
	if err != nil {
		return err.Error()
	}
	var out rangeChangeOutput
	if code != 0 || json.Unmarshal([]byte(stdout), &out) != nil {
		return fmt.Sprintf("exit %d: %s", code, strings.TrimSpace(stderr))
	}
	return fmt.Sprintf("done in %.0fms, replicas %v learners %v, leader %d", out.TookMS, out.Range.Replicas, out.Range.Learners, out.Range.Leader)
}

// counts returns how many faults of each kind the nemesis injected.
func (n *nemesis) counts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := map[string]int{}
	for _, e := range n.events {
		m[e.kind]++
	}
	return m
}

// sortedEvents returns the events in the order they began.
func (n *nemesis) sortedEvents() []nemesisEvent {
	n.mu.Lock()
	events := slices.Clone(n.events)
	n.mu.Unlock()
	slices.SortFunc(events, func(a, b nemesisEvent) int { return int(a.start - b.start) })
	return events
}

// describe is the fault log: one line per event, in the order they
// began.
func (n *nemesis) describe() string {
	var b strings.Builder
	for _, e := range n.sortedEvents() {
		fmt.Fprintf(&b, "[%.3fs, %.3fs] %s: %s\n", e.start.Seconds(), e.end.Seconds(), e.kind, e.what)
	}
	return b.String()
}

// annotations are the events for porcupine's visualization: the faults
// on one row, the moves (which overlap them) on another.
func (n *nemesis) annotations() []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, e := range n.sortedEvents() {
		tag := "nemesis"
		if e.kind == faultMove.name {
			tag = "nemesis: moves"
		}
		out = append(out, porcupine.Annotation{Tag: tag, Start: int64(e.start), End: int64(e.end), Description: e.kind, Details: e.what})
	}
	return out
}
