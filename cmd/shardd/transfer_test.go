package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTransferCommand runs the demo cluster and moves the leadership of a
// range with shardd transfer, back and forth: each time the command
// answers with the new leader, as text or JSON. Requests placement
// refuses fail with exit code 1 and its reason; bad command lines with 2.
func TestTransferCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a placement service and three nodes with gossip")
	}
	demo := runAsync(t, nil, "demo", "--ranges=2", "--tick=10ms")
	pl := demoPlacementLine.FindStringSubmatch(demo.waitOutput(t, "Press Ctrl-C to stop."))
	if pl == nil {
		t.Fatalf("no placement address in the demo's banner:\n%s", demo.stdout.String())
	}
	placement := pl[1]

	line := regexp.MustCompile(`^range 1 \[-inf, k5000\): node (\d) leads \(map revision \d+, took \d+ms\)\n$`)
	for _, to := range []string{"2", "3", "2"} {
		// Flags after the range, as the synopsis writes them.
		code, stdout, stderr := runSync(t, "transfer", "--placement", placement, "1", "--to", to)
		if m := line.FindStringSubmatch(stdout); code != exitOK || m == nil || m[1] != to {
			t.Fatalf("transfer 1 --to %s: exit %d, stdout %q, stderr %q", to, code, stdout, stderr)
		}
	}
	code, stdout, stderr := runSync(t, "transfer", "--json", "--to=1", "--placement="+placement, "1")
	var out rangeChangeOutput
	if err := json.Unmarshal([]byte(stdout), &out); code != exitOK || err != nil || out.Range.RangeID != 1 || out.Range.Leader != 1 ||
		out.Revision == 0 || len(out.Range.Replicas) != 3 {
		t.Fatalf("transfer --json: exit %d, %v, stdout %q, stderr %q", code, err, stdout, stderr)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"99", "--to", "1"}, exitError, "NotFound: no range 99"},
		{[]string{"1", "--to", "9"}, exitError, "InvalidArgument: node 9 is not a voter of range 1"},
		{[]string{"1"}, exitUsage, "--to is required"},
		{[]string{"--to", "1"}, exitUsage, "want one RANGE id"},
		{[]string{"one", "--to", "1"}, exitUsage, `"one" is not a range id`},
		{[]string{"1", "--to", "x"}, exitUsage, "--to"},
		{[]string{"1", "--too", "2"}, exitUsage, "flag provided but not defined: -too"},
	} {
		code, stdout, stderr := runSync(t, append([]string{"transfer", "--placement", placement}, tc.args...)...)
		if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("transfer %q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
	if code := demo.stop(t); code != exitOK {
		t.Errorf("demo exit %d", code)
	}
}

// TestTransferUnreachablePlacement: transfer says so, at once, when
// nothing listens at --placement.
func TestTransferUnreachablePlacement(t *testing.T) {
	start := time.Now()
	code, stdout, stderr := runSync(t, "transfer", "--placement", "127.0.0.1:1", "1", "--to", "2")
	want := "cannot reach placement at 127.0.0.1:1: is `placement start` running? (dial tcp 127.0.0.1:1: connect: connection refused)"
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v: the --timeout, not a refused connection's milliseconds", took)
	}
	if code != exitError || stdout != "" || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
	}
}
