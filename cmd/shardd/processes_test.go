package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSeparateProcesses starts the cluster README.md describes by hand: a
// placement process and three `shardd start --placement` processes, one of
// them without gossip. The service creates the ranges once the nodes
// registered; the CLI then writes and reads through it and lists the
// nodes and the map. A range whose replicas could not reach the
// gossip-less node 3 would still work on the other two, so the test kills
// node 1 (SIGKILL) and writes again: every range then needs node 3. Node
// 1 restarts on its data and, with node 2 stopped, serves the writes it
// missed. The processes left stop cleanly on SIGTERM.
//
//	go test -run TestSeparateProcesses -v ./cmd/shardd
func TestSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs four processes")
	}
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, 7)
	placement := fmt.Sprintf("127.0.0.1:%d", ports[0])
	const ranges = 6
	pl := startProcUntil(t, placementBin, "placement", filepath.Join(base, "placement.log"), "serving on",
		"start", "--id", "1", "--listen", placement, "--data-dir", filepath.Join(base, "placement"),
		"--initial-ranges", strconv.Itoa(ranges), "--expected-nodes", "3", "--log-level", "warn")
	pl.waitReady(t)
	procs := []*proc{pl}
	nodeArgs := map[int][]string{}
	for id := 1; id <= 3; id++ {
		// Nodes 1 and 2 gossip; node 3 does not, and learns its peers'
		// addresses (and they its) from the placement service alone.
		gossip := fmt.Sprintf("127.0.0.1:%d", ports[3+id])
		if id == 3 {
			gossip = ""
		}
		args := []string{"start", "--id", strconv.Itoa(id), "--listen", fmt.Sprintf("127.0.0.1:%d", ports[id]), "--gossip=" + gossip,
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)), "--placement", placement, "--log-level", "warn"}
		if id == 2 {
			args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", ports[4]))
		}
		nodeArgs[id] = args
		p := startProc(t, shardd, fmt.Sprintf("node %d", id), filepath.Join(base, fmt.Sprintf("node%d.log", id)), args...)
		p.waitReady(t)
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("%s log: %s", p.name, p.logPath)
			}
		}
	})

	run := func(args ...string) (int, string, string) {
		t.Helper()
		return runBinary(t, shardd, args...)
	}
	// The first put waits (bounded) for the service to create the ranges.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, stderr := run("kv", "put", "--placement", placement, "--timeout", "2s", "k0001", "hello")
		if code == 0 && out == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no put succeeded within 30s; last: exit %d, %q, %q", code, out, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, k := range []string{"a", "k2000", "k4000", "k6000", "k8000", "z"} {
		if code, out, stderr := run("kv", "put", "--placement", placement, k, "v"+k); code != 0 || out != "ok\n" {
			t.Fatalf("put %s: exit %d, %q, %q", k, code, out, stderr)
		}
	}
	if code, out, _ := run("kv", "get", "--placement", placement, "k0001"); code != 0 || out != "hello\n" {
		t.Errorf("get: exit %d, %q", code, out)
	}
	code, out, stderr := run("kv", "scan", "--json", "--placement", placement, "")
	var scan scanOutput
	if err := json.Unmarshal([]byte(out), &scan); code != 0 || err != nil || len(scan.KVs) != 7 {
		t.Errorf("scan: exit %d, %v, %q, %q", code, err, out, stderr)
	}
	var rs rangesOutput
	code, out, _ = run("ranges", "--json", "--placement", placement)
	if err := json.Unmarshal([]byte(out), &rs); code != 0 || err != nil || len(rs.Ranges) != ranges || len(rs.Nodes) != 3 {
		t.Errorf("ranges: exit %d, %v:\n%s", code, err, out)
	}
	var nodes []nodeJSON
	code, out, _ = run("nodes", "--json", "--placement", placement)
	if err := json.Unmarshal([]byte(out), &nodes); code != 0 || err != nil || len(nodes) != 3 {
		t.Fatalf("nodes: exit %d, %v:\n%s", code, err, out)
	}
	for _, n := range nodes {
		if !n.Live || n.Replicas != ranges {
			t.Errorf("node %+v: want live with %d replicas", n, ranges)
		}
	}
	code, out, _ = run("nodes", "--placement", placement)
	if code != 0 || !strings.Contains(out, "LIVE") || strings.Count(out, " yes ") != 3 {
		t.Errorf("nodes table: exit %d:\n%s", code, out)
	}
	// The leadership of a range moves where the transfer command says, node
	// 3 (no gossip) included.
	for _, to := range []uint64{3, 2} {
		code, out, stderr := run("transfer", "--json", "--placement", placement, "1", "--to", strconv.FormatUint(to, 10))
		var tr rangeChangeOutput
		if err := json.Unmarshal([]byte(out), &tr); code != 0 || err != nil || tr.Range.Leader != to {
			t.Errorf("transfer 1 --to %d: exit %d, %v, %q, %q", to, code, err, out, stderr)
		}
	}

	// Kill node 1 (SIGKILL): every range then needs nodes 2 and 3 to reach
	// each other.
	procs[1].kill(t)
	for _, k := range []string{"a", "k2000", "k4000", "k6000", "k8000", "z"} {
		if code, out, stderr := run("kv", "put", "--placement", placement, "--timeout", "20s", k, "again"); code != 0 || out != "ok\n" {
			t.Fatalf("put %s without node 1: exit %d, %q, %q", k, code, out, stderr)
		}
	}
	// Restarted on its data, node 1 registers again, reloads its ranges and
	// catches up: with node 2 stopped, reads need it.
	procs[1] = startProc(t, shardd, "node 1", filepath.Join(base, "node1.log"), nodeArgs[1]...)
	procs[1].waitReady(t)
	if c := procs[2].terminate(t); c != 0 {
		t.Errorf("node 2 exited %d after SIGTERM", c)
	}
	procs = slices.Delete(procs, 2, 3)
	for _, k := range []string{"a", "k2000", "k4000", "k6000", "k8000", "z"} {
		if code, out, stderr := run("kv", "get", "--placement", placement, "--timeout", "20s", k); code != 0 || out != "again\n" {
			t.Fatalf("get %s from the restarted node 1 and node 3: exit %d, %q, %q", k, code, out, stderr)
		}
	}
	code, out, _ = run("nodes", "--json", "--placement", placement)
	if err := json.Unmarshal([]byte(out), &nodes); code != 0 || err != nil {
		t.Fatalf("nodes after the restart: exit %d, %v:\n%s", code, err, out)
	}
	for _, n := range nodes {
		if n.NodeID == 1 && (!n.Live || n.ReportedReplicas != ranges) {
			t.Errorf("restarted node 1: %+v, want live and reporting %d replicas", n, ranges)
		}
	}

	var wg sync.WaitGroup
	codes := make([]int, len(procs))
	for i, p := range procs {
		wg.Go(func() { codes[i] = p.terminate(t) })
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("%s exited %d after SIGTERM", procs[i].name, c)
		}
	}
}
