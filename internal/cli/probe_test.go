package cli

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A port nothing listens on: a listener's, closed.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l2.Addr().String()
	l2.Close()

	if err := Probe(t.Context(), []string{l.Addr().String()}); err != nil {
		t.Errorf("a listening address: %v", err)
	}
	if err := Probe(t.Context(), []string{closed, l.Addr().String()}); err != nil {
		t.Errorf("one of two listening: %v", err)
	}
	start := time.Now()
	err = Probe(t.Context(), []string{closed, "127.0.0.1:1"})
	took := time.Since(start)
	t.Logf("refused in %v: %v", took, err)
	if err == nil || strings.Count(err.Error(), "connection refused") != 2 || !strings.HasPrefix(err.Error(), "dial tcp "+closed) {
		t.Errorf("two refusing addresses: %v", err)
	}
	if took > ProbeTimeout {
		t.Errorf("a refusal took %v, more than the probe's timeout", took)
	}
}
