package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placementpb"
)

var transferCommand = &command{
	name:    "transfer",
	args:    "[--placement ADDRS] RANGE --to NODE [--json]",
	summary: "move the leadership of a range to another node",
	doc: `
Transfer asks the placement service to move the leadership of range RANGE
(its id, as shardd ranges lists it) to node NODE, one of the range's voters
that the service sees live. The range's leader waits until NODE has every
value it chose, stops taking writes for the last round trips, and hands
over its lease; NODE takes over at once. The range's writers wait a few
milliseconds and see no error. The command returns once NODE leads, and
the range map records it.

Flags may also follow RANGE. A target that cannot catch up within an
election timeout (a second by default) is given up on: the old leader
keeps leading and the command fails with Aborted; run it again. A target
that is not one of the range's voters, or whose node is not live, is
refused.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		placementAddrs := fs.String("placement", defaultPlacementAddr, "gRPC `addresses` of the placement processes, comma-separated")
		to := fs.String("to", "", "the `node` id to move the leadership to: a voter of the range (required)")
		asJSON := fs.Bool("json", false, "print JSON instead of a line of text")
		timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the new leader, retries included")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want one RANGE id, got %q", args)
			}
			rangeID, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || rangeID == 0 {
				return usagef("%q is not a range id (a positive integer; see shardd ranges)", args[0])
			}
			if *to == "" {
				return usagef("--to is required: the node to move the leadership to")
			}
			target, err := cli.ParseNodeID(*to)
			if err != nil {
				return usagef("--to: %v", err)
			}
			start := time.Now()
			resp, err := askPlacement(ctx, *placementAddrs, *timeout, func(ctx context.Context, c *client.Client) (*placementpb.TransferLeaderResponse, error) {
				return c.TransferLeader(ctx, rangeID, target)
			})
			if err != nil {
				return err
			}
			d := resp.GetDescriptor_()
			return writeRangeChange(e.stdout, d, resp.Revision, time.Since(start), *asJSON, fmt.Sprintf("node %d leads", d.GetLeaderNodeId()))
		}
	},
}

// rangeChangeOutput is the --json of a command that changed a range
// (transfer, move).
type rangeChangeOutput struct {
	Range    rangeJSON `json:"range"`
	Revision uint64    `json:"revision"`
	// TookMS is how long the command waited for the change, in
	// milliseconds.
	TookMS float64 `json:"took_ms"`
}

// writeRangeChange prints range d as a change left it at map revision rev
// after took: JSON, or a line that says what holds now.
func writeRangeChange(w io.Writer, d *kvpb.RangeDescriptor, rev uint64, took time.Duration, asJSON bool, what string) error {
	r := rangesJSON(&kvpb.RangesResponse{Ranges: []*kvpb.RangeDescriptor{d}}).Ranges[0]
	if asJSON {
		return writeJSON(w, rangeChangeOutput{Range: r, Revision: rev, TookMS: float64(took.Microseconds()) / 1000})
	}
	_, err := fmt.Fprintf(w, "range %d [%s, %s): %s (map revision %d, took %v)\n",
		d.GetRangeId(), formatKey(d.GetStartKey(), false), formatKey(d.GetEndKey(), true), what, rev, took.Round(time.Millisecond))
	return err
}
