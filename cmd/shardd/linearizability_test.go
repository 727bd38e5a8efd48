package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement/client"
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
	linzNodes     = 3
)

var linzKeys = []string{"k1000", "k2000", "k5000", "k7000", "k9000"}

// TestLinearizability runs a placement process and three shardd processes
// on loopback, drives concurrent gets, puts and compare-and-swaps through
// the router while a nemesis injects faults at random, one at a time, and
// checks the history for linearizability with porcupine, one register per
// key. The faults: kill -9 and restart of a node; a node cut off from its
// peers both ways, with or without its clients; a one-way link between two
// nodes; a node's KV service cut off from its clients alone. The links are
// cut through the Fault service of nodes started with
// --enable-fault-injection. Operations run among them: a split of the
// range holding a random key (through the placement service), and a
// node drained and restarted (SIGTERM).
//
// An operation that failed for certain is left out of the history; one
// whose outcome is unknown is kept as possibly applied (linz.Definite
// decides which). On a violation the test prints the seed, the operations
// where the linearization gets stuck, and the path of porcupine's HTML
// visualization, beside the illegal keys' operations (history.txt) and the
// processes' logs, in a directory under $TMPDIR that outlives the test.
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs four processes under faults for half a minute")
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
		pc, err := client.New([]string{c.placement})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		if routers[i], err = router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}}); err != nil {
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
	var wg sync.WaitGroup
	for w := range linzWorkers {
		wg.Go(func() {
			runLinzWorker(ctx, h, routers[w%linzRouters], rand.New(rand.NewPCG(seed, uint64(w))), w, &clients, stop)
		})
	}
	pc, err := client.New([]string{c.placement})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	nem := &nemesis{c: c, pc: pc, rng: rand.New(rand.NewPCG(seed, 1<<32)), h: h}
	nem.run(t, duration)
	// Let the cluster settle, healed, under load, so that the history
	// ends with operations that see the writes of the faulty period.
	time.Sleep(2 * time.Second)
	stopWorkers()
	wg.Wait()

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

// runLinzWorker runs random operations until stop is closed. It writes
// values unique to the run ("worker.seq"), and compare-and-swaps from the
// last value it saw of a key, so that its CASes often succeed.
func runLinzWorker(ctx context.Context, h *linz.History, rc *router.Client, rng *rand.Rand, w int, clients *atomic.Int64, stop <-chan struct{}) {
	client := w
	seen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		key := linzKeys[rng.IntN(len(linzKeys))]
		value := fmt.Sprintf("%d.%d", w, seq)
		octx, cancel := context.WithTimeout(ctx, linzOpTimeout)
		var (
			in  linz.Input
			out linz.Output
			err error
		)
		switch p := rng.IntN(100); {
		case p < 40:
			in = linz.Input{Kind: linz.Get, Key: key}
			call := h.Invoke(client, in)
			var v []byte
			v, _, err = rc.Get(octx, []byte(key))
			out.Value = string(v)
			call.Finish(out, err)
		case p < 75:
			in = linz.Input{Kind: linz.Put, Key: key, Value: value}
			call := h.Invoke(client, in)
			err = rc.Put(octx, []byte(key), []byte(value))
			if call.Finish(out, err) {
				client = int(clients.Add(1)) - 1
			}
		default:
			in = linz.Input{Kind: linz.CAS, Key: key, Expected: seen[key], Value: value}
			call := h.Invoke(client, in)
			var r router.CASResult
			r, err = rc.CompareAndSwap(octx, router.CAS{Key: []byte(key), Expected: []byte(in.Expected), ExpectAbsent: in.Expected == "", NewValue: []byte(value)})
			out.Swapped, out.Value = r.Swapped, string(r.Current)
			if call.Finish(out, err) {
				client = int(clients.Add(1)) - 1
			}
		}
		cancel()
		switch {
		case err != nil:
			// Back off a little, so that a worker does not spin on a
			// cluster that refuses everything.
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		case in.Kind == linz.Get:
			seen[key] = out.Value
		case in.Kind == linz.Put || out.Swapped:
			seen[key] = value
		default:
			seen[key] = out.Value
		}
	}
}

// linzCluster is the placement process and the shardd processes.
type linzCluster struct {
	shardd, base, placement string
	addrs                   map[uint64]string
	args                    map[uint64][]string
	procs                   map[uint64]*proc
	logs                    []string
	faults                  map[uint64]kvpb.FaultClient
	admin                   map[uint64]kvpb.AdminClient
}

func startLinzCluster(t *testing.T) *linzCluster {
	t.Helper()
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, 1+linzNodes)
	c := &linzCluster{shardd: shardd, base: base, placement: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		addrs: map[uint64]string{}, args: map[uint64][]string{}, procs: map[uint64]*proc{},
		faults: map[uint64]kvpb.FaultClient{}, admin: map[uint64]kvpb.AdminClient{}}
	plLog := filepath.Join(base, "placement.log")
	c.logs = append(c.logs, plLog)
	pl := startProcUntil(t, placementBin, "placement", plLog, "serving on",
		"start", "--id", "1", "--listen", c.placement, "--data-dir", filepath.Join(base, "placement"),
		"--initial-ranges", "3", "--expected-nodes", strconv.Itoa(linzNodes), "--log-level", "warn")
	pl.waitReady(t)
	for id := uint64(1); id <= linzNodes; id++ {
		c.addrs[id] = fmt.Sprintf("127.0.0.1:%d", ports[id])
		// No gossip: the nodes learn each other's addresses from the
		// placement service, so a restarted node needs nothing else.
		c.args[id] = []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", c.addrs[id], "--gossip=",
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)), "--placement", c.placement,
			"--enable-fault-injection", "--log-level", "info"}
		c.logs = append(c.logs, c.logPath(id))
		c.start(t, id)
		conn, err := grpc.NewClient(c.addrs[id], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.faults[id] = kvpb.NewFaultClient(conn)
		c.admin[id] = kvpb.NewAdminClient(conn)
	}
	return c
}

func (c *linzCluster) logPath(id uint64) string {
	return filepath.Join(c.base, fmt.Sprintf("node%d.log", id))
}

// start starts node id, on the data it has, and waits until it serves.
func (c *linzCluster) start(t *testing.T, id uint64) {
	t.Helper()
	c.procs[id] = startProc(t, c.shardd, fmt.Sprintf("node %d", id), c.logPath(id), c.args[id]...)
	c.procs[id].waitReady(t)
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
	for _, p := range c.logs {
		if b, err := os.ReadFile(p); err == nil {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644); err != nil {
				t.Log(err)
			}
		}
	}
}

// nemesis injects one fault at a time, at random, and records when.
type nemesis struct {
	c      *linzCluster
	pc     *client.Client
	rng    *rand.Rand
	h      *linz.History
	events []nemesisEvent
}

type nemesisEvent struct {
	start, end time.Duration // since the history began
	kind, what string
}

func (n *nemesis) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(n.rng.Int64N(int64(hi-lo))))
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

// run injects faults for d, then leaves every node running and healed.
// Kills come most often: a leader killed with writes accepted but not yet
// acknowledged is what leaves their outcome unknown while the next leader
// applies them, so that other clients see them.
func (n *nemesis) run(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n.pause(300*time.Millisecond, time.Second)
		id := n.target(t)
		ev := nemesisEvent{start: n.h.Since()}
		switch f := n.rng.IntN(100); {
		case f < 10:
			key := linzKeys[n.rng.IntN(len(linzKeys))] + string(rune('a'+n.rng.IntN(26)))
			if n.rng.IntN(2) == 0 {
				key = key[:len(key)-1] // the key itself: the next write to it goes to the new range
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			resp, err := n.pc.SplitRange(ctx, []byte(key))
			cancel()
			ev.kind, ev.what = "split", fmt.Sprintf("split at %q", key)
			switch {
			case err == nil:
				ev.what += fmt.Sprintf(": ranges %d and %d", resp.Left.RangeId, resp.Right.RangeId)
			case status.Code(err) == codes.FailedPrecondition:
				ev.what += fmt.Sprintf(": refused (%v)", status.Convert(err).Message())
			default:
				ev.what += fmt.Sprintf(": %v", err) // under way; placement finishes it
			}
		case f < 20:
			ev.kind, ev.what = "drain", fmt.Sprintf("SIGTERM node %d (it drains, then stops), restart it", id)
			if code := n.c.procs[id].terminate(t); code != 0 {
				t.Errorf("node %d exited %d after SIGTERM", id, code)
			}
			n.c.start(t, id)
		case f < 50:
			ev.kind, ev.what = "kill", fmt.Sprintf("kill -9 node %d, restart it", id)
			n.c.procs[id].kill(t)
			n.pause(500*time.Millisecond, 2*time.Second)
			n.c.start(t, id)
		case f < 65:
			ev.kind, ev.what = "clients", fmt.Sprintf("node %d's KV service cut off from its clients", id)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{CutClients: true})
			n.pause(500*time.Millisecond, 2*time.Second)
			n.c.setFaults(t, id, &kvpb.SetFaultsRequest{})
		case f < 85:
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
		ev.end = n.h.Since()
		n.events = append(n.events, ev)
		t.Logf("nemesis [%.3fs, %.3fs] %s", ev.start.Seconds(), ev.end.Seconds(), ev.what)
	}
}

func (n *nemesis) kinds() map[string]int {
	m := map[string]int{}
	for _, e := range n.events {
		m[e.kind]++
	}
	return m
}

func (n *nemesis) describe() string {
	var s string
	for _, e := range n.events {
		s += fmt.Sprintf("  [%.3fs, %.3fs] %s\n", e.start.Seconds(), e.end.Seconds(), e.what)
	}
	return s
}
