package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
)

// Knobs of TestLinearizability, from the environment. A longer run:
//
//	SHARDD_LINZ_DURATION=60s go test -run TestLinearizability -v -timeout 20m ./cmd/shardd
//
// SHARDD_LINZ_SEED replays a run's choices of operations and faults, as
// far as the processes' timing (and so the leaders the nemesis targets)
// repeats.
const (
	linzDurationEnv = "SHARDD_LINZ_DURATION"
	linzSeedEnv     = "SHARDD_LINZ_SEED"
	// linzDefaultDuration is how long the nemesis injects faults in CI.
	linzDefaultDuration = 25 * time.Second
)

// The workload: linzWorkers goroutines over linzRouters router Clients,
// each operation bounded by linzOpTimeout, on a few keys spread over the
// placement service's three ranges (split near k3333 and k6666), so that
// many operations race on each key.
const (
	linzWorkers   = 12
	linzRouters   = 2
	linzOpTimeout = 4 * time.Second
	// linzNodes shardd processes hold three replicas of each range, so
	// that every range lacks a node that a replica can move to.
	linzNodes = 4
	// linzPlacements placement processes replicate the map, so that the
	// nemesis can kill the placement leader while the service keeps
	// serving (and finishing the operations the killed one started).
	linzPlacements = 3
	// linzSettleTime is the placement processes' --settle-time: short, so
	// that a node the nemesis restarted soon takes replicas again.
	linzSettleTime = 2 * time.Second
)

var linzKeys = []string{"k1000", "k2000", "k5000", "k7000", "k9000"}

// TestLinearizability runs three placement processes and four shardd
// processes on loopback, drives concurrent gets, puts and compare-and-swaps
// through the router while a nemesis injects faults at random, and checks
// the history for linearizability with porcupine, one register per key.
// The faults, one at a time: kill -9 and restart of a node, or of the
// placement leader; a node cut off from its peers both ways, with or
// without its clients; a one-way link between two nodes; a node's KV
// service cut off from its clients alone. The links are cut through the
// Fault service of nodes started with --enable-fault-injection.
// Operations run among them, through the placement service: a split of
// the range holding a random key; a node drained and restarted (SIGTERM);
// a leader moved to another voter (`shardd transfer`); and a replica moved
// to the node that lacks the range (`shardd move`), the leader's half the
// time, so that the move includes a leader move. A move runs in the
// background while the next faults strike, so that kills and partitions
// hit it at any step; the placement balancer moves replicas and leaders
// too.
//
// An operation that failed for certain is left out of the history; one
// whose outcome is unknown is kept as possibly applied (linz.Definite
// decides which). Besides the registers, the workers put write-once keys;
// at the end, once the nemesis healed everything and the placement
// service finished its operations, the test checks that the map tiles the
// key space with three voters per range on live nodes that host it, that
// every acknowledged write-once key reads back, and it reads every
// register into the history. On a violation the test prints the seed, the
// operations where the linearization gets stuck, and the path of
// porcupine's HTML visualization, beside the illegal keys' operations
// (history.txt) and the processes' logs, in a directory under $TMPDIR
// that outlives the test.
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs seven processes under faults for half a minute")
	}
	duration := linzDefaultDuration
	if s := os.Getenv(linzDurationEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 60s", linzDurationEnv, s)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(linzSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", linzSeedEnv, s)
		}
	}
	t.Logf("seed %d (replay the choices with %s=%d), %v of faults", seed, linzSeedEnv, seed, duration)

	c := startLinzCluster(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	routers := make([]*router.Client, linzRouters)
	for i := range routers {
		var err error
		if routers[i], err = router.New(ctx, router.Config{Source: client.RouterSource{Client: c.placementClient(t)}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { routers[i].Close() })
	}
	c.waitServing(t, routers[0])

	h := linz.NewHistory()
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopWorkers := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(stopWorkers)   // if the test fails before the end
	var clients atomic.Int64 // porcupine process ids: one per worker, and a new one after each unknown outcome
	clients.Store(linzWorkers)
	workers := make([]*linzWorker, linzWorkers)
	var wg sync.WaitGroup
	for w := range workers {
		workers[w] = &linzWorker{id: w, h: h, rc: routers[w%linzRouters], rng: rand.New(rand.NewPCG(seed, uint64(w))), clients: &clients}
		wg.Go(func() { workers[w].run(ctx, stop) })
	}
	nem := &nemesis{c: c, pc: c.placementClient(t), rng: rand.New(rand.NewPCG(seed, 1<<32)), h: h}
	nem.run(t, duration)
	// Let the cluster settle, healed, under load, so that the history
	// ends with operations that see the writes of the faulty period.
	time.Sleep(2 * time.Second)
	stopWorkers()
	wg.Wait()

	descs := c.waitConverged(t, nem.pc)
	t.Logf("the map: %d ranges, each with three voters on live nodes that host it", len(descs))
	written := 0
	for _, w := range workers {
		written += len(w.written)
		w.checkWritten(t, routers[0])
	}
	t.Logf("%d acknowledged write-once keys read back", written)
	finalReads(t, h, routers[0])

	ops := h.Operations()
	known, unknown := linz.Counts(ops)
	t.Logf("%d operations with a known outcome (get/put/cas %v), %d unknown (%v), %d faults: %v",
		known[0]+known[1]+known[2], known, unknown[0]+unknown[1]+unknown[2], unknown, len(nem.events), nem.kinds())
	if known[linz.Put]+known[linz.CAS] < 50 || known[linz.Get] < 50 {
		t.Errorf("too few operations completed to say anything: %v", known)
	}
	out, err := os.MkdirTemp("", "shardd-linz-")
	if err != nil {
		t.Fatal(err)
	}
	res, err := linz.Check(ops, time.Minute, out)
	if err != nil {
		t.Fatal(err)
	}
	switch res.Verdict {
	case porcupine.Ok:
		os.RemoveAll(out)
		t.Logf("linearizable")
	case porcupine.Unknown:
		os.RemoveAll(out)
		if len(res.TimedOut) >= len(linzKeys) {
			// Nothing was checked: that is no pass.
			t.Errorf("the check ran out of time on every key %v; shorten %s", res.TimedOut, linzDurationEnv)
		} else {
			t.Logf("the check ran out of time on keys %v without finding a violation on the others", res.TimedOut)
		}
	default:
		c.keepLogs(t, out)
		t.Errorf("NOT LINEARIZABLE on keys %v (seed %d, %s=%d replays the choices)\n%s\nfaults:\n%s\nporcupine's visualization: %s\nthe illegal keys' operations (history.txt) and the processes' logs: %s",
			res.Illegal, seed, linzSeedEnv, seed, res.Explanation, nem.describe(), res.Visualization, out)
	}
}

// finalReads reads every register once more, into the history, after the
// faults and operations ended: the reads must see the acknowledged writes.
func finalReads(t *testing.T, h *linz.History, rc *router.Client) {
	t.Helper()
	for _, key := range linzKeys {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		call := h.Invoke(linzWorkers+1_000_000, linz.Input{Kind: linz.Get, Key: key})
		v, _, err := rc.Get(ctx, []byte(key))
		cancel()
		call.Finish(linz.Output{Value: string(v)}, err)
		if err != nil {
			t.Errorf("the final read of %s, with every process up and healed: %v", key, err)
		}
	}
}

// linzWorker runs random operations on the registers and puts write-once
// keys.
type linzWorker struct {
	id      int
	h       *linz.History
	rc      *router.Client
	rng     *rand.Rand
	clients *atomic.Int64
	// written are the write-once keys whose put was acknowledged; each
	// holds the last part of its name as its value (see onceKey).
	written []string
}

// onceKey is the write-once key of value under register key: in the same
// range as key unless a split cut between them.
func onceKey(key, value string) string { return key + "/" + value }

// run runs random operations until stop is closed. It writes values unique
// to the run ("worker.seq"), and compare-and-swaps from the last value it
// saw of a key, so that its CASes often succeed.
func (lw *linzWorker) run(ctx context.Context, stop <-chan struct{}) {
	client := lw.id
	seen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		key := linzKeys[lw.rng.IntN(len(linzKeys))]
		value := fmt.Sprintf("%d.%d", lw.id, seq)
		octx, cancel := context.WithTimeout(ctx, linzOpTimeout)
		var (
			in   linz.Input
			out  linz.Output
			err  error
			once bool // a write-once key's put
		)
		switch p := lw.rng.IntN(100); {
		case p < 40:
			in = linz.Input{Kind: linz.Get, Key: key}
			call := lw.h.Invoke(client, in)
			var v []byte
			v, _, err = lw.rc.Get(octx, []byte(key))
			out.Value = string(v)
			call.Finish(out, err)
		case p < 70:
			in = linz.Input{Kind: linz.Put, Key: key, Value: value}
			call := lw.h.Invoke(client, in)
			err = lw.rc.Put(octx, []byte(key), []byte(value))
			if call.Finish(out, err) {
				client = int(lw.clients.Add(1)) - 1
			}
		case p < 90:
			in = linz.Input{Kind: linz.CAS, Key: key, Expected: seen[key], Value: value}
			call := lw.h.Invoke(client, in)
			var r router.CASResult
			r, err = lw.rc.CompareAndSwap(octx, router.CAS{Key: []byte(key), Expected: []byte(in.Expected), ExpectAbsent: in.Expected == "", NewValue: []byte(value)})
			out.Swapped, out.Value = r.Swapped, string(r.Current)
			if call.Finish(out, err) {
				client = int(lw.clients.Add(1)) - 1
			}
		default:
			// A write-once key, outside the history: checked at the end.
			once = true
			if err = lw.rc.Put(octx, []byte(onceKey(key, value)), []byte(value)); err == nil {
				lw.written = append(lw.written, onceKey(key, value))
			}
		}
		cancel()
		switch {
		case err != nil:
			// Back off a little, so that a worker does not spin on a
			// cluster that refuses everything.
			time.Sleep(time.Duration(10+lw.rng.IntN(40)) * time.Millisecond)
		case once:
		case in.Kind == linz.Get:
			seen[key] = out.Value
		case in.Kind == linz.Put || out.Swapped:
			seen[key] = value
		default:
			seen[key] = out.Value
		}
	}
}

// checkWritten reads back every write-once key the worker's puts
// acknowledged.
func (lw *linzWorker) checkWritten(t *testing.T, rc *router.Client) {
	t.Helper()
	for _, k := range lw.written {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		v, found, err := rc.Get(ctx, []byte(k))
		cancel()
		if want := k[strings.LastIndexByte(k, '/')+1:]; err != nil || !found || string(v) != want {
			t.Errorf("acknowledged write %s=%s: read %q (found %v), %v", k, want, v, found, err)
		}
	}
}

// linzCluster is the placement processes and the shardd processes.
type linzCluster struct {
	shardd, placementBin, base string
	// placement is every placement process's address, comma-separated, as
	// the --placement flags take it.
	placement string
	// The placement processes, by id.
	plAddrs map[uint64]string
	plArgs  map[uint64][]string
	plProcs map[uint64]*proc
	plAPI   map[uint64]placementpb.PlacementClient
	// The shardd processes, by node id.
	addrs  map[uint64]string
	args   map[uint64][]string
	procs  map[uint64]*proc
	logs   []string
	faults map[uint64]kvpb.FaultClient
	admin  map[uint64]kvpb.AdminClient
	// logsKept is set once the logs were copied out of the test's
	// temporary directory.
	logsKept bool
}

func startLinzCluster(t *testing.T) *linzCluster {
	t.Helper()
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, linzPlacements+linzNodes)
	c := &linzCluster{shardd: shardd, placementBin: placementBin, base: base,
		plAddrs: map[uint64]string{}, plArgs: map[uint64][]string{}, plProcs: map[uint64]*proc{}, plAPI: map[uint64]placementpb.PlacementClient{},
		addrs: map[uint64]string{}, args: map[uint64][]string{}, procs: map[uint64]*proc{},
		faults: map[uint64]kvpb.FaultClient{}, admin: map[uint64]kvpb.AdminClient{}}
	var peers, addrs []string
	for id := uint64(1); id <= linzPlacements; id++ {
		c.plAddrs[id] = fmt.Sprintf("127.0.0.1:%d", ports[id-1])
		peers = append(peers, fmt.Sprintf("%d=%s", id, c.plAddrs[id]))
		addrs = append(addrs, c.plAddrs[id])
	}
	c.placement = strings.Join(addrs, ",")
	t.Cleanup(func() {
		// A failure other than a violation (which keeps them with the
		// history) keeps the logs too.
		if t.Failed() && !c.logsKept {
			if dir, err := os.MkdirTemp("", "shardd-linz-"); err == nil {
				c.keepLogs(t, dir)
				t.Logf("the processes' logs: %s", dir)
			}
		}
	})
	for id := uint64(1); id <= linzPlacements; id++ {
		c.plArgs[id] = []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", c.plAddrs[id],
			"--peers", strings.Join(peers, ","), "--data-dir", filepath.Join(base, fmt.Sprintf("placement%d", id)),
			"--initial-ranges", "3", "--expected-nodes", strconv.Itoa(linzNodes),
			"--settle-time", linzSettleTime.String(), "--log-level", "info"}
		c.logs = append(c.logs, c.placementLogPath(id))
		c.startPlacement(t, id)
		c.plAPI[id] = placementpb.NewPlacementClient(dialTest(t, c.plAddrs[id]))
	}
	for id := uint64(1); id <= linzNodes; id++ {
		c.addrs[id] = fmt.Sprintf("127.0.0.1:%d", ports[linzPlacements+int(id)-1])
		// No gossip: the nodes learn each other's addresses from the
		// placement service, so a restarted node needs nothing else.
		c.args[id] = []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", c.addrs[id], "--gossip=",
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)), "--placement", c.placement,
			"--enable-fault-injection", "--log-level", "info"}
		c.logs = append(c.logs, c.logPath(id))
		c.start(t, id)
		conn := dialTest(t, c.addrs[id])
		c.faults[id] = kvpb.NewFaultClient(conn)
		c.admin[id] = kvpb.NewAdminClient(conn)
	}
	return c
}

// dialTest returns a connection to addr that the test closes at its end.
func dialTest(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// placementClient returns a client of the placement service that the test
// closes at its end.
func (c *linzCluster) placementClient(t *testing.T) *client.Client {
	t.Helper()
	pc, err := client.New(strings.Split(c.placement, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func (c *linzCluster) logPath(id uint64) string {
	return filepath.Join(c.base, fmt.Sprintf("node%d.log", id))
}

func (c *linzCluster) placementLogPath(id uint64) string {
	return filepath.Join(c.base, fmt.Sprintf("placement%d.log", id))
}

// start starts node id, on the data it has, and waits until it serves.
func (c *linzCluster) start(t *testing.T, id uint64) {
	t.Helper()
	c.procs[id] = startProc(t, c.shardd, fmt.Sprintf("node %d", id), c.logPath(id), c.args[id]...)
	c.procs[id].waitReady(t)
}

// startPlacement starts placement process id, on the data it has, and
// waits until it serves.
func (c *linzCluster) startPlacement(t *testing.T, id uint64) {
	t.Helper()
	c.plProcs[id] = startProcUntil(t, c.placementBin, fmt.Sprintf("placement %d", id), c.placementLogPath(id), "serving on", c.plArgs[id]...)
	c.plProcs[id].waitReady(t)
}

// placementLeader returns the placement process that serves the API as
// the leader (the others refuse, naming it), or 0 if none does.
func (c *linzCluster) placementLeader(ctx context.Context) uint64 {
	for id, api := range c.plAPI {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := api.ListOperations(ctx, &placementpb.ListOperationsRequest{})
		cancel()
		if err == nil {
			return id
		}
	}
	return 0
}

// waitServing waits until a put to every key succeeds: the placement
// service has created the ranges and they have leaders.
func (c *linzCluster) waitServing(t *testing.T, rc *router.Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, k := range linzKeys {
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			_, _, err := rc.Get(ctx, []byte(k))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no get of %s succeeded within 60s: %v", k, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// linzConvergeTimeout bounds how long the placement service may take,
// once the faults end, to finish its operations and settle the map.
const linzConvergeTimeout = 60 * time.Second

// waitConverged waits until the placement service has no operation under
// way and its map tiles the key space with three voters per range, on
// nodes it sees live, each of which hosts the range at the map's
// generation; it returns the map.
func (c *linzCluster) waitConverged(t *testing.T, pc *client.Client) []*kvpb.RangeDescriptor {
	t.Helper()
	deadline := time.Now().Add(linzConvergeTimeout)
	for {
		descs, problem := c.converged(t.Context(), pc)
		if problem == "" {
			return descs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the faults ended: %s\nthe map: %v", linzConvergeTimeout, problem, descs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// converged returns the map and what keeps it from having converged ("":
// nothing); see waitConverged.
func (c *linzCluster) converged(ctx context.Context, pc *client.Client) ([]*kvpb.RangeDescriptor, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ops, err := pc.ListOperations(ctx)
	if err != nil {
		return nil, fmt.Sprintf("listing the operations: %v", err)
	}
	if len(ops.Descriptions) > 0 {
		return nil, fmt.Sprintf("operations under way: %v", ops.Descriptions)
	}
	descs, err := pc.AllRanges(ctx, 0)
	if err != nil {
		return nil, fmt.Sprintf("reading the map: %v", err)
	}
	if _, err := placement.NewRangeMap(descs); err != nil {
		return descs, err.Error()
	}
	nodes, err := pc.ListNodes(ctx)
	if err != nil {
		return descs, fmt.Sprintf("listing the nodes: %v", err)
	}
	live := map[uint64]bool{}
	for _, n := range nodes.Nodes {
		live[n.NodeId] = n.Live
	}
	hosted := map[uint64]map[uint64]uint64{} // node -> range -> generation
	for id, admin := range c.admin {
		resp, err := admin.Ranges(ctx, &kvpb.RangesRequest{})
		if err != nil {
			return descs, fmt.Sprintf("asking node %d for its ranges: %v", id, err)
		}
		hosted[id] = map[uint64]uint64{}
		for _, d := range resp.Ranges {
			hosted[id][d.RangeId] = d.Generation
		}
	}
	for _, d := range descs {
		voters := voterNodes(d)
		if len(voters) != 3 || len(d.Replicas) != 3 {
			return descs, fmt.Sprintf("range %d has replicas %v, want three voters", d.RangeId, d.Replicas)
		}
		for _, v := range voters {
			switch gen, ok := hosted[v][d.RangeId]; {
			case !live[v]:
				return descs, fmt.Sprintf("range %d's voter node %d is not live", d.RangeId, v)
			case !ok:
				return descs, fmt.Sprintf("range %d's voter node %d does not host it", d.RangeId, v)
			case gen != d.Generation:
				return descs, fmt.Sprintf("node %d hosts range %d at generation %d, the map has %d", v, d.RangeId, gen, d.Generation)
			}
		}
	}
	return descs, ""
}

// voterNodes returns the nodes of d's voters.
func voterNodes(d *kvpb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, r := range d.Replicas {
		if r.Role == kvpb.ReplicaRole_VOTER {
			out = append(out, r.NodeId)
		}
	}
	return out
}

// setFaults replaces node id's faults.
func (c *linzCluster) setFaults(t *testing.T, id uint64, req *kvpb.SetFaultsRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.faults[id].SetFaults(ctx, req); err != nil {
		t.Fatalf("SetFaults on node %d: %v", id, err)
	}
}

// keepLogs copies the processes' logs into dir, which outlives the test.
func (c *linzCluster) keepLogs(t *testing.T, dir string) {
	c.logsKept = true
	for _, p := range c.logs {
		if b, err := os.ReadFile(p); err == nil {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644); err != nil {
				t.Log(err)
			}
		}
	}
}

// nemesis injects one fault at a time, at random, and records when. A
// replica move runs in the background (one at a time) while the next
// faults strike.
type nemesis struct {
	c   *linzCluster
	pc  *client.Client
	rng *rand.Rand
	h   *linz.History

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

type nemesisEvent struct {
	start, end time.Duration // since the history began
	kind, what string
}

func (n *nemesis) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(n.rng.Int64N(int64(hi-lo))))
}

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
	for o := uint64(1); o <= linzNodes; o++ {
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
		resp, err := n.c.admin[uint64(1+n.rng.IntN(linzNodes))].Ranges(ctx, &kvpb.RangesRequest{})
		cancel()
		if err == nil && len(resp.Ranges) > 0 {
			if lead := resp.Ranges[n.rng.IntN(len(resp.Ranges))].LeaderNodeId; lead >= 1 && lead <= linzNodes {
				return lead
			}
		}
	}
	return uint64(1 + n.rng.IntN(linzNodes))
}

// run injects faults for d, then leaves every process running and healed,
// and waits for the move under way, if any. Kills come most often: a
// leader killed with writes accepted but not yet acknowledged is what
// leaves their outcome unknown while the next leader applies them, so
// that other clients see them.
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
		f := n.rng.IntN(100)
		if f >= 17 && f < 29 && n.moving.Load() {
			f = 29 // one move at a time: a transfer instead
		}
		switch {
		case f < 8:
			ev.kind, ev.what = "split", n.split(t)
		case f < 17:
			ev.kind, ev.what = "drain", fmt.Sprintf("SIGTERM node %d (it drains, then stops), restart it", id)
			if code := n.c.procs[id].terminate(t); code != 0 {
				t.Errorf("node %d exited %d after SIGTERM", id, code)
			}
			n.c.start(t, id)
		case f < 29:
			ev.kind = "move"
			n.startMove(t, ev)
			continue // recorded when it ends
		case f < 39:
			ev.kind, ev.what = "transfer", n.transfer(t)
		case f < 61:
			ev.kind, ev.what = "kill", fmt.Sprintf("kill -9 node %d, restart it", id)
			n.c.procs[id].kill(t)
			n.pause(500*time.Millisecond, 2*time.Second)
			n.c.start(t, id)
		case f < 67:
			pl := n.c.placementLeader(t.Context())
			if pl == 0 || n.rng.IntN(4) == 0 {
				pl = uint64(1 + n.rng.IntN(linzPlacements))
			}
			ev.kind, ev.what = "kill-placement", fmt.Sprintf("kill -9 placement process %d, restart it", pl)
			n.c.plProcs[pl].kill(t)
			n.pause(500*time.Millisecond, 2*time.Second)
			n.c.startPlacement(t, pl)
		case f < 75:
			ev.kind, ev.what = "clients", fmt.Sprintf("node %d's KV service cut off from its clients", id)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{CutClients: true})
			n.pause(500*time.Millisecond, 2*time.Second)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
		case f < 90:
			cutClients := n.rng.IntN(2) == 0
			ev.kind, ev.what = "isolate", fmt.Sprintf("node %d cut off from its peers both ways (clients cut too: %v)", id, cutClients)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{DropOutgoing: others(id), DropIncoming: others(id), CutClients: cutClients})
			n.pause(time.Second, 4*time.Second)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
		default:
			peer := others(id)[n.rng.IntN(linzNodes-1)]
			req := &kvpb.SetFaultsRequest{DropOutgoing: []uint64{peer}}
			ev.kind, ev.what = "one-way", fmt.Sprintf("node %d's messages to node %d lost", id, peer)
			if n.rng.IntN(2) == 0 {
				req = &kvpb.SetFaultsRequest{DropIncoming: []uint64{peer}}
				ev.what = fmt.Sprintf("node %d's messages from node %d lost", id, peer)
			}
			n.c.setFaults(t, id, req)
			n.pause(time.Second, 4*time.Second)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
		}
		n.record(t, ev)
	}
}

// split splits the range holding a random key through the placement
// service and says what happened.
func (n *nemesis) split(t *testing.T) string {
	key := linzKeys[n.rng.IntN(len(linzKeys))] + string(rune('a'+n.rng.IntN(26)))
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
	for id := uint64(1); id <= linzNodes; id++ {
		if !placement.Holds(d, id) {
			lacking = append(lacking, id)
		}
	}
	voters := voterNodes(d)
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
	for _, v := range voterNodes(d) {
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

func (n *nemesis) kinds() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := map[string]int{}
	for _, e := range n.events {
		m[e.kind]++
	}
	return m
}

func (n *nemesis) describe() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	events := slices.Clone(n.events)
	slices.SortFunc(events, func(a, b nemesisEvent) int { return int(a.start - b.start) })
	var s string
	for _, e := range events {
		s += fmt.Sprintf("  [%.3fs, %.3fs] %s\n", e.start.Seconds(), e.end.Seconds(), e.what)
	}
	return s
}
