package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

// The end-to-end test runs the shardd binary as a cluster of processes on
// loopback, kills one with SIGKILL, restarts it, and checks that no
// acknowledged write is lost. Run it alone with
//
//	go test -run TestEndToEnd -v ./cmd/shardd
//
// and keep the nodes' logs with SHARDD_E2E_LOGS=dir.

// buildShardd builds the binary under test into a temporary directory.
func buildShardd(t *testing.T) string {
	t.Helper()
	return buildBinary(t, ".")
}

// buildBinary builds the command in the package directory pkg (relative
// to this one) into a temporary directory.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	goBin := goCommand(t)
	name := filepath.Base(pkg)
	if pkg == "." {
		name = "shardd"
	}
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(goBin, "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// goCommand returns the path of the go command: on PATH, or in $GOROOT/bin.
func goCommand(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, statErr := os.Stat(goBin); statErr != nil {
			t.Fatalf("no go command on PATH (%v) or in $GOROOT/bin", err)
		}
	}
	return goBin
}

// freePorts returns n distinct loopback ports that were free for both TCP
// and UDP (memberlist binds both) when it looked. They are drawn below
// Linux's ephemeral range (32768-60999 by default), from which every
// other test's "port 0" listener and outgoing connection takes its port:
// a process these tests kill and restart on its port would otherwise
// find it taken, now and then, by a test running in parallel.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts == 10_000 {
			t.Fatalf("found only %d free ports below the ephemeral range", len(ports))
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(20_000+rand.IntN(12_000))))
		if err != nil {
			continue // taken
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	return ports
}

// proc is one shardd process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	ready   chan string // the ready line
	done    chan struct{}
	waitErr error
	logPath string

	mu     sync.Mutex
	stdout strings.Builder // every line up to the ready line
	after  strings.Builder // every line after it
}

// startProc starts a node with args, logging its stderr to logPath
// (appending, so that a restart keeps the earlier run's log). The process
// is killed and waited for when the test ends. It is ready once it prints
// that it is serving.
func startProc(t *testing.T, bin, name, logPath string, args ...string) *proc {
	t.Helper()
	return startProcUntil(t, bin, name, logPath, "serving on", args...)
}

// startProcUntil is startProc for a process whose ready line contains
// marker.
func startProcUntil(t *testing.T, bin, name, logPath, marker string, args ...string) *proc {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logFile, "=== %s %s\n", name, strings.Join(args, " "))
	p := &proc{name: name, cmd: exec.Command(bin, args...), ready: make(chan string, 1), done: make(chan struct{}), logPath: logPath}
	p.cmd.Stderr = logFile
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if ready {
				p.after.WriteString(line + "\n")
			} else {
				p.stdout.WriteString(line + "\n")
			}
			p.mu.Unlock()
			if ready {
				continue
			}
			if strings.Contains(line, marker) {
				p.ready <- line
				ready = true
			}
		}
	}()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })
	return p
}

// waitReady waits for the ready line.
func (p *proc) waitReady(t *testing.T) string {
	t.Helper()
	select {
	case line := <-p.ready:
		return line
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v\nthe end of its log (%s):\n%s", p.name, p.waitErr, p.logPath, logTail(p.logPath))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30s\nthe end of its log (%s):\n%s", p.name, p.logPath, logTail(p.logPath))
	}
	return ""
}

// logTail returns the last lines of the log at path.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// output returns what the process printed up to its ready line.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// outputAfterReady returns what the process printed after its ready
// line; all of it once the process has exited.
func (p *proc) outputAfterReady() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.after.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s (pid %d) still running 30s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// terminate sends SIGTERM and returns the exit code.
func (p *proc) terminate(t *testing.T) int {
	t.Helper()
	return p.signal(t, syscall.SIGTERM)
}

// signal sends sig and returns the exit code.
func (p *proc) signal(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, p.name, err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of %v", p.name, sig)
		return -1
	}
}

// send sends sig without waiting for anything (SIGSTOP, SIGCONT).
func (p *proc) send(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, p.name, err)
	}
}

// runBinary runs the binary to completion.
func runBinary(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr, err := tryBinary(bin, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return code, stdout, stderr
}

// tryBinary runs the binary to completion; it fails only if the binary
// could not run. It is runBinary for goroutines other than the test's.
func tryBinary(bin string, args ...string) (code int, stdout, stderr string, err error) {
	var out, errOut strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return 0, "", "", err
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String(), nil
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a three-process cluster")
	}
	bin := buildShardd(t)
	base := t.TempDir()
	logDir := base
	if d := os.Getenv("SHARDD_E2E_LOGS"); d != "" {
		logDir = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 6)
	const size = 3
	grpcAddr := func(id uint64) string { return fmt.Sprintf("127.0.0.1:%d", ports[id-1]) }
	gossipAddr := func(id uint64) string { return fmt.Sprintf("127.0.0.1:%d", ports[size+id-1]) }
	nodes := map[uint64]string{}
	var peers []string
	for id := uint64(1); id <= size; id++ {
		nodes[id] = grpcAddr(id)
		peers = append(peers, fmt.Sprintf("%d=%s", id, grpcAddr(id)))
	}
	args := func(id uint64) []string {
		return []string{"start", "--id", strconv.FormatUint(id, 10), "--listen", grpcAddr(id),
			"--data-dir", filepath.Join(base, fmt.Sprintf("node%d", id)),
			"--gossip", gossipAddr(id), "--join", gossipAddr(1), "--peers", strings.Join(peers, ","),
			"--bootstrap-ranges", "4", "--bootstrap-replicas", "1,2,3"}
	}
	logPath := func(id uint64) string { return filepath.Join(logDir, fmt.Sprintf("node%d.log", id)) }
	t.Cleanup(func() {
		if t.Failed() {
			for id := uint64(1); id <= size; id++ {
				if b, err := os.ReadFile(logPath(id)); err == nil {
					t.Logf("node %d log (tail):\n%s", id, tail(string(b), 60))
				}
			}
		}
	})
	procs := map[uint64]*proc{}
	start := func(id uint64) {
		procs[id] = startProc(t, bin, fmt.Sprintf("node %d", id), logPath(id), args(id)...)
	}
	checkReady := func(id uint64) {
		line := procs[id].waitReady(t)
		want := fmt.Sprintf("shardd node %d serving on %s (gossip %s), data in %s", id, grpcAddr(id), gossipAddr(id), filepath.Join(base, fmt.Sprintf("node%d", id)))
		if line != want {
			t.Fatalf("ready line %q, want %q", line, want)
		}
	}
	// Node 1 is everyone's gossip seed: start it first.
	start(1)
	checkReady(1)
	start(2)
	start(3)
	checkReady(2)
	checkReady(3)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	leaders, err := waitForLeaders(wctx, nodes, 4)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leaders by range: %v", leaders)
	waitHosting(ctx, t, nodes, 4)

	// The victim leads some range and follows others; not node 1, the
	// seed, if possible.
	led := map[uint64]int{}
	for _, lead := range leaders {
		led[lead]++
	}
	var victim uint64
	for id := uint64(size); id >= 1; id-- {
		if led[id] > 0 && led[id] < len(leaders) {
			victim = id
			break
		}
	}
	if victim == 0 {
		t.Fatalf("no node leads some ranges and follows others: %v", leaders)
	}

	kv := newKVClient(t, nodes)
	key := func(i int) string { return fmt.Sprintf("k%04d", i*25) }
	value := func(i int) string { return fmt.Sprintf("value-%d-of-%s", i, key(i)) }
	writeAll := func(from, to int) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		sem := make(chan struct{}, 8)
		for i := from; i < to; i++ {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := kv.put(wctx, key(i), value(i)); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("put %s: %w", key(i), err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	writeAll(0, 200)
	t.Logf("200 keys written; killing node %d (leads %d of %d ranges)", victim, led[victim], len(leaders))

	procs[victim].kill(t)
	if procs[victim].cmd.ProcessState == nil || procs[victim].cmd.ProcessState.Success() {
		t.Fatalf("node %d was not killed: %v", victim, procs[victim].cmd.ProcessState)
	}
	writeAll(200, 400)
	t.Logf("200 more keys written without node %d; restarting it", victim)

	start(victim)
	checkReady(victim)
	// The restarted node catches up: stale reads on it see every key.
	deadline := time.Now().Add(30 * time.Second)
	missing := map[int]bool{}
	for i := range 400 {
		missing[i] = true
	}
	for len(missing) > 0 && time.Now().Before(deadline) {
		for i := range missing {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			v, found, err := kv.staleGet(rctx, nodes[victim], key(i))
			cancel()
			if err == nil && found && v == value(i) {
				delete(missing, i)
			}
		}
		if len(missing) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("node %d has not caught up after 30s: %d keys missing from its stale reads", victim, len(missing))
	}
	t.Logf("node %d caught up", victim)

	// Every acknowledged write reads back through the leaders.
	for i := range 400 {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		v, found, err := kv.get(rctx, key(i))
		cancel()
		if err != nil || !found || v != value(i) {
			t.Fatalf("get %s = %q, found %v, err %v; want %q", key(i), v, found, err, value(i))
		}
	}

	// The inspection commands against the running cluster.
	code, stdout, stderr := runBinary(t, bin, "ranges", "--addr", grpcAddr(1))
	if code != 0 {
		t.Fatalf("ranges: exit %d: %s", code, stderr)
	}
	rows := 0
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == strconv.Itoa(rows+1) && f[4] == "1,2,3" && f[3] == "1" {
			rows++
		}
	}
	if rows != 4 || !strings.Contains(stdout, "-inf") || !strings.Contains(stdout, "k2500") || !strings.Contains(stdout, "+inf") {
		t.Errorf("ranges output has %d of 4 ranges:\n%s", rows, stdout)
	}
	code, stdout, _ = runBinary(t, bin, "ranges", "--json", "--addr", grpcAddr(victim))
	var ranges rangesOutput
	if err := json.Unmarshal([]byte(stdout), &ranges); code != 0 || err != nil || len(ranges.Ranges) != 4 || len(ranges.Nodes) != 3 {
		t.Errorf("ranges --json: exit %d, %v:\n%s", code, err, stdout)
	}
	code, stdout, _ = runBinary(t, bin, "status", "--addr", grpcAddr(victim))
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("node                %d\n", victim)) || !strings.Contains(stdout, "groups              4\n") {
		t.Errorf("status: exit %d:\n%s", code, stdout)
	}
	code, stdout, stderr = runBinary(t, bin, "status", "--addr", "127.0.0.1:1")
	if want := "cannot reach node at 127.0.0.1:1: is `shardd start` running?"; code != 1 || stdout != "" || !strings.Contains(stderr, want) {
		t.Errorf("status against nothing: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
	}

	// SIGTERM stops every node cleanly: exit code 0.
	var wg sync.WaitGroup
	codes := make([]int, size+1)
	for id, p := range procs {
		wg.Go(func() { codes[id] = p.terminate(t) })
	}
	wg.Wait()
	for id := uint64(1); id <= size; id++ {
		if codes[id] != 0 {
			t.Errorf("node %d exited %d after SIGTERM", id, codes[id])
		}
	}
}

// waitHosting waits until every node lists want initialized ranges.
func waitHosting(ctx context.Context, t *testing.T, nodes map[uint64]string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for id, addr := range nodes {
		for {
			resp, err := askNode(ctx, addr, time.Second, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangesResponse, error) {
				return c.Ranges(ctx, &kvpb.RangesRequest{})
			})
			if err == nil && len(resp.Ranges) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d hosts %v, not %d ranges, after 30s (%v)", id, resp, want, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
