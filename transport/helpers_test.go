package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/shardd/shardd/paxospb"
)

// safetyNet bounds every wait in these tests. It is never what a test
// asserts: conditions are awaited, and the net only turns a hang into a
// failure.
const safetyNet = 30 * time.Second

// testResolver is a Resolver backed by a map that tests can change.
type testResolver struct {
	mu    sync.Mutex
	addrs map[uint64]string
}

func newResolver() *testResolver { return &testResolver{addrs: make(map[uint64]string)} }

func (r *testResolver) Addr(id uint64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.addrs[id]
	return a, ok
}

func (r *testResolver) set(id uint64, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs[id] = addr
}

// recorder is a Handler that keeps what it receives and checks, per
// (sender, group), that Seq numbers arrive as 1, 2, 3, ...
type recorder struct {
	count    atomic.Int64
	maxFrame atomic.Int64 // most messages seen in one frame
	changed  chan struct{}

	mu         sync.Mutex
	msgs       []pb.Message
	keep       bool
	lastSeq    map[[2]uint64]uint64
	violations []string
	arrived    map[uint64]time.Time // by Seq, if keep
	frameLens  []int                // messages per frame, if keep

	// snapshot handles HandleSnapshot when set.
	snapshot func(from uint64, header pb.Message, next func() ([]byte, error)) error
}

func newRecorder(keep bool) *recorder {
	return &recorder{
		changed: make(chan struct{}, 1),
		keep:    keep,
		lastSeq: make(map[[2]uint64]uint64),
		arrived: make(map[uint64]time.Time),
	}
}

func (r *recorder) HandleMessages(from uint64, msgs []pb.Message) {
	now := time.Now()
	r.mu.Lock()
	for _, m := range msgs {
		k := [2]uint64{from, m.Group}
		if want := r.lastSeq[k] + 1; m.Seq != want && len(r.violations) < 10 {
			r.violations = append(r.violations, "from "+itoa(from)+" group "+itoa(m.Group)+": seq "+itoa(m.Seq)+", want "+itoa(want))
		}
		r.lastSeq[k] = m.Seq
		if r.keep {
			r.msgs = append(r.msgs, m)
			r.arrived[m.Seq] = now
		}
	}
	if r.keep {
		r.frameLens = append(r.frameLens, len(msgs))
	}
	r.mu.Unlock()
	for {
		old := r.maxFrame.Load()
		if int64(len(msgs)) <= old || r.maxFrame.CompareAndSwap(old, int64(len(msgs))) {
			break
		}
	}
	r.count.Add(int64(len(msgs)))
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) HandleSnapshot(from uint64, header pb.Message, next func() ([]byte, error)) error {
	if r.snapshot != nil {
		return r.snapshot(from, header, next)
	}
	for {
		if _, err := next(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (r *recorder) received() []pb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pb.Message(nil), r.msgs...)
}

func (r *recorder) frameSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.frameLens...)
}

func (r *recorder) checkOrder(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error("order violated:", v)
	}
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// node is one transport with its own gRPC server on loopback.
type node struct {
	id   uint64
	tr   *Transport
	h    *recorder
	r    *testResolver
	addr string
	srv  *grpc.Server
	done chan struct{}
}

// quietLogger drops the transport's connection logs unless -v.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

// startNode starts node id, registers its address with r and returns it.
// mut may change its Config.
func startNode(t testing.TB, id uint64, r *testResolver, keep bool, mut func(*Config)) *node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Logger = quietLogger()
	cfg.DialTimeout = 500 * time.Millisecond
	cfg.ReconnectBackoff = 10 * time.Millisecond
	cfg.MaxReconnectBackoff = 200 * time.Millisecond
	if mut != nil {
		mut(&cfg)
	}
	n := &node{id: id, h: newRecorder(keep), r: r}
	tr, err := New(cfg, r, n.h)
	if err != nil {
		t.Fatal(err)
	}
	n.tr = tr
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	n.serve(lis)
	r.set(id, n.addr)
	t.Cleanup(func() {
		n.tr.Close()
		n.stopServer()
	})
	return n
}

func (n *node) serve(lis net.Listener) {
	n.srv = grpc.NewServer()
	n.tr.Register(n.srv)
	n.done = make(chan struct{})
	srv, done := n.srv, n.done
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
}

// stopServer stops the node's gRPC server, killing its streams, as a
// crashed process would.
func (n *node) stopServer() {
	if n.srv == nil {
		return
	}
	n.srv.Stop()
	<-n.done
	n.srv = nil
}

// restartServer serves again on the node's old address.
func (n *node) restartServer(t testing.TB) {
	t.Helper()
	var lis net.Listener
	var err error
	deadline := time.Now().Add(safetyNet)
	for {
		if lis, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relisten on %s: %v", n.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.serve(lis)
}

// startCluster starts nodes 1..k that know each other.
func startCluster(t testing.TB, k int, keep bool, mut func(*Config)) []*node {
	r := newResolver()
	nodes := make([]*node, k)
	for i := range nodes {
		nodes[i] = startNode(t, uint64(i+1), r, keep, mut)
	}
	return nodes
}

// deadAddr returns a loopback address that nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// waitFor waits until cond holds, re-checking whenever a recorder reports
// news and at least every few milliseconds (for conditions on Stats).
func waitFor(t testing.TB, what string, cond func() bool, recs ...*recorder) {
	t.Helper()
	deadline := time.NewTimer(safetyNet)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var changed chan struct{}
	if len(recs) == 1 {
		changed = recs[0].changed
	}
	for !cond() {
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", safetyNet, what)
		}
	}
}

// heartbeat returns a heartbeat-sized message.
func heartbeat(from, to, group, seq uint64) pb.Message {
	return pb.Message{
		Type: pb.MsgHeartbeat, Group: group, From: from, To: to,
		Ballot: pb.Ballot{Round: 7, Node: from}, Chosen: 1234, Seq: seq,
	}
}
