package service

import (
	"testing"
	"time"

	"github.com/shardd/shardd/internal/metrics/endpoint"
	"github.com/shardd/shardd/internal/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestPlacementHealthWaitsForALeader: a placement process is NOT_SERVING
// while its group has no leader (one of three processes is up) and
// SERVING once it has one (a second one came up).
func TestPlacementHealthWaitsForALeader(t *testing.T) {
	addrs := testutil.FreeAddrs(t, 3)
	peers := map[uint64]string{1: addrs[0], 2: addrs[1], 3: addrs[2]}
	start := func(id uint64) *Server {
		s, err := Start(Config{ID: id, ListenAddr: peers[id], DataDir: t.TempDir(), Peers: peers,
			TickInterval: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	first := start(1)
	for range 5 {
		if st := testutil.Health(t, first.Addr()); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("one of three placement processes up: %v, want NOT_SERVING", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	second := start(2)
	for _, s := range []*Server{first, second} {
		testutil.WaitFor(t, 15*time.Second, "SERVING once the group has a leader", func() bool {
			return testutil.Health(t, s.Addr()) == healthpb.HealthCheckResponse_SERVING
		})
	}
}

// TestPlacementMetrics scrapes a placement process's metrics: the map's
// revision and ranges, the live nodes, a split counted as it ends, and the
// process's own node (its store's group) beside them.
func TestPlacementMetrics(t *testing.T) {
	ep, err := endpoint.Open("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	const ranges = 4
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges = ranges
		if c.MeterProvider, err = ep.Provider(endpoint.PlacementLabel(c.ID)); err != nil {
			t.Fatal(err)
		}
	})
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	before := testutil.Scrape(t, ep.URL())
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"shardd_placement_leader", nil, 1},
		{"shardd_placement_ranges", nil, ranges},
		{"shardd_placement_nodes", []string{"state", "live"}, 3},
		{"shardd_placement_nodes", []string{"state", "down"}, 0},
		{"shardd_placement_operations_in_progress", nil, 0},
		{"shardd_groups", []string{"placement", "1"}, 1}, // the placement group's replica
	} {
		if v, ok := before.Value(m.name, m.labels...); !ok || v != m.want {
			t.Errorf("%s%v = %v (found %v), want %v", m.name, m.labels, v, ok, m.want)
		}
	}
	rev, ok := before.Value("shardd_placement_revision")
	if !ok || rev == 0 {
		t.Errorf("shardd_placement_revision = %v (found %v), want > 0", rev, ok)
	}

	c := pc.client()
	descs, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SplitRange(tctx(t), append(descs[1].StartKey, 'm')); err != nil {
		t.Fatal(err)
	}
	after := testutil.Scrape(t, ep.URL())
	if v, _ := after.Value("shardd_placement_operations_total", "kind", "split", "result", "done"); v != 1 {
		t.Errorf("shardd_placement_operations_total{kind=split,result=done} = %v after a split, want 1", v)
	}
	if v, _ := after.Value("shardd_placement_ranges"); v != ranges+1 {
		t.Errorf("shardd_placement_ranges = %v after a split, want %d", v, ranges+1)
	}
	if v, _ := after.Value("shardd_placement_revision"); v <= rev {
		t.Errorf("shardd_placement_revision went from %v to %v across a split", rev, v)
	}
}
