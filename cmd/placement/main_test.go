package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/placement/client"
)

func runArgs(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands {
		code, out, _ := runArgs(context.Background(), c.name, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit %d", c.name, code)
		}
		_, helpOut, _ := runArgs(context.Background(), "help", c.name)
		for _, text := range []string{out, helpOut} {
			if !strings.Contains(text, "Usage: placement "+c.name) || !strings.Contains(text, "Flags:") {
				t.Errorf("%s help does not explain the flags:\n%s", c.name, text)
			}
		}
	}
	if code, out, _ := runArgs(context.Background(), "help"); code != exitOK || !strings.Contains(out, "start") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

func TestBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage: placement <command>"},
		{[]string{"frob"}, `no command "frob"`},
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
		{[]string{"nodes"}, `no command "nodes"`},
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
	cfg, err := f.config()
	if err != nil || cfg.SplitSize >= 0 || cfg.SplitQPS >= 0 || cfg.MaxConcurrentSplits != 2 {
		t.Errorf("split flags 0: split size %d, qps %v, concurrent %d, %v; want both thresholds negative (off)",
			cfg.SplitSize, cfg.SplitQPS, cfg.MaxConcurrentSplits, err)
	}
	f.splitSize, f.splitQPS = 1000, 12.5
	if cfg, err := f.config(); err != nil || cfg.SplitSize != 1000 || cfg.SplitQPS != 12.5 {
		t.Errorf("split flags set: split size %d, qps %v, %v", cfg.SplitSize, cfg.SplitQPS, err)
	}
}

// TestStart runs a placement process, which serves the placement API (no
// nodes registered yet) until it is interrupted.
func TestStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var code int
	var out string
	go func() {
		defer wg.Done()
		code, out, _ = runArgs(ctx, "start", "--id", "1", "--listen", addr, "--data-dir", t.TempDir(), "--log-level", "error")
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
	cancel()
	wg.Wait()
	if code != exitOK || !strings.Contains(out, "serving on "+addr) {
		t.Fatalf("start: exit %d, %q", code, out)
	}
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
	cfg, err := f.config()
	if err != nil || cfg.LoadThreshold != 0.2 || cfg.LoadFloor >= 0 || cfg.LoadCooldown != 5*time.Second {
		t.Errorf("load flags: threshold %v, floor %v, cooldown %v, %v; want 0.2, negative (no floor), 5s",
			cfg.LoadThreshold, cfg.LoadFloor, cfg.LoadCooldown, err)
	}
	f.balanceLoad = false
	if cfg, err := f.config(); err != nil || cfg.LoadThreshold >= 0 {
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
