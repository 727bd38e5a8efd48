package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var metricsLine = regexp.MustCompile(`metrics on (http://\S+)`)

// jsonLog parses a process's log written with --log-format json (the
// lines startProc writes before each run excepted) and returns its
// records' messages.
func jsonLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "=== ") {
			continue
		}
		var rec struct {
			Msg   string `json:"msg"`
			Level string `json:"level"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg == "" || rec.Level == "" {
			t.Errorf("%s: log line %q is not a JSON record (%v)", path, line, err)
			continue
		}
		msgs = append(msgs, rec.Msg)
	}
	return msgs
}

// TestBinariesServeHealthMetricsAndJSONLogs runs the real binaries: a
// shardd node started before its placement service is NOT_SERVING, and
// turns SERVING once the service is up and it registered; the placement
// process is SERVING; both serve /metrics at the address they print (the
// node its ranges, the service its map) and write JSON logs with
// --log-format json, the node's saying it registered and received its
// ranges.
//
//	go test -run TestBinariesServeHealthMetricsAndJSONLogs -v ./cmd/shardd
func TestBinariesServeHealthMetricsAndJSONLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs two processes")
	}
	shardd, placementBin := buildShardd(t), buildBinary(t, "../placement")
	base := t.TempDir()
	ports := freePorts(t, 2)
	placement, nodeAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	const ranges = 3

	nodeLog := filepath.Join(base, "node.log")
	nd := startProc(t, shardd, "node 1", nodeLog, "start", "--id", "1", "--listen", nodeAddr, "--gossip=",
		"--data-dir", filepath.Join(base, "node1"), "--placement", placement, "--log-format", "json", "--metrics-addr", "127.0.0.1:0")
	nd.waitReady(t)
	nodeMetrics := metricsLine.FindStringSubmatch(nd.output())
	if nodeMetrics == nil {
		t.Fatalf("the node prints no metrics address:\n%s", nd.output())
	}
	for range 3 {
		if st := testutil.Health(t, nodeAddr); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("node health before it could register: %v, want NOT_SERVING", st)
		}
		time.Sleep(100 * time.Millisecond)
	}

	plLog := filepath.Join(base, "placement.log")
	pl := startProcUntil(t, placementBin, "placement", plLog, "serving on", "start", "--id", "1", "--listen", placement,
		"--data-dir", filepath.Join(base, "placement"), "--initial-ranges", fmt.Sprint(ranges), "--replicas", "1",
		"--expected-nodes", "1", "--log-format", "json")
	pl.waitReady(t)
	plMetrics := metricsLine.FindStringSubmatch(pl.output())
	if plMetrics == nil {
		t.Fatalf("placement prints no metrics address:\n%s", pl.output())
	}
	for name, addr := range map[string]string{"placement": placement, "node": nodeAddr} {
		testutil.WaitFor(t, 30*time.Second, name+" health SERVING", func() bool {
			return testutil.Health(t, addr) == healthpb.HealthCheckResponse_SERVING
		})
	}
	testutil.WaitFor(t, 30*time.Second, "the node's metrics to show it leads its ranges", func() bool {
		m := testutil.Scrape(t, nodeMetrics[1])
		groups, _ := m.Value("shardd_groups", "node", "1")
		leaders, _ := m.Value("shardd_leaders", "node", "1")
		return groups == ranges && leaders == ranges
	})
	pm := testutil.Scrape(t, plMetrics[1])
	if v, _ := pm.Value("shardd_placement_leader", "placement", "1"); v != 1 {
		t.Errorf("shardd_placement_leader{placement=1} = %v, want 1", v)
	}
	if v, _ := pm.Value("shardd_placement_nodes", "state", "live"); v != 1 {
		t.Errorf("shardd_placement_nodes{state=live} = %v, want 1", v)
	}

	if code := nd.terminate(t); code != exitOK {
		t.Errorf("node exit %d on SIGTERM", code)
	}
	if code := pl.terminate(t); code != exitOK {
		t.Errorf("placement exit %d on SIGTERM", code)
	}
	msgs := jsonLog(t, nodeLog)
	for _, want := range []string{"registered with the placement service", "ranges received", "leaderships changed", "stopped cleanly"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("the node's log lacks %q: %q", want, msgs)
		}
	}
	if msgs := jsonLog(t, plLog); !slices.Contains(msgs, "placement leadership taken") {
		t.Errorf("the placement log lacks %q: %q", "placement leadership taken", msgs)
	}
}
