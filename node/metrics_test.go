package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/metrics/endpoint"
	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
)

// TestMetricsMoveUnderLoad scrapes the /metrics of a three-node cluster
// whose nodes export into one endpoint (as shardd demo's do), before and
// after a write load, through unary calls and the stream, and checks with
// Prometheus's text parser that the main series exist and move.
func TestMetricsMoveUnderLoad(t *testing.T) {
	ep, err := endpoint.Open("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	c := newTestCluster(t, 3, splitRanges(1, 3), func(cfg *Config) {
		var err error
		if cfg.MeterProvider, err = ep.Provider(endpoint.NodeLabel(cfg.NodeID)); err != nil {
			t.Fatal(err)
		}
		cfg.LoadWindow = 200 * time.Millisecond
	})
	put := func(key string) {
		t.Helper()
		err := c.do(1, func(kv kvpb.KVClient) error {
			_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte(key), Value: []byte("v")})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("warm-up") // a leader, and its lease
	lead := c.leaderFor(1)
	node := fmt.Sprint(lead)
	before := testutil.Scrape(t, ep.URL()) // also starts the range's load tracking

	const unary, streamed = 50, 100
	for i := range unary {
		put(fmt.Sprintf("a%03d", i))
	}
	st, err := c.clients[lead].Stream(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var frame kvpb.RequestFrame
	for i := range streamed {
		frame.Requests = append(frame.Requests, &kvpb.Request{Id: uint64(i + 1),
			Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{Key: fmt.Appendf(nil, "s%03d", i), Value: []byte("v")}}})
	}
	if err := st.Send(&frame); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < streamed; {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got += len(resp.Responses)
	}
	st.CloseSend()
	time.Sleep(250 * time.Millisecond) // a whole load window
	after := testutil.Scrape(t, ep.URL())

	// Counters and histograms (by their counts) that the load moves, on
	// the leader, or on any node (no labels).
	for _, m := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{"shardd_paxos_proposals_total", []string{"node", node}, 1},
		{"shardd_paxos_proposed_commands_total", []string{"node", node}, unary + streamed},
		{"shardd_paxos_commits_total", []string{"node", node}, 1},
		{"shardd_paxos_commands_per_value", []string{"node", node}, 1},
		{"shardd_kv_request_duration_seconds", []string{"method", "put", "code", "OK"}, unary + streamed},
		{"shardd_wal_fsync_duration_seconds", []string{"node", node}, 1},
		{"shardd_wal_records_per_fsync", []string{"node", node}, 1},
		{"shardd_engine_commits_total", []string{"node", node}, 1},
		{"shardd_transport_messages_per_frame", []string{"node", node}, 1},
		{"shardd_transport_messages_sent_total", []string{"node", node}, 1},
		{"shardd_transport_frames_received_total", nil, 1},
		{"shardd_transport_sent_bytes_total", []string{"node", node}, 1},
	} {
		b, _ := before.Value(m.name, m.labels...)
		a, ok := after.Value(m.name, m.labels...)
		if !ok || a-b < m.atLeast {
			t.Errorf("%s%v went from %v to %v (found %v); want a rise of at least %v", m.name, m.labels, b, a, ok, m.atLeast)
		}
	}
	// Gauges.
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"shardd_groups", nil, 3},
		{"shardd_leaders", nil, 1},
		{"shardd_leaders", []string{"node", node}, 1},
		{"shardd_leases", []string{"node", node}, 1},
	} {
		if v, ok := after.Value(m.name, m.labels...); !ok || v != m.want {
			t.Errorf("%s%v = %v (found %v), want %v", m.name, m.labels, v, ok, m.want)
		}
	}
	if v, ok := after.Value("shardd_range_ops_per_second", "node", node, "range", "1"); !ok || v <= 0 {
		t.Errorf("shardd_range_ops_per_second{range=\"1\"} on the leader = %v (found %v), want > 0", v, ok)
	}
	if v, _ := after.Value("shardd_node_ops_per_second", "node", node); v <= 0 {
		t.Errorf("shardd_node_ops_per_second on the leader = %v, want > 0", v)
	}
	// Series that exist whatever the load.
	for _, name := range []string{"shardd_groups_quiesced", "shardd_scheduler_queue", "shardd_mailbox_writes", "shardd_mailbox_messages",
		"shardd_transport_queue_messages", "shardd_transport_queue_bytes", "shardd_transport_lost_peers", "shardd_transport_dropped_messages_total",
		"shardd_snapshot_sent_bytes_total", "shardd_snapshot_received_bytes_total", "shardd_leaderships_gained_total", "shardd_leaderships_lost_total",
		"shardd_engine_background_errors_total"} {
		if _, ok := after.Value(name, "node", node); !ok {
			t.Errorf("no series %s{node=%q}", name, node)
		}
	}
	if t.Failed() {
		for name := range after {
			t.Logf("scraped: %s", name)
		}
	}
}
