package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopsPromptly runs the binaries as a user does and times how long
// each takes to exit after Ctrl-C (SIGINT): the demo (a placement service
// and three nodes in one process), a placement process and a node alone
// (whose drain finds no other replica to hand its leaderships to). Each
// must say it stopped cleanly, last; the times are logged, and only a
// generous bound is asserted, since the machine may be busy. On the way,
// a second node started on the first one's data directory is refused with
// the first one's pid.
//
//	go test -run TestStopsPromptly -v ./cmd/shardd
func TestStopsPromptly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs them as processes")
	}
	const bound = 10 * time.Second // seconds are the aim; this is for a loaded machine
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, 4)
	interrupt := func(p *proc) (code int, took time.Duration) {
		t.Helper()
		start := time.Now()
		code = p.signal(t, syscall.SIGINT)
		return code, time.Since(start)
	}

	demo := startProcUntil(t, shardd, "demo", filepath.Join(base, "demo.log"), "Press Ctrl-C to stop.", "demo", "--ranges", "4")
	demo.waitReady(t)
	code, took := interrupt(demo)
	t.Logf("demo: stopped %v after SIGINT", took)
	if out := demo.outputAfterReady(); code != 0 || !strings.HasPrefix(out, "shardd demo: stopped cleanly, ") || !strings.HasSuffix(out, " after the signal (data removed).\n") {
		t.Errorf("demo: exit %d after SIGINT, then printed %q", code, out)
	}
	if took > bound {
		t.Errorf("demo: took %v to stop, more than %v", took, bound)
	}

	placementLog := filepath.Join(base, "placement.log")
	pl := startProcUntil(t, placementBin, "placement", placementLog, "serving on",
		"start", "--id", "1", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--data-dir", filepath.Join(base, "placement"))
	pl.waitReady(t)
	code, took = interrupt(pl)
	t.Logf("placement: stopped %v after SIGINT", took)
	checkStoppedCleanly(t, "placement", code, placementLog)
	if took > bound {
		t.Errorf("placement: took %v to stop, more than %v", took, bound)
	}

	dataDir, nodeLog := filepath.Join(base, "node1"), filepath.Join(base, "node1.log")
	n := startProc(t, shardd, "node 1", nodeLog, "start", "--id", "1", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--gossip", fmt.Sprintf("127.0.0.1:%d", ports[2]), "--data-dir", dataDir, "--bootstrap-ranges", "4", "--bootstrap-replicas", "1")
	n.waitReady(t)
	code, _, stderr := runBinary(t, shardd, "start", "--id", "1", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[3]), "--gossip=", "--data-dir", dataDir)
	want := fmt.Sprintf("data directory %s is in use by another process (pid %d)", dataDir, n.cmd.Process.Pid)
	if code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("a second node on the same data directory: exit %d, %q; want exit 1 and %q", code, stderr, want)
	}
	code, took = interrupt(n)
	t.Logf("node: stopped %v after SIGINT", took)
	checkStoppedCleanly(t, "node", code, nodeLog)
	if took > bound {
		t.Errorf("node: took %v to stop, more than %v", took, bound)
	}
}

// checkStoppedCleanly checks that a process exited 0 and that the last
// line of its log says it stopped cleanly.
func checkStoppedCleanly(t *testing.T, name string, code int, logPath string) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	if code != 0 || !strings.Contains(last, `msg="stopped cleanly" since_signal=`) {
		t.Errorf("%s: exit %d after SIGINT; the log ends with %q, not stopped cleanly", name, code, last)
	}
	t.Logf("%s: %s", name, last)
}
