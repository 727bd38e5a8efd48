package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeStore is an in-memory kvStore with the semantics of the KV API.
type fakeStore struct {
	kvs   map[string]string
	stale int // reads asked for with a ReadOption (Stale)
}

func newFakeStore(kvs map[string]string) *fakeStore {
	if kvs == nil {
		kvs = map[string]string{}
	}
	return &fakeStore{kvs: kvs}
}

func (s *fakeStore) Get(_ context.Context, key []byte, opts ...router.ReadOption) ([]byte, bool, error) {
	s.stale += min(len(opts), 1)
	v, ok := s.kvs[string(key)]
	return []byte(v), ok, nil
}

func (s *fakeStore) Put(_ context.Context, key, value []byte) error {
	s.kvs[string(key)] = string(value)
	return nil
}

func (s *fakeStore) Delete(_ context.Context, key []byte) (bool, error) {
	_, ok := s.kvs[string(key)]
	delete(s.kvs, string(key))
	return ok, nil
}

func (s *fakeStore) Scan(_ context.Context, start, end []byte, limit int, opts ...router.ReadOption) ([]router.KeyValue, []byte, error) {
	s.stale += min(len(opts), 1)
	var keys []string
	for k := range s.kvs {
		if k >= string(start) && (len(end) == 0 || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var kvs []router.KeyValue
	for i, k := range keys {
		if limit > 0 && i == limit {
			return kvs, []byte(k), nil
		}
		kvs = append(kvs, router.KeyValue{Key: []byte(k), Value: []byte(s.kvs[k])})
	}
	return kvs, nil, nil
}

func (s *fakeStore) CompareAndSwap(_ context.Context, cas router.CAS) (router.CASResult, error) {
	cur, found := s.kvs[string(cas.Key)]
	res := router.CASResult{Found: found, Current: []byte(cur)}
	res.Swapped = (cas.ExpectAbsent && !found) || (!cas.ExpectAbsent && found && cur == string(cas.Expected))
	if res.Swapped {
		if cas.Delete {
			delete(s.kvs, string(cas.Key))
		} else {
			s.kvs[string(cas.Key)] = string(cas.NewValue)
		}
	}
	return res, nil
}

// parseKV checks the command line of a kv verb (args start with the
// verb) as the command does, without running it.
func parseKV(args ...string) (kvTarget, kvOp, error) {
	return parseKVIn(nil, args...)
}

// parseKVIn is parseKV with stdin as the command's standard input.
func parseKVIn(stdin io.Reader, args ...string) (kvTarget, kvOp, error) {
	var v *kvVerb
	for _, kv := range kvVerbs {
		if kv.name == args[0] {
			v = kv
		}
	}
	if v == nil {
		return kvTarget{}, nil, errors.New("no such verb")
	}
	fs := flag.NewFlagSet("kv "+v.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f kvFlags
	f.register(fs)
	parse := v.setup(fs)
	rest, err := cli.ParseInterspersed(fs, args[1:])
	if err != nil {
		return kvTarget{}, nil, err
	}
	return checkKV(&f, parse, rest, stdin)
}

// TestKVHelp checks "shardd help kv [verb]" and "shardd kv [verb] -h":
// the same text, with a description, every verb, and every flag
// explained.
func TestKVHelp(t *testing.T) {
	code, stdout, _ := runSync(t, "help", "kv")
	if code != exitOK {
		t.Fatalf("help kv: exit %d", code)
	}
	for _, v := range kvVerbs {
		if !strings.Contains(stdout, "\n  "+v.name+" "+v.args+"\n") {
			t.Errorf("help kv does not list %s:\n%s", v.name, stdout)
		}
	}
	if code, _, stderr := runSync(t, "kv", "-h"); code != exitOK || stderr != stdout {
		t.Errorf("kv -h: exit %d, and its output differs from help's:\n%s", code, stderr)
	}
	if code, _, stderr := runSync(t, "kv", "--addr=127.0.0.1:1", "-h"); code != exitOK || stderr != stdout {
		t.Errorf("kv --addr -h: exit %d, and its output differs from help's:\n%s", code, stderr)
	}
	if len(kvCommand.verbs) != len(kvVerbs) {
		t.Fatalf("kv has %d verbs, want %d", len(kvCommand.verbs), len(kvVerbs))
	}
	for _, c := range kvCommand.verbs {
		verb := strings.TrimPrefix(c.name, "kv ")
		code, stdout, _ := runSync(t, "help", "kv", verb)
		if code != exitOK {
			t.Errorf("help %s: exit %d", c.name, code)
		}
		code, _, stderr := runSync(t, "kv", verb, "-h")
		if code != exitOK || stderr != stdout {
			t.Errorf("%s -h: exit %d, and its output differs from help's:\n%s", c.name, code, stderr)
		}
		if !strings.HasPrefix(stdout, "Usage: shardd "+c.name+" [--addr host:port]") || len(strings.TrimSpace(c.doc)) < 50 {
			t.Errorf("help %s has no usage line or description:\n%s", c.name, stdout)
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(fs)
		for _, common := range []string{"addr", "timeout"} {
			if fs.Lookup(common) == nil {
				t.Errorf("%s has no -%s", c.name, common)
			}
		}
		checkHelpShowsFlags(t, c.name, stdout, fs)
	}
}

func TestKVBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"kv"}, "shardd kv: missing verb (want put, get, del, scan or cas)\nRun 'shardd help kv' for its verbs and flags."},
		{[]string{"kv", "frob"}, `shardd kv: unknown verb "frob" (want put, get, del, scan or cas)`},
		{[]string{"help", "kv", "frob"}, `kv has no verb "frob"`},
		{[]string{"kv", "--stale", "get", "k"}, "flag provided but not defined: -stale"},
		{[]string{"kv", "put"}, "shardd kv put: missing KEY and VALUE\nRun 'shardd help kv put' for its flags."},
		{[]string{"kv", "put", "k"}, "missing VALUE"},
		{[]string{"kv", "put", "k", "v", "x"}, `unexpected arguments ["x"] after KEY VALUE`},
		{[]string{"kv", "put", "", "v"}, "KEY is empty"},
		{[]string{"kv", "get"}, "missing KEY"},
		{[]string{"kv", "get", "--nope", "k"}, "flag provided but not defined: -nope"},
		{[]string{"kv", "get", "k", "--stale", "k2"}, `unexpected arguments ["k2"] after KEY`},
		{[]string{"kv", "get", "k", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"kv", "get", ""}, "KEY is empty"},
		{[]string{"kv", "del", "a", "b"}, `unexpected arguments ["b"] after KEY`},
		{[]string{"kv", "scan"}, "missing START"},
		{[]string{"kv", "scan", "b", "a"}, "START b does not sort before END a"},
		{[]string{"kv", "scan", "a", "a"}, "does not sort before END"},
		{[]string{"kv", "scan", "--limit=-1", "a"}, "--limit must be 0 (no limit) or more, not -1"},
		{[]string{"kv", "scan", "--limit=x", "a"}, `invalid value "x" for flag -limit`},
		{[]string{"kv", "scan", "a", "b", "c"}, `unexpected arguments ["c"] after START END`},
		{[]string{"kv", "scan", "a", "--limit"}, "flag needs an argument: -limit"},
		{[]string{"kv", "cas", "k", "v"}, "missing the condition: --expect VALUE"},
		{[]string{"kv", "cas", "--expect=a", "--absent", "k", "v"}, "--expect and --absent exclude each other"},
		{[]string{"kv", "cas", "--absent", "k"}, "missing NEWVALUE (or --delete, to delete KEY)"},
		{[]string{"kv", "cas", "--absent"}, "missing KEY and NEWVALUE"},
		{[]string{"kv", "cas", "--delete", "--expect=a"}, "missing KEY"},
		{[]string{"kv", "cas", "--absent", "--delete", "k", "v"}, `--delete takes no NEWVALUE, but "v" follows KEY`},
		{[]string{"kv", "cas", "--absent", "", "v"}, "KEY is empty"},
		{[]string{"kv", "cas", "k", "v", "--absent", "w"}, `unexpected arguments ["w"] after KEY NEWVALUE`},
		{[]string{"kv", "cas", "--absent", "--delete", "--value-file=f", "k"}, "--delete and --value-file exclude each other"},
		{[]string{"kv", "cas", "--absent", "--value-file=f", "k", "v"}, `--value-file gives NEWVALUE, but "v" follows KEY`},
		{[]string{"kv", "put", "--value-file=f", "k", "v"}, `--value-file gives the value, but "v" follows KEY`},
		{[]string{"kv", "put", "--value-file=f"}, "missing KEY"},
		{[]string{"kv", "get", "--hex", "--base64", "k"}, "--hex and --base64 exclude each other"},
		{[]string{"kv", "--hex", "get", "--base64", "k"}, "--hex and --base64 exclude each other"},
		{[]string{"kv", "get", "--hex", "6b3"}, `KEY "6b3" is not hex (--hex)`},
		{[]string{"kv", "put", "--base64", "aw==", "!"}, `VALUE "!" is not base64 (--base64)`},
		{[]string{"kv", "scan", "--hex", "zz"}, `START "zz" is not hex`},
		{[]string{"kv", "scan", "--hex", "02", "01"}, "START 02 does not sort before END 01"},
		{[]string{"kv", "cas", "--hex", "--expect=x", "6b", "00"}, `--expect "x" is not hex`},
		{[]string{"kv", "get", "--addr=", "k"}, "--addr is empty"},
		{[]string{"kv", "get", "--addr=nope", "k"}, `--addr: "nope" is not host:port`},
		{[]string{"kv", "get", "--addr=127.0.0.1:1,,127.0.0.1:2", "k"}, "--addr: item 2"},
		{[]string{"kv", "--addr=127.0.0.1:0", "get", "k"}, "--addr: \"127.0.0.1:0\": port \"0\""},
		{[]string{"kv", "get", "--timeout=0s", "k"}, "--timeout must be positive"},
	} {
		code, stdout, stderr := runSync(t, tc.args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, exitUsage, tc.want)
		}
	}
}

// TestKVVerbs runs the verbs' requests, parsed from command lines,
// against a fake store.
func TestKVVerbs(t *testing.T) {
	s := newFakeStore(nil)
	do := func(args ...string) (string, error) {
		t.Helper()
		target, op, err := parseKV(args...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !slices.Equal(target.addrs, []string{defaultNodeAddr}) || target.placement {
			t.Errorf("%q: target %+v", args, target)
		}
		var out bytes.Buffer
		err = op(t.Context(), s, &out)
		return out.String(), err
	}
	expect := func(want string, args ...string) {
		t.Helper()
		if got, err := do(args...); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", args, got, err, want)
		}
	}
	expect("ok\n", "put", "k1", "v1")
	expect("ok\n", "put", "empty", "")
	expect("ok\n", "put", "a b", "two words")
	expect("ok\n", "put", "--", "-k", "-v")
	expect("ok\n", "put", "neg", "-1")
	if want := map[string]string{"k1": "v1", "empty": "", "a b": "two words", "-k": "-v", "neg": "-1"}; !mapsEqual(s.kvs, want) {
		t.Fatalf("store %q, want %q", s.kvs, want)
	}

	expect("v1\n", "get", "k1")
	expect("\n", "get", "empty")
	expect("-v\n", "get", "--", "-k")
	if s.stale != 0 {
		t.Errorf("%d stale reads without --stale", s.stale)
	}
	expect("two words\n", "get", "--stale", "a b")
	if s.stale != 1 {
		t.Errorf("--stale: %d stale reads, want 1", s.stale)
	}
	if out, err := do("get", "nope"); out != "" || err == nil || err.Error() != "key not found: nope" {
		t.Errorf("get of a missing key: %q, %v", out, err)
	}

	expect(`KEY    VALUE
-k     -v
"a b"  "two words"
empty  ""
k1     v1
neg    -1
`, "scan", "")
	expect("KEY    VALUE\nempty  \"\"\nk1     v1\n(stopped at --limit 2; resume key: neg)\n", "scan", "--limit", "2", "b")
	expect("KEY  VALUE\nk1   v1\n", "scan", "k", "m")
	expect("KEY  VALUE\n(none)\n", "scan", "x", "y")
	expect("KEY    VALUE\nempty  \"\"\nk1     v1\n", "scan", "--limit=2", "b", "neg")
	out, err := do("scan", "--json", "--limit=1", "--stale", "k", "z")
	var got scanOutput
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got.KVs) != 1 || got.KVs[0] != (kvJSON{"k1", "v1"}) || got.ResumeKey != "neg" {
		t.Errorf("scan --json: %s %v", out, err)
	}
	if s.stale != 2 {
		t.Errorf("scan --stale: %d stale reads, want 2", s.stale)
	}
	if out, _ := do("scan", "--json", "x"); out != "{\n  \"kvs\": [],\n  \"encoding\": \"text\"\n}\n" {
		t.Errorf("scan --json of nothing: %q", out)
	}

	expect("swapped\n", "cas", "--absent", "n", "1")
	expect("not swapped (current: \"1\")\n", "cas", "--absent", "n", "2")
	expect("swapped\n", "cas", "--expect", "1", "n", "two words")
	expect("not swapped (current: \"two words\")\n", "cas", "--expect=", "n", "x")
	expect("swapped\n", "cas", "--expect=", "empty", "full")
	expect("swapped\n", "cas", "--expect=two words", "--delete", "n")
	expect("not swapped (current: absent)\n", "cas", "--expect", "two words", "n", "x")
	if _, ok := s.kvs["n"]; ok || s.kvs["empty"] != "full" {
		t.Errorf("after the cas: %q", s.kvs)
	}

	expect("deleted\n", "del", "k1")
	expect("not found\n", "del", "k1")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestKVAddrList(t *testing.T) {
	target, _, err := parseKV("get", "--addr", " 127.0.0.1:7101, 127.0.0.1:7102 ,localhost:7103", "k")
	if err != nil || target.placement || !slices.Equal(target.addrs, []string{"127.0.0.1:7101", "127.0.0.1:7102", "localhost:7103"}) {
		t.Errorf("target %+v, %v", target, err)
	}
	// --placement wins over --addr.
	target, _, err = parseKV("get", "--addr", "127.0.0.1:7101", "--placement", "127.0.0.1:7000,127.0.0.1:7001", "k")
	if err != nil || !target.placement || !slices.Equal(target.addrs, []string{"127.0.0.1:7000", "127.0.0.1:7001"}) {
		t.Errorf("target %+v, %v", target, err)
	}
	if _, _, err := parseKV("get", "--placement", "nohost", "k"); err == nil || !strings.Contains(err.Error(), "--placement") {
		t.Errorf("a bad --placement: %v", err)
	}
}

// TestKVDemoCommands: the kv commands the demo prints are valid command
// lines.
func TestKVDemoCommands(t *testing.T) {
	n := 0
	for _, c := range demoCommands("127.0.0.1:4242", "127.0.0.1:4343") {
		args, ok := strings.CutPrefix(c, "go run ./cmd/shardd kv ")
		if !ok {
			continue
		}
		n++
		target, _, err := parseKV(strings.Fields(args)...)
		if err != nil || !target.placement || !slices.Equal(target.addrs, []string{"127.0.0.1:4242"}) {
			t.Errorf("%q: target %+v, %v", c, target, err)
		}
	}
	if n != len(kvVerbs) {
		t.Errorf("the demo shows %d kv commands, want one per verb (%d)", n, len(kvVerbs))
	}
}

func TestExplainKVError(t *testing.T) {
	lookupErr := status.Error(codes.Unavailable, "router: range lookup: router: no node answered a range lookup: a:1: connection refused")
	one, two := kvTarget{addrs: []string{"a:1"}}, kvTarget{addrs: []string{"a:1", "b:2"}}
	placement := kvTarget{addrs: []string{"p:1"}, placement: true}
	for _, tc := range []struct {
		verb       string
		seeds      kvTarget
		connecting bool
		err        error
		want       string
	}{
		{"get", one, true, lookupErr, "cannot reach node at a:1: is `shardd start` running? (a:1: connection refused)"},
		{"get", two, true, lookupErr, "cannot reach nodes at a:1, b:2: is `shardd start` running?"},
		{"get", one, true, status.Error(codes.Unavailable, `router: range lookup: router: no node knows a range holding key ""`),
			"cannot learn the cluster's ranges from the node at a:1 (router: range lookup: router: no node knows a range holding key \"\"): is it a node of a bootstrapped cluster?"},
		{"get", one, true, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "the node at a:1 did not answer within 2s: is `shardd start` running there"},
		{"get", placement, true, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "cannot reach placement at p:1 within 2s: is `placement start` running there?"},
		{"get", placement, true, status.Error(codes.Unavailable, "router: range lookup: placement: the first ranges are not created yet"),
			"the placement at p:1 cannot say where the ranges are yet (router: range lookup: placement: the first ranges are not created yet): have enough nodes registered"},
		{"put", one, false, status.Error(codes.InvalidArgument, "put.key is 5000 bytes, limit is 4096"), "the request was refused: put.key is 5000 bytes, limit is 4096"},
		{"put", one, false, status.Error(codes.InvalidArgument, "rpc error: code = InvalidArgument desc = put.key is 5000 bytes, limit is 4096"), "the request was refused: put.key is 5000 bytes, limit is 4096"},
		{"put", one, false, status.Error(codes.Unavailable, "router: gave up after 20 attempts: node 1 does not lead range 1"),
			"the cluster did not serve the request: it may have lost quorum (fewer than a majority of the range's replicas running) or be electing a leader; check `shardd ranges` and `shardd status`, and retry (router: gave up after 20 attempts: node 1 does not lead range 1)"},
		{"get", one, false, status.Error(codes.DeadlineExceeded, "context deadline exceeded (last error: x)"),
			"no answer within 2s: the cluster may have lost quorum, or be overloaded (--timeout raises the wait) (context deadline exceeded (last error: x))"},
		{"cas", one, false, ambiguousErr(codes.DeadlineExceeded, "context deadline exceeded"), "the cas may or may not have been applied: read the key (shardd kv get) to find out"},
		{"put", one, false, ambiguousErr(codes.Unavailable, "leadership changed while the write was in flight"),
			"lost track of the put: leadership changed while the write was in flight; the put may or may not have been applied: read the key (shardd kv get) to find out"},
		{"del", one, false, ambiguousErr(codes.Unavailable, "stream broke"), "lost track of the del: stream broke; the del may"},
		{"cas", one, false, status.Error(codes.Unavailable, "router: gave up after 20 attempts: no leader"), "it may have lost quorum"},
		{"del", one, false, status.Error(codes.Canceled, "context canceled"), "interrupted"},
		{"del", one, false, status.Error(codes.Internal, "boom"), "Internal: boom"},
	} {
		got := explainKVError(tc.verb, tc.seeds, 2*time.Second, tc.connecting, tc.err).Error()
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s %v %v: %q, want %q", tc.verb, tc.connecting, tc.err, got, tc.want)
		}
	}
	// A write that certainly was not applied says nothing of its fate.
	notApplied := status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	if got := explainKVError("cas", one, time.Second, false, notApplied).Error(); strings.Contains(got, "may or may not") {
		t.Errorf("a write not applied: %q", got)
	}
	plain := errors.New("key not found: k")
	if got := explainKVError("get", one, time.Second, false, plain); got != plain {
		t.Errorf("a verb's own error became %v", got)
	}
}

// TestKVUnreachableNode: a kv command against no node fails with exit
// code 1 and says what to do; flags given before the verb count, those
// after it win.
func TestKVUnreachableNode(t *testing.T) {
	const want = "cannot reach node at 127.0.0.1:1: is `shardd start` running?"
	for _, args := range [][]string{
		{"kv", "put", "--addr", "127.0.0.1:1", "k", "v"},
		{"kv", "get", "--addr=127.0.0.1:1", "k"},
		{"kv", "del", "--addr=127.0.0.1:1", "k"},
		{"kv", "scan", "--addr=127.0.0.1:1", ""},
		{"kv", "cas", "--addr=127.0.0.1:1", "--absent", "k", "v"},
		{"kv", "--addr=127.0.0.1:1", "get", "k"},
		{"kv", "--addr=127.0.0.1:2", "--timeout=1m", "get", "--addr=127.0.0.1:1", "k"},
	} {
		code, stdout, stderr := runSync(t, args...)
		if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, stdout, stderr, want)
		}
	}
	code, _, stderr := runSync(t, "kv", "get", "--addr=127.0.0.1:1,127.0.0.1:2", "k")
	if want := "cannot reach nodes at 127.0.0.1:1, 127.0.0.1:2: is `shardd start` running?"; code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("two seeds: exit %d, stderr %q; want %q", code, stderr, want)
	}
}

// TestKVCluster runs the kv commands against an in-process demo cluster
// with four ranges: first the commands the demo prints, then every verb
// across the ranges, through different nodes.
func TestKVCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with gossip")
	}
	demo := runAsync(t, nil, "demo", "--ranges=4", "--tick=10ms")
	banner := demo.waitOutput(t, "Press Ctrl-C to stop.")
	nodes := demoNodeLine.FindAllStringSubmatch(banner, -1)
	if len(nodes) != 3 {
		t.Fatalf("banner:\n%s", banner)
	}
	addr := func(i int) string { return nodes[i][2] }
	kv := func(wantCode int, args ...string) (stdout, stderr string) {
		t.Helper()
		code, stdout, stderr := runSync(t, append([]string{"kv", "--timeout=10s"}, args...)...)
		if code != wantCode {
			t.Fatalf("kv %q: exit %d, want %d; stdout %q, stderr %q", args, code, wantCode, stdout, stderr)
		}
		return stdout, stderr
	}
	expect := func(want string, args ...string) {
		t.Helper()
		if got, _ := kv(exitOK, args...); got != want {
			t.Errorf("kv %q printed %q, want %q", args, got, want)
		}
	}

	// The demo's commands, in the order it prints them.
	var demoOut []string
	for _, line := range strings.Split(banner, "\n") {
		args, ok := strings.CutPrefix(strings.TrimSpace(line), "go run ./cmd/shardd kv ")
		if !ok {
			continue
		}
		out, _ := kv(exitOK, strings.Fields(args)...)
		demoOut = append(demoOut, out)
	}
	if want := []string{"ok\n", "hello\n", "KEY    VALUE\nk0001  hello\n", "swapped\n", "deleted\n"}; !slices.Equal(demoOut, want) {
		t.Errorf("the demo's kv commands printed %q, want %q", demoOut, want)
	}

	// One key in each range (split at k2500, k5000, k7500), written
	// through different nodes.
	all := addr(0) + "," + addr(1) + "," + addr(2)
	expect("ok\n", "put", "--addr", addr(0), "k0001", "hello")
	expect("ok\n", "put", "--addr", addr(1), "k2600", "two words")
	expect("ok\n", "put", "--addr", addr(2), "k5100", "")
	expect("ok\n", "put", "--addr", all, "k7600", "d")
	expect("hello\n", "get", "--addr", addr(2), "k0001")
	expect("two words\n", "get", "--addr", addr(0), "k2600")
	expect("\n", "get", "--addr", addr(1), "k5100")
	// A stale read may lag behind: wait (bounded) for it to catch up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := kv(exitOK, "get", "--stale", "--addr", addr(2), "k7600")
		if out == "d\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get --stale k7600 = %q after 10s, want \"d\"", out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Scans across the four ranges.
	table := "KEY    VALUE\nk0001  hello\nk2600  \"two words\"\nk5100  \"\"\nk7600  d\n"
	expect(table, "scan", "--addr", addr(1), "")
	expect(table, "scan", "--addr", addr(2), "k0000", "k9999")
	expect("KEY    VALUE\nk2600  \"two words\"\nk5100  \"\"\n", "scan", "--addr", addr(0), "k0002", "k7600")
	out, _ := kv(exitOK, "scan", "--addr", addr(0), "--limit", "2", "k")
	if !strings.HasPrefix(out, "KEY    VALUE\nk0001  hello\nk2600  \"two words\"\n(stopped at --limit 2; resume key: ") {
		t.Errorf("scan --limit 2:\n%s", out)
	}
	// Page through with --json and the resume key.
	var keys []string
	start, pages := "", 0
	for ; pages < 10; pages++ {
		out, _ := kv(exitOK, "scan", "--addr", addr(pages%3), "--json", "--limit=1", start)
		var page scanOutput
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("scan --json: %v:\n%s", err, out)
		}
		for _, p := range page.KVs {
			keys = append(keys, p.Key+"="+p.Value)
		}
		if page.ResumeKey == "" {
			break
		}
		start = page.ResumeKey
	}
	if want := []string{"k0001=hello", "k2600=two words", "k5100=", "k7600=d"}; !slices.Equal(keys, want) || pages < 3 {
		t.Errorf("paged scan: %q in %d pages, want %q", keys, pages+1, want)
	}

	// Compare-and-swap.
	expect("swapped\n", "cas", "--addr", addr(1), "--expect", "hello", "k0001", "world")
	expect("not swapped (current: \"world\")\n", "cas", "--addr", addr(2), "--expect", "hello", "k0001", "again")
	expect("not swapped (current: \"world\")\n", "cas", "--addr", addr(0), "--absent", "k0001", "again")
	expect("swapped\n", "cas", "--addr", addr(0), "--absent", "k9000", "new")
	expect("swapped\n", "cas", "--addr", addr(0), "--expect=", "k5100", "filled")
	expect("not swapped (current: absent)\n", "cas", "--addr", addr(1), "--expect", "x", "k8000", "y")
	expect("swapped\n", "cas", "--addr", addr(2), "--expect", "new", "--delete", "k9000")
	expect("world\n", "get", "--addr", addr(0), "k0001")
	expect("filled\n", "get", "--addr", addr(0), "k5100")

	// Delete, and the errors of a missing key and a refused request.
	expect("deleted\n", "del", "--addr", addr(1), "k0001")
	expect("not found\n", "del", "--addr", addr(2), "k0001")
	for _, k := range []string{"k0001", "k9000"} {
		if out, stderr := kv(exitError, "get", "--addr", addr(0), k); out != "" || stderr != "shardd kv get: key not found: "+k+"\n" {
			t.Errorf("get of deleted %s: stdout %q, stderr %q", k, out, stderr)
		}
	}
	_, stderr := kv(exitError, "put", "--addr", addr(0), strings.Repeat("k", 5000), "v")
	if want := "shardd kv put: the request was refused: "; !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "5000 bytes, limit is 4096") {
		t.Errorf("put of a too long key: stderr %q", stderr)
	}
	expect("KEY    VALUE\nk2600  \"two words\"\nk5100  filled\nk7600  d\n", "scan", "--addr", addr(1), "")

	// A value of 1 MiB, the largest the nodes take, which no command line
	// can carry: from stdin and from a file, read back as it was.
	big := make([]byte, kvpb.DefaultMaxValueBytes)
	for i := range big {
		big[i] = byte(i*31 + i>>11)
	}
	if code, out, stderr := runSyncIn(t, bytes.NewReader(big), "kv", "put", "--addr", addr(0), "k0002", "-"); code != exitOK || out != "ok\n" {
		t.Fatalf("put of 1 MiB from stdin: exit %d, %q, %q", code, out, stderr)
	}
	if out, _ := kv(exitOK, "get", "--addr", addr(1), "k0002"); out != string(big)+"\n" {
		t.Errorf("get of the 1 MiB value: %d bytes, not what was put", len(out))
	}
	path := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	expect("ok\n", "put", "--addr", addr(2), "k0003", "--value-file", path)
	if out, _ := kv(exitOK, "get", "--addr", addr(0), "--base64", "azAwMDM="); out != base64.StdEncoding.EncodeToString(big)+"\n" {
		t.Errorf("get --base64 of the 1 MiB value from a file: %d bytes, not what was put", len(out))
	}
	back := filepath.Join(t.TempDir(), "back")
	expect("", "get", "--addr", addr(1), "k0003", "--value-file", back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, big) {
		t.Errorf("get --value-file of the 1 MiB value: %d bytes, %v; not what was put", len(got), err)
	}
	code, _, stderr := runSyncIn(t, bytes.NewReader(append(big, 'x')), "kv", "put", "--addr", addr(0), "k0004", "-")
	if want := "shardd kv put: the request was refused: put.value is 1048577 bytes, limit is 1048576\n"; code != exitError || stderr != want {
		t.Errorf("put of 1 MiB and a byte: exit %d, %q; want %q", code, stderr, want)
	}

	if code := demo.stop(t); code != exitOK {
		t.Fatalf("demo exit %d; stderr:\n%s", code, demo.stderr.String())
	}
}

// doKV runs a kv verb's command line (args start with the verb) against
// s, with stdin as its standard input, and returns what it printed.
func doKV(t *testing.T, s kvStore, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	_, op, err := parseKVIn(stdin, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	var out bytes.Buffer
	err = op(t.Context(), s, &out)
	return out.String(), err
}

// TestKVFlagsAfterArguments: flags count wherever they stand, before the
// arguments, after them or between; "--" still ends them.
func TestKVFlagsAfterArguments(t *testing.T) {
	s := newFakeStore(map[string]string{"k": "v", "-k": "-v"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "k", "--json"}, "{\n  \"key\": \"k\",\n  \"found\": true,\n  \"value\": \"v\",\n  \"encoding\": \"text\"\n}\n"},
		{[]string{"get", "6b", "--stale", "--hex"}, "76\n"},
		{[]string{"scan", "a", "--limit", "1", "z"}, "KEY  VALUE\nk    v\n"},
		{[]string{"cas", "k", "w", "--expect", "v"}, "swapped\n"},
		{[]string{"cas", "k", "--delete", "--expect=w"}, "swapped\n"},
		{[]string{"get", "--", "-k"}, "-v\n"},
		{[]string{"put", "neg", "-1"}, "ok\n"},
		{[]string{"get", "neg"}, "-1\n"},
	} {
		if got, err := doKV(t, s, nil, tc.args...); err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	if s.stale != 1 {
		t.Errorf("--stale after KEY: %d stale reads, want 1", s.stale)
	}
	// Through the command itself, a flag after the key is the flag (the
	// flag package alone stopped at "k" and took --addr for a second key).
	code, _, stderr := runSync(t, "kv", "get", "k", "--addr=127.0.0.1:1")
	if want := "cannot reach node at 127.0.0.1:1"; code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("kv get k --addr: exit %d, %q; want exit 1 and %q", code, stderr, want)
	}
}

// TestKVJSONEveryVerb: --json on each verb prints one object that says
// what happened.
func TestKVJSONEveryVerb(t *testing.T) {
	s := newFakeStore(nil)
	decode := func(args ...string) map[string]any {
		t.Helper()
		out, err := doKV(t, s, nil, append(args, "--json")...)
		var m map[string]any
		if jerr := json.Unmarshal([]byte(out), &m); jerr != nil {
			t.Fatalf("%q: %v, output %q (%v)", args, jerr, out, err)
		}
		return m
	}
	expect := func(got map[string]any, want string) {
		t.Helper()
		b, _ := json.Marshal(got) // sorted keys
		if string(b) != want {
			t.Errorf("got %s, want %s", b, want)
		}
	}
	expect(decode("put", "k", "v"), `{"encoding":"text","key":"k","ok":true}`)
	expect(decode("get", "k"), `{"encoding":"text","found":true,"key":"k","value":"v"}`)
	expect(decode("put", "e", ""), `{"encoding":"text","key":"e","ok":true}`)
	expect(decode("get", "e"), `{"encoding":"text","found":true,"key":"e","value":""}`)
	expect(decode("cas", "--expect=x", "k", "w"), `{"current":"v","encoding":"text","found":true,"key":"k","swapped":false}`)
	expect(decode("cas", "--absent", "n", "w"), `{"encoding":"text","key":"n","swapped":true}`)
	expect(decode("cas", "--expect=x", "gone", "w"), `{"encoding":"text","key":"gone","swapped":false}`)
	expect(decode("del", "k"), `{"deleted":true,"encoding":"text","key":"k"}`)
	expect(decode("del", "k"), `{"deleted":false,"encoding":"text","key":"k"}`)
	expect(decode("scan", "", "--limit=1"), `{"encoding":"text","kvs":[{"key":"e","value":""}],"resume_key":"n"}`)
	// A get that finds nothing prints found: false, and fails.
	out, err := doKV(t, s, nil, "get", "--json", "k")
	if err == nil || err.Error() != "key not found: k" || out != "{\n  \"key\": \"k\",\n  \"found\": false,\n  \"encoding\": \"text\"\n}\n" {
		t.Errorf("get --json of a missing key: %q, %v", out, err)
	}
}

// TestKVBinaryKeys: keys and values that are not UTF-8 stay distinct in
// every output. Before --hex, --base64 and the JSON "encoding", scan
// --json printed both keys below as "\ufffd" and the table could not be
// fed back.
func TestKVBinaryKeys(t *testing.T) {
	s := newFakeStore(nil)
	expect := func(want string, args ...string) {
		t.Helper()
		if got, err := doKV(t, s, nil, args...); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", args, got, err, want)
		}
	}
	expect("ok\n", "put", "--hex", "ff", "00ff")
	expect("ok\n", "put", "--hex", "fe", "")
	expect("ok\n", "put", "--base64", "/f8=", "aGk=") // fd ff: "hi"
	if want := map[string]string{"\xff": "\x00\xff", "\xfe": "", "\xfd\xff": "hi"}; !mapsEqual(s.kvs, want) {
		t.Fatalf("store %q, want %q", s.kvs, want)
	}
	expect("00ff\n", "get", "--hex", "ff")
	expect("AP8=\n", "get", "--base64", "/w==")
	expect("\x00\xff\n", "get", "--", "\xff") // the bytes as they are
	expect("KEY   VALUE\nfdff  6869\nfe    \"\"\nff    00ff\n", "scan", "--hex", "")
	expect("KEY   VALUE\n/f8=  aGk=\n(stopped at --limit 1; resume key: /g==)\n", "scan", "--base64", "--limit=1", "")
	expect("KEY         VALUE\n\"\\xfd\\xff\"  hi\n\"\\xfe\"      \"\"\n\"\\xff\"      \"\\x00\\xff\"\n", "scan", "")
	expect("not swapped (current: 00ff)\n", "cas", "--hex", "--expect=00", "ff", "01")
	expect("swapped\n", "cas", "--hex", "--expect=00ff", "ff", "01")

	out, err := doKV(t, s, nil, "scan", "--json", "")
	var got scanOutput
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("scan --json: %q, %v", out, err)
	}
	want := scanOutput{KVs: []kvJSON{{"/f8=", "aGk="}, {"/g==", ""}, {"/w==", "AQ=="}}, Encoding: encBase64}
	if !slices.Equal(got.KVs, want.KVs) || got.Encoding != want.Encoding {
		t.Errorf("scan --json of binary keys: %+v, want %+v", got, want)
	}
	out, _ = doKV(t, s, nil, "scan", "--json", "--hex", "")
	if !strings.Contains(out, `"key": "fdff"`) || !strings.Contains(out, `"encoding": "hex"`) {
		t.Errorf("scan --json --hex: %s", out)
	}
	// A UTF-8 key next to a binary one: the whole output is base64.
	expect("ok\n", "put", "a", "é")
	out, _ = doKV(t, s, nil, "scan", "--json", "--limit=2", "")
	if !strings.Contains(out, `"key": "YQ=="`) || !strings.Contains(out, `"value": "w6k="`) || !strings.Contains(out, `"resume_key": "/g=="`) {
		t.Errorf("scan --json of mixed keys: %s", out)
	}
	out, _ = doKV(t, s, nil, "scan", "--json", "a", "b")
	if !strings.Contains(out, `"value": "é"`) || !strings.Contains(out, `"encoding": "text"`) {
		t.Errorf("scan --json of a UTF-8 key: %s", out)
	}
}

// TestKVValueFromStdinAndFile: "-" reads the value from standard input
// and --value-file from a file, bytes as they are, 1 MiB included (more
// than Linux lets one argument be); get --value-file writes them back.
func TestKVValueFromStdinAndFile(t *testing.T) {
	s := newFakeStore(nil)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(path, big[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stdin []byte
		args  []string
		key   string
		want  []byte
	}{
		{big, []string{"put", "big", "-"}, "big", big},
		{nil, []string{"put", "--value-file", path, "file"}, "file", big[:1000]},
		{nil, []string{"put", "empty", "-"}, "empty", []byte{}},
		// --hex writes the arguments; stdin is read as it is.
		{[]byte("zz"), []string{"put", "--hex", "6b", "-"}, "k", []byte("zz")},
		{big[:10], []string{"cas", "--absent", "c", "-"}, "c", big[:10]},
		{nil, []string{"cas", "--expect", string(big[:10]), "--value-file", path, "c"}, "c", big[:1000]},
	} {
		var stdin io.Reader
		if tc.stdin != nil {
			stdin = bytes.NewReader(tc.stdin)
		}
		if _, err := doKV(t, s, stdin, tc.args...); err != nil {
			t.Errorf("%q: %v", tc.args[:2], err)
		}
		if got, ok := s.kvs[tc.key]; !ok || got != string(tc.want) {
			t.Errorf("%q: %s holds %d bytes, want %d", tc.args[:2], tc.key, len(got), len(tc.want))
		}
	}
	// get --value-file writes the bytes back exactly, no newline added.
	out := filepath.Join(t.TempDir(), "out")
	if printed, err := doKV(t, s, nil, "get", "big", "--value-file", out); err != nil || printed != "" {
		t.Errorf("get --value-file: printed %q, %v", printed, err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, big) {
		t.Errorf("get --value-file wrote %d bytes, %v; want the %d put", len(got), err, len(big))
	}
	if printed, err := doKV(t, s, nil, "get", "--json", "--value-file", out, "empty"); err != nil || !strings.Contains(printed, `"found": true`) || strings.Contains(printed, `"value"`) {
		t.Errorf("get --json --value-file: printed %q, %v", printed, err)
	}
	if got, err := os.ReadFile(out); err != nil || len(got) != 0 {
		t.Errorf("get --value-file of an empty value: %q, %v", got, err)
	}
	_, _, err := parseKV("put", "--value-file", filepath.Join(t.TempDir(), "nope"), "k")
	if err == nil || !strings.Contains(err.Error(), "--value-file: open ") {
		t.Errorf("a missing --value-file: %v", err)
	}
	_, _, err = parseKVIn(io.LimitReader(zeros{}, maxReadValue+1), "put", "k", "-")
	if err == nil || !strings.Contains(err.Error(), "the value in standard input is more than 64 MiB") {
		t.Errorf("an endless stdin: %v", err)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestKVHelpStatesLimits: put's help gives the key and value limits, and
// how to pass a value too long for an argument.
func TestKVHelpStatesLimits(t *testing.T) {
	_, stdout, _ := runSync(t, "help", "kv", "put")
	text := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{"A key is 1 to 4096 bytes and a value at most 1048576 bytes (1 MiB)", `A VALUE of "-" is read from standard input`, "-value-file file", "-hex", "-base64", "-json"} {
		if !strings.Contains(text, want) {
			t.Errorf("help kv put does not say %q:\n%s", want, stdout)
		}
	}
}

// TestKVUnreachablePlacement: a kv command whose --placement nothing
// listens on fails at once, says why, and that --addr still works.
// Before the probe it retried until --timeout (10s).
func TestKVUnreachablePlacement(t *testing.T) {
	start := time.Now()
	code, stdout, stderr := runSync(t, "kv", "get", "--placement", "127.0.0.1:1", "k")
	took := time.Since(start)
	t.Logf("failed in %v: %s", took, stderr)
	for _, want := range []string{"cannot reach placement at 127.0.0.1:1: is `placement start` running?", "connection refused", "--addr NODE"} {
		if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
		}
	}
	if took > 5*time.Second {
		t.Errorf("took %v: the 10s --timeout, not a refused connection's milliseconds", took)
	}
}

// ambiguousErr is a write's error as the router returns it when an
// attempt may have been applied: a status error that is also
// router.ErrAmbiguous, its message prefixed with that error's.
func ambiguousErr(c codes.Code, msg string) error {
	return ambiguous{status.New(c, router.ErrAmbiguous.Error()+": "+msg)}
}

type ambiguous struct{ st *status.Status }

func (a ambiguous) Error() string              { return a.st.Message() }
func (a ambiguous) GRPCStatus() *status.Status { return a.st }
func (a ambiguous) Is(target error) bool       { return target == router.ErrAmbiguous }
