// Package testutil holds the small helpers that tests of several packages
// share. Every wait it offers is bounded.
package testutil

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health asks the gRPC health service at addr about the whole server;
// an unreachable process counts as UNKNOWN.
func Health(t testing.TB, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.Status
}

// WaitFor polls cond every 10ms until it holds, failing the test after
// timeout with what it was waiting for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddrs returns n loopback addresses whose ports were free a moment
// ago, for processes that must know each other's addresses before they
// listen. Another process could take a port in between; tests accept
// that small risk.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		l.Close()
	}
	return out
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a test's log or a
// command's output that goroutines write while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Ranges is placement's even layout of n ranges, split at "k%04d" keys,
// each replicated on nodes 1..replicas with first leaders spread over them.
func Ranges(n, replicas int) []*kvpb.RangeDescriptor {
	nodes := make([]uint64, replicas)
	for i := range nodes {
		nodes[i] = uint64(i + 1)
	}
	descs, err := placement.InitialRanges(placement.EvenSplitKeys(n, "k", 4), nodes, replicas)
	if err != nil {
		panic(err) // a bad layout is a bug in the test
	}
	return descs
}
