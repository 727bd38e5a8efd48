package transport

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTransport measures one link's throughput of heartbeat-sized
// messages between two nodes on loopback, sent by b.RunParallel's
// goroutines. It reports messages delivered per second, messages per
// frame, encoded bytes per message, and the share of Sends refused because
// the queue was full.
//
// In "saturate" the producers ignore refusals, as the node runtime does
// (Paxos retransmits), so they outrun the link and msgs/s is its capacity.
// In "paced" a refused Send is retried after yielding, so every op is one
// delivered message and ns/op is the cost of one.
func BenchmarkTransport(b *testing.B) {
	b.Run("saturate", func(b *testing.B) { benchmarkTransport(b, false) })
	b.Run("paced", func(b *testing.B) { benchmarkTransport(b, true) })
}

func benchmarkTransport(b *testing.B, paced bool) {
	nodes := startCluster(b, 2, false, nil)
	src, dst := nodes[0], nodes[1]
	// Warm up: open the stream.
	src.tr.Send(heartbeat(1, 2, 1, 1))
	waitFor(b, "the stream", func() bool { return dst.h.count.Load() == 1 }, dst.h)
	before, recvBefore := src.tr.Stats(), dst.h.count.Load()

	var group atomic.Uint64
	var ops atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := group.Add(1)
		var seq uint64
		n := int64(0)
		for pb.Next() {
			seq++
			m := heartbeat(1, 2, g, seq)
			for !src.tr.Send(m) && paced {
				runtime.Gosched()
			}
			n++
		}
		ops.Add(n)
	})
	waitFor(b, "the queue to drain", func() bool {
		s := src.tr.Stats()
		return s.QueuedMessages == 0 && dst.h.count.Load()-recvBefore == int64(s.MessagesSent-before.MessagesSent)
	})
	elapsed := time.Since(start)
	b.StopTimer()

	after := src.tr.Stats()
	delivered := dst.h.count.Load() - recvBefore
	frames := after.FramesSent - before.FramesSent
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "msgs/s")
	if frames > 0 {
		b.ReportMetric(float64(delivered)/float64(frames), "msgs/frame")
		b.ReportMetric(float64(after.BytesSent-before.BytesSent)/float64(delivered), "B/msg")
	}
	refused := after.Dropped.QueueFull - before.Dropped.QueueFull
	b.ReportMetric(float64(refused)/float64(ops.Load()), "refused/op")
}
