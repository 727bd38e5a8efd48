package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/shardd/shardd/kvpb"
)

var statusCommand = &command{
	name:    "status",
	args:    "[--addr host:port] [--range N [--placement ADDRS]] [--json]",
	summary: "show a node's status, or where a range's replicas stand",
	doc: `
Status asks a node (Admin.NodeStatus) what an operator acts on: its build,
uptime and incarnation (bumped at every start); the groups it hosts, how
many it leads, follows and has quiesced; its batching figures (commands
per Paxos value, records per fsync, messages per frame); its disk use (its
store's directory as du counts it, and what Pebble accounts for, which
leaves out the WAL space it preallocates: see start --wal-preallocation);
its links to the other nodes (connected or since when lost, the last
error, what waits to be sent); and the ranges whose replica on it has not
caught up with its leader, with how many slots it has yet to apply.

A replica has caught up when it has applied every slot its leader told it
is chosen. One that lags for long is cut off from its leader, or is
receiving a snapshot.

With --range N it shows where each replica of range N stands instead: it
finds the range's replicas in --addr's node (or, with --placement, in the
placement service's map) and asks each replica's node (Admin.RangeStatus)
for the slots its replica knows chosen and has applied.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f inspectFlags
		f.register(fs)
		rangeID := fs.Uint64("range", 0, "show where the replicas of range `N` stand instead")
		placementAddrs := fs.String("placement", "", "with --range: gRPC `addresses` of the placement processes, comma-separated, to find the range in the range map instead of in --addr's node")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *rangeID != 0 {
				rs, err := askRangeStatus(ctx, f, *rangeID, *placementAddrs)
				if err != nil {
					return err
				}
				if f.json {
					return writeJSON(e.stdout, rs.toJSON())
				}
				return rs.writeTable(e.stdout)
			}
			if *placementAddrs != "" {
				return usagef("--placement is for --range")
			}
			resp, err := askNode(ctx, f.addr, f.timeout, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.NodeStatusResponse, error) {
				return c.NodeStatus(ctx, &kvpb.NodeStatusRequest{})
			})
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(e.stdout, statusJSON(resp))
			}
			return writeStatusTable(e.stdout, resp)
		}
	},
}

func writeStatusTable(w io.Writer, s *kvpb.NodeStatusResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%d\n", s.NodeId)
	fmt.Fprintf(tw, "address\t%s\n", s.Addr)
	fmt.Fprintf(tw, "version\t%s\n", orDash(s.Version))
	fmt.Fprintf(tw, "uptime\t%v\n", millis(s.UptimeMillis).Round(time.Second))
	fmt.Fprintf(tw, "incarnation\t%d\n", s.Incarnation)
	fmt.Fprintf(tw, "groups\t%d\n", s.Groups)
	fmt.Fprintf(tw, "active groups\t%d\n", s.ActiveGroups)
	fmt.Fprintf(tw, "quiesced groups\t%d\n", s.Groups-min(s.ActiveGroups, s.Groups))
	fmt.Fprintf(tw, "leaders\t%d\n", s.Leaders)
	fmt.Fprintf(tw, "followers\t%d\n", s.Groups-min(s.Leaders, s.Groups))
	fmt.Fprintf(tw, "commands per value\t%.2f\n", s.CommandsPerValue)
	fmt.Fprintf(tw, "records per sync\t%.2f\n", s.RecordsPerSync)
	fmt.Fprintf(tw, "messages per frame\t%.2f\n", s.MessagesPerFrame)
	fmt.Fprintf(tw, "syncs\t%d\n", s.Syncs)
	fmt.Fprintf(tw, "disk use\t%s\n", formatBytes(s.DiskBytes))
	fmt.Fprintf(tw, "disk use (pebble)\t%s\n", formatBytes(s.PebbleBytes))
	fmt.Fprintf(tw, "leaderless ranges\t%d\n", s.LeaderlessRanges)
	fmt.Fprintf(tw, "lagging ranges\t%d\n", s.LaggingRanges)
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tADDRESS\tLINK\tQUEUED\tLAST ERROR")
	for _, p := range s.Peers {
		link := "connecting"
		switch {
		case p.Connected:
			link = "connected"
		case p.LostMillis > 0:
			link = "lost " + ago(p.LostMillis)
		}
		lastErr := "-"
		if p.LastError != "" {
			lastErr = ago(p.LastErrorMillis) + ": " + p.LastError
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d msgs, %s\t%s\n", p.NodeId, orDash(p.Addr), link, p.QueuedMessages, formatBytes(p.QueuedBytes), lastErr)
	}
	if len(s.Peers) == 0 {
		fmt.Fprintln(tw, "(no messages sent to peers yet)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if s.LaggingRanges == 0 {
		_, err := fmt.Fprintln(w, "\nEvery range has applied what its leader chose.")
		return err
	}
	fmt.Fprintf(w, "\nRanges behind their leader (%d", s.LaggingRanges)
	if int(s.LaggingRanges) > len(s.Lagging) {
		fmt.Fprintf(w, ", the %d furthest behind", len(s.Lagging))
	}
	fmt.Fprintln(w, "):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANGE\tLEADER\tCHOSEN\tAPPLIED\tLEADER CHOSE\tBEHIND")
	for _, r := range s.Lagging {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\n", r.RangeId, nodeOrDash(r.LeaderNodeId), r.Chosen, r.Applied, r.LeaderChosen, behind(r.LeaderChosen, r.Applied))
	}
	return tw.Flush()
}

// millis is a duration the node reported in milliseconds.
func millis(ms uint64) time.Duration { return time.Duration(ms) * time.Millisecond }

// ago says how long ago something the node reported happened.
func ago(ms uint64) string {
	d := millis(ms)
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.String() + " ago"
}

// behind is how many slots applied is behind chosen.
func behind(chosen, applied uint64) uint64 { return chosen - min(applied, chosen) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nodeOrDash(id uint64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(id, 10)
}

// formatBytes shows a byte count in binary units.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// statusOutput is status --json.
type statusOutput struct {
	NodeID           uint64     `json:"node_id"`
	Addr             string     `json:"addr"`
	Version          string     `json:"version"`
	UptimeSeconds    float64    `json:"uptime_seconds"`
	Incarnation      uint64     `json:"incarnation"`
	Groups           uint32     `json:"groups"`
	ActiveGroups     uint32     `json:"active_groups"`
	Leaders          uint32     `json:"leaders"`
	CommandsPerValue float64    `json:"commands_per_value"`
	RecordsPerSync   float64    `json:"records_per_sync"`
	MessagesPerFrame float64    `json:"messages_per_frame"`
	Syncs            uint64     `json:"syncs"`
	DiskBytes        uint64     `json:"disk_bytes"`
	PebbleBytes      uint64     `json:"pebble_bytes"`
	Peers            []peerJSON `json:"peers"`
	LeaderlessRanges uint32     `json:"leaderless_ranges"`
	LaggingRanges    uint32     `json:"lagging_ranges"`
	// Lagging lists the ranges furthest behind (at most 20).
	Lagging []replicaJSON `json:"lagging"`
}

type peerJSON struct {
	NodeID    uint64 `json:"node_id"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	// LostSecondsAgo is 0 unless the link is lost.
	LostSecondsAgo float64 `json:"lost_seconds_ago,omitempty"`
	LastError      string  `json:"last_error,omitempty"`
	// LastErrorSecondsAgo is when LastError happened.
	LastErrorSecondsAgo float64 `json:"last_error_seconds_ago,omitempty"`
	QueuedMessages      uint32  `json:"queued_messages"`
	QueuedBytes         uint64  `json:"queued_bytes"`
}

// replicaJSON is where a replica stands in its range's log.
type replicaJSON struct {
	RangeID      uint64 `json:"range_id"`
	NodeID       uint64 `json:"node_id"`
	Addr         string `json:"addr,omitempty"`
	Role         string `json:"role,omitempty"`
	Leader       uint64 `json:"leader"`
	Chosen       uint64 `json:"chosen"`
	Applied      uint64 `json:"applied"`
	LeaderChosen uint64 `json:"leader_chosen"`
	// Behind is how many slots the replica has yet to apply.
	Behind   uint64 `json:"behind"`
	Quiesced bool   `json:"quiesced"`
	// Error says why the replica's node did not answer (status --range).
	Error string `json:"error,omitempty"`
}

func seconds(ms uint64) float64 { return millis(ms).Seconds() }

func statusJSON(s *kvpb.NodeStatusResponse) statusOutput {
	out := statusOutput{NodeID: s.NodeId, Addr: s.Addr, Version: s.Version, UptimeSeconds: seconds(s.UptimeMillis), Incarnation: s.Incarnation,
		Groups: s.Groups, ActiveGroups: s.ActiveGroups, Leaders: s.Leaders,
		CommandsPerValue: s.CommandsPerValue, RecordsPerSync: s.RecordsPerSync, MessagesPerFrame: s.MessagesPerFrame, Syncs: s.Syncs,
		DiskBytes: s.DiskBytes, PebbleBytes: s.PebbleBytes, Peers: []peerJSON{}, LeaderlessRanges: s.LeaderlessRanges, LaggingRanges: s.LaggingRanges, Lagging: []replicaJSON{}}
	for _, p := range s.Peers {
		out.Peers = append(out.Peers, peerJSON{NodeID: p.NodeId, Addr: p.Addr, Connected: p.Connected, LostSecondsAgo: seconds(p.LostMillis),
			LastError: p.LastError, LastErrorSecondsAgo: seconds(p.LastErrorMillis), QueuedMessages: p.QueuedMessages, QueuedBytes: p.QueuedBytes})
	}
	for _, r := range s.Lagging {
		out.Lagging = append(out.Lagging, replicaStatusJSON(r, ""))
	}
	return out
}

func replicaStatusJSON(r *kvpb.ReplicaStatus, role string) replicaJSON {
	return replicaJSON{RangeID: r.RangeId, NodeID: r.NodeId, Role: role, Leader: r.LeaderNodeId, Chosen: r.Chosen, Applied: r.Applied,
		LeaderChosen: r.LeaderChosen, Behind: behind(r.LeaderChosen, r.Applied), Quiesced: r.Quiesced}
}

// rangeStatus is status --range: a range's descriptor and, for each of its
// replicas, its node's answer or why there is none.
type rangeStatus struct {
	desc     *kvpb.RangeDescriptor
	addrs    map[uint64]string
	replicas []*kvpb.ReplicaStatus // in the descriptor's order; nil: no answer
	errs     []error
}

// askRangeStatus finds range id's descriptor (in the placement service's
// map if placementAddrs is set, else in f.addr's node) and asks each
// replica's node, all at once, where its replica stands.
func askRangeStatus(ctx context.Context, f inspectFlags, id uint64, placementAddrs string) (*rangeStatus, error) {
	var ranges *kvpb.RangesResponse
	var err error
	where := "node at " + f.addr
	if placementAddrs != "" {
		where = "the placement service's map"
		ranges, err = askPlacement(ctx, placementAddrs, f.timeout, placementRanges)
	} else {
		ranges, err = askNode(ctx, f.addr, f.timeout, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangesResponse, error) {
			return c.Ranges(ctx, &kvpb.RangesRequest{})
		})
	}
	if err != nil {
		return nil, err
	}
	rs := &rangeStatus{addrs: ranges.NodeAddrs}
	for _, d := range ranges.Ranges {
		if d.RangeId == id {
			rs.desc = d
		}
	}
	if rs.desc == nil {
		hint := ""
		if placementAddrs == "" {
			hint = " (--placement ADDRS looks it up in the whole range map)"
		}
		return nil, fmt.Errorf("range %d is not in %s%s", id, where, hint)
	}
	rs.replicas = make([]*kvpb.ReplicaStatus, len(rs.desc.Replicas))
	rs.errs = make([]error, len(rs.desc.Replicas))
	var wg sync.WaitGroup
	for i, rd := range rs.desc.Replicas {
		addr := rs.addrs[rd.NodeId]
		if addr == "" {
			rs.errs[i] = fmt.Errorf("address of node %d unknown", rd.NodeId)
			continue
		}
		wg.Go(func() {
			resp, err := askNode(ctx, addr, f.timeout, func(ctx context.Context, c kvpb.AdminClient) (*kvpb.RangeStatusResponse, error) {
				return c.RangeStatus(ctx, &kvpb.RangeStatusRequest{RangeId: id})
			})
			rs.replicas[i], rs.errs[i] = resp.GetReplica(), err
		})
	}
	wg.Wait()
	return rs, nil
}

// reference is the chosen point replicas are measured against: the
// highest any of them heard from a leader (the leader's own, if it
// answered).
func (rs *rangeStatus) reference() uint64 {
	var c uint64
	for _, r := range rs.replicas {
		if r != nil {
			c = max(c, r.LeaderChosen)
		}
	}
	return c
}

// leader is the leader the replicas name, the leader's own word first.
func (rs *rangeStatus) leader() uint64 {
	var named uint64
	for _, r := range rs.replicas {
		switch {
		case r == nil:
		case r.LeaderNodeId == r.NodeId && r.NodeId != 0:
			return r.NodeId
		case named == 0:
			named = r.LeaderNodeId
		}
	}
	return named
}

// role is how the table names replica i's part in its range.
func (rs *rangeStatus) role(i int) string {
	rd := rs.desc.Replicas[i]
	switch {
	case rd.Role == kvpb.ReplicaRole_LEARNER:
		return "learner"
	case rs.leader() == rd.NodeId:
		return "leader"
	}
	return "follower"
}

func (rs *rangeStatus) writeTable(w io.Writer) error {
	d := rs.desc
	fmt.Fprintf(w, "range %d  [%s, %s)  generation %d  leader %s\n\n", d.RangeId, formatKey(d.StartKey, false), formatKey(d.EndKey, true),
		d.Generation, nodeOrDash(rs.leader()))
	ref := rs.reference()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tCHOSEN\tAPPLIED\tBEHIND\tQUIESCED")
	for i, rd := range d.Replicas {
		r := rs.replicas[i]
		if r == nil {
			fmt.Fprintf(tw, "%d\t%s\t%s\t-\t-\t-\t-\t(%v)\n", rd.NodeId, orDash(rs.addrs[rd.NodeId]), rs.role(i), rs.errs[i])
			continue
		}
		quiesced := "no"
		if r.Quiesced {
			quiesced = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\n", rd.NodeId, rs.addrs[rd.NodeId], rs.role(i), r.Chosen, r.Applied, behind(ref, r.Applied), quiesced)
	}
	return tw.Flush()
}

// rangeStatusOutput is status --range --json.
type rangeStatusOutput struct {
	RangeID    uint64 `json:"range_id"`
	StartKey   string `json:"start_key"`
	EndKey     string `json:"end_key"`
	Generation uint64 `json:"generation"`
	Leader     uint64 `json:"leader"`
	// Chosen is the highest chosen point any replica heard of from a
	// leader; each replica's Behind is measured against it.
	Chosen   uint64        `json:"chosen"`
	Replicas []replicaJSON `json:"replicas"`
}

func (rs *rangeStatus) toJSON() rangeStatusOutput {
	d := rs.desc
	ref := rs.reference()
	out := rangeStatusOutput{RangeID: d.RangeId, StartKey: string(d.StartKey), EndKey: string(d.EndKey), Generation: d.Generation,
		Leader: rs.leader(), Chosen: ref, Replicas: []replicaJSON{}}
	for i, rd := range d.Replicas {
		r := replicaJSON{RangeID: d.RangeId, NodeID: rd.NodeId, Role: rs.role(i)}
		if rep := rs.replicas[i]; rep != nil {
			r = replicaStatusJSON(rep, r.Role)
			r.Behind = behind(ref, rep.Applied)
		} else {
			r.Error = rs.errs[i].Error()
		}
		r.Addr = rs.addrs[rd.NodeId]
		out.Replicas = append(out.Replicas, r)
	}
	return out
}
