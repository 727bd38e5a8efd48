package service

import (
	"bytes"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/internal/tracing/provider"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestSplitIsTraced: with tracing on, a split through placement is a trace
// of its own, whose Admin call reaches the range's leader with its
// context; the split command's Paxos value is traced there and on the
// followers, as a client's write would be.
func TestSplitIsTraced(t *testing.T) {
	pc := startPlacement(t, 1, func(c *Config) {
		c.InitialRanges = 2
		c.Tracing = provider.Config{Sample: 1, BufferSpans: 1024}
	})
	dc := startNodes(t, 3, pc)
	waitCreated(t, pc, dc, 2)
	c := pc.client()
	before, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	key := append(bytes.Clone(before[1].StartKey), 'm')
	if _, err := c.SplitRange(tctx(t), key); err != nil {
		t.Fatal(err)
	}
	var split sdktrace.ReadOnlySpan
	for _, s := range pc.servers[1].node.Load().TraceBuffer().Spans() {
		if s.Name() == "placement.split" {
			split = s
		}
	}
	if split == nil {
		t.Fatal("no placement.split span in the placement process")
	}
	id := split.SpanContext().TraceID()
	// The followers' spans end once they reply, after the split returned.
	testutil.WaitFor(t, 5*time.Second, "the split's spans on the nodes", func() bool {
		var admin, values, acceptors int
		for _, n := range dc.nodes {
			for _, s := range n.TraceBuffer().Trace(id) {
				switch s.Name() {
				case "/shardd.kv.v1.Admin/SplitRange":
					if s.Parent().SpanID() == split.SpanContext().SpanID() {
						admin++
					}
				case "paxos.value":
					values++
				case "paxos.acceptor":
					acceptors++
				}
			}
		}
		return admin >= 1 && values >= 1 && acceptors >= 2
	})
}
