package membership

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
)

func TestClusterConverges(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	for i, m := range nodes {
		got := m.Members()
		for j, mem := range got {
			want := nodes[j]
			if mem.NodeID != want.NodeID() || mem.GRPCAddr != grpcAddr(want.NodeID(), 0) ||
				mem.GossipAddr != want.GossipAddr() || mem.State != StateAlive || mem.Leaving {
				t.Errorf("node %d: Members()[%d] = %+v, want node %d at %s / %s", i+1, j, mem,
					want.NodeID(), want.GossipAddr(), grpcAddr(want.NodeID(), 0))
			}
		}
		for _, other := range nodes {
			addr, ok := m.Addr(other.NodeID())
			if !ok || addr != grpcAddr(other.NodeID(), 0) {
				t.Errorf("node %d: Addr(%d) = %q, %v", i+1, other.NodeID(), addr, ok)
			}
		}
		if _, ok := m.Addr(99); ok {
			t.Errorf("node %d: Addr(99) resolved an unknown node", i+1)
		}
	}
	// Events report every member, the local one included.
	for i, r := range recs {
		for _, other := range nodes {
			id := other.NodeID()
			testutil.WaitFor(t, 5*time.Second, "join events", func() bool {
				_, ok := r.find("joined", func(m Member) bool { return m.NodeID == id })
				return ok
			})
		}
		if t.Failed() {
			t.Logf("node %d events:\n%s", i+1, r.dump())
		}
	}
	if host, _, err := net.SplitHostPort(nodes[0].GossipAddr()); err != nil || host != loopback {
		t.Errorf("GossipAddr = %q, want a %s address", nodes[0].GossipAddr(), loopback)
	}
}

func TestMetaUpdatePropagates(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	err := nodes[1].UpdateMeta(func(m *NodeMeta) {
		m.Ranges, m.Leaders, m.QPS = 120, 40, 1234.5
	})
	if err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if got := nodes[1].Meta(); got.Ranges != 120 || got.Leaders != 40 || got.QPS != 1234.5 {
		t.Fatalf("local Meta() = %+v", got)
	}
	for i, m := range nodes {
		testutil.WaitFor(t, 5*time.Second, "meta update to reach every node", func() bool {
			mem, ok := m.Member(2)
			return ok && mem.Ranges == 120 && mem.Leaders == 40 && mem.QPS == 1234.5 &&
				mem.GRPCAddr == grpcAddr(2, 0)
		})
		if _, ok := recs[i].find("updated", func(m Member) bool { return m.NodeID == 2 && m.Ranges == 120 }); !ok {
			testutil.WaitFor(t, 2*time.Second, "NodeUpdated event", func() bool {
				_, ok := recs[i].find("updated", func(m Member) bool { return m.NodeID == 2 && m.Ranges == 120 })
				return ok
			})
		}
	}
	// Changing the address is gossiped too.
	if err := nodes[1].UpdateMeta(func(m *NodeMeta) { m.GRPCAddr = grpcAddr(2, 5) }); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "new gRPC address", func() bool {
		a, ok := nodes[0].Addr(2)
		return ok && a == grpcAddr(2, 5)
	})
}

func TestFailureDetected(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil { // no Leave: a crash
		t.Fatal(err)
	}
	for i := range 2 {
		testutil.WaitFor(t, 20*time.Second, "failure to be detected", func() bool {
			_, ok := recs[i].find("left", func(m Member) bool { return m.NodeID == 3 })
			return ok
		})
		left, _ := recs[i].find("left", func(m Member) bool { return m.NodeID == 3 })
		if left.State != StateDead || left.GRPCAddr != grpcAddr(3, 0) || left.GossipAddr != nodes[2].GossipAddr() {
			t.Errorf("node %d: NodeLeft(%+v), want StateDead with node 3's last addresses", i+1, left)
		}
		if a, ok := nodes[i].Addr(3); ok {
			t.Errorf("node %d: Addr(3) = %q after node 3 died", i+1, a)
		}
		if got := len(nodes[i].Members()); got != 2 {
			t.Errorf("node %d: %d members after node 3 died, want 2", i+1, got)
		}
	}
	t.Logf("failure detected by both survivors after %v", time.Since(start).Round(time.Millisecond))
}

// TestLoneLeaveDoesNotLinger: a member alone has no one to spread its
// leave to, so Leave returns without lingering for gossip rounds (which
// made a lone shardd node take most of a second to exit). With the LAN
// profile's 200ms gossip interval the lingering took 1.2s. (Members that
// all leave at once skip it too, once they see each other leaving: three
// of them took 2.0-3.0s with it, 0.8-2.7s without, with the LAN profile.)
func TestLoneLeaveDoesNotLinger(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 1)
	cfg.Profile = ProfileLAN
	m := start(t, cfg, nil)
	begin := time.Now()
	if err := m.Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	took := time.Since(begin)
	t.Logf("a lone member left in %v", took)
	if took > 600*time.Millisecond {
		t.Errorf("a lone member took %v to leave: it lingered for gossip rounds", took)
	}
}

func TestGracefulLeave(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if err := nodes[2].UpdateMeta(func(*NodeMeta) {}); !errors.Is(err, ErrLeft) {
		t.Errorf("UpdateMeta after Leave = %v, want ErrLeft", err)
	}
	for i := range 2 {
		testutil.WaitFor(t, 5*time.Second, "leave to be seen", func() bool {
			_, ok := recs[i].find("left", func(m Member) bool { return m.NodeID == 3 })
			return ok
		})
		left, _ := recs[i].find("left", func(m Member) bool { return m.NodeID == 3 })
		if left.State != StateLeft {
			t.Errorf("node %d: NodeLeft(%+v), want StateLeft\n%s", i+1, left, recs[i].dump())
		}
		if a, ok := nodes[i].Addr(3); ok {
			t.Errorf("node %d: Addr(3) = %q after node 3 left", i+1, a)
		}
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// restart starts node id again on a new free port and a new gRPC address,
// retrying (boundedly) in the unlikely case the kernel hands back the old
// port.
func restart(t *testing.T, id uint64, oldGossip string, seeds []string, ev Events) *Membership {
	t.Helper()
	for range 3 {
		cfg := testConfig(t, id, seeds...)
		cfg.GRPCAddr = grpcAddr(id, 1)
		m := start(t, cfg, ev)
		if m.GossipAddr() != oldGossip {
			return m
		}
		_ = m.Shutdown()
	}
	t.Fatalf("could not get a gossip port other than %s", oldGossip)
	return nil
}

func TestRestartSameNodeIDAfterCrash(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	old := nodes[2].GossipAddr()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Restart at once: the survivors still consider the old process alive
	// and must first declare it dead, then adopt the new address.
	began := time.Now()
	n3 := restart(t, 3, old, []string{nodes[0].GossipAddr()}, &recorder{})
	for i := range 2 {
		testutil.WaitFor(t, 25*time.Second, "survivors to adopt the restarted node's address", func() bool {
			mem, ok := nodes[i].Member(3)
			return ok && mem.GossipAddr == n3.GossipAddr() && mem.GRPCAddr == grpcAddr(3, 1)
		})
		if a, _ := nodes[i].Addr(3); a != grpcAddr(3, 1) {
			t.Errorf("node %d: Addr(3) = %q, want %q", i+1, a, grpcAddr(3, 1))
		}
		if got := len(nodes[i].Members()); got != 3 {
			t.Errorf("node %d: %d members, want 3 (one entry per node id)", i+1, got)
		}
		// The event reaches the handler after the member list changed:
		// wait for it too rather than look at once.
		joined := func() bool {
			_, ok := recs[i].find("joined", func(m Member) bool {
				return m.NodeID == 3 && m.GossipAddr == n3.GossipAddr()
			})
			return ok
		}
		deadline := time.Now().Add(5 * time.Second)
		for !joined() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !joined() {
			t.Errorf("node %d: no NodeJoined for the restarted node:\n%s", i+1, recs[i].dump())
		}
	}
	t.Logf("restart adopted after %v", time.Since(began).Round(time.Millisecond))
	testutil.WaitFor(t, 5*time.Second, "restarted node to see the cluster", func() bool {
		return len(n3.Members()) == 3
	})
}

func TestRestartSameNodeIDAfterLeave(t *testing.T) {
	t.Parallel()
	nodes, recs := startCluster(t, 3)
	old := nodes[2].GossipAddr()
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		testutil.WaitFor(t, 5*time.Second, "leave to be seen", func() bool {
			_, ok := recs[i].find("left", func(m Member) bool { return m.NodeID == 3 })
			return ok
		})
	}
	n3 := restart(t, 3, old, []string{nodes[1].GossipAddr()}, nil)
	for i := range 2 {
		testutil.WaitFor(t, 5*time.Second, "survivors to adopt the restarted node's address", func() bool {
			mem, ok := nodes[i].Member(3)
			return ok && mem.GossipAddr == n3.GossipAddr() && mem.GRPCAddr == grpcAddr(3, 1) && !mem.Leaving
		})
	}
}

func TestMetaTooLarge(t *testing.T) {
	t.Parallel()
	m := start(t, testConfig(t, 1), nil)
	before := m.Meta()

	huge := "h:" + strings.Repeat("x", 600)
	err := m.UpdateMeta(func(nm *NodeMeta) { nm.GRPCAddr = huge })
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta with a 600-byte address = %v, want ErrMetaTooLarge", err)
	}
	if got := m.Meta(); got != before {
		t.Errorf("rejected update changed meta: %+v, was %+v", got, before)
	}
	if a, _ := m.Addr(1); a != before.GRPCAddr {
		t.Errorf("rejected update changed the gossiped address to %q", a)
	}

	// The limit is exact: find the longest address that fits (counting the
	// room reserved for the leave flag) and check one byte more fails.
	base, err := encodeMeta(wireMeta{ID: 1, GRPC: ""})
	if err != nil {
		t.Fatal(err)
	}
	fit := MaxMetaSize - leavingFlagSize - len(base)
	addr := strings.Repeat("a", fit)
	if err := m.UpdateMeta(func(nm *NodeMeta) { nm.GRPCAddr = addr }); err != nil {
		t.Fatalf("UpdateMeta with meta of exactly the limit: %v", err)
	}
	leaving, err := encodeMeta(wireMeta{ID: 1, GRPC: addr, Leaving: true})
	if err != nil || len(leaving) != MaxMetaSize {
		t.Fatalf("leaving encoding: %d bytes, %v; want exactly %d", len(leaving), err, MaxMetaSize)
	}
	if err := m.UpdateMeta(func(nm *NodeMeta) { nm.GRPCAddr = addr + "a" }); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta one byte over the limit = %v, want ErrMetaTooLarge", err)
	}
	// Leave still works at the limit: the flag's room was reserved.
	if err := m.Leave(time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}

	// At Start, the oversized meta is blamed on GRPCAddr.
	cfg := testConfig(t, 2)
	cfg.GRPCAddr = "h:" + strings.Repeat("1", 600)
	var ce *ConfigError
	if _, err := Start(cfg, nil); !errors.As(err, &ce) || ce.Field != "GRPCAddr" {
		t.Fatalf("Start with oversized meta = %v, want ConfigError on GRPCAddr", err)
	}
}

func TestUpdateMetaRejectsInvalid(t *testing.T) {
	t.Parallel()
	m := start(t, testConfig(t, 1), nil)
	for name, f := range map[string]func(*NodeMeta){
		"NaN QPS":         func(nm *NodeMeta) { nm.QPS = nan() },
		"negative ranges": func(nm *NodeMeta) { nm.Ranges = -1 },
		"changed NodeID":  func(nm *NodeMeta) { nm.NodeID = 7 },
	} {
		if err := m.UpdateMeta(f); err == nil {
			t.Errorf("%s: UpdateMeta accepted it", name)
		}
	}
	if got := m.Meta(); got != (NodeMeta{NodeID: 1, GRPCAddr: grpcAddr(1, 0)}) {
		t.Errorf("rejected updates changed meta to %+v", got)
	}
	// Alone in the cluster, an update needs no broadcast and returns at once.
	if err := m.UpdateMeta(func(nm *NodeMeta) { nm.Leaders = 3 }); err != nil {
		t.Fatal(err)
	}
	if mem, _ := m.Member(1); mem.Leaders != 3 {
		t.Errorf("local member = %+v, want Leaders 3", mem)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestMetaRoundTrip(t *testing.T) {
	w := wireMeta{ID: 1<<64 - 1, GRPC: "[::1]:9000", Ranges: 5000, Leaders: 1700, QPS: 98765.25}
	b, err := encodeMeta(w)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 128 {
		t.Errorf("typical meta encodes to %d bytes: %s", len(b), b)
	}
	got, err := decodeMeta(b)
	if err != nil || got != w {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, w)
	}
	// Unknown fields from newer nodes are ignored.
	got, err = decodeMeta([]byte(`{"id":4,"g":"h:1","zz":[1,2]}`))
	if err != nil || got.ID != 4 || got.GRPC != "h:1" {
		t.Fatalf("decode with unknown field = %+v, %v", got, err)
	}
	if _, err := decodeMeta([]byte("\x00garbage")); err == nil {
		t.Error("decoded garbage")
	}
}

func TestConfigValidation(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.NodeID, c.GRPCAddr = 1, "127.0.0.1:9000"
		return c
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := []struct {
		field string
		mod   func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = 0 }},
		{"GRPCAddr", func(c *Config) { c.GRPCAddr = "" }},
		{"GRPCAddr", func(c *Config) { c.GRPCAddr = "no-port" }},
		{"GRPCAddr", func(c *Config) { c.GRPCAddr = "host:99999" }},
		{"GRPCAddr", func(c *Config) { c.GRPCAddr = ":9000" }},
		{"BindAddr", func(c *Config) { c.BindAddr = "localhost" }},
		{"BindPort", func(c *Config) { c.BindPort = -1 }},
		{"BindPort", func(c *Config) { c.BindPort = 70000 }},
		{"AdvertiseAddr", func(c *Config) { c.AdvertiseAddr = "not-an-ip" }},
		{"AdvertiseAddr", func(c *Config) { c.BindAddr, c.AdvertiseAddr = "0.0.0.0", "" }},
		{"Seeds", func(c *Config) { c.Seeds = []string{"127.0.0.1:7946", "127.0.0.1"} }},
		{"Profile", func(c *Config) { c.Profile = "wan" }},
		{"Cluster", func(c *Config) { c.Cluster = strings.Repeat("c", 256) }},
		{"JoinAttempts", func(c *Config) { c.JoinAttempts = -1 }},
		{"JoinBackoff", func(c *Config) { c.JoinBackoff = -time.Second }},
		{"BroadcastTimeout", func(c *Config) { c.BroadcastTimeout = -time.Second }},
	}
	for _, tc := range cases {
		c := good()
		tc.mod(&c)
		err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("config with bad %s: Validate() = %v", tc.field, err)
		}
		// Start validates the same way and binds nothing.
		if _, err := Start(c, nil); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("config with bad %s: Start() = %v", tc.field, err)
		}
	}
	// Binding to a wildcard is fine with an explicit advertise address.
	c := good()
	c.BindAddr, c.AdvertiseAddr = "0.0.0.0", "127.0.0.1"
	if err := c.Validate(); err != nil {
		t.Errorf("wildcard bind with explicit advertise: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.BindAddr != "127.0.0.1" || c.AdvertiseAddr != "127.0.0.1" || c.BindPort != DefaultGossipPort ||
		c.Profile != ProfileLocal || c.Cluster != DefaultCluster || c.Logger == nil ||
		c.JoinAttempts != 5 || c.JoinBackoff != 250*time.Millisecond || c.BroadcastTimeout != 2*time.Second {
		t.Errorf("DefaultConfig() = %+v", c)
	}
	var z Config
	z.BindAddr = "127.0.0.2"
	z.EnsureDefaults()
	if z.AdvertiseAddr != "127.0.0.2" || z.BindPort != 0 {
		t.Errorf("EnsureDefaults: advertise %q port %d; want BindAddr and the free-port 0 kept", z.AdvertiseAddr, z.BindPort)
	}
	ml := memberlistConfig(Config{NodeID: 42, BindAddr: loopback, AdvertiseAddr: loopback, BindPort: 8123, Profile: ProfileLAN, Logger: slog.Default()})
	if ml.Name != "node-42" || ml.AdvertisePort != 8123 || ml.AdvertiseAddr != loopback || ml.BindAddr != loopback ||
		ml.DeadNodeReclaimTime <= 0 || ml.ProbeTimeout != 500*time.Millisecond {
		t.Errorf("memberlistConfig(lan) = name %q adv %s:%d bind %s reclaim %v probe timeout %v",
			ml.Name, ml.AdvertiseAddr, ml.AdvertisePort, ml.BindAddr, ml.DeadNodeReclaimTime, ml.ProbeTimeout)
	}
}

func TestNodeName(t *testing.T) {
	for _, id := range []uint64{1, 42, 1<<64 - 1} {
		if got, ok := parseNodeName(nodeName(id)); !ok || got != id {
			t.Errorf("parseNodeName(nodeName(%d)) = %d, %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "node-", "node-0", "node-x", "host-1", "node--1"} {
		if _, ok := parseNodeName(bad); ok {
			t.Errorf("parseNodeName(%q) accepted it", bad)
		}
	}
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", loopback+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestStartFailsWhenSeedsUnreachable(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 1, closedPort(t))
	cfg.JoinAttempts, cfg.JoinBackoff = 3, 10*time.Millisecond
	began := time.Now()
	m, err := Start(cfg, nil)
	if !errors.Is(err, ErrNoSeedReachable) {
		if m != nil {
			_ = m.Shutdown()
		}
		t.Fatalf("Start with an unreachable seed = %v, want ErrNoSeedReachable", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("gave up after %v; retries should be bounded", d)
	}
}

func TestOwnAddressSeedIgnored(t *testing.T) {
	t.Parallel()
	m := start(t, testConfig(t, 1), nil)
	seeds := []string{m.GossipAddr(), "127.0.0.1:1"}
	if got := m.otherSeeds(seeds); len(got) != 1 || got[0] != "127.0.0.1:1" {
		t.Errorf("otherSeeds(%v) = %v", seeds, got)
	}
}

func TestClusterLabelSeparatesClusters(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig(t, 1), nil)
	cfg := testConfig(t, 2, a.GossipAddr())
	cfg.Cluster = "other"
	cfg.JoinAttempts, cfg.JoinBackoff = 2, 10*time.Millisecond
	if m, err := Start(cfg, nil); !errors.Is(err, ErrNoSeedReachable) {
		if m != nil {
			_ = m.Shutdown()
		}
		t.Fatalf("joining a cluster with another label = %v, want ErrNoSeedReachable", err)
	}
	if got := len(a.Members()); got != 1 {
		t.Errorf("cluster has %d members after a foreign join attempt, want 1", got)
	}
}

func TestAfterShutdown(t *testing.T) {
	t.Parallel()
	m := start(t, testConfig(t, 1), &recorder{})
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := m.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Shutdown = %v, want ErrClosed", err)
	}
	if err := m.UpdateMeta(func(*NodeMeta) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateMeta after Shutdown = %v, want ErrClosed", err)
	}
}

func TestMemberlistLogsGoToSlogAtDebug(t *testing.T) {
	t.Parallel()
	h := &recordingHandler{}
	h.init()
	cfg := testConfig(t, 1)
	cfg.Logger = slog.New(h)
	m := start(t, cfg, nil)
	_ = m.Shutdown()
	recs := h.all()
	found := false
	for _, r := range recs {
		if r.attrs["component"] != "memberlist" {
			continue
		}
		if r.Level != slog.LevelDebug {
			t.Errorf("memberlist record at level %v: %s", r.Level, r.Message)
		}
		if r.Message == "Using dynamic bind port "+strings.TrimPrefix(m.GossipAddr(), loopback+":") && r.attrs["ml_level"] == "DEBUG" {
			found = true
		}
	}
	if !found {
		t.Errorf("memberlist's bind message did not reach slog; got %d records", len(recs))
	}
}

// recordingHandler is a slog.Handler that keeps every record with its
// attributes flattened to strings.
type recordingHandler struct {
	attrs []slog.Attr
	mu    *sync.Mutex
	recs  *[]loggedRecord
}

type loggedRecord struct {
	slog.Record
	attrs map[string]string
}

func (h *recordingHandler) init() {
	if h.mu == nil {
		h.mu = &sync.Mutex{}
		h.recs = &[]loggedRecord{}
	}
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	lr := loggedRecord{Record: r.Clone(), attrs: map[string]string{}}
	for _, a := range h.attrs {
		lr.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, lr)
	h.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordingHandler{attrs: append(slices.Clip(h.attrs), as...), mu: h.mu, recs: h.recs}
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

func (h *recordingHandler) all() []loggedRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// callbackEvents calls back into its Membership from a handler and then
// blocks until released.
type callbackEvents struct {
	m       atomic.Pointer[Membership]
	release chan struct{}
	errc    chan error
}

func (e *callbackEvents) NodeJoined(mem Member) {
	if mem.NodeID != 2 {
		return
	}
	e.errc <- e.m.Load().UpdateMeta(func(nm *NodeMeta) { nm.Leaders = 9 })
	<-e.release
}
func (e *callbackEvents) NodeUpdated(Member) {}
func (e *callbackEvents) NodeLeft(Member)    {}

func TestEventHandlerMayBlockAndCallBack(t *testing.T) {
	t.Parallel()
	ev := &callbackEvents{release: make(chan struct{}), errc: make(chan error, 1)}
	n1 := start(t, testConfig(t, 1), ev)
	ev.m.Store(n1)
	defer close(ev.release)
	n2 := start(t, testConfig(t, 2, n1.GossipAddr()), nil)
	select {
	case err := <-ev.errc:
		if err != nil {
			t.Fatalf("UpdateMeta from a handler: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler never ran")
	}
	// The handler is now blocked; gossip must carry on regardless.
	testutil.WaitFor(t, 5*time.Second, "update made from a handler to propagate", func() bool {
		mem, ok := n2.Member(1)
		return ok && mem.Leaders == 9
	})
	if err := n2.UpdateMeta(func(nm *NodeMeta) { nm.Ranges = 4 }); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "updates to arrive while a handler blocks", func() bool {
		mem, ok := n1.Member(2)
		return ok && mem.Ranges == 4
	})
}
