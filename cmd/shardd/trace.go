package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	"go.opentelemetry.io/otel/trace"
)

var traceCommand = &command{
	name:    "trace",
	args:    "<kv verb> [flags] [arguments]",
	summary: "run one kv request traced, and show where its time went on every node",
	doc: `
Trace runs one kv request (put, get, del, cas or scan, with the flags and
arguments of shardd kv) with tracing forced on, collects its spans from
the client and from every node involved, and prints the commit as a tree:
each step, on which node, when it started and how long it took. Nothing
needs to be configured on the nodes, and no tracing backend: every node
keeps the spans of recently traced requests in memory and serves them
over gRPC (the Trace service).

A write shows the router's request; on the range's leader the KV handler,
the wait for the Paxos value the write rides in, the value (its slot,
ballot and commands; the moment it was chosen), the persist with the fsync
it shared, the accept round trip to each follower and the apply; and on
each follower its handling of the accept, its own persist and its reply
(and its apply, if it learned the value chosen before the spans were
collected). A read shows a lease read or a quorum read.

Times are milliseconds from the start of the request; each node's are on
its own clock, so across machines they are only as close as the clocks.

Example:

  shardd trace put --placement 127.0.0.1:PORT k0001 hello
  shardd trace get --placement 127.0.0.1:PORT k0001
  shardd trace put --json --placement 127.0.0.1:PORT k0001 hello`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f traceFlags
		f.register(fs)
		return nil // a verb runs
	},
	verbs: traceVerbCommands(),
}

// traceFlags are the flags of every trace verb, besides the kv verb's own.
type traceFlags struct {
	kvFlags // its --json prints the spans as JSON
	export  provider.Flags
	settle  time.Duration
}

func (f *traceFlags) register(fs *flag.FlagSet) {
	f.kvFlags.register(fs)
	fs.Lookup("json").Usage = "print the spans as JSON, one object per span, instead of the tree and the request's output"
	f.export.RegisterExport(fs)
	fs.DurationVar(&f.settle, "settle", 2*time.Second, "after the request, wait at most this `long` for the nodes' spans to end (a follower's round trip, its apply) before collecting them")
}

func traceVerbCommands() []*command {
	cmds := make([]*command, 0, len(kvVerbs))
	for _, v := range kvVerbs {
		cmds = append(cmds, &command{
			name:    "trace " + v.name,
			args:    v.args,
			summary: v.summary + ", traced",
			doc:     v.doc + "\n\nThe request is traced: see shardd help trace.",
			setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
				var f traceFlags
				f.register(fs)
				parse := v.setup(fs)
				return func(ctx context.Context, e *env, args []string) error {
					target, op, err := checkKV(&f.kvFlags, parse, args, e.stdin)
					if err != nil {
						return err
					}
					return runTrace(ctx, e, v.name, target, &f, op)
				}
			},
		})
	}
	return cmds
}

// clientTracing sets up the tracing the flags f and the environment ask
// of a kv command, if any, for target's router: none costs nothing.
// stop exports what is left.
func clientTracing(f *provider.Flags, target *kvTarget) (stop func(), err error) {
	cfg, err := f.Config(provider.Config{ServiceName: "shardd-cli"}, os.Getenv)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if !cfg.Exports() && cfg.Sample == 0 {
		return func() {}, nil
	}
	tp, err := provider.New(cfg)
	if err != nil {
		return nil, err
	}
	target.tracer = tp.TracerProvider()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}, nil
}

// runTrace runs op traced and prints its spans.
func runTrace(ctx context.Context, e *env, verb string, target kvTarget, f *traceFlags, op kvOp) error {
	cfg, err := f.export.Config(provider.Config{ServiceName: "shardd-cli", BufferSpans: 1024}, os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	cfg.Sample = 1 // this one operation is traced, whatever the environment says
	tp, err := provider.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()
	target.tracer = tp.TracerProvider()
	var out bytes.Buffer
	var traceID trace.TraceID
	var addrs map[uint64]string
	opErr := func() error {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		c, closeClient, err := target.connect(ctx)
		if err != nil {
			return explainKVError(verb, target, f.timeout, true, err)
		}
		defer closeClient()
		ctx, span := tp.Tracer("github.com/shardd/shardd/cmd/shardd").Start(ctx, "cli."+verb)
		traceID = span.SpanContext().TraceID()
		err = op(ctx, c, &out)
		tracing.EndWith(span, err)
		addrs = c.NodeAddrs()
		if err != nil {
			return explainKVError(verb, target, f.timeout, false, err)
		}
		return nil
	}()
	if addrs == nil {
		return opErr // no request was made
	}
	spans := collectSpans(ctx, e, traceID, addrs, tp.Buffer(), f.settle)
	if f.asJSON {
		if err := writeSpansJSON(e.stdout, spans); err != nil {
			return err
		}
	} else {
		_, _ = e.stdout.Write(out.Bytes())
		writeTraceTree(e.stdout, traceID, spans)
	}
	return opErr
}

// collectSpans gathers the spans of trace id: the client's, from buf, and
// every node's, over the Trace service. It asks again until two rounds
// find the same spans, for at most settle: a follower's spans end after
// the client has its answer.
func collectSpans(ctx context.Context, e *env, id trace.TraceID, addrs map[uint64]string, buf *provider.Buffer, settle time.Duration) []*kvpb.TraceSpan {
	deadline := time.Now().Add(settle)
	var spans []*kvpb.TraceSpan
	failed := map[uint64]error{}
	for round := 0; ; round++ {
		var got []*kvpb.TraceSpan
		for _, s := range buf.Trace(id) {
			got = append(got, provider.ToProto(s))
		}
		for _, nodeID := range slices.Sorted(maps.Keys(addrs)) {
			resp, err := nodeSpans(ctx, addrs[nodeID], id)
			if err != nil {
				failed[nodeID] = err
				continue
			}
			delete(failed, nodeID)
			got = append(got, resp.Spans...)
		}
		done := round > 0 && len(got) == len(spans)
		spans = got
		if done || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(150 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	for nodeID, err := range failed {
		fmt.Fprintf(e.stderr, "shardd trace: no spans from node %d at %s: %v\n", nodeID, addrs[nodeID], err)
	}
	return spans
}

// nodeSpans asks the node at addr for the spans of trace id.
func nodeSpans(ctx context.Context, addr string, id trace.TraceID) (*kvpb.SpansResponse, error) {
	conn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return kvpb.NewTraceClient(conn).Spans(ctx, &kvpb.SpansRequest{TraceId: id[:]})
}

// spanTree is a span with its children, in the order they started.
type spanTree struct {
	s        *kvpb.TraceSpan
	children []*spanTree
}

// buildTrees arranges spans by parent: the roots are the spans whose
// parent is not among them, the trace's root first, then the roots of the
// traces linked to it (values and fsyncs shared with other requests).
func buildTrees(spans []*kvpb.TraceSpan) []*spanTree {
	byID := make(map[string]*spanTree, len(spans))
	for _, s := range spans {
		byID[string(s.SpanId)] = &spanTree{s: s}
	}
	var roots []*spanTree
	for _, s := range spans {
		t := byID[string(s.SpanId)]
		if p := byID[string(s.ParentSpanId)]; p != nil && len(s.ParentSpanId) > 0 && p != t {
			p.children = append(p.children, t)
		} else {
			roots = append(roots, t)
		}
	}
	var order func([]*spanTree)
	order = func(ts []*spanTree) {
		slices.SortStableFunc(ts, func(a, b *spanTree) int {
			switch {
			case a.s.StartUnixNano < b.s.StartUnixNano:
				return -1
			case a.s.StartUnixNano > b.s.StartUnixNano:
				return 1
			}
			return strings.Compare(a.s.Name, b.s.Name)
		})
		for _, t := range ts {
			order(t.children)
		}
	}
	order(roots)
	return roots
}

// shownAttributes are the attributes the tree shows, in this order.
var shownAttributes = []string{
	string(tracing.Slot), string(tracing.Ballot), string(tracing.Commands), string(tracing.Records),
	string(tracing.Synced), string(tracing.Read), string(tracing.Attempts), string(tracing.Served),
}

// writeTraceTree prints spans as a tree with each step's start (from the
// first span's) and duration in milliseconds, and where it ran.
func writeTraceTree(w io.Writer, id trace.TraceID, spans []*kvpb.TraceSpan) {
	if len(spans) == 0 {
		fmt.Fprintf(w, "trace %s: no spans were collected\n", hex.EncodeToString(id[:]))
		return
	}
	t0 := spans[0].StartUnixNano
	nodes := map[uint64]bool{}
	for _, s := range spans {
		t0 = min(t0, s.StartUnixNano)
		nodes[s.NodeId] = true
	}
	var where []string
	if nodes[0] {
		where = append(where, "the client")
	}
	var ids []string
	for _, n := range slices.Sorted(func(yield func(uint64) bool) {
		for n := range nodes {
			if n != 0 && !yield(n) {
				return
			}
		}
	}) {
		ids = append(ids, fmt.Sprint(n))
	}
	switch len(ids) {
	case 0:
	case 1:
		where = append(where, "node "+ids[0])
	default:
		where = append(where, "nodes "+strings.Join(ids, ", "))
	}
	fmt.Fprintf(w, "trace %s: %d spans from %s\n", hex.EncodeToString(id[:]), len(spans), strings.Join(where, " and "))
	fmt.Fprintln(w, "times in ms from the start of the request; each node's on its own clock")
	const row = "%8s %8s  %-8s %s\n"
	fmt.Fprintf(w, row, "start", "took", "where", "step")
	ms := func(ns uint64) string { return fmt.Sprintf("%.3f", float64(ns)/1e6) }
	var walk func(t *spanTree, prefix, branch string)
	walk = func(t *spanTree, prefix, branch string) {
		s := t.s
		place := "client"
		if s.NodeId != 0 {
			place = fmt.Sprintf("node %d", s.NodeId)
		}
		fmt.Fprintf(w, row, ms(s.StartUnixNano-t0), ms(s.EndUnixNano-s.StartUnixNano), place,
			prefix+branch+s.Name+describeSpan(s, t0))
		childPrefix := prefix
		switch branch {
		case "├─ ":
			childPrefix += "│  "
		case "└─ ":
			childPrefix += "   "
		}
		for i, c := range t.children {
			b := "├─ "
			if i == len(t.children)-1 {
				b = "└─ "
			}
			walk(c, childPrefix, b)
		}
	}
	for _, r := range buildTrees(spans) {
		walk(r, "", "")
	}
}

// describeSpan is what the tree shows after a span's name: its peer, its
// main attributes, its events and its error.
func describeSpan(s *kvpb.TraceSpan, t0 uint64) string {
	attrs := map[string]string{}
	for _, a := range s.Attributes {
		attrs[a.Key] = a.Value
	}
	var b strings.Builder
	if peer, ok := attrs[string(tracing.Peer)]; ok {
		switch s.Name {
		case "paxos.accept":
			fmt.Fprintf(&b, " to node %s", peer)
		default:
			fmt.Fprintf(&b, " from node %s", peer)
		}
	}
	for _, k := range shownAttributes {
		if v, ok := attrs[k]; ok {
			fmt.Fprintf(&b, " %s=%s", strings.TrimPrefix(k, "shardd."), v)
		}
	}
	if len(s.Links) > 0 {
		fmt.Fprintf(&b, " (shared: linked to %d requests)", len(s.Links))
	}
	for _, ev := range s.Events {
		if ev.Name == "exception" {
			continue // the error, shown below
		}
		fmt.Fprintf(&b, " [%s at %.3f]", ev.Name, float64(ev.TimeUnixNano-t0)/1e6)
	}
	if s.Failed {
		fmt.Fprintf(&b, " ERROR: %s", s.Error)
	}
	return b.String()
}

// jsonSpan is a span as --json prints it: ids in hex, times in Unix
// nanoseconds.
type jsonSpan struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_span_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Service    string            `json:"service"`
	Node       uint64            `json:"node,omitempty"`
	Start      uint64            `json:"start_unix_nano"`
	End        uint64            `json:"end_unix_nano"`
	DurationMS float64           `json:"duration_ms"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Events     []jsonEvent       `json:"events,omitempty"`
	Links      []jsonLink        `json:"links,omitempty"`
	Error      string            `json:"error,omitempty"`
}

type jsonEvent struct {
	Name string `json:"name"`
	Time uint64 `json:"time_unix_nano"`
}

type jsonLink struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

func writeSpansJSON(w io.Writer, spans []*kvpb.TraceSpan) error {
	out := make([]jsonSpan, 0, len(spans))
	for _, s := range spans {
		j := jsonSpan{
			TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId), ParentID: hex.EncodeToString(s.ParentSpanId),
			Name: s.Name, Kind: s.Kind, Service: s.Service, Node: s.NodeId, Start: s.StartUnixNano, End: s.EndUnixNano,
			DurationMS: float64(s.EndUnixNano-s.StartUnixNano) / 1e6, Error: s.Error,
		}
		if len(s.Attributes) > 0 {
			j.Attributes = map[string]string{}
			for _, a := range s.Attributes {
				j.Attributes[a.Key] = a.Value
			}
		}
		for _, ev := range s.Events {
			j.Events = append(j.Events, jsonEvent{Name: ev.Name, Time: ev.TimeUnixNano})
		}
		for _, l := range s.Links {
			j.Links = append(j.Links, jsonLink{TraceID: hex.EncodeToString(l.TraceId), SpanID: hex.EncodeToString(l.SpanId)})
		}
		out = append(out, j)
	}
	slices.SortStableFunc(out, func(a, b jsonSpan) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
