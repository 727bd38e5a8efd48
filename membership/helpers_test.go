package membership

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
)

// Every test node binds to 127.0.0.1 with port 0: nothing leaves loopback.
const loopback = "127.0.0.1"

// testLogger logs at debug level into a buffer that is printed only if the
// test fails.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			s := buf.String()
			const max = 64 << 10
			if len(s) > max {
				s = "...\n" + s[len(s)-max:]
			}
			t.Logf("log:\n%s", s)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recorder is an Events that remembers every event.
type recorder struct {
	mu     sync.Mutex
	events []recEvent
}

type recEvent struct {
	kind string // "joined", "updated" or "left"
	m    Member
}

func (r *recorder) add(kind string, m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recEvent{kind, m})
}

func (r *recorder) NodeJoined(m Member)  { r.add("joined", m) }
func (r *recorder) NodeUpdated(m Member) { r.add("updated", m) }
func (r *recorder) NodeLeft(m Member)    { r.add("left", m) }

// find returns the first event matching kind and pred.
func (r *recorder) find(kind string, pred func(Member) bool) (Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.kind == kind && pred(e.m) {
			return e.m, true
		}
	}
	return Member{}, false
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b bytes.Buffer
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s %+v\n", e.kind, e.m)
	}
	return b.String()
}

func grpcAddr(id uint64, gen int) string {
	// Never dialled: only gossiped and compared.
	return fmt.Sprintf("127.0.0.1:%d", 20000+gen*1000+int(id))
}

// testConfig is a loopback config with a free gossip port.
func testConfig(t *testing.T, id uint64, seeds ...string) Config {
	cfg := Config{
		NodeID:        id,
		BindAddr:      loopback,
		BindPort:      0,
		AdvertiseAddr: loopback,
		Seeds:         seeds,
		GRPCAddr:      grpcAddr(id, 0),
		Logger:        testLogger(t).With("test_node", id),
	}
	return cfg
}

// start starts a node and shuts it down when the test ends.
func start(t *testing.T, cfg Config, ev Events) *Membership {
	t.Helper()
	m, err := Start(cfg, ev)
	if err != nil {
		t.Fatalf("Start node %d: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// startCluster starts n nodes with ids 1..n, each joining through node 1,
// and waits until every node sees all of them.
func startCluster(t *testing.T, n int) ([]*Membership, []*recorder) {
	t.Helper()
	nodes := make([]*Membership, n)
	recs := make([]*recorder, n)
	for i := range n {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].GossipAddr()}
		}
		recs[i] = &recorder{}
		nodes[i] = start(t, testConfig(t, uint64(i+1), seeds...), recs[i])
	}
	testutil.WaitFor(t, 10*time.Second, "cluster to converge", func() bool {
		for _, m := range nodes {
			if len(m.Members()) != n {
				return false
			}
		}
		return true
	})
	return nodes, recs
}
