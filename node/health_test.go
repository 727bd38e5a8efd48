package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// logLines parses a JSON log and returns the lines whose message is msg.
func logLines(t *testing.T, log string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestHealthFollowsReadiness checks the node's grpc.health.v1 status over
// its life: NOT_SERVING while it waits to register (Config.WaitReady),
// SERVING once registered, NOT_SERVING once draining; and a node that
// waits for nothing serves once started. The registration's log says
// each change of contact with the placement service once.
func TestHealthFollowsReadiness(t *testing.T) {
	var log testutil.SyncBuffer
	c := newTestCluster(t, 1, splitRanges(1, 1), func(cfg *Config) {
		cfg.WaitReady = true
		cfg.Logger = slog.New(slog.NewJSONHandler(&log, nil))
	})
	n := c.nodes[1]
	if st := testutil.Health(t, n.Addr()); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before registering: %v, want NOT_SERVING", st)
	}
	n.Registered(errors.New("connection refused"))
	n.Registered(errors.New("connection refused"))
	if st := testutil.Health(t, n.Addr()); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after failed registrations: %v, want NOT_SERVING", st)
	}
	n.Registered(nil)
	n.Registered(nil)
	if st := testutil.Health(t, n.Addr()); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("once registered: %v, want SERVING", st)
	}
	n.Registered(errors.New("deadline exceeded"))
	n.Registered(errors.New("deadline exceeded"))
	if st := testutil.Health(t, n.Addr()); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("placement lost: %v, want SERVING still (the node serves without it)", st)
	}
	n.Registered(nil)
	for _, msg := range []string{"cannot register with the placement service yet; retrying", "registered with the placement service",
		"placement service lost; retrying (the node keeps serving)", "placement service reachable again"} {
		if got := logLines(t, log.String(), msg); len(got) != 1 {
			t.Errorf("%d lines %q, want 1; log:\n%s", len(got), msg, log.String())
		}
	}

	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.Drain(dctx)
	if st := testutil.Health(t, n.Addr()); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("draining: %v, want NOT_SERVING", st)
	}

	plain := newTestCluster(t, 1, splitRanges(1, 1), nil)
	if st := testutil.Health(t, plain.nodes[1].Addr()); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("a node that waits for nothing, once started: %v, want SERVING", st)
	}
}

// TestLeadershipChangesLoggedPerSecond checks that a node logs its
// leaderships gained and lost as one line a second, not one per group:
// twelve ranges elect their leaders, then one node drains.
func TestLeadershipChangesLoggedPerSecond(t *testing.T) {
	const ranges = 12
	var log testutil.SyncBuffer
	c := newTestCluster(t, 3, splitRanges(ranges, 3), func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(&log, nil))
	})
	start := time.Now()
	const msg = "leaderships changed"
	sum := func(key string, node float64) (total float64, lines int) {
		for _, rec := range logLines(t, log.String(), msg) {
			if node == 0 || rec["node"] == node {
				total += rec[key].(float64)
				lines++
			}
		}
		return total, lines
	}
	testutil.WaitFor(t, 10*time.Second, "a line for every leadership gained", func() bool {
		gained, _ := sum("gained", 0)
		return gained >= ranges
	})
	lead := c.leaderFor(1)
	for _, n := range c.nodes {
		if n.leading() == 0 {
			continue
		}
		_, lines := sum("gained", float64(n.ID()))
		if most := time.Since(start)/leadershipLogInterval + 1; lines == 0 || time.Duration(lines) > most {
			t.Errorf("node %d logged %d %q lines in %v, want 1 to %d (one a second at most)", n.ID(), lines, msg, time.Since(start), most)
		}
	}
	if rec := logLines(t, log.String(), msg)[0]; rec["window"] == nil || rec["leading"] == nil {
		t.Errorf("a %q line lacks its window or leading count: %v", msg, rec)
	}

	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if left := c.nodes[lead].Drain(dctx); left != 0 {
		t.Fatalf("node %d still leads %d ranges after draining", lead, left)
	}
	testutil.WaitFor(t, 5*time.Second, "the drained node's line for its leaderships lost", func() bool {
		lost, _ := sum("lost", float64(lead))
		return lost >= 1
	})
}
