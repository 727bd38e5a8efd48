package main

import (
	"context"
	"flag"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement/client"
)

var splitCommand = &command{
	name:    "split",
	args:    "[--placement ADDRS] [--json] KEY",
	summary: "split the range holding KEY at KEY",
	doc: `
Split asks the placement service to cut the range holding KEY in two at
KEY: the range keeps the keys below KEY and a new range takes KEY and the
keys after it, on the same replicas. The range's leader proposes the split
through the range's own log, so every replica cuts it at the same point;
no data moves, and the range serves reads and writes throughout. It prints
both halves.

The key is taken as given (bytes of the argument). A key that is already
where a range starts is refused, as is a split of a range that is busy with
another operation; the error names it.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f inspectFlags
		fs.StringVar(&f.addr, "placement", defaultPlacementAddr, "gRPC `addresses` of the placement processes, comma-separated")
		fs.BoolVar(&f.json, "json", false, "print JSON instead of a table")
		fs.DurationVar(&f.timeout, "timeout", 15*time.Second, "how long to wait for the split")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return usagef("give the one key to split at")
			}
			resp, err := askPlacement(ctx, f.addr, f.timeout, func(ctx context.Context, c *client.Client) (*kvpb.RangesResponse, error) {
				sr, err := c.SplitRange(ctx, []byte(args[0]))
				if err != nil {
					return nil, err
				}
				out := &kvpb.RangesResponse{Ranges: []*kvpb.RangeDescriptor{sr.Left, sr.Right}, NodeAddrs: map[uint64]string{}}
				if nodes, err := c.ListNodes(ctx); err == nil {
					for _, n := range nodes.Nodes {
						out.NodeAddrs[n.NodeId] = n.Addr
					}
				}
				return out, nil
			})
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(e.stdout, rangesJSON(resp))
			}
			return writeRangesTable(e.stdout, resp)
		}
	},
}
