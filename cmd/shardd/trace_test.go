package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/shardd/shardd/kvpb"
)

// traceLine is one step of the tree `shardd trace` prints: start, took,
// where, then from column 28 the tree drawing, the span's name and what
// follows it.
var traceLine = regexp.MustCompile(`^\s*\d+\.\d{3}\s+\d+\.\d{3}  (client|node \d+)\s`)

type traceStep struct {
	where, name, rest string
	depth             int
}

func parseTraceTree(t *testing.T, out string) []traceStep {
	t.Helper()
	var steps []traceStep
	for _, line := range strings.Split(out, "\n") {
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		step := []rune(line)[28:]
		name := strings.TrimLeft(string(step), "│├└─ ")
		depth := (len(step) - len([]rune(name))) / 3
		name, rest, _ := strings.Cut(name, " ")
		steps = append(steps, traceStep{where: m[1], name: name, rest: rest, depth: depth})
	}
	return steps
}

// TestTracePut runs `shardd trace put` and `shardd trace get` against a
// demo cluster: the put's tree shows the client, the leader's handler
// and value with its persist, apply and a round trip to each follower,
// under which each follower's acceptor, persist and reply; the get's a
// lease read. --json prints the same spans as JSON.
func TestTracePut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with gossip")
	}
	demo := runAsync(t, nil, "demo", "--ranges=1", "--tick=10ms")
	banner := demo.waitOutput(t, "Press Ctrl-C to stop.")
	pl := demoPlacementLine.FindStringSubmatch(banner)
	if pl == nil {
		t.Fatalf("banner:\n%s", banner)
	}
	// The first write of a fresh range may meet its election; trace the
	// second.
	if code, _, stderr := runSync(t, "kv", "put", "--placement", pl[1], "k0001", "warm"); code != exitOK {
		t.Fatalf("kv put: %d %s", code, stderr)
	}
	code, out, stderr := runSync(t, "trace", "put", "--placement", pl[1], "k0001", "hello")
	if code != exitOK {
		t.Fatalf("trace put: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if !strings.HasPrefix(out, "ok\n") || !strings.Contains(out, "spans from the client and nodes 1, 2, 3") {
		t.Errorf("trace put printed:\n%s", out)
	}
	steps := parseTraceTree(t, out)
	// parentOf is the step above i at one level less deep.
	parentOf := func(i int) *traceStep {
		for j := i - 1; j >= 0; j-- {
			if steps[j].depth == steps[i].depth-1 {
				return &steps[j]
			}
		}
		return nil
	}
	// The leader re-sends accepts unacknowledged at a heartbeat
	// (retransmit in group/leader.go): on a loaded machine a follower may
	// step the same accept twice, and persist both in one shared write.
	// So the acceptors are counted per follower, each with its reply, and
	// each follower's persist is under an acceptor or a shared root step.
	count := map[string]int{}
	acceptors, replies, persists := map[string]int{}, map[string]int{}, map[string]int{}
	leader := ""
	for i, s := range steps {
		p := parentOf(i)
		key := s.name
		if p != nil {
			key = p.name + ">" + s.name
		}
		count[key]++
		switch key {
		case "router.Put>kv.Put":
			leader = s.where
		case "paxos.accept>paxos.acceptor":
			acceptors[s.where]++
			if s.where == p.where || !strings.Contains(p.rest, "to "+s.where) {
				t.Errorf("acceptor on %s under the round trip %s of %s", s.where, p.rest, p.where)
			}
		case "paxos.acceptor>paxos.persist", "paxos.acceptor>paxos.reply":
			if s.name == "paxos.reply" {
				replies[s.where]++
			} else {
				persists[s.where]++
			}
			if s.where != p.where {
				t.Errorf("%s on %s under an acceptor on %s", s.name, s.where, p.where)
			}
		case "paxos.persist":
			if strings.Contains(s.rest, "shared") {
				persists[s.where]++
			}
		case "paxos.value>paxos.persist", "paxos.value>paxos.apply", "paxos.value>paxos.accept":
			if s.where != leader {
				t.Errorf("%s on %s, not on the leader %s", key, s.where, leader)
			}
		}
	}
	want := map[string]int{
		"cli.put": 1, "cli.put>router.Put": 1, "router.Put>kv.Put": 1,
		"kv.Put>paxos.propose": 1, "kv.Put>paxos.value": 1,
		"paxos.value>paxos.persist": 1, "paxos.value>paxos.apply": 1, "paxos.value>paxos.accept": 2,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %q steps, want %d", count[k], k, n)
		}
	}
	if len(acceptors) != 2 || acceptors[leader] != 0 {
		t.Errorf("acceptors on %v, want one or more on each of the two followers of %s", acceptors, leader)
	}
	for f, n := range acceptors {
		if replies[f] != n || persists[f] == 0 {
			t.Errorf("%s: %d acceptors, %d replies under them, %d persists", f, n, replies[f], persists[f])
		}
	}
	if !regexp.MustCompile(`paxos.value slot=\d+ ballot=\d+\.\d+ commands=1 \[chosen at \d+\.\d{3}\]`).MatchString(out) {
		t.Errorf("the value's line lacks its slot, ballot, commands or chosen time")
	}
	if t.Failed() {
		t.Logf("trace put printed:\n%s", out)
	}

	code, out, stderr = runSync(t, "trace", "get", "--placement", pl[1], "k0001")
	if code != exitOK || !strings.HasPrefix(out, "hello\n") {
		t.Fatalf("trace get: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if !regexp.MustCompile(`kv.Get read=(lease|quorum)`).MatchString(out) || !regexp.MustCompile(`└─ read.(lease|quorum)`).MatchString(out) {
		t.Errorf("trace get shows no lease or quorum read:\n%s", out)
	}

	code, out, stderr = runSync(t, "trace", "put", "--json", "--placement", pl[1], "k0002", "json")
	if code != exitOK {
		t.Fatalf("trace put --json: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	var spans []struct {
		TraceID string `json:"trace_id"`
		Name    string `json:"name"`
		Node    uint64 `json:"node"`
	}
	if err := json.Unmarshal([]byte(out), &spans); err != nil {
		t.Fatalf("--json printed no JSON (%v):\n%s", err, out)
	}
	nodes := map[uint64]bool{}
	for _, s := range spans {
		nodes[s.Node] = true
		if s.TraceID != spans[0].TraceID {
			t.Errorf("span %s of trace %s, not %s", s.Name, s.TraceID, spans[0].TraceID)
		}
	}
	if len(spans) < 12 || len(nodes) != 4 {
		t.Errorf("--json: %d spans from nodes %v:\n%s", len(spans), nodes, out)
	}
}

// TestTraceTree checks the tree's layout on spans made up by hand: a
// shared value, the root of its own trace linked to two requests, is
// shown beside the request's tree.
func TestTraceTree(t *testing.T) {
	id := func(b byte) []byte { return []byte{b, 0, 0, 0, 0, 0, 0, 0} }
	ms := func(f float64) uint64 { return 1_000_000_000 + uint64(f*1e6) }
	spans := []*kvpb.TraceSpan{
		{SpanId: id(1), Name: "router.Put", StartUnixNano: ms(0), EndUnixNano: ms(3)},
		{SpanId: id(2), ParentSpanId: id(1), Name: "kv.Put", NodeId: 2, StartUnixNano: ms(0.5), EndUnixNano: ms(2.5)},
		{SpanId: id(3), ParentSpanId: id(2), Name: "paxos.propose", NodeId: 2, StartUnixNano: ms(0.6), EndUnixNano: ms(0.7)},
		{SpanId: id(4), Name: "paxos.value", NodeId: 2, StartUnixNano: ms(0.7), EndUnixNano: ms(2.4),
			Attributes: []*kvpb.SpanAttribute{{Key: "shardd.slot", Value: "7"}, {Key: "shardd.commands", Value: "2"}},
			Links:      []*kvpb.SpanLink{{SpanId: id(2)}, {SpanId: id(9)}},
			Events:     []*kvpb.SpanEvent{{Name: "chosen", TimeUnixNano: ms(2)}}},
		{SpanId: id(5), ParentSpanId: id(4), Name: "paxos.accept", NodeId: 2, StartUnixNano: ms(0.8), EndUnixNano: ms(1.9),
			Attributes: []*kvpb.SpanAttribute{{Key: "shardd.peer", Value: "3"}}},
		{SpanId: id(6), ParentSpanId: id(5), Name: "paxos.acceptor", NodeId: 3, StartUnixNano: ms(1), EndUnixNano: ms(1.8), Failed: true, Error: "disk full"},
	}
	var b strings.Builder
	writeTraceTree(&b, [16]byte{1}, spans)
	want := `trace 01000000000000000000000000000000: 6 spans from the client and nodes 2, 3
times in ms from the start of the request; each node's on its own clock
   start     took  where    step
   0.000    3.000  client   router.Put
   0.500    2.000  node 2   └─ kv.Put
   0.600    0.100  node 2      └─ paxos.propose
   0.700    1.700  node 2   paxos.value slot=7 commands=2 (shared: linked to 2 requests) [chosen at 2.000]
   0.800    1.100  node 2   └─ paxos.accept to node 3
   1.000    0.800  node 3      └─ paxos.acceptor ERROR: disk full
`
	if got := b.String(); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
}
