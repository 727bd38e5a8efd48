package node

import (
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func (c *testCluster) faults(id uint64) kvpb.FaultClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.nodes[id].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns = append(c.conns, conn)
	return kvpb.NewFaultClient(conn)
}

// TestFaultService drives the Fault service of a node started with
// EnableFaultInjection: cutting its clients refuses KV calls and breaks an
// open KV stream while Admin still answers; cutting its links to its peers
// both ways, on its side alone, lets the others elect a leader without it;
// an empty fault set heals both.
func TestFaultService(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), func(cfg *Config) { cfg.EnableFaultInjection = true })
	put(t, c, 1, "a", "1")
	lead := c.leaderFor(1)
	fc := c.faults(lead)
	st, err := c.clients[lead].Stream(ctx(t))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := fc.SetFaults(ctx(t), &kvpb.SetFaultsRequest{CutClients: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.clients[lead].Put(ctx(t), &kvpb.PutRequest{Key: []byte("a"), Value: []byte("2")}); status.Code(err) != codes.Unavailable {
		t.Errorf("put while the clients are cut: %v, want Unavailable", err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("a stream open when the cut started: %v, want it broken with Unavailable", err)
	}
	if _, err := c.admin(lead).Ranges(ctx(t), &kvpb.RangesRequest{}); err != nil {
		t.Errorf("Admin while the clients are cut: %v", err)
	}
	if _, err := fc.SetFaults(ctx(t), &kvpb.SetFaultsRequest{}); err != nil {
		t.Fatal(err)
	}
	put(t, c, 1, "a", "3")

	var others []uint64
	for id := range c.nodes {
		if id != lead {
			others = append(others, id)
		}
	}
	if _, err := fc.SetFaults(ctx(t), &kvpb.SetFaultsRequest{DropOutgoing: others, DropIncoming: others}); err != nil {
		t.Fatal(err)
	}
	c.leaderFor(1, others...) // the others elect one while the old one is cut off
	if s := c.nodes[lead].trans.Stats(); s.DroppedOnArrival == 0 || s.Dropped.Fault == 0 {
		t.Errorf("the cut node dropped %d messages on arrival and %d on sending; want both", s.DroppedOnArrival, s.Dropped.Fault)
	}
	if _, err := fc.SetFaults(ctx(t), &kvpb.SetFaultsRequest{}); err != nil {
		t.Fatal(err)
	}
	put(t, c, 1, "a", "4")
}

// TestFaultServiceOffByDefault checks that a node serves no Fault service
// unless it is asked to.
func TestFaultServiceOffByDefault(t *testing.T) {
	c := newTestCluster(t, 1, splitRanges(1, 1), nil)
	_, err := c.faults(1).SetFaults(ctx(t), &kvpb.SetFaultsRequest{CutClients: true})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("SetFaults on a node without fault injection: %v, want Unimplemented", err)
	}
}

// TestJumpClock checks the clock offset of Config.ClockOffset and the
// Fault service's JumpClock: nodes whose clocks are an hour ahead serve as
// any others (no node reads another's clock), a jump moves the clock
// forward by its size and reports the node's drift bound, and a backward
// jump is refused.
func TestJumpClock(t *testing.T) {
	const offset = time.Hour
	c := newTestCluster(t, 3, splitRanges(1, 3), func(cfg *Config) {
		cfg.EnableFaultInjection = true
		cfg.ClockOffset = offset
	})
	put(t, c, 1, "a", "1")
	lead := c.leaderFor(1)
	n := c.nodes[lead]
	// ahead is how far the node's clock is ahead of the time since it
	// started, read in this order so that it never comes out short.
	ahead := func() time.Duration { since := time.Since(n.start); return time.Duration(n.Now()) - since }
	if ahead := ahead(); ahead < offset || ahead > offset+time.Second {
		t.Errorf("the clock is %v ahead of the time since the node started, want %v", ahead, offset)
	}
	fc := c.faults(lead)
	resp, err := fc.JumpClock(ctx(t), &kvpb.JumpClockRequest{ForwardNanos: int64(n.cfg.MaxClockDrift)})
	if err != nil {
		t.Fatal(err)
	}
	if want := offset + n.cfg.MaxClockDrift; time.Duration(resp.OffsetNanos) != want || time.Duration(resp.MaxClockDriftNanos) != n.cfg.MaxClockDrift {
		t.Errorf("JumpClock: offset %v, drift bound %v; want %v and %v", time.Duration(resp.OffsetNanos), time.Duration(resp.MaxClockDriftNanos), want, n.cfg.MaxClockDrift)
	}
	if ahead := ahead(); ahead < offset+n.cfg.MaxClockDrift {
		t.Errorf("the clock is %v ahead after the jump", ahead)
	}
	if _, err := fc.JumpClock(ctx(t), &kvpb.JumpClockRequest{ForwardNanos: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a backward jump: %v, want InvalidArgument", err)
	}
	put(t, c, 1, "a", "2")
}
