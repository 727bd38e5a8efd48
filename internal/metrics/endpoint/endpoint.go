// Package endpoint serves a process's metrics in the Prometheus text
// format on /metrics: the OpenTelemetry metrics of every node (and
// placement process) the process runs, through the OpenTelemetry
// Prometheus exporter, and the Go runtime's and the process's own.
//
// A process makes one Endpoint and asks it for one MeterProvider per node
// it runs, each with the labels that tell its series apart (node="1"):
// shardd demo runs a placement service and three nodes in one process,
// and one scrape shows all four.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Endpoint is a process's metrics: a Prometheus registry that the
// MeterProviders it hands out export into, and the HTTP server that serves
// it. All methods are safe for concurrent use.
type Endpoint struct {
	reg *prometheus.Registry

	mu        sync.Mutex
	providers []*sdkmetric.MeterProvider
	srv       *http.Server
	lis       net.Listener
}

// New returns an Endpoint that serves nothing until Serve, with the Go
// runtime's and the process's collectors registered.
func New() *Endpoint {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Endpoint{reg: reg}
}

// Open returns a new Endpoint serving on addr (see Serve), or nil if addr
// is empty: metrics are off, and the nil Endpoint's methods do nothing.
func Open(addr string) (*Endpoint, error) {
	if addr == "" {
		return nil, nil
	}
	e := New()
	if _, err := e.Serve(addr); err != nil {
		return nil, err
	}
	return e, nil
}

// URL returns the URL of the metrics, or "" if the endpoint does not
// serve.
func (e *Endpoint) URL() string {
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lis == nil {
		return ""
	}
	return "http://" + e.lis.Addr().String() + Path
}

// Provider returns a new MeterProvider whose metrics the endpoint exports,
// every series labelled with labels (for example node="1"), or nil on a nil
// Endpoint (metrics off: see Open). Give each provider of a process
// distinct labels: two that export the same series make the scrape fail.
func (e *Endpoint) Provider(labels ...attribute.KeyValue) (metric.MeterProvider, error) {
	if e == nil {
		return nil, nil
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(e.reg),
		// The scope (the Go package) and the resource's target_info only
		// repeat what the metric names say; the labels are what matter.
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
		otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(keys(labels)...)),
	)
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(resource.NewSchemaless(labels...)),
		// Exemplars would link histograms to traces, but the text format
		// does not carry them; off, a Record never looks at its context.
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	)
	e.mu.Lock()
	e.providers = append(e.providers, mp)
	e.mu.Unlock()
	return mp, nil
}

// NodeLabel is the label of a shardd node's series.
func NodeLabel(id uint64) attribute.KeyValue {
	return attribute.String("node", strconv.FormatUint(id, 10))
}

// PlacementLabel is the label of a placement process's series.
func PlacementLabel(id uint64) attribute.KeyValue {
	return attribute.String("placement", strconv.FormatUint(id, 10))
}

func keys(kvs []attribute.KeyValue) []attribute.Key {
	out := make([]attribute.Key, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// Handler returns the handler of Path.
func (e *Endpoint) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
}

// Serve serves Path on addr (host:port; port 0 picks a free one) until
// Close, and returns the address it listens on.
func (e *Endpoint) Serve(addr string) (string, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, e.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	if e.srv != nil {
		e.mu.Unlock()
		lis.Close()
		return "", errors.New("metrics: already serving")
	}
	e.srv, e.lis = srv, lis
	e.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), nil
}

// Close stops serving and shuts the providers down. It is idempotent.
func (e *Endpoint) Close() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	srv, providers := e.srv, e.providers
	e.srv, e.providers = nil, nil
	e.mu.Unlock()
	var errs []error
	if srv != nil {
		errs = append(errs, srv.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, mp := range providers {
		errs = append(errs, mp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
