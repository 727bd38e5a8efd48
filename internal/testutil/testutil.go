// Package testutil holds the small helpers that tests of several packages
// share. Every wait it offers is bounded.
package testutil

import (
	"net"
	"testing"
	"time"
)

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
