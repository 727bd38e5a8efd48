package cli

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"
)

// ProbeTimeout is how long Probe waits for a connection at most.
const ProbeTimeout = 2 * time.Second

// Probe reports whether any of addrs accepts a TCP connection, so that a
// command can say at once that nothing listens there instead of retrying
// until its timeout: gRPC clients and the placement client treat a
// refused connection as a passing failure and try again.
//
// It returns nil if an address accepts a connection, and also if one gave
// no answer within ProbeTimeout (or ctx ended): silence is not proof, and
// the caller's own deadline decides then. Otherwise every address refused
// or could not be dialed, and the error says why for each ("dial tcp
// 127.0.0.1:1: connect: connection refused").
func Probe(ctx context.Context, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(addrs))
	for i, addr := range addrs {
		go func() {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				conn.Close()
			}
			results <- result{i, err}
		}()
	}
	failures := make([]string, len(addrs)) // in the order of addrs
	for range addrs {
		r := <-results
		if r.err == nil || ctx.Err() != nil || isTimeout(r.err) {
			return nil
		}
		failures[r.i] = r.err.Error()
	}
	return errors.New(strings.Join(failures, "; "))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
