package main

import (
	"flag"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

func TestEvenSplitKeys(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{1, []string{}},
		{2, []string{"k5000"}},
		{3, []string{"k3333", "k6666"}},
		{4, []string{"k2500", "k5000", "k7500"}},
		{8, []string{"k1250", "k2500", "k3750", "k5000", "k6250", "k7500", "k8750"}},
	} {
		got, err := evenSplitKeys(tc.n)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("evenSplitKeys(%d) = %q, %v; want %q", tc.n, got, err, tc.want)
		}
	}
	all, err := evenSplitKeys(10000)
	if err != nil || len(all) != 9999 || all[0] != "k0001" || all[9998] != "k9999" || !slices.IsSorted(all) {
		t.Errorf("evenSplitKeys(10000): %d keys, err %v", len(all), err)
	}
	for _, n := range []int{0, -1, 10001} {
		if _, err := evenSplitKeys(n); err == nil {
			t.Errorf("evenSplitKeys(%d) accepted", n)
		}
	}
}

func TestSplitDescriptors(t *testing.T) {
	keys, _ := evenSplitKeys(4)
	descs, err := splitDescriptors(keys, []uint64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		start, end string
		leader     uint64
	}{{"", "k2500", 1}, {"k2500", "k5000", 2}, {"k5000", "k7500", 3}, {"k7500", "", 1}}
	if len(descs) != len(want) {
		t.Fatalf("%d ranges, want %d", len(descs), len(want))
	}
	for i, d := range descs {
		w := want[i]
		if d.RangeId != uint64(i+1) || string(d.StartKey) != w.start || string(d.EndKey) != w.end || d.LeaderNodeId != w.leader || d.Generation != 1 {
			t.Errorf("range %d: %v, want [%q, %q) leader %d", i+1, d, w.start, w.end, w.leader)
		}
		if got := formatReplicas(d); got != "1,2,3" {
			t.Errorf("range %d replicas %s", i+1, got)
		}
		if d.StartKey != nil && len(d.StartKey) == 0 || d.EndKey != nil && len(d.EndKey) == 0 {
			t.Errorf("range %d: open bounds must be nil", i+1)
		}
	}
	if err := checkDescriptors(descs); err != nil {
		t.Errorf("generated ranges fail the check: %v", err)
	}
	one, err := splitDescriptors(nil, []uint64{7})
	if err != nil || len(one) != 1 || one[0].StartKey != nil || one[0].EndKey != nil || one[0].LeaderNodeId != 7 {
		t.Errorf("one range: %v %v", one, err)
	}
	// Leaders are spread evenly over the replicas, in node id order.
	five, _ := splitDescriptors([]string{"a", "b", "c", "d"}, []uint64{5, 3})
	var leaders []uint64
	for _, d := range five {
		leaders = append(leaders, d.LeaderNodeId)
	}
	if !slices.Equal(leaders, []uint64{3, 5, 3, 5, 3}) {
		t.Errorf("leaders %v", leaders)
	}
	for name, tc := range map[string]struct {
		keys     []string
		replicas []uint64
	}{
		"no replicas":     {nil, nil},
		"zero id":         {nil, []uint64{1, 0}},
		"repeated id":     {nil, []uint64{1, 2, 1}},
		"empty key":       {[]string{"a", ""}, []uint64{1}},
		"unsorted keys":   {[]string{"b", "a"}, []uint64{1}},
		"repeated key":    {[]string{"a", "a"}, []uint64{1}},
		"descending keys": {[]string{"k2", "k10"}, []uint64{1}},
	} {
		if _, err := splitDescriptors(tc.keys, tc.replicas); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// startOpts parses start's flags the way the command does.
func startOpts(t *testing.T, args ...string) (startOptions, error) {
	t.Helper()
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f startFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	return f.options()
}

func TestStartFlagDefaults(t *testing.T) {
	o, err := startOpts(t, "--id", "3", "--data-dir", "/d")
	if err != nil {
		t.Fatal(err)
	}
	if o.id != 3 || o.dataDir != "/d" || o.listen != "127.0.0.1:7100" || o.gossip != "127.0.0.1:7946" ||
		o.tick != 100*time.Millisecond || o.logLevel != slog.LevelInfo || o.bootstrap != nil || len(o.join) != 0 || len(o.peers) != 0 {
		t.Errorf("defaults: %+v", o)
	}
	cfg := o.nodeConfig(slog.Default())
	if cfg.NodeID != 3 || cfg.Dir != "/d" || cfg.ListenAddr != "127.0.0.1:7100" || cfg.GossipAddr != "127.0.0.1:7946" ||
		cfg.TickInterval != 100*time.Millisecond || cfg.Peers != nil || cfg.Seeds != nil || cfg.EnableFaultInjection {
		t.Errorf("node config: %+v", cfg)
	}
}

func TestStartFlags(t *testing.T) {
	o, err := startOpts(t, "--id=2", "--data-dir=/d", "--listen=127.0.0.1:7101", "--gossip=127.0.0.1:7201",
		"--join=127.0.0.1:7200,127.0.0.1:7201", "--peers=1=127.0.0.1:7100,2=127.0.0.1:7101",
		"--bootstrap-ranges=4", "--bootstrap-replicas=1,2,3", "--tick=20ms", "--log-level=debug", "--enable-fault-injection")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.join, []string{"127.0.0.1:7200", "127.0.0.1:7201"}) || len(o.peers) != 2 || len(o.bootstrap) != 4 ||
		o.tick != 20*time.Millisecond || o.logLevel != slog.LevelDebug {
		t.Errorf("options: %+v", o)
	}
	cfg := o.nodeConfig(slog.Default())
	if !maps.Equal(cfg.Peers, o.peers) || !slices.Equal(cfg.Seeds, o.join) || cfg.GossipAddr != "127.0.0.1:7201" || !cfg.EnableFaultInjection {
		t.Errorf("node config: %+v", cfg)
	}

	o, err = startOpts(t, "--id=1", "--data-dir=/d", "--gossip=", "--split-keys=g,p", "--bootstrap-replicas=1,2",
		"--peers=2=127.0.0.1:7101")
	if err != nil {
		t.Fatal(err)
	}
	if o.gossip != "" || len(o.bootstrap) != 3 || string(o.bootstrap[1].StartKey) != "g" || string(o.bootstrap[2].StartKey) != "p" {
		t.Errorf("split keys without gossip: %+v", o)
	}
	if o, err = startOpts(t, "--id=1", "--data-dir=/d", "--split-keys=g,p", "--bootstrap-ranges=3", "--bootstrap-replicas=1"); err != nil || len(o.bootstrap) != 3 {
		t.Errorf("--split-keys with a matching --bootstrap-ranges: %v", err)
	}
}

func TestStartFlagErrors(t *testing.T) {
	base := []string{"--id=1", "--data-dir=/d"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir=/d"}, "--id is required"},
		{[]string{"--id=1"}, "--data-dir is required"},
		{append(base, "--tick=0s"), "--tick must be positive"},
		{append(base, "--clock-offset=-1s"), "--clock-offset must not be negative"},
		{append(base, "--listen=nope"), "--listen"},
		{append(base, "--gossip=localhost:7946"), "--gossip"},
		{append(base, "--gossip=", "--join=127.0.0.1:7946"), "--join needs gossip"},
		{append(base, "--join=127.0.0.1"), "--join"},
		{append(base, "--peers=1:127.0.0.1:7100"), "--peers"},
		{append(base, "--log-level=loud"), "--log-level"},
		{append(base, "--bootstrap-ranges=4"), "need --bootstrap-replicas"},
		{append(base, "--split-keys=a"), "need --bootstrap-replicas"},
		{append(base, "--bootstrap-replicas=1,2"), "needs --bootstrap-ranges or --split-keys"},
		{append(base, "--bootstrap-ranges=-1", "--bootstrap-replicas=1"), "must be positive"},
		{append(base, "--bootstrap-ranges=10001", "--bootstrap-replicas=1"), "between 1 and 10000"},
		{append(base, "--bootstrap-ranges=2", "--bootstrap-replicas=1,1"), "listed twice"},
		{append(base, "--bootstrap-ranges=2", "--bootstrap-replicas=1,0"), "not a node id"},
		{append(base, "--split-keys=b,a", "--bootstrap-replicas=1"), "strictly increasing"},
		{append(base, "--split-keys=a,,b", "--bootstrap-replicas=1"), "is empty"},
		{append(base, "--split-keys=a,b", "--bootstrap-ranges=2", "--bootstrap-replicas=1"), "disagrees"},
		{append(base, "--bootstrap-file=x.json", "--bootstrap-ranges=2"), "replaces"},
		{append(base, "--bootstrap-file=x.json", "--bootstrap-replicas=1"), "replaces"},
		{append(base, "--bootstrap-file=/does/not/exist.json"), "no such file"},
		{append(base, "--gossip=", "--bootstrap-ranges=2", "--bootstrap-replicas=1,2,3", "--peers=2=127.0.0.1:7101"), "node 3"},
		{append(base, "--placement=nowhere"), "--placement"},
		{append(base, "--placement=127.0.0.1:7000", "--bootstrap-ranges=2", "--bootstrap-replicas=1"), "exclude each other"},
	} {
		_, err := startOpts(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

const goodBootstrapFile = `{
  "peers": {"1": "127.0.0.1:7101", "2": "127.0.0.1:7102"},
  "ranges": [
    {"range_id": 2, "start_key": "m", "end_key": "", "replicas": [1, 2], "leader": 2},
    {"range_id": 1, "start_key": "", "end_key": "m", "replicas": [1, 2], "leader": 1}
  ]
}`

func TestParseBootstrap(t *testing.T) {
	descs, peers, err := parseBootstrap(strings.NewReader(goodBootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(peers, map[uint64]string{1: "127.0.0.1:7101", 2: "127.0.0.1:7102"}) {
		t.Errorf("peers %v", peers)
	}
	if len(descs) != 2 || descs[0].RangeId != 2 || string(descs[0].StartKey) != "m" || descs[0].EndKey != nil ||
		descs[0].LeaderNodeId != 2 || descs[0].Generation != 1 || formatReplicas(descs[0]) != "1,2" ||
		descs[1].StartKey != nil || string(descs[1].EndKey) != "m" {
		t.Errorf("descriptors %v", descs)
	}
	// The bare array form, with a leader left to an election.
	descs, peers, err = parseBootstrap(strings.NewReader(` [{"range_id": 9, "replicas": [4]}] `))
	if err != nil || len(descs) != 1 || len(peers) != 0 || descs[0].RangeId != 9 || descs[0].LeaderNodeId != 0 {
		t.Errorf("array form: %v %v %v", descs, peers, err)
	}

	r := func(id int, start, end string, replicas string, leader int) string {
		return `{"range_id": ` + strconv.Itoa(id) + `, "start_key": "` + start + `", "end_key": "` + end + `", "replicas": [` + replicas + `], "leader": ` + strconv.Itoa(leader) + `}`
	}
	arr := func(rs ...string) string { return "[" + strings.Join(rs, ",") + "]" }
	for name, tc := range map[string]struct{ file, want string }{
		"not json":          {"ranges: 1", "not a bootstrap file"},
		"unknown field":     {`[{"range_id": 1, "replicas": [1], "leadr": 1}]`, "unknown field"},
		"trailing data":     {`[{"range_id": 1, "replicas": [1]}] []`, "trailing data"},
		"no ranges":         {`{"ranges": []}`, "no ranges"},
		"zero range id":     {arr(r(0, "", "", "1", 1)), "range_id 0"},
		"repeated range id": {arr(r(1, "", "m", "1", 1), r(1, "m", "", "1", 1)), "listed twice"},
		"no replicas":       {arr(r(1, "", "", "", 0)), "no replicas"},
		"repeated replica":  {arr(r(1, "", "", "1,1", 0)), "listed twice"},
		"zero replica":      {arr(r(1, "", "", "0", 0)), "node id 0"},
		"foreign leader":    {arr(r(1, "", "", "1,2", 3)), "not one of its replicas"},
		"empty range":       {arr(r(1, "", "m", "1", 1), r(2, "m", "m", "1", 1), r(3, "m", "", "1", 1)), "not below"},
		"inverted range":    {arr(r(1, "", "m", "1", 1), r(2, "m", "a", "1", 1)), "not below"},
		"gap":               {arr(r(1, "", "f", "1", 1), r(2, "g", "", "1", 1)), "gaps"},
		"overlap":           {arr(r(1, "", "g", "1", 1), r(2, "f", "", "1", 1)), "gaps"},
		"two open ends":     {arr(r(1, "", "", "1", 1), r(2, "m", "", "1", 1)), "runs to the end"},
		"no start":          {arr(r(1, "a", "", "1", 1)), "beginning of the key space"},
		"no end":            {arr(r(1, "", "z", "1", 1)), "end of the key space"},
		"bad peer id":       {`{"peers": {"one": "127.0.0.1:1"}, "ranges": ` + arr(r(1, "", "", "1", 1)) + `}`, "not a node id"},
		"bad peer address":  {`{"peers": {"1": "127.0.0.1"}, "ranges": ` + arr(r(1, "", "", "1", 1)) + `}`, "not host:port"},
	} {
		_, _, err := parseBootstrap(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestBootstrapFileFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, []byte(goodBootstrapFile), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := startOpts(t, "--id=1", "--data-dir=/d", "--gossip=", "--bootstrap-file="+path, "--peers=3=127.0.0.1:7103")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.bootstrap) != 2 || !maps.Equal(o.peers, map[uint64]string{1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"}) {
		t.Errorf("options %+v", o)
	}
	if _, err := startOpts(t, "--id=1", "--data-dir=/d", "--bootstrap-file="+path, "--peers=2=127.0.0.1:9999"); err == nil ||
		!strings.Contains(err.Error(), "node 2 has address 127.0.0.1:9999 in --peers but 127.0.0.1:7102") {
		t.Errorf("conflicting peers: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"range_id": 1, "start_key": "a", "replicas": [1]}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := startOpts(t, "--id=1", "--data-dir=/d", "--bootstrap-file="+bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a bad file's error should name it: %v", err)
	}
}

func TestHostedByAndSplitByLeader(t *testing.T) {
	descs := []*kvpb.RangeDescriptor{
		{RangeId: 1, LeaderNodeId: 1, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}, {NodeId: 2}}},
		{RangeId: 2, LeaderNodeId: 2, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 2}, {NodeId: 3}}},
		{RangeId: 3, LeaderNodeId: 3, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}, {NodeId: 3}}},
	}
	ids := func(ds []*kvpb.RangeDescriptor) (out []uint64) {
		for _, d := range ds {
			out = append(out, d.RangeId)
		}
		return out
	}
	if got := ids(hostedBy(descs, 1)); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("hostedBy(1) = %v", got)
	}
	if got := hostedBy(descs, 4); got != nil {
		t.Errorf("hostedBy(4) = %v", got)
	}
	if got := replicaNodes(descs); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("replicaNodes = %v", got)
	}
}
