package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
)

// The fault suite's cluster: three placement processes and four shardd
// processes on loopback, started with --enable-fault-injection.
const (
	// faultNodes shardd processes hold three replicas of each range, so
	// that every range lacks a node that a replica can move to.
	faultNodes = 4
	// faultPlacements placement processes replicate the map, so that the
	// nemesis can kill the placement leader while the service keeps
	// serving (and finishing the operations the killed one started).
	faultPlacements = 3
	// faultSettleTime is the placement processes' --settle-time: short,
	// so that a node the nemesis restarted soon takes replicas again.
	faultSettleTime = 2 * time.Second
)

// faultKeys are the registers: a few keys spread over the placement
// service's three ranges (split near k3333 and k6666), so that many
// operations race on each key.
var faultKeys = []string{"k1000", "k2000", "k5000", "k7000", "k9000"}

// faultCluster is the placement processes and the shardd processes.
type faultCluster struct {
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
	kv     map[uint64]kvpb.KVClient
	// logsKept is set once the logs were copied out of the test's
	// temporary directory.
	logsKept bool
}

func startFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, faultPlacements+faultNodes)
	c := &faultCluster{shardd: shardd, placementBin: placementBin, base: base,
		plAddrs: map[uint64]string{}, plArgs: map[uint64][]string{}, plProcs: map[uint64]*proc{}, plAPI: map[uint64]placementpb.PlacementClient{},
		addrs: map[uint64]string{}, args: map[uint64][]string{}, procs: map[uint64]*proc{},
		faults: map[uint64]kvpb.FaultClient{}, admin: map[uint64]kvpb.AdminClient{}, kv: map[uint64]kvpb.KVClient{}}
	var peers, addrs []string
	for id := uint64(1); id <= faultPlacements; id++ {
		c.plAddrs[id] = fmt.Sprintf("127.0.0.1:%d", ports[id-1])
		peers = append(peers, fmt.Sprintf("%d=%s", id, c.plAddrs[id]))
		addrs = append(addrs, c.plAddrs[id])
	}
	c.placement = strings.Join(addrs, ",")
	t.Cleanup(func() {
		// A failure other than a violation (which keeps them with the
		// history) keeps the logs too.
		if t.Failed() && !c.logsKept {
			if dir, err := os.MkdirTemp("", "shardd-faults-"); err == nil {
				c.keepLogs(t, dir)
				t.Logf("the processes' logs: %s", dir)
			}
		}
	})
	for id := uint64(1); id <= faultPlacements; id++ {
		c.plArgs[id] = []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", c.plAddrs[id],
			"--peers", strings.Join(peers, ","), "--data-dir", filepath.Join(base, fmt.Sprintf("placement%d", id)),
			"--initial-ranges", "3", "--expected-nodes", strconv.Itoa(faultNodes),
			"--settle-time", faultSettleTime.String(), "--log-level", "info"}
		c.logs = append(c.logs, c.placementLogPath(id))
		c.startPlacement(t, id)
		c.plAPI[id] = placementpb.NewPlacementClient(dialTest(t, c.plAddrs[id]))
	}
	for id := uint64(1); id <= faultNodes; id++ {
		c.addrs[id] = fmt.Sprintf("127.0.0.1:%d", ports[faultPlacements+int(id)-1])
		// No gossip: the nodes learn each other's addresses from the
		// placement service, so a restarted node needs nothing else.
		c.args[id] = []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", c.addrs[id], "--gossip=",
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)), "--placement", c.placement,
			"--enable-fault-injection", "--log-level", "info"}
		c.logs = append(c.logs, c.logPath(id))
		c.start(t, id, 0)
		conn := dialTest(t, c.addrs[id])
		c.faults[id] = kvpb.NewFaultClient(conn)
		c.admin[id] = kvpb.NewAdminClient(conn)
		c.kv[id] = kvpb.NewKVClient(conn)
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
func (c *faultCluster) placementClient(t *testing.T) *client.Client {
	t.Helper()
	pc, err := client.New(strings.Split(c.placement, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func (c *faultCluster) logPath(id uint64) string {
	return filepath.Join(c.base, fmt.Sprintf("node%d.log", id))
}

func (c *faultCluster) placementLogPath(id uint64) string {
	return filepath.Join(c.base, fmt.Sprintf("placement%d.log", id))
}

// start starts node id, on the data it has, with its clock clockOffset
// ahead, and waits until it serves.
func (c *faultCluster) start(t *testing.T, id uint64, clockOffset time.Duration) {
	t.Helper()
	args := append(slices.Clip(c.args[id]), "--clock-offset", clockOffset.String())
	c.procs[id] = startProc(t, c.shardd, fmt.Sprintf("node %d", id), c.logPath(id), args...)
	c.procs[id].waitReady(t)
}

// startPlacement starts placement process id, on the data it has, and
// waits until it serves.
func (c *faultCluster) startPlacement(t *testing.T, id uint64) {
	t.Helper()
	c.plProcs[id] = startProcUntil(t, c.placementBin, fmt.Sprintf("placement %d", id), c.placementLogPath(id), "serving on", c.plArgs[id]...)
	c.plProcs[id].waitReady(t)
}

// placementLeader returns the placement process that serves the API as
// the leader (the others refuse, naming it), or 0 if none does.
func (c *faultCluster) placementLeader(ctx context.Context) uint64 {
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
func (c *faultCluster) waitServing(t *testing.T, rc *router.Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, k := range faultKeys {
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

// faultConvergeTimeout bounds how long the placement service may take,
// once the faults end, to finish its operations and settle the map.
const faultConvergeTimeout = 60 * time.Second

// waitConverged waits until the placement service has no operation under
// way and its map tiles the key space with three voters per range, on
// nodes it sees live, each of which hosts the range at the map's
// generation; it returns the map.
func (c *faultCluster) waitConverged(t *testing.T, pc *client.Client) []*kvpb.RangeDescriptor {
	t.Helper()
	deadline := time.Now().Add(faultConvergeTimeout)
	for {
		descs, problem := c.converged(t.Context(), pc)
		if problem == "" {
			return descs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the faults ended: %s\nthe map: %v", faultConvergeTimeout, problem, descs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// converged returns the map and what keeps it from having converged ("":
// nothing); see waitConverged.
func (c *faultCluster) converged(ctx context.Context, pc *client.Client) ([]*kvpb.RangeDescriptor, string) {
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
		voters := placement.VoterNodes(d)
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

// setFaults replaces node id's faults.
func (c *faultCluster) setFaults(t *testing.T, id uint64, req *kvpb.SetFaultsRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.faults[id].SetFaults(ctx, req); err != nil {
		t.Fatalf("SetFaults on node %d: %v", id, err)
	}
}

// jumpClock moves node id's clock forward by d and returns its offset
// now.
func (c *faultCluster) jumpClock(t *testing.T, id uint64, d time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.faults[id].JumpClock(ctx, &kvpb.JumpClockRequest{ForwardNanos: int64(d)})
	if err != nil {
		t.Fatalf("JumpClock on node %d: %v", id, err)
	}
	return time.Duration(resp.OffsetNanos)
}

// staleRead is the broken client's read: a stale read (no lease check)
// from whichever node answers first, in random order, that holds key.
// It lets the fault suite show that its check finds the stale values
// such reads return.
func (c *faultCluster) staleRead(ctx context.Context, _ *router.Client, key string) ([]byte, error) {
	var err error
	for _, i := range rand.Perm(faultNodes) {
		var resp *kvpb.GetResponse
		req := &kvpb.GetRequest{Header: &kvpb.RequestHeader{Consistency: kvpb.ReadConsistency_STALE}, Key: []byte(key)}
		if resp, err = c.kv[uint64(i+1)].Get(ctx, req); err == nil {
			return resp.Value, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// keepLogs copies the processes' logs into dir, which outlives the test.
func (c *faultCluster) keepLogs(t *testing.T, dir string) {
	c.logsKept = true
	for _, p := range c.logs {
		if b, err := os.ReadFile(p); err == nil {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644); err != nil {
				t.Log(err)
			}
		}
	}
}
