package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// inspectFlags are the flags of the commands that ask one node something.
type inspectFlags struct {
	addr    string
	json    bool
	timeout time.Duration
}

func (f *inspectFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", defaultNodeAddr, "gRPC `host:port` of the node to ask (its --listen address)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for the node's answer")
}

var rangesCommand = &command{
	name:    "ranges",
	args:    "[--placement ADDRS | --addr host:port] [--json]",
	summary: "list the ranges of the cluster, or of a node",
	doc: `
Ranges lists ranges sorted by start key, each with its replicas and its
leader, and the gRPC addresses of the nodes. With --placement it lists the
whole range map from the placement service (the leader is the service's
latest hint); without, the ranges one node (--addr) hosts a replica of,
with the leaders that node knows of (Admin.Ranges).

With --placement it also lists the operations under way on ranges (splits
and replica moves, by users, the balancer or repair), each with what it
does, why, and for how long it has been under way; and the balancer's
recent decisions (leader transfers, and what it moved to spread the load,
with the figures it acted on).

In the table -inf and +inf are the two ends of the key space. In JSON, keys
are strings ("" for either end; bytes that are not UTF-8 show as U+FFFD)
and "leader" is 0 when no leader is known.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f inspectFlags
		f.register(fs)
		placementAddrs := fs.String("placement", "", "gRPC `addresses` of the placement processes, comma-separated; if given, list the whole map from there instead of asking --addr")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			var resp *kvpb.RangesResponse
			var ops, decisions []string
			var err error
			if *placementAddrs != "" {
				resp, err = askPlacement(ctx, *placementAddrs, f.timeout, placementRanges)
				if err == nil {
					var lo *placementpb.ListOperationsResponse
					lo, err = askPlacement(ctx, *placementAddrs, f.timeout, func(ctx context.Context, c *client.Client) (*placementpb.ListOperationsResponse, error) {
						return c.ListOperations(ctx)
					})
					ops, decisions = lo.GetDescriptions(), lo.GetRecentDecisions()
				}
			} else {
				resp, err = askNode(ctx, f.addr, f.timeout, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangesResponse, error) {
					return c.Ranges(ctx, &kvpb.RangesRequest{})
				})
			}
			if err != nil {
				return err
			}
			if f.json {
				out := rangesJSON(resp)
				out.Operations, out.RecentDecisions = ops, decisions
				return writeJSON(e.stdout, out)
			}
			if err := writeRangesTable(e.stdout, resp); err != nil {
				return err
			}
			if len(ops) > 0 {
				fmt.Fprintln(e.stdout, "\nOperations under way:")
				for _, o := range ops {
					fmt.Fprintf(e.stdout, "  %s\n", o)
				}
			}
			if len(decisions) > 0 {
				fmt.Fprintln(e.stdout, "\nRecent balancer decisions:")
				for _, d := range decisions {
					fmt.Fprintf(e.stdout, "  %s\n", d)
				}
			}
			return nil
		}
	},
}

var nodesCommand = &command{
	name:    "nodes",
	args:    "[--placement ADDRS] [--json]",
	summary: "list the nodes registered with the placement service",
	doc: `
Nodes asks the placement service for the shardd nodes that registered with
it: each node's address, whether it is live (it reported within the
service's heartbeat timeout), the replicas and leaders the range map gives
it, and the replicas and leaders it last reported itself.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f inspectFlags
		fs.StringVar(&f.addr, "placement", defaultPlacementAddr, "gRPC `addresses` of the placement processes, comma-separated")
		fs.BoolVar(&f.json, "json", false, "print JSON instead of a table")
		fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for the answer")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			resp, err := askPlacement(ctx, f.addr, f.timeout, func(ctx context.Context, c *client.Client) (*placementpb.ListNodesResponse, error) {
				return c.ListNodes(ctx)
			})
			if err != nil {
				return err
			}
			slices.SortFunc(resp.Nodes, func(a, b *placementpb.NodeInfo) int { return cmp.Compare(a.NodeId, b.NodeId) })
			if f.json {
				return writeJSON(e.stdout, nodesJSON(resp))
			}
			return writeNodesTable(e.stdout, resp)
		}
	},
}

// defaultPlacementAddr is placement start's default --listen address.
const defaultPlacementAddr = "127.0.0.1:7000"

// askPlacement makes one call to the placement service at addrs (a
// comma-separated list).
func askPlacement[T any](ctx context.Context, addrs string, timeout time.Duration, call func(context.Context, *client.Client) (T, error)) (T, error) {
	var zero T
	list, err := cli.ParseAddrList(addrs)
	if err != nil || len(list) == 0 {
		return zero, usagef("--placement: give the host:port of a placement process (%v)", err)
	}
	if err := cli.Probe(ctx, list); err != nil { // see kvTarget.connect
		return zero, fmt.Errorf("cannot reach placement at %s: is `placement start` running? (%v)", addrs, err)
	}
	c, err := client.New(list)
	if err != nil {
		return zero, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := call(ctx, c)
	if err != nil {
		return zero, explainPlacementError(addrs, timeout, err)
	}
	return resp, nil
}

// explainPlacementError says what a failed call to the placement service
// means and what to do.
func explainPlacementError(addrs string, timeout time.Duration, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("cannot reach placement at %s within %v: is `placement start` running? (%s)", addrs, timeout, st.Message())
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return fmt.Errorf("placement at %s: %s: %s", addrs, st.Code(), st.Message())
}

// placementRanges reads the whole range map, with the nodes' addresses,
// as a node's Admin.Ranges answer would carry it.
func placementRanges(ctx context.Context, c *client.Client) (*kvpb.RangesResponse, error) {
	descs, err := c.AllRanges(ctx, 0)
	if err != nil {
		return nil, err
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	resp := &kvpb.RangesResponse{Ranges: descs, NodeAddrs: map[uint64]string{}}
	for _, n := range nodes.Nodes {
		resp.NodeAddrs[n.NodeId] = n.Addr
	}
	return resp, nil
}

func writeNodesTable(w io.Writer, resp *placementpb.ListNodesResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tLIVE\tREPLICAS\tLEADERS\tREPORTED REPLICAS\tREPORTED LEADERS")
	for _, n := range resp.Nodes {
		live := "no"
		switch {
		case n.Live && n.Draining:
			live = "yes (draining)"
		case n.Live && n.Settling:
			live = "yes (settling)"
		case n.Live:
			live = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\n", n.NodeId, n.Addr, live, n.Replicas, n.Leaders, n.ReportedReplicas, n.ReportedLeaders)
	}
	if len(resp.Nodes) == 0 {
		fmt.Fprintln(tw, "(none registered)")
	}
	return tw.Flush()
}

// nodeJSON is a node in nodes --json.
type nodeJSON struct {
	NodeID           uint64 `json:"node_id"`
	Addr             string `json:"addr"`
	Live             bool   `json:"live"`
	Replicas         uint32 `json:"replicas"`
	Leaders          uint32 `json:"leaders"`
	ReportedReplicas uint32 `json:"reported_replicas"`
	ReportedLeaders  uint32 `json:"reported_leaders"`
	// Draining and Settling: the balancer moves nothing onto the node
	// (see 'shardd drain' and placement's --settle-time).
	Draining bool `json:"draining"`
	Settling bool `json:"settling"`
}

func nodesJSON(resp *placementpb.ListNodesResponse) []nodeJSON {
	out := []nodeJSON{}
	for _, n := range resp.Nodes {
		out = append(out, nodeJSON{NodeID: n.NodeId, Addr: n.Addr, Live: n.Live, Replicas: n.Replicas, Leaders: n.Leaders,
			ReportedReplicas: n.ReportedReplicas, ReportedLeaders: n.ReportedLeaders, Draining: n.Draining, Settling: n.Settling})
	}
	return out
}

// dial returns a client connection to a node. It connects lazily: errors
// show up on the first call.
func dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("bad node address %q: %w", addr, err)
	}
	return conn, nil
}

// askNode makes one Admin call to the node at addr.
func askNode[T any](ctx context.Context, addr string, timeout time.Duration, call func(context.Context, kvpb.AdminClient) (T, error)) (T, error) {
	var zero T
	if err := cli.CheckHostPort(addr); err != nil {
		return zero, usagef("--addr: %v", err)
	}
	conn, err := dial(addr)
	if err != nil {
		return zero, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := call(ctx, kvpb.NewAdminClient(conn))
	if err != nil {
		return zero, explainRPCError(addr, timeout, err)
	}
	return resp, nil
}

// explainRPCError says what a failed call to a node means and what to do.
func explainRPCError(addr string, timeout time.Duration, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach node at %s: is `shardd start` running? (%s)", addr, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("node at %s did not answer within %v: is it overloaded, or is something other than shardd listening there? (--timeout raises the wait)", addr, timeout)
	case codes.Unimplemented:
		return fmt.Errorf("the server at %s does not serve the shardd Admin API: is it a shardd node, and as new as this command? (%s)", addr, st.Message())
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return fmt.Errorf("node at %s: %s: %s", addr, st.Code(), st.Message())
}

// formatKey shows a range bound: -inf and +inf for the ends of the key
// space, the key as it is if it is printable without spaces, else quoted.
func formatKey(k []byte, end bool) string {
	if len(k) == 0 {
		if end {
			return "+inf"
		}
		return "-inf"
	}
	s := string(k)
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

func formatReplicas(d *kvpb.RangeDescriptor) string {
	parts := make([]string, 0, len(d.Replicas))
	for _, r := range d.Replicas {
		p := strconv.FormatUint(r.NodeId, 10)
		if r.Role == kvpb.ReplicaRole_LEARNER {
			p += "(learner)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

func writeRangesTable(w io.Writer, resp *kvpb.RangesResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANGE\tSTART\tEND\tGEN\tREPLICAS\tLEADER")
	for _, d := range resp.Ranges {
		leader := "-"
		if d.LeaderNodeId != 0 {
			leader = strconv.FormatUint(d.LeaderNodeId, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", d.RangeId, formatKey(d.StartKey, false), formatKey(d.EndKey, true), d.Generation, formatReplicas(d), leader)
	}
	if len(resp.Ranges) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tADDRESS")
	for _, id := range slices.Sorted(maps.Keys(resp.NodeAddrs)) {
		fmt.Fprintf(tw, "%d\t%s\n", id, resp.NodeAddrs[id])
	}
	return tw.Flush()
}

// rangeJSON is a range in ranges --json.
type rangeJSON struct {
	RangeID    uint64   `json:"range_id"`
	StartKey   string   `json:"start_key"`
	EndKey     string   `json:"end_key"`
	Generation uint64   `json:"generation"`
	Replicas   []uint64 `json:"replicas"`
	Learners   []uint64 `json:"learners,omitempty"`
	Leader     uint64   `json:"leader"`
}

type rangesOutput struct {
	Ranges []rangeJSON `json:"ranges"`
	// Nodes maps node ids to gRPC addresses.
	Nodes map[uint64]string `json:"nodes"`
	// Operations describe the splits and replica moves under way (with
	// --placement only).
	Operations []string `json:"operations,omitempty"`
	// RecentDecisions are the balancer's latest decisions, oldest first
	// (with --placement only).
	RecentDecisions []string `json:"recent_decisions,omitempty"`
}

func rangesJSON(resp *kvpb.RangesResponse) rangesOutput {
	out := rangesOutput{Ranges: []rangeJSON{}, Nodes: resp.NodeAddrs}
	if out.Nodes == nil {
		out.Nodes = map[uint64]string{}
	}
	for _, d := range resp.Ranges {
		r := rangeJSON{RangeID: d.RangeId, StartKey: string(d.StartKey), EndKey: string(d.EndKey),
			Generation: d.Generation, Replicas: []uint64{}, Leader: d.LeaderNodeId}
		for _, rd := range d.Replicas {
			if rd.Role == kvpb.ReplicaRole_LEARNER {
				r.Learners = append(r.Learners, rd.NodeId)
			} else {
				r.Replicas = append(r.Replicas, rd.NodeId)
			}
		}
		out.Ranges = append(out.Ranges, r)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// waitForLeaders polls the nodes' Admin.Ranges until every range any of
// them hosts has a leader that itself says it leads the range, and there
// are at least want ranges. nodes maps node ids to gRPC addresses; nodes
// that cannot be reached are skipped. It returns each range's leader.
func waitForLeaders(ctx context.Context, nodes map[uint64]string, want int) (map[uint64]uint64, error) {
	conns := make(map[uint64]kvpb.AdminClient, len(nodes))
	for id, addr := range nodes {
		conn, err := dial(addr)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		conns[id] = kvpb.NewAdminClient(conn)
	}
	var lastErr error
	var pending []uint64
	for {
		seen := map[uint64]bool{}
		leaders := map[uint64]uint64{}
		for id, c := range conns {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := c.Ranges(cctx, &kvpb.RangesRequest{})
			cancel()
			if err != nil {
				lastErr = explainRPCError(nodes[id], time.Second, err)
				continue
			}
			for _, d := range resp.Ranges {
				seen[d.RangeId] = true
				if d.LeaderNodeId == id {
					leaders[d.RangeId] = id
				}
			}
		}
		pending = pending[:0]
		for r := range seen {
			if _, ok := leaders[r]; !ok {
				pending = append(pending, r)
			}
		}
		if len(seen) >= max(want, 1) && len(pending) == 0 {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			slices.Sort(pending)
			msg := fmt.Sprintf("%d of at least %d ranges seen, without a leader: %v", len(seen), want, pending)
			if lastErr != nil {
				msg += "; last error: " + lastErr.Error()
			}
			return nil, fmt.Errorf("ranges have no leader yet (%s): %w", msg, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
