package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/shardd/shardd/kvpb"
)

var drainCommand = &command{
	name:    "drain",
	args:    "[--addr host:port] [--timeout 10s] [--keep-running]",
	summary: "hand off a node's leaderships, then stop it",
	doc: `
Drain asks a node (Admin.Drain) to hand every range it leads to another
replica of the range, waiting at most --timeout for that, and then to stop:
its process exits cleanly. Its ranges pause for a leader transfer, a few
milliseconds, instead of an election after the node is gone. This is how to
take a node down for a rolling restart; a node sent SIGTERM or SIGINT does
the same by itself (see 'shardd start --drain-timeout').

A draining node tells the placement service, whose balancer then moves
nothing onto it. With --keep-running the node drains but does not stop (it
stays draining until it restarts).`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		addr := fs.String("addr", defaultNodeAddr, "gRPC `host:port` of the node to drain (its --listen address)")
		timeout := fs.Duration("timeout", 10*time.Second, "how `long` the node may take to hand off its leaderships")
		keep := fs.Bool("keep-running", false, "drain, but do not stop the node")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *timeout <= 0 {
				return usagef("--timeout must be positive, not %v", *timeout)
			}
			start := time.Now()
			resp, err := askNode(ctx, *addr, *timeout+5*time.Second, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.DrainResponse, error) {
				return c.Drain(ctx, &kvpb.DrainRequest{TimeoutMillis: uint64(timeout.Milliseconds()), Stop: !*keep})
			})
			if err != nil {
				return err
			}
			took := time.Since(start).Round(time.Millisecond)
			if resp.LeadersLeft > 0 {
				fmt.Fprintf(e.stdout, "the node at %s still led %d ranges after %v (no other replica could take them)", *addr, resp.LeadersLeft, took)
			} else {
				fmt.Fprintf(e.stdout, "the node at %s leads no range (drained in %v)", *addr, took)
			}
			if *keep {
				fmt.Fprintln(e.stdout, "; it keeps running, draining")
			} else {
				fmt.Fprintln(e.stdout, "; it is stopping")
			}
			return nil
		}
	},
}
