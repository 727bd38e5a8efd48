// Package provider sets up OpenTelemetry tracing for a shardd process: the
// SDK tracer provider, its sampler, the OTLP gRPC exporter and the
// in-memory Buffer of recent spans that a node serves to `shardd trace`
// (the Trace gRPC service). The configuration comes from the standard
// OTEL_* environment variables and the flags that override them (Flags).
//
// Tracing is off unless configured: no export, and no operation sampled
// at its root. A node still keeps, in its Buffer, the spans of the
// operations whose callers sampled them, so that `shardd trace` works on
// any cluster; an operation nobody sampled costs nothing (see package
// tracing and the node's hot path).
package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Provider.
type Config struct {
	// Endpoint is the OTLP gRPC collector spans are exported to: host:port
	// (plaintext, as a local Jaeger or collector listens on 4317) or a URL
	// (http:// for plaintext, https:// for TLS). The default value, "",
	// exports nothing.
	Endpoint string
	// Sample is the fraction of operations traced at their root, from 0 to
	// 1: those that arrive untraced (a client that does not trace) or
	// that the process starts itself (a placement operation). Whatever its
	// value, an operation whose caller sampled it is traced, so a trace
	// stays whole across processes (parent-based sampling). The default
	// value is 0.
	Sample float64
	// BufferSpans is how many of the most recent sampled spans are kept in
	// memory (Provider.Buffer), for `shardd trace`. The default value, 0,
	// keeps none.
	BufferSpans int
	// ServiceName is the resource's service.name. The default value is
	// "shardd".
	ServiceName string
	// Attributes are added to the resource, such as the node id
	// (tracing.Node).
	Attributes []attribute.KeyValue
}

// Exports reports whether spans are exported to a collector.
func (c Config) Exports() bool { return c.Endpoint != "" }

// Validate reports the fields that are out of range.
func (c Config) Validate() error {
	if c.Sample < 0 || c.Sample > 1 || c.Sample != c.Sample {
		return fmt.Errorf("tracing: Sample is %v, not a fraction from 0 to 1", c.Sample)
	}
	if c.BufferSpans < 0 {
		return fmt.Errorf("tracing: BufferSpans is %d, not 0 or more", c.BufferSpans)
	}
	return nil
}

// Provider is a process's (or, in a process hosting several nodes, one
// node's) tracer provider.
type Provider struct {
	tp     *sdktrace.TracerProvider
	buffer *Buffer
	cfg    Config
}

// New builds a Provider. The exporter connects lazily: a collector that
// is down costs dropped spans, never a failed start.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "shardd"
	}
	res := resource.NewSchemaless(append([]attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}, cfg.Attributes...)...)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(newSampler(cfg.Sample)),
	}
	p := &Provider{cfg: cfg}
	if cfg.BufferSpans > 0 {
		p.buffer = NewBuffer(cfg.BufferSpans)
		opts = append(opts, sdktrace.WithSpanProcessor(p.buffer))
	}
	if cfg.Endpoint != "" {
		eopts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure()}
		if strings.Contains(cfg.Endpoint, "://") {
			eopts = []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(cfg.Endpoint)}
		}
		exp, err := otlptracegrpc.New(context.Background(), eopts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter to %s: %w", cfg.Endpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	return p, nil
}

// Tracer returns the named tracer.
func (p *Provider) Tracer(name string) trace.Tracer { return p.tp.Tracer(name) }

// TracerProvider returns the provider as the OpenTelemetry API sees it.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// SamplesRoots reports whether the provider samples some operations at
// their root (Config.Sample > 0): when it does not, an untraced request
// needs no span at all, and its handler skips even the sampler.
func (p *Provider) SamplesRoots() bool { return p.cfg.Sample > 0 }

// Buffer returns the in-memory span buffer, or nil if there is none.
func (p *Provider) Buffer() *Buffer { return p.buffer }

// Shutdown exports the spans still queued and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// sampler samples a span whose caller sampled it (parent-based), a root
// span that links to a sampled span (a Paxos value serving traced
// requests: see tracing.StartShared), and a fraction of the other roots.
type sampler struct {
	base sdktrace.Sampler
}

func newSampler(ratio float64) sdktrace.Sampler {
	return sampler{base: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))}
}

func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		for _, l := range p.Links {
			if l.SpanContext.IsSampled() {
				return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
			}
		}
	}
	return s.base.ShouldSample(p)
}

func (s sampler) Description() string { return "LinkAware{" + s.base.Description() + "}" }
