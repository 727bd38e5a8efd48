package service

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestBootstrapAndAPI runs one placement process and three shardd nodes:
// once the nodes registered, the service creates the configured ranges on
// them, KV writes work on every range, and the API answers lookups, pages
// of ranges, the node list and a watch stream.
func TestBootstrapAndAPI(t *testing.T) {
	const ranges = 8
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	c := pc.client()

	// Before the nodes come: not bootstrapped, Unavailable with a reason.
	pc.leader()
	if _, err := (&api{s: pc.servers[1]}).Lookup(tctx(t), &placementpb.LookupRequest{Key: []byte("a")}); status.Code(err) != codes.Unavailable {
		t.Fatalf("lookup before bootstrap: %v, want Unavailable", err)
	}
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)

	all, err := c.AllRanges(tctx(t), 3) // three pages of 3, 3 and 2
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != ranges || len(all[0].StartKey) != 0 || len(all[ranges-1].EndKey) != 0 {
		t.Fatalf("listed %d ranges: %v", len(all), all)
	}
	for i := 1; i < len(all); i++ {
		if !bytes.Equal(all[i-1].EndKey, all[i].StartKey) {
			t.Fatalf("ranges %d and %d do not meet: %v, %v", i-1, i, all[i-1], all[i])
		}
	}
	page, err := c.ListRanges(tctx(t), nil, 3)
	if err != nil || len(page.Ranges) != 3 || !bytes.Equal(page.NextPageToken, all[3].StartKey) {
		t.Fatalf("first page: %v, %v", page, err)
	}

	// Every range takes writes, through the leaders the service names.
	for _, d := range all {
		key := append(bytes.Clone(d.StartKey), 'x')
		if len(d.StartKey) == 0 {
			key = []byte("a") // sorts before the first split key
		}
		resp, err := c.Lookup(tctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Descriptor_.RangeId != d.RangeId || len(resp.NodeAddrs) != 3 {
			t.Fatalf("lookup in range %d: %v", d.RangeId, resp)
		}
		dc.put(t, resp.Descriptor_, string(key), "v")
	}

	// A router backed by the service reads what was written.
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// It follows the service's watch: the whole map arrives without a
	// lookup per range.
	testutil.WaitFor(t, 5*time.Second, "the router to learn every range from the watch", func() bool { return len(rc.Ranges()) == ranges })
	if n := rc.Stats().Lookups; n != 1 {
		t.Errorf("the router made %d lookups, want only New's", n)
	}
	for _, d := range all {
		key := append(bytes.Clone(d.StartKey), 'x')
		if len(d.StartKey) == 0 {
			key = []byte("a")
		}
		if v, found, err := rc.Get(tctx(t), key); err != nil || !found || string(v) != "v" {
			t.Fatalf("router get %q: %q, %v, %v", key, v, found, err)
		}
	}

	nodes, err := c.ListNodes(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 3 {
		t.Fatalf("nodes: %v", nodes)
	}
	for _, n := range nodes.Nodes {
		if !n.Live || n.Replicas != ranges || n.Addr != dc.nodes[n.NodeId].Addr() {
			t.Fatalf("node %v: want live, %d replicas, addr %s", n, ranges, dc.nodes[n.NodeId].Addr())
		}
	}

	// Watch from scratch: the whole map first, then changes as they come.
	ctx, cancel := context.WithCancel(tctx(t))
	defer cancel()
	events := make(chan *placementpb.WatchEvent, 100)
	go func() {
		_ = c.Watch(ctx, 0, func(ev *placementpb.WatchEvent) error { events <- ev; return nil })
	}()
	first := <-events
	if !first.Full || len(first.Updated) != ranges {
		t.Fatalf("first watch event: full=%v, %d ranges", first.Full, len(first.Updated))
	}
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 77, Addr: "127.0.0.1:1", StoreId: "s77"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Full || ev.Revision <= first.Revision {
			t.Fatalf("watch event after a registration: %v (first at %d)", ev, first.Revision)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event after a registration")
	}
	// A watcher that is current gets nothing but where it is, then changes.
	resp, err := c.ListRanges(tctx(t), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *placementpb.WatchEvent, 10)
	go func() {
		_ = c.Watch(ctx, resp.Revision, func(ev *placementpb.WatchEvent) error { got <- ev; return nil })
	}()
	if ev := <-got; ev.Full || ev.Revision != resp.Revision || len(ev.Updated) != 0 {
		t.Fatalf("watch from the current revision started with %v", ev)
	}

	// Bad input is InvalidArgument and changes nothing.
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{Addr: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("register node 0: %v", err)
	}
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 5, StoreId: "s5"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("register without addr: %v", err)
	}
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 5, Addr: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("register without a store id: %v", err)
	}
	if _, err := c.Lookup(tctx(t), make([]byte, maxKeyBytes+1)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("lookup of a huge key: %v", err)
	}
}

var spreadAll = flag.Bool("spread.all", false, "TestLeadersSpread: skew every leadership onto node 1, not half")

// TestLeadersSpread bootstraps many ranges on three nodes and checks that
// each node leads within 10% of the average; then it piles the leaders of
// most ranges onto one node and checks that the balancer spreads them
// again through leader transfers. With -spread.all it piles every
// leadership onto node 1, the state a rolling restart can leave behind,
// and logs how long the balancer takes to spread them again:
//
//	go test ./placement/service -run TestLeadersSpread -spread.all -v
func TestLeadersSpread(t *testing.T) {
	ranges := 1000
	if testing.Short() {
		ranges = 300
	}
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)

	balanced := func(counts map[uint64]int) bool {
		total := 0
		for _, n := range counts {
			total += n
		}
		avg := float64(ranges) / 3
		for _, n := range counts {
			if float64(n) < 0.9*avg || float64(n) > 1.1*avg {
				return false
			}
		}
		return total == ranges
	}
	var counts map[uint64]int
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last leaders per node: %v", counts)
		}
	})
	testutil.WaitFor(t, 15*time.Second, "leaders spread after bootstrap", func() bool {
		counts = dc.leaderCounts(t)
		return balanced(counts)
	})
	t.Logf("after bootstrap, %d ranges: leaders per node %v", ranges, counts)

	// Skew: move the leadership of every range node 2 or 3 leads, up to
	// half of all ranges (all of them with -spread.all), to node 1. A transfer answers once done, so they
	// go many at once, faster than the balancer undoes them.
	var moved atomic.Int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, 64)
	asked := 0
	for _, id := range []uint64{2, 3} {
		resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.Ranges {
			if d.LeaderNodeId != id || (asked >= ranges/2 && !*spreadAll) {
				continue
			}
			asked++
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				if _, err := dc.admin(id).TransferLeader(tctx(t), &kvpb.TransferLeaderRequest{RangeId: d.RangeId, TargetNodeId: 1}); err == nil {
					moved.Add(1)
				}
			})
		}
	}
	wg.Wait()
	testutil.WaitFor(t, 10*time.Second, "the skew to take", func() bool {
		counts = dc.leaderCounts(t)
		return !balanced(counts)
	})
	t.Logf("skewed by %d transfers to node 1: leaders per node %v", moved.Load(), counts)
	skewed := time.Now()
	testutil.WaitFor(t, 30*time.Second, "leaders spread again", func() bool {
		counts = dc.leaderCounts(t)
		return balanced(counts)
	})
	t.Logf("leaders within 10%% of the mean %v after the skew: per node %v", time.Since(skewed).Round(10*time.Millisecond), counts)
}

// TestLeaderHintsFollowTheBalancer: after the balancer moves leaders, the
// map's leader hints say where they went within a couple of rounds, not
// only when the balancer next gathers them for its own sake (it skips
// that while the nodes' reported counts look balanced).
func TestLeaderHintsFollowTheBalancer(t *testing.T) {
	const ranges = 16
	// Rounds slower than the nodes' heartbeats (200 ms), as in production,
	// so that the nodes report balanced counts before the next round.
	pc := startPlacement(t, 1, func(c *Config) { c.InitialRanges, c.BalanceInterval = ranges, time.Second })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	testutil.WaitFor(t, 10*time.Second, "leaders spread", func() bool {
		counts := dc.leaderCounts(t)
		return counts[1] >= 4 && counts[2] >= 4 && counts[3] >= 4
	})
	// Skew: node 1 takes every leadership (a transfer answers once done,
	// so they run at once); the balancer spreads them again.
	var skew sync.WaitGroup
	for _, id := range []uint64{2, 3} {
		resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.Ranges {
			if d.LeaderNodeId == id {
				skew.Go(func() {
					_, _ = dc.admin(id).TransferLeader(tctx(t), &kvpb.TransferLeaderRequest{RangeId: d.RangeId, TargetNodeId: 1})
				})
			}
		}
	}
	skew.Wait()
	testutil.WaitFor(t, 10*time.Second, "the skew to take", func() bool { return dc.leaderCounts(t)[1] > ranges/3+1 })
	testutil.WaitFor(t, 10*time.Second, "the balancer to spread the leaders again", func() bool {
		counts := dc.leaderCounts(t)
		return counts[2] >= 4 && counts[3] >= 4
	})
	c := pc.client()
	var stale int
	testutil.WaitFor(t, 4*time.Second, "the map's leader hints to match the nodes", func() bool {
		all, err := c.AllRanges(tctx(t), 0)
		if err != nil {
			return false
		}
		actual := dc.leaders(t)
		stale = 0
		for _, d := range all {
			if d.LeaderNodeId != actual[d.RangeId] {
				stale++
			}
		}
		return stale == 0
	})
}

// TestSurvivesLossOfOnePlacementProcess runs three placement processes,
// stops the leader, and checks that another takes over with the map
// intact, that mutations still work, and that a watcher follows to the
// new leader.
func TestSurvivesLossOfOnePlacementProcess(t *testing.T) {
	const ranges = 16
	pc := startPlacement(t, 3, func(c *Config) { c.InitialRanges = ranges })
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, ranges)
	c := pc.client()
	before, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(tctx(t))
	defer cancel()
	events := make(chan *placementpb.WatchEvent, 1000)
	go func() {
		_ = c.Watch(ctx, 0, func(ev *placementpb.WatchEvent) error { events <- ev; return nil })
	}()
	first := <-events

	// A router that learned the map keeps writing through the failover,
	// and after every placement process is gone: it needs the service only
	// for ranges it has not cached.
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: pc.client()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	testutil.WaitFor(t, 5*time.Second, "the router to learn every range", func() bool { return len(rc.Ranges()) == ranges })
	keyIn := func(d *kvpb.RangeDescriptor, suffix string) []byte {
		if len(d.StartKey) == 0 {
			return []byte("a" + suffix)
		}
		return []byte(string(d.StartKey) + suffix)
	}
	writing := make(chan struct{})
	var writes atomic.Int64
	var writers sync.WaitGroup
	writers.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-writing:
				return
			default:
			}
			d := before[i%len(before)]
			if err := rc.Put(tctx(t), keyIn(d, fmt.Sprint("w", i)), []byte("v")); err != nil {
				t.Errorf("router put during the placement failover: %v", err)
				return
			}
			writes.Add(1)
			time.Sleep(time.Millisecond)
		}
	})

	old := pc.leader()
	pc.servers[old].Stop()
	delete(pc.servers, old)
	t.Logf("stopped placement leader %d", old)
	next := pc.leader()
	t.Logf("placement process %d took over", next)

	after, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d ranges after the failover, %d before", len(after), len(before))
	}
	for i := range before {
		b, a := proto.Clone(before[i]).(*kvpb.RangeDescriptor), proto.Clone(after[i]).(*kvpb.RangeDescriptor)
		b.LeaderNodeId, a.LeaderNodeId = 0, 0 // hints may move meanwhile
		if !proto.Equal(a, b) {
			t.Fatalf("range %d changed in the failover: %v, was %v", i, after[i], before[i])
		}
	}
	resp, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 9, Addr: "127.0.0.1:9", StoreId: "s9"})
	if err != nil {
		t.Fatalf("register a node after the failover: %v", err)
	}
	nodes, err := c.ListNodes(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(nodes.Nodes, func(n *placementpb.NodeInfo) bool { return n.NodeId == 9 }) || len(nodes.Nodes) != 4 {
		t.Fatalf("nodes after registering node 9: %v", nodes.Nodes)
	}
	// The watcher reconnected to the new leader and reached the revision
	// of the registration.
	deadline := time.After(10 * time.Second)
	for at := first.Revision; at < resp.Revision; {
		select {
		case ev := <-events:
			at = ev.Revision
		case <-deadline:
			t.Fatalf("watcher stuck at revision %d, registration at %d", at, resp.Revision)
		}
	}
	// The followers point clients at the new leader.
	for id, s := range pc.servers {
		if id == next {
			continue
		}
		_, err := (&api{s: s}).ListNodes(tctx(t), &placementpb.ListNodesRequest{})
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 ||
			st.Details()[0].(*placementpb.NotPlacementLeader).LeaderId != next {
			t.Fatalf("follower %d answered %v, want FailedPrecondition naming %d", id, err, next)
		}
	}
	// KV still works on the data ranges.
	for _, d := range after {
		key := string(d.StartKey) + "after"
		if len(d.StartKey) == 0 {
			key = "after"
		}
		dc.put(t, d, key, fmt.Sprint(d.RangeId))
	}

	// Now without any placement process at all.
	for id, s := range pc.servers {
		s.Stop()
		delete(pc.servers, id)
	}
	close(writing)
	writers.Wait()
	for _, d := range after {
		key := keyIn(d, "-no-placement")
		if err := rc.Put(tctx(t), key, []byte("x")); err != nil {
			t.Fatalf("router put with no placement process: %v", err)
		}
		if v, found, err := rc.Get(tctx(t), key); err != nil || !found || string(v) != "x" {
			t.Fatalf("router get with no placement process: %q %v %v", v, found, err)
		}
	}
	t.Logf("the router wrote %d times during the failover without an error", writes.Load())
}

// TestStaleLeaderIsFenced plays a placement leader whose state is stale
// (another process wrote meanwhile): its conditional write fails with
// FailedPrecondition, writes nothing, and ends its term; the process then
// reloads the state and works again.
func TestStaleLeaderIsFenced(t *testing.T) {
	pc := startPlacement(t, 1, nil)
	s := pc.servers[pc.leader()]
	c := pc.client()
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 1, Addr: "127.0.0.1:1", StoreId: "s1"}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	rev := s.term.rev
	s.mu.Unlock()

	// A stale revision: nothing is written.
	m := &mutation{}
	m.put([]byte("n/stale"), []byte("x"))
	err := s.store.commit(tctx(t), rev-1, m)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("commit at a stale revision: %v, want FailedPrecondition", err)
	}
	if _, found, err := s.store.get(tctx(t), []byte("n/stale")); err != nil || found {
		t.Fatalf("a fenced write left its key: found=%v, %v", found, err)
	}
	if v, _, _ := s.store.get(tctx(t), keyRev); !bytes.Equal(v, encUint(rev)) {
		t.Fatalf("m/rev is %x after a fenced write, want %d", v, rev)
	}

	// Another writer moves the revision on behind the leader's back: the
	// leader's next mutation is fenced and ends its term.
	if err := s.store.commit(tctx(t), rev, &mutation{}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	tm := s.term
	s.mu.Unlock()
	_, err = s.register(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 2, Addr: "127.0.0.1:2", StoreId: "s2"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("mutation of a stale leader: %v, want FailedPrecondition", err)
	}
	testutil.WaitFor(t, 5*time.Second, "a new term at the fresh revision", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.term != nil && s.term != tm && s.term.rev == rev+1
	})
	if _, err := c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 2, Addr: "127.0.0.1:2", StoreId: "s2"}); err != nil {
		t.Fatalf("register after reloading: %v", err)
	}
	nodes, err := c.ListNodes(tctx(t))
	if err != nil || len(nodes.Nodes) != 2 {
		t.Fatalf("nodes: %v, %v", nodes, err)
	}
}

// TestNodeDownAtBootstrap: a node that registered and died before the first
// ranges were created does not stall them once it stops heartbeating: they
// are created on the other nodes, a majority of every range, and serve;
// the node is recorded as pending, and when it comes back the service has
// it create its replicas.
func TestNodeDownAtBootstrap(t *testing.T) {
	const ranges = 6
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges = ranges
		c.HeartbeatTimeout = time.Second
	})
	s := pc.servers[pc.leader()]
	dc := newDataCluster(t, 3, pc)
	c := pc.client()
	// Node 3 registers from nowhere (nothing listens at its address yet),
	// with the store it comes back with later, and heartbeats until the
	// map is built; then it is gone.
	n3, err := node.Start(node.Config{NodeID: 3, Dir: dc.dir(3), ListenAddr: "127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	store3 := n3.StoreID()
	n3.Stop()
	ctx3, stop3 := context.WithCancel(tctx(t))
	var beat sync.WaitGroup
	beat.Go(func() {
		_ = Heartbeat(ctx3, c, &fakeNode{id: 3, addr: dc.peers[3], store: store3}, 100*time.Millisecond, nil)
	})
	dc.start(1)
	dc.start(2)
	termState := func(f func(tm *term) bool) func() bool {
		return func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.term != nil && f(s.term)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the first map", termState(func(tm *term) bool { return tm.bootstrapped }))
	stop3()
	beat.Wait()
	testutil.WaitFor(t, 15*time.Second, "the ranges to be created without node 3",
		termState(func(tm *term) bool { return tm.created && tm.pending[3] }))

	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	all, err := c.AllRanges(tctx(t), 0)
	if err != nil || len(all) != ranges {
		t.Fatalf("ranges: %v, %v", all, err)
	}
	put := func(suffix string) {
		t.Helper()
		for _, d := range all {
			key := string(d.StartKey) + suffix
			if err := rc.Put(tctx(t), []byte(key), []byte("v")); err != nil {
				t.Fatalf("put %q without node 3: %v", key, err)
			}
		}
	}
	put("a")

	dc.start(3)
	testutil.WaitFor(t, 15*time.Second, "node 3 to create its replicas",
		func() bool { return dc.hostedRanges(t, 3) == ranges })
	testutil.WaitFor(t, 5*time.Second, "node 3 to leave the pending list",
		termState(func(tm *term) bool { return !tm.pending[3] }))
	// The pending mark is durable state: a new leader would have healed
	// node 3 too. Its removal is too.
	if _, found, err := s.store.get(tctx(t), idKey(pendingPrefix, 3)); err != nil || found {
		t.Fatalf("m/pending/3 after healing: found=%v, %v", found, err)
	}
	// With node 1 gone, every range needs node 3 now.
	dc.stop(1)
	put("b")
}
