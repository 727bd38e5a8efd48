package main

import (
	"context"
	"flag"
	"strconv"
	"time"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placementpb"
)

var moveCommand = &command{
	name:    "move",
	args:    "[--placement ADDRS] RANGE --from NODE --to NODE [--json]",
	summary: "move a replica of a range from one node to another",
	doc: `
Move asks the placement service to move range RANGE's replica from node
--from to node --to: a learner on --to gets the range's data in a snapshot
from the range's leader and catches up, becomes a voter, the leadership
leaves --from if it was there, and --from's replica is removed (its node
deletes the range's data and log). The range serves reads and writes
throughout. The service records the move before its first step, so a move
cut short (the command's timeout, a placement failover, a node's restart)
is carried on to the end by the service; the command then says the move is
under way. A move to a node that is not live, is draining or holds a
replica of the range already is refused, as is one while the range is busy
with another operation.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		placementAddrs := fs.String("placement", defaultPlacementAddr, "gRPC `addresses` of the placement processes, comma-separated")
		from := fs.String("from", "", "the `node` id whose replica moves (required)")
		to := fs.String("to", "", "the `node` id the replica moves to (required)")
		asJSON := fs.Bool("json", false, "print JSON instead of a line of text")
		timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the move, retries included")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want one RANGE id, got %q", args)
			}
			rangeID, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || rangeID == 0 {
				return usagef("%q is not a range id (a positive integer; see shardd ranges)", args[0])
			}
			if *from == "" || *to == "" {
				return usagef("--from and --to are required: the nodes the replica moves from and to")
			}
			src, err := cli.ParseNodeID(*from)
			if err != nil {
				return usagef("--from: %v", err)
			}
			dst, err := cli.ParseNodeID(*to)
			if err != nil {
				return usagef("--to: %v", err)
			}
			start := time.Now()
			resp, err := askPlacement(ctx, *placementAddrs, *timeout, func(ctx context.Context, c *client.Client) (*placementpb.MoveReplicaResponse, error) {
				return c.MoveReplica(ctx, rangeID, src, dst)
			})
			if err != nil {
				return err
			}
			d := resp.GetDescriptor_()
			return writeRangeChange(e.stdout, d, resp.Revision, time.Since(start), *asJSON, formatReplicas(d))
		}
	},
}
