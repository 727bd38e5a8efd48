package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/placement/client"
)

func runArgs(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut testutil.SyncBuffer
	code := run(ctx, &env{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

// TestHelpOnEveryCommand: "placement help CMD" and "placement CMD -h",
// with -h anywhere, print the same text, in shardd's layout.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands {
		_, helpOut, _ := runArgs(context.Background(), "help", c.name)
		fs := flagSet(c, io.Discard)
		c.setup(fs)
		hasFlags := fs.Lookup("id") != nil
		if !strings.HasPrefix(helpOut, "Usage: placement "+c.name+" "+c.args+"\n\n") || hasFlags != strings.Contains(helpOut, "\nFlags:\n  -") {
			t.Errorf("%s help does not explain the flags:\n%s", c.name, helpOut)
		}
		argLines := [][]string{{c.name, "--help"}, {c.name, "-h"}}
		if hasFlags {
			argLines = append(argLines, []string{c.name, "--id=1", "-h"})
		}
		for _, args := range argLines {
			if code, _, errOut := runArgs(context.Background(), args...); code != exitOK || errOut != helpOut {
				t.Errorf("%q: exit %d, and its help differs from help's:\n%s", args, code, errOut)
			}
		}
	}
	code, out, _ := runArgs(context.Background(), "help")
	var want bytes.Buffer
	program().WriteUsage(&want)
	if code != exitOK || out != want.String() || !strings.HasPrefix(out, "placement runs the placement service") ||
		!strings.Contains(out, "\nUsage:\n  placement <command> [flags]\n\nCommands:\n  start    run one placement process\n") ||
		!strings.Contains(out, "\n  help     explain a command and its flags\n") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	if code, _, errOut := runArgs(context.Background()); code != exitUsage || errOut != out {
		t.Errorf("no arguments: exit %d, and the usage differs from help's:\n%s", code, errOut)
	}
}

func TestBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage:\n  placement <command>"},
		{[]string{"frob"}, `placement: unknown command "frob"`},
		{[]string{"help", "frob"}, `placement help: unknown command "frob"`},
		{[]string{"start", "--id", "1", "--data-dir", dir, "extra"}, "placement start: unexpected arguments [\"extra\"]\nRun 'placement help start' for its flags."},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--pprof", "nope"}, "pprof: listen tcp: address nope: missing port in address"},
		{[]string{"start"}, "--id is required"},
		{[]string{"start", "--id", "1"}, "--data-dir is required"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--peers", "1=127.0.0.1:1,2=127.0.0.1:2"}, "run 1, or 3"},
		{[]string{"start", "--id", "4", "--data-dir", dir, "--peers", "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3"}, "does not list this process"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--peers", "1=nowhere"}, "not host:port"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--initial-ranges", "4", "--split-keys", "a,b"}, "not both"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--initial-ranges", "0"}, "at least 1"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--replicas", "3", "--expected-nodes", "2"}, "expect at least 3 nodes"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--split-keys", "b,a"}, "bad split keys"},
		{[]string{"start", "--id", "x"}, "invalid value"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--split-keys", "a,,b"}, "is empty"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--log-level", "loud"}, "--log-level"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--split-size", "-1"}, "--split-size -1"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--split-qps", "-5"}, "--split-qps -5"},
		{[]string{"start", "--id", "1", "--data-dir", dir, "--max-concurrent-splits", "0"}, "--max-concurrent-splits 0"},
		{[]string{"nodes"}, `unknown command "nodes"`},
	} {
		code, _, errOut := runArgs(context.Background(), tc.args...)
		if code == exitOK || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want a failure saying %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestSplitFlags: the automatic split flags default to the service's
// defaults and reach its config, where 0 ("off" on the command line)
// becomes a negative threshold.
func TestSplitFlags(t *testing.T) {
	fs := flagSet(find("start"), io.Discard)
	find("start").setup(fs)
	for flag, want := range map[string]string{"split-size": "67108864", "split-qps": "2500", "max-concurrent-splits": "4"} {
		if got := fs.Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %s, want %s", flag, got, want)
		}
	}
	f := startFlags{id: 1, listen: "127.0.0.1:7000", dataDir: t.TempDir(), initialRanges: 1, replicas: 3,
		balanceInterval: time.Second, settleTime: time.Second, logLevel: "info", maxConcurrentSplits: 2,
		deadAfter: time.Minute, maxConcurrentMoves: 2}
	cfg, err := f.config(io.Discard)
	if err != nil || cfg.SplitSize >= 0 || cfg.SplitQPS >= 0 || cfg.MaxConcurrentSplits != 2 {
		t.Errorf("split flags 0: split size %d, qps %v, concurrent %d, %v; want both thresholds negative (off)",
			cfg.SplitSize, cfg.SplitQPS, cfg.MaxConcurrentSplits, err)
	}
	f.splitSize, f.splitQPS = 1000, 12.5
	if cfg, err := f.config(io.Discard); err != nil || cfg.SplitSize != 1000 || cfg.SplitQPS != 12.5 {
		t.Errorf("split flags set: split size %d, qps %v, %v", cfg.SplitSize, cfg.SplitQPS, err)
	}
}

// TestStart runs a placement process, which serves the placement API (no
// nodes registered yet) and its profiles until it is interrupted, then
// says it stopped cleanly.
func TestStart(t *testing.T) {
	addr, pprofAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var code int
	var out, logs string
	go func() {
		defer wg.Done()
		code, out, logs = runArgs(ctx, "start", "--id", "1", "--listen", addr, "--data-dir", t.TempDir(), "--pprof", pprofAddr)
	}()
	pc, err := client.New([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
	nodes, err := pc.ListNodes(lctx) // retries until the process serves
	lcancel()
	if err != nil || len(nodes.Nodes) != 0 {
		t.Fatalf("list nodes: %v, %v", nodes, err)
	}
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/")
	if err != nil {
		t.Fatalf("--pprof: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("goroutine")) {
		t.Errorf("--pprof: /debug/pprof/ answered %s: %q", resp.Status, body)
	}
	cancel()
	wg.Wait()
	if code != exitOK || !strings.Contains(out, "serving on "+addr) {
		t.Fatalf("start: exit %d, %q", code, out)
	}
	if !strings.Contains(logs, `msg="stopped cleanly" since_signal=`) {
		t.Errorf("the log does not end with stopped cleanly:\n%s", logs)
	}
}

// freeAddr returns a loopback address that was free when it looked.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestVersion checks that version and --version print the build on one
// line.
func TestVersion(t *testing.T) {
	code, out, _ := runArgs(context.Background(), "version")
	if code != exitOK || !strings.HasPrefix(out, "placement ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
		t.Errorf("version: exit %d, printed %q, want one line naming placement and %s", code, out, runtime.Version())
	}
	if code, flagOut, _ := runArgs(context.Background(), "--version"); code != exitOK || flagOut != out {
		t.Errorf("--version: exit %d, printed %q, version printed %q", code, flagOut, out)
	}
}

// TestLoadFlags: load balancing is on by default with the service's
// defaults, reaches the service's config, and --balance-load=false turns
// it off (a negative threshold); bad values are refused.
func TestLoadFlags(t *testing.T) {
	fs := flagSet(find("start"), io.Discard)
	find("start").setup(fs)
	for flag, want := range map[string]string{"balance-load": "true", "load-threshold": "0.1", "load-floor": "100", "load-cooldown": "30s"} {
		if got := fs.Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %s, want %s", flag, got, want)
		}
	}
	f := startFlags{id: 1, listen: "127.0.0.1:7000", dataDir: t.TempDir(), initialRanges: 1, replicas: 3,
		balanceInterval: time.Second, settleTime: time.Second, logLevel: "info", maxConcurrentSplits: 2,
		deadAfter: time.Minute, maxConcurrentMoves: 2,
		balanceLoad: true, loadThreshold: 0.2, loadFloor: 0, loadCooldown: 5 * time.Second}
	cfg, err := f.config(io.Discard)
	if err != nil || cfg.LoadThreshold != 0.2 || cfg.LoadFloor >= 0 || cfg.LoadCooldown != 5*time.Second {
		t.Errorf("load flags: threshold %v, floor %v, cooldown %v, %v; want 0.2, negative (no floor), 5s",
			cfg.LoadThreshold, cfg.LoadFloor, cfg.LoadCooldown, err)
	}
	f.balanceLoad = false
	if cfg, err := f.config(io.Discard); err != nil || cfg.LoadThreshold >= 0 {
		t.Errorf("--balance-load=false: threshold %v, %v; want negative (off)", cfg.LoadThreshold, err)
	}
	dir := t.TempDir()
	for _, bad := range [][]string{{"--load-threshold", "0"}, {"--load-floor", "-1"}, {"--load-cooldown", "0s"}} {
		args := append([]string{"start", "--id", "1", "--data-dir", dir}, bad...)
		if code, _, errOut := runArgs(context.Background(), args...); code == exitOK || !strings.Contains(errOut, bad[0]) {
			t.Errorf("%q: exit %d, stderr %q; want a failure naming %s", args, code, errOut, bad[0])
		}
	}
}
