package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// runSync runs a command line to completion in this process.
func runSync(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runSyncIn(t, nil, args...)
}

// runSyncIn is runSync with stdin as the command's standard input.
func runSyncIn(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut testutil.SyncBuffer
	code = run(t.Context(), &env{stdout: &out, stderr: &errOut, stdin: stdin}, args)
	return code, out.String(), errOut.String()
}

// asyncRun is a long-running command (start, demo) run in this process
// until its context is cancelled, as a signal would.
type asyncRun struct {
	stdout, stderr testutil.SyncBuffer
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
}

func runAsync(t *testing.T, tweak func(*node.Config), args ...string) *asyncRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &asyncRun{cancel: cancel, done: make(chan struct{})}
	e := &env{stdout: &r.stdout, stderr: &r.stderr, tweakNode: tweak}
	go func() {
		defer close(r.done)
		r.code = run(ctx, e, args)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if t.Failed() {
			t.Logf("%q stderr:\n%s", args, r.stderr.String())
		}
	})
	return r
}

// waitOutput waits until stdout contains want, or the command exits.
func (r *asyncRun) waitOutput(t *testing.T, want string) string {
	t.Helper()
	return r.waitIn(t, "stdout", &r.stdout, want)
}

// waitStderr waits until stderr (the log) contains want, or the command
// exits.
func (r *asyncRun) waitStderr(t *testing.T, want string) string {
	t.Helper()
	return r.waitIn(t, "stderr", &r.stderr, want)
}

func (r *asyncRun) waitIn(t *testing.T, name string, buf *testutil.SyncBuffer, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if out := buf.String(); strings.Contains(out, want) {
			return out
		}
		select {
		case <-r.done:
			t.Fatalf("exited with %d before printing %q; stdout:\n%s\nstderr:\n%s", r.code, want, r.stdout.String(), r.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %q in %s after 30s:\n%s", want, name, buf.String())
	return ""
}

// stop cancels the command as SIGINT would and returns its exit code.
func (r *asyncRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.code
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not stop within 30s of its signal")
		return -1
	}
}

func (r *asyncRun) exited(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(within):
		t.Fatalf("the command did not exit within %v", within)
		return -1
	}
}

func TestUsage(t *testing.T) {
	code, _, stderr := runSync(t)
	if code != exitUsage || !strings.Contains(stderr, "Commands:") {
		t.Errorf("no arguments: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ := runSync(t, "help")
	if code != exitOK {
		t.Errorf("help: exit %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(stdout, "  "+c.name+" ") {
			t.Errorf("help does not list %s:\n%s", c.name, stdout)
		}
	}
	code, _, stderr = runSync(t, "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runSync(t, "help", "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("help for an unknown command: exit %d, stderr %q", code, stderr)
	}
}

// TestHelpExplainsEveryFlag checks that "shardd help <command>" and
// "shardd <command> -h" describe every flag of every command.
func TestHelpExplainsEveryFlag(t *testing.T) {
	for _, c := range commands {
		code, stdout, _ := runSync(t, "help", c.name)
		if code != exitOK {
			t.Errorf("help %s: exit %d", c.name, code)
		}
		code, _, stderr := runSync(t, c.name, "-h")
		if code != exitOK || stderr != stdout {
			t.Errorf("%s -h: exit %d, and its output differs from help's:\n%s", c.name, code, stderr)
		}
		if !strings.HasPrefix(stdout, "Usage: shardd "+c.name) || len(strings.TrimSpace(c.doc)) < 50 {
			t.Errorf("help %s has no usage line or description:\n%s", c.name, stdout)
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(fs)
		checkHelpShowsFlags(t, c.name, stdout, fs)
	}
}

// checkHelpShowsFlags checks that help, the output of "shardd help" for the
// command name, shows every flag of fs and explains each in more than a
// word or two.
func checkHelpShowsFlags(t *testing.T, name, help string, fs *flag.FlagSet) {
	t.Helper()
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "  -"+f.Name+" ") && !strings.Contains(help, "  -"+f.Name+"\n") {
			t.Errorf("help %s does not show -%s", name, f.Name)
		}
		if len(f.Usage) < 15 {
			t.Errorf("%s -%s: usage %q explains too little", name, f.Name, f.Usage)
		}
	})
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"start", "--data-dir=/tmp/x"}, "--id is required"},
		{[]string{"start", "--id=1", "--data-dir=/tmp/x", "extra"}, "unexpected arguments"},
		{[]string{"ranges", "--addr=nope"}, "--addr"},
		{[]string{"status", "extra"}, "unexpected arguments"},
		{[]string{"demo", "--ranges=0"}, "--ranges"},
		{[]string{"demo", "--log-level=loud"}, "--log-level"},
		{[]string{"move", "7", "--to", "2"}, "--from and --to are required"},
		{[]string{"move", "x", "--from", "1", "--to", "2"}, "not a range id"},
		{[]string{"move", "7", "--from", "0", "--to", "2"}, "--from"},
		{[]string{"split"}, "give the one key"},
		{[]string{"drain", "--timeout=0s"}, "--timeout must be positive"},
	} {
		code, _, stderr := runSync(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// TestInspectUnreachableNode: asking a node that is not there fails with
// exit code 1 and says what to do.
func TestInspectUnreachableNode(t *testing.T) {
	for _, cmd := range []string{"status", "ranges"} {
		code, stdout, stderr := runSync(t, cmd, "--addr", "127.0.0.1:1")
		want := "cannot reach node at 127.0.0.1:1: is `shardd start` running?"
		if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd, code, stdout, stderr, want)
		}
	}
}

// TestInspectUnreachablePlacement: the commands that ask the placement
// service say so when it does not answer: at once when nothing listens
// there, after --timeout when something listens but does not answer.
func TestInspectUnreachablePlacement(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, cmd := range []string{"nodes", "ranges"} {
		code, stdout, stderr := runSync(t, cmd, "--placement", "127.0.0.1:1", "--timeout", "1m")
		want := "cannot reach placement at 127.0.0.1:1: is `placement start` running? (dial tcp 127.0.0.1:1: connect: connection refused)"
		if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd, code, stdout, stderr, want)
		}
		code, stdout, stderr = runSync(t, cmd, "--placement", silent.Addr().String(), "--timeout", "300ms")
		want = "cannot reach placement at " + silent.Addr().String() + " within 300ms: is `placement start` running?"
		if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd, code, stdout, stderr, want)
		}
	}
	code, _, stderr := runSync(t, "kv", "get", "--placement", silent.Addr().String(), "--timeout", "300ms", "k")
	want := "cannot reach placement at " + silent.Addr().String() + " within 300ms: is `placement start` running there?"
	if code != exitError || !strings.Contains(stderr, want) || !strings.Contains(stderr, "--addr NODE") {
		t.Errorf("kv get: exit %d, stderr %q; want %q and --addr NODE", code, stderr, want)
	}
}

func TestExplainRPCError(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.Unavailable:      "cannot reach node at a:1: is `shardd start` running? (boom)",
		codes.DeadlineExceeded: "did not answer within 2s",
		codes.Unimplemented:    "does not serve the shardd Admin API",
		codes.Internal:         "node at a:1: Internal: boom",
	} {
		if got := explainRPCError("a:1", 2*time.Second, status.Error(code, "boom")).Error(); !strings.Contains(got, want) {
			t.Errorf("%v: %q, want %q", code, got, want)
		}
	}
}

func TestFormatKey(t *testing.T) {
	for _, tc := range []struct {
		key  []byte
		end  bool
		want string
	}{
		{nil, false, "-inf"},
		{nil, true, "+inf"},
		{[]byte("k2500"), false, "k2500"},
		{[]byte("a b"), false, `"a b"`},
		{[]byte{0, 0xff}, true, `"\x00\xff"`},
		{[]byte(`say "x"`), true, `"say \"x\""`},
		{[]byte("ключ"), false, "ключ"},
	} {
		if got := formatKey(tc.key, tc.end); got != tc.want {
			t.Errorf("formatKey(%q, %v) = %s, want %s", tc.key, tc.end, got, tc.want)
		}
	}
}

func testRanges() *kvpb.RangesResponse {
	keys, _ := evenSplitKeys(2)
	descs, _ := splitDescriptors(keys, []uint64{1, 2})
	descs[1].LeaderNodeId = 0
	descs[1].Replicas = append(descs[1].Replicas, &kvpb.ReplicaDescriptor{NodeId: 3, Role: kvpb.ReplicaRole_LEARNER})
	return &kvpb.RangesResponse{Ranges: descs, NodeAddrs: map[uint64]string{2: "127.0.0.1:7102", 1: "127.0.0.1:7101"}}
}

func TestRangesOutput(t *testing.T) {
	var b bytes.Buffer
	if err := writeRangesTable(&b, testRanges()); err != nil {
		t.Fatal(err)
	}
	want := `RANGE  START  END    GEN  REPLICAS        LEADER
1      -inf   k5000  1    1,2             1
2      k5000  +inf   1    1,2,3(learner)  -

NODE  ADDRESS
1     127.0.0.1:7101
2     127.0.0.1:7102
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeJSON(&b, rangesJSON(testRanges())); err != nil {
		t.Fatal(err)
	}
	var got rangesOutput
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Ranges) != 2 || got.Ranges[0].EndKey != "k5000" || got.Ranges[1].StartKey != "k5000" || got.Ranges[1].EndKey != "" ||
		fmt.Sprint(got.Ranges[1].Replicas) != "[1 2]" || fmt.Sprint(got.Ranges[1].Learners) != "[3]" || got.Ranges[1].Leader != 0 ||
		got.Nodes[2] != "127.0.0.1:7102" {
		t.Errorf("json: %s", b.String())
	}
	b.Reset()
	if err := writeJSON(&b, rangesJSON(&kvpb.RangesResponse{})); err != nil || !strings.Contains(b.String(), `"ranges": []`) {
		t.Errorf("no ranges: %s %v", b.String(), err)
	}
}

func TestDemoCommands(t *testing.T) {
	cmds := demoCommands("127.0.0.1:4242", "127.0.0.1:4343")
	want := []string{
		"go run ./cmd/shardd nodes --placement 127.0.0.1:4242",
		"go run ./cmd/shardd ranges --placement 127.0.0.1:4242",
		"go run ./cmd/shardd status --addr 127.0.0.1:4343",
		"go run ./cmd/shardd kv put --placement 127.0.0.1:4242 k0001 hello",
		"go run ./cmd/shardd kv get --placement 127.0.0.1:4242 k0001",
	}
	for _, w := range want {
		found := false
		for _, c := range cmds {
			found = found || c == w
		}
		if !found {
			t.Errorf("demo commands lack %q: %q", w, cmds)
		}
	}
	// The commands the demo prints that exist already must parse.
	for _, c := range cmds {
		args := strings.Fields(strings.TrimPrefix(c, "go run ./cmd/shardd "))
		if cmd := lookup(args[0]); cmd != nil {
			fs := newFlagSet(cmd, io.Discard)
			cmd.setup(fs)
			if err := fs.Parse(args[1:]); err != nil {
				t.Errorf("%q does not parse: %v", c, err)
			}
		}
	}
}

var readyLine = regexp.MustCompile(`shardd node (\d+) serving on (\S+) \(gossip (\S+)\), data in (.+)\n`)

// TestStartInProcess runs start until a signal, then starts it again on
// the same data directory: the second start keeps the ranges of the first
// and ignores the bootstrap flags.
func TestStartInProcess(t *testing.T) {
	dir := t.TempDir()
	args := []string{"start", "--id=1", "--listen=127.0.0.1:0", "--gossip=127.0.0.1:0", "--data-dir=" + dir,
		"--bootstrap-ranges=3", "--bootstrap-replicas=1", "--tick=10ms"}
	r := runAsync(t, nil, args...)
	m := readyLine.FindStringSubmatch(r.waitOutput(t, "serving on"))
	if m == nil || m[1] != "1" || m[4] != dir || strings.HasSuffix(m[2], ":0") || strings.HasSuffix(m[3], ":0") {
		t.Fatalf("ready line: %q", r.stdout.String())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	leaders, err := waitForLeaders(ctx, map[uint64]string{1: m[2]}, 3)
	if err != nil || len(leaders) != 3 {
		t.Fatalf("leaders %v: %v", leaders, err)
	}
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d after the signal; stderr:\n%s", code, r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "stopped cleanly") || !strings.Contains(r.stderr.String(), "bootstrapped ranges") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}

	// Again, with bootstrap flags that would make different ranges.
	args[5] = "--bootstrap-ranges=5"
	r = runAsync(t, nil, args...)
	m = readyLine.FindStringSubmatch(r.waitOutput(t, "serving on"))
	resp, err := askNode(ctx, m[2], 5*time.Second, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangesResponse, error) {
		return c.Ranges(ctx, &kvpb.RangesRequest{})
	})
	if err != nil || len(resp.Ranges) != 3 {
		t.Fatalf("after a restart: %v, %v", resp, err)
	}
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(r.stderr.String(), "ignoring the bootstrap ranges") {
		t.Errorf("the restart did not say it ignored the bootstrap flags:\n%s", r.stderr.String())
	}
}

// TestStartFailsToStart: a node that cannot start (its port is taken)
// exits 1 and says why.
func TestStartFailsToStart(t *testing.T) {
	r := runAsync(t, nil, "start", "--id=1", "--listen=127.0.0.1:0", "--gossip=", "--data-dir="+t.TempDir())
	m := readyLine.FindStringSubmatch(r.waitOutput(t, "serving on"))
	code, _, stderr := runSync(t, "start", "--id=2", "--listen="+m[2], "--gossip=", "--data-dir="+t.TempDir())
	if code != exitError || !strings.Contains(stderr, "cannot start node 2") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestStartExitsOnDiskError: when the disk fails under a running node, the
// write is not acknowledged, start logs the disk error and exits 1.
func TestStartExitsOnDiskError(t *testing.T) {
	var failing atomic.Bool
	injected := errors.New("injected sync failure")
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			return injected
		}
		return nil
	}))
	r := runAsync(t, func(cfg *node.Config) { cfg.FS = fs }, "start", "--id=1", "--listen=127.0.0.1:0", "--gossip=",
		"--data-dir="+t.TempDir(), "--bootstrap-ranges=1", "--bootstrap-replicas=1", "--tick=10ms")
	addr := readyLine.FindStringSubmatch(r.waitOutput(t, "serving on"))[2]
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := waitForLeaders(ctx, map[uint64]string{1: addr}, 1); err != nil {
		t.Fatal(err)
	}
	kv := newKVClient(t, map[uint64]string{1: addr})
	if err := kv.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if _, err := kv.client(addr).Put(ctx, &kvpb.PutRequest{Key: []byte("after"), Value: []byte("2")}); err == nil {
		t.Fatal("a write was acknowledged although its fsync failed")
	}
	if code := r.exited(t, 20*time.Second); code != exitError {
		t.Fatalf("exit %d after a disk error, want 1", code)
	}
	stderr := r.stderr.String()
	for _, want := range []string{"DISK ERROR", "injected sync failure", "shardd start: node 1 stopped after a disk error"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

var demoNodeLine = regexp.MustCompile(`node (\d) +grpc (\S+) +gossip (\S+)`)
var demoDataLine = regexp.MustCompile(`Data in (\S+) \((removed|kept) on exit\)`)
var demoPlacementLine = regexp.MustCompile(`placement +grpc (\S+)`)

// TestDemo runs the demo until a signal: every range has a leader on
// every node, the temporary data is removed on exit, and a --data-dir is
// kept and reused.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with gossip")
	}
	check := func(r *asyncRun, ranges int) (dir string) {
		t.Helper()
		out := r.waitOutput(t, "Press Ctrl-C to stop.")
		nodes := demoNodeLine.FindAllStringSubmatch(out, -1)
		data := demoDataLine.FindStringSubmatch(out)
		if len(nodes) != 3 || data == nil || !strings.Contains(out, fmt.Sprintf("%d ranges", ranges)) {
			t.Fatalf("banner:\n%s", out)
		}
		pl := demoPlacementLine.FindStringSubmatch(out)
		if pl == nil || !strings.Contains(out, "go run ./cmd/shardd kv put --placement "+pl[1]+" k0001 hello") {
			t.Errorf("banner lacks the placement address or the put example:\n%s", out)
		}
		for _, n := range nodes {
			resp, err := askNode(t.Context(), n[2], 5*time.Second, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangesResponse, error) {
				return c.Ranges(ctx, &kvpb.RangesRequest{})
			})
			if err != nil || len(resp.Ranges) != ranges || len(resp.NodeAddrs) != 3 {
				t.Errorf("node %s: %v %v", n[1], resp, err)
			}
		}
		if code := r.stop(t); code != exitOK {
			t.Fatalf("demo exit %d; stderr:\n%s", code, r.stderr.String())
		}
		return data[1]
	}
	dir := check(runAsync(t, nil, "demo", "--ranges=5", "--tick=10ms"), 5)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo left its temporary data in %s: %v", dir, err)
	}

	mine := t.TempDir()
	if got := check(runAsync(t, nil, "demo", "--ranges=2", "--data-dir="+mine, "--tick=10ms"), 2); got != mine {
		t.Errorf("data in %s, want %s", got, mine)
	}
	if got := check(runAsync(t, nil, "demo", "--ranges=4", "--data-dir="+mine, "--tick=10ms"), 2); got != mine {
		t.Errorf("data in %s, want %s", got, mine)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the demo removed the --data-dir: %v", err)
	}
}
