package node

import (
	"testing"

	"github.com/shardd/shardd/internal/metrics/endpoint"
)

// BenchmarkClusterWritesMetrics is BenchmarkClusterWrites over 100 groups
// with the nodes' metrics off (no MeterProvider) and on (exported to a
// Prometheus endpoint, as shardd start does), to show what the hot paths'
// records cost. Alternate the runs on a quiet machine:
//
//	go test -run XXX -bench ClusterWritesMetrics -count 5 ./node
func BenchmarkClusterWritesMetrics(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchmarkWrites(b, 100, 256, nil) })
	b.Run("metrics=on", func(b *testing.B) {
		ep := endpoint.New()
		defer ep.Close()
		benchmarkWrites(b, 100, 256, func(cfg *Config) {
			var err error
			if cfg.MeterProvider, err = ep.Provider(endpoint.NodeLabel(cfg.NodeID)); err != nil {
				b.Fatal(err)
			}
		})
	})
}
