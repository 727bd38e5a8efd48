package main

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/placement/service"
)

// TestStartRefusesForeignIdentity: start exits 1 with a message that says
// what to do when the data dir was created by another node, and when the
// placement service runs another cluster than the node's store joined.
func TestStartRefusesForeignIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node1")
	placement := func() string {
		pl, err := service.Start(service.Config{ID: 1, ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			Replicas: 1, TickInterval: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pl.Stop)
		return pl.Addr()
	}
	plA, plB := placement(), placement()
	start := func(id string, pl string) *asyncRun {
		return runAsync(t, nil, "start", "--id", id, "--listen", "127.0.0.1:0", "--gossip=", "--data-dir", dir, "--placement", pl)
	}

	first := start("1", plA)
	first.waitOutput(t, "serving on")
	first.waitStderr(t, "joined cluster")
	if code := first.stop(t); code != exitOK {
		t.Fatalf("first start exited %d", code)
	}

	code, _, stderr := runSync(t, "start", "--id", "7", "--listen", "127.0.0.1:0", "--gossip=", "--data-dir", dir)
	if want := "belongs to node 1, not node 7: start with --id 1 or an empty directory"; code != exitError || !strings.Contains(stderr, want) {
		t.Fatalf("start --id 7 on node 1's data dir: exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, exitError, want)
	}

	other := start("1", plB)
	if code := other.exited(t, 30*time.Second); code != exitError {
		t.Fatalf("node of cluster A registering with cluster B: exit %d, want %d", code, exitError)
	}
	if stderr := other.stderr.String(); !strings.Contains(stderr, "registration refused") || !strings.Contains(stderr, "belongs to cluster") {
		t.Fatalf("node of cluster A registering with cluster B says:\n%s", stderr)
	} else {
		t.Logf("node of cluster A registering with cluster B:\n%s", tail(stderr, 3))
	}
}
