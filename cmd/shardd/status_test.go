package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

func TestStatusOutput(t *testing.T) {
	s := &kvpb.NodeStatusResponse{NodeId: 2, Addr: "127.0.0.1:7102", Groups: 8, ActiveGroups: 1, Leaders: 3,
		CommandsPerValue: 1.5, RecordsPerSync: 4, MessagesPerFrame: 2.25, Syncs: 77,
		Version: "v0.3.0, revision 0df638a1b2c3, go1.26.8 linux/amd64", UptimeMillis: 3723_400, Incarnation: 4, DiskBytes: 5 << 20, PebbleBytes: 3 << 10,
		Peers: []*kvpb.PeerLink{
			{NodeId: 1, Addr: "127.0.0.1:7101", Connected: true, LastError: "connection refused", LastErrorMillis: 90_000},
			{NodeId: 3, Addr: "127.0.0.1:7103", LostMillis: 12_300, LastError: "rpc error: EOF", LastErrorMillis: 12_300, QueuedMessages: 14, QueuedBytes: 2048},
		},
		LaggingRanges: 21, LeaderlessRanges: 1,
		Lagging: []*kvpb.ReplicaStatus{{RangeId: 7, NodeId: 2, LeaderNodeId: 1, Chosen: 1200, Applied: 1198, LeaderChosen: 1234}},
	}
	var b bytes.Buffer
	if err := writeStatusTable(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node                2\n", "address             127.0.0.1:7102\n",
		"version             v0.3.0, revision 0df638a1b2c3, go1.26.8 linux/amd64\n", "uptime              1h2m3s\n",
		"incarnation         4\n", "groups              8\n", "active groups       1\n", "quiesced groups     7\n",
		"leaders             3\n", "followers           5\n", "commands per value  1.50\n", "messages per frame  2.25\n",
		"syncs               77\n", "disk use            5.0 MiB\n", "disk use (pebble)   3.0 KiB\n", "leaderless ranges   1\n", "lagging ranges      21\n",
		"PEER  ADDRESS         LINK          QUEUED            LAST ERROR\n",
		"1     127.0.0.1:7101  connected     0 msgs, 0 B       1m30s ago: connection refused\n",
		"3     127.0.0.1:7103  lost 12s ago  14 msgs, 2.0 KiB  12s ago: rpc error: EOF\n",
		"Ranges behind their leader (21, the 1 furthest behind):\n",
		"RANGE  LEADER  CHOSEN  APPLIED  LEADER CHOSE  BEHIND\n7      1       1200    1198     1234          36\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := writeJSON(&b, statusJSON(s)); err != nil {
		t.Fatal(err)
	}
	var got statusOutput
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || !reflect.DeepEqual(got, statusJSON(s)) {
		t.Errorf("json: %s %v", b.String(), err)
	}
	for _, want := range []string{`"active_groups": 1`, `"uptime_seconds": 3723.4`, `"disk_bytes": 5242880`, `"lost_seconds_ago": 12.3`, `"behind": 36`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("json lacks %s:\n%s", want, b.String())
		}
	}

	// A node that has caught up and sent nothing yet.
	b.Reset()
	if err := writeStatusTable(&b, &kvpb.NodeStatusResponse{NodeId: 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(no messages sent to peers yet)", "Every range has applied what its leader chose."} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("idle node's status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRangeStatusOutput(t *testing.T) {
	rs := &rangeStatus{
		desc: &kvpb.RangeDescriptor{RangeId: 7, StartKey: []byte("k0100"), EndKey: []byte("k0200"), Generation: 3,
			Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}, {NodeId: 2}, {NodeId: 3}, {NodeId: 4, Role: kvpb.ReplicaRole_LEARNER}}},
		addrs: map[uint64]string{1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103", 4: "127.0.0.1:7104"},
		replicas: []*kvpb.ReplicaStatus{
			{RangeId: 7, NodeId: 1, LeaderNodeId: 2, Chosen: 1234, Applied: 1234, LeaderChosen: 1234, Quiesced: true},
			{RangeId: 7, NodeId: 2, LeaderNodeId: 2, Chosen: 1234, Applied: 1234, LeaderChosen: 1234, Quiesced: true},
			nil,
			{RangeId: 7, NodeId: 4, LeaderNodeId: 2, Chosen: 0, Applied: 0, LeaderChosen: 1200},
		},
		errs: []error{nil, nil, errors.New("cannot reach node at 127.0.0.1:7103"), nil},
	}
	var b bytes.Buffer
	if err := rs.writeTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `range 7  [k0100, k0200)  generation 3  leader 2

NODE  ADDRESS         ROLE      CHOSEN  APPLIED  BEHIND  QUIESCED
1     127.0.0.1:7101  follower  1234    1234     0       yes
2     127.0.0.1:7102  leader    1234    1234     0       yes
3     127.0.0.1:7103  follower  -       -        -       -  (cannot reach node at 127.0.0.1:7103)
4     127.0.0.1:7104  learner   0       0        1234    no
`
	if b.String() != want {
		t.Errorf("range status table:\n%s\nwant:\n%s", b.String(), want)
	}
	out := rs.toJSON()
	if out.Leader != 2 || out.Chosen != 1234 || len(out.Replicas) != 4 || out.Replicas[2].Error == "" || out.Replicas[3].Behind != 1234 ||
		out.Replicas[3].Role != "learner" || out.Replicas[1].Role != "leader" || out.Replicas[0].Addr != "127.0.0.1:7101" {
		t.Errorf("range status json: %+v", out)
	}
}

// TestStatusCommand asks a running demo cluster for a node's status and
// for where a range's replicas stand, found through a node or through the
// placement service.
func TestStatusCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a placement service and three nodes with gossip")
	}
	demo := runAsync(t, nil, "demo", "--ranges=2", "--tick=10ms")
	banner := demo.waitOutput(t, "Press Ctrl-C to stop.")
	nodes := demoNodeLine.FindAllStringSubmatch(banner, -1)
	pl := demoPlacementLine.FindStringSubmatch(banner)
	if len(nodes) != 3 || pl == nil {
		t.Fatalf("banner:\n%s", banner)
	}
	node1, placement := nodes[0][2], pl[1]
	status := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runSync(t, append([]string{"status"}, args...)...)
		if code != exitOK {
			t.Fatalf("status %q: exit %d, stderr %q", args, code, stderr)
		}
		return stdout
	}

	out := status("--addr", node1)
	for _, want := range []string{"node                1\n", "groups              2\n", "version ", "uptime ", "incarnation         1\n", "disk use ", "PEER"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var st statusOutput
	if err := json.Unmarshal([]byte(status("--addr", node1, "--json")), &st); err != nil || st.NodeID != 1 || st.DiskBytes == 0 || st.Version == "" || st.Incarnation != 1 {
		t.Errorf("status --json: %v, %+v", err, st)
	}

	// Every replica catches up with its leader, whichever way the range
	// is found (a replica may be a slot behind just after the demo's
	// elections).
	for _, where := range [][]string{{"--addr", node1}, {"--placement", placement}} {
		var rs rangeStatusOutput
		deadline := time.Now().Add(10 * time.Second)
		for caughtUp := false; !caughtUp; {
			out := status(append([]string{"--range", "2", "--json"}, where...)...)
			if err := json.Unmarshal([]byte(out), &rs); err != nil || rs.RangeID != 2 || len(rs.Replicas) != 3 {
				t.Fatalf("status --range 2 %q: %v\n%s", where, err, out)
			}
			caughtUp = rs.Leader != 0 && rs.Chosen > 0
			for _, r := range rs.Replicas {
				if r.Error != "" || r.Addr == "" {
					t.Fatalf("status --range 2 %q: replica %+v", where, r)
				}
				caughtUp = caughtUp && r.Behind == 0 && r.Applied == rs.Chosen
			}
			if !caughtUp && time.Now().After(deadline) {
				t.Fatalf("status --range 2 %q: replicas not caught up after 10s: %+v", where, rs)
			}
			if !caughtUp {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if out := status(append([]string{"--range", "2"}, where...)...); !strings.Contains(out, "range 2  [k5000, +inf)") || !strings.Contains(out, "leader") {
			t.Errorf("status --range 2 %q:\n%s", where, out)
		}
	}
	code, _, stderr := runSync(t, "status", "--addr", node1, "--range", "99")
	if code != exitError || !strings.Contains(stderr, "range 99 is not in node at "+node1) || !strings.Contains(stderr, "--placement") {
		t.Errorf("status --range 99: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runSync(t, "status", "--placement", placement); code != exitUsage || !strings.Contains(stderr, "--placement is for --range") {
		t.Errorf("status --placement without --range: exit %d, stderr %q", code, stderr)
	}
	if code := demo.stop(t); code != exitOK {
		t.Errorf("demo exit %d", code)
	}
}
