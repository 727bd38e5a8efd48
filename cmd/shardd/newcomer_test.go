package main

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoAsNewcomer does what README.md tells a newcomer to do: it builds
// the binary, starts the demo with its defaults, runs the commands the
// demo prints, writes and scans keys across several ranges with the CLI,
// stops the demo with Ctrl-C (SIGINT), and checks that nothing is left:
// the process is gone, its ports are free and its temporary data removed.
// It logs the time from starting the demo to the first acknowledged put:
//
//	go test -run TestDemoAsNewcomer -v ./cmd/shardd
func TestDemoAsNewcomer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the demo")
	}
	bin := buildShardd(t)
	started := time.Now()
	demo := startProcUntil(t, bin, "demo", filepath.Join(t.TempDir(), "demo.log"), "Press Ctrl-C to stop.", "demo")
	demo.waitReady(t)
	banner := demo.output()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo banner:\n%s", banner)
			if b, err := os.ReadFile(demo.logPath); err == nil {
				t.Logf("demo log (tail):\n%s", tail(string(b), 40))
			}
		}
	})

	// The commands the banner suggests, run as printed (with the built
	// binary for "go run ./cmd/shardd").
	const goRun = "go run ./cmd/shardd "
	suggested := map[string][]string{}
	for _, line := range strings.Split(banner, "\n") {
		if _, cmd, ok := strings.Cut(line, goRun); ok {
			f := strings.Fields(cmd)
			name := f[0]
			if name == "kv" {
				name += " " + f[1]
			}
			suggested[name] = f
		}
	}
	for _, name := range []string{"nodes", "ranges", "status", "kv put", "kv get", "kv scan", "kv cas", "kv del"} {
		if suggested[name] == nil {
			t.Fatalf("the banner suggests no %q command", name)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runBinary(t, bin, args...)
		if code != 0 {
			t.Fatalf("shardd %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	if out := run(suggested["kv put"]...); out != "ok\n" {
		t.Fatalf("the suggested put printed %q", out)
	}
	t.Logf("first put acknowledged %v after the demo started (build excluded)", time.Since(started).Round(time.Millisecond))
	if out := run(suggested["kv get"]...); out != "hello\n" {
		t.Errorf("the suggested get printed %q, want hello", out)
	}
	run(suggested["nodes"]...)
	run(suggested["ranges"]...)
	run(suggested["status"]...)

	// Keys spread over the demo's ranges, written and scanned back.
	placement := flagValue(t, suggested["kv put"], "--placement")
	keys := []string{"a", "k0001", "k1300", "k2600", "k3800", "k5100", "k6300", "k7600", "k8800", "z"}
	for _, k := range keys {
		if out := run("kv", "put", "--placement", placement, k, "v-"+k); out != "ok\n" {
			t.Fatalf("put %s printed %q", k, out)
		}
	}
	var ranges rangesOutput
	if err := json.Unmarshal([]byte(run("ranges", "--json", "--placement", placement)), &ranges); err != nil {
		t.Fatal(err)
	}
	var nodes []nodeJSON
	if err := json.Unmarshal([]byte(run("nodes", "--json", "--placement", placement)), &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("nodes --json: %v %+v", err, nodes)
	}
	for _, n := range nodes {
		if !n.Live || int(n.Replicas) != len(ranges.Ranges) {
			t.Errorf("node %+v: want live with %d replicas", n, len(ranges.Ranges))
		}
	}
	spanned := map[uint64]bool{}
	for _, k := range keys {
		for _, r := range ranges.Ranges {
			if k >= r.StartKey && (r.EndKey == "" || k < r.EndKey) {
				spanned[r.RangeID] = true
			}
		}
	}
	if len(spanned) < 4 {
		t.Fatalf("the keys fall in %d ranges, want at least 4: %+v", len(spanned), ranges.Ranges)
	}
	var scan scanOutput
	if err := json.Unmarshal([]byte(run("kv", "scan", "--json", "--placement", placement, "")), &scan); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range scan.KVs {
		if kv.Value != "v-"+kv.Key {
			t.Errorf("scan: %s = %q", kv.Key, kv.Value)
		}
		got = append(got, kv.Key)
	}
	if !slices.Equal(got, keys) || scan.ResumeKey != "" {
		t.Errorf("scan over %d ranges returned %q (resume %q), want %q", len(spanned), got, scan.ResumeKey, keys)
	}
	// A split at a key inside a range: two halves, the map one range
	// longer, every key still where it was written.
	var halves rangesOutput
	if err := json.Unmarshal([]byte(run("split", "--json", "--placement", placement, "k2700")), &halves); err != nil {
		t.Fatal(err)
	}
	if len(halves.Ranges) != 2 || halves.Ranges[0].EndKey != "k2700" || halves.Ranges[1].StartKey != "k2700" {
		t.Fatalf("split printed %+v", halves.Ranges)
	}
	var split rangesOutput
	if err := json.Unmarshal([]byte(run("ranges", "--json", "--placement", placement)), &split); err != nil || len(split.Ranges) != len(ranges.Ranges)+1 {
		t.Fatalf("ranges after the split: %v, %d ranges, want %d", err, len(split.Ranges), len(ranges.Ranges)+1)
	}
	for _, k := range []string{"k2600", "k3800"} {
		if out := run("kv", "get", "--placement", placement, k); out != "v-"+k+"\n" {
			t.Errorf("get %s after the split printed %q", k, out)
		}
	}
	if code, _, stderr := runBinary(t, bin, "split", "--placement", placement, "k2700"); code == 0 || !strings.Contains(stderr, "already where range") {
		t.Errorf("a second split at k2700: exit %d, %q", code, stderr)
	}
	if out := run(suggested["kv cas"]...); out != "not swapped (current: \"v-k0001\")\n" {
		t.Errorf("the suggested cas printed %q", out)
	}
	if out := run(suggested["kv del"]...); out != "deleted\n" {
		t.Errorf("the suggested del printed %q", out)
	}

	// Ctrl-C stops everything.
	if code := demo.signal(t, syscall.SIGINT); code != exitOK {
		t.Fatalf("demo exited %d after SIGINT", code)
	}
	if m := demoDataLine.FindStringSubmatch(banner); m == nil {
		t.Errorf("the banner names no data directory")
	} else if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo left its data in %s (%v)", m[1], err)
	}
	ports := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(banner, -1)
	if len(ports) < 3 {
		t.Fatalf("the banner names %d addresses", len(ports))
	}
	for _, a := range slices.Compact(slices.Sorted(slices.Values(ports))) {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s is still in use after the demo stopped: %v", a, err)
			continue
		}
		l.Close()
		// memberlist also listens on UDP at its gossip address.
		u, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Errorf("%s (udp) is still in use after the demo stopped: %v", a, err)
			continue
		}
		u.Close()
	}
}

// flagValue returns the value of the flag name in args ("--name value").
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%q has no %s", args, name)
	}
	return args[i+1]
}
