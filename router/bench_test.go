package router

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkPutParallel writes through one shared Client from many
// goroutines over a 3-node cluster with 8 ranges, and reports the
// requests per frame the shared streams achieved.
func BenchmarkPutParallel(b *testing.B) {
	c := newCluster(b, 3, splitRanges(8, 3, 1))
	cl := c.client(Config{})
	var n atomic.Int64
	value := make([]byte, 100)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := cl.Put(context.Background(), fmt.Appendf(nil, "k%04d/%d", i%10000, i), value); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(cl.Stats().RequestsPerFrame(), "requests/frame")
}
