package provider

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// Flags are the tracing flags of shardd and placement commands. Unset,
// each falls back to the standard OpenTelemetry environment variable.
type Flags struct {
	endpoint    string
	sample      float64
	sampleGiven bool
}

// Register defines --otlp-endpoint and --trace-sample on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.RegisterExport(fs)
	fs.Func("trace-sample", "trace this `fraction` (0 to 1) of the operations that arrive untraced; operations a caller traced are always traced. Default from $OTEL_TRACES_SAMPLER and $OTEL_TRACES_SAMPLER_ARG, else 0", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v > 1 {
			return fmt.Errorf("%q is not a fraction from 0 to 1", s)
		}
		f.sample, f.sampleGiven = v, true
		return nil
	})
}

// RegisterExport defines --otlp-endpoint alone, for a command that
// decides its sampling itself (shardd trace samples its one operation).
func (f *Flags) RegisterExport(fs *flag.FlagSet) {
	fs.StringVar(&f.endpoint, "otlp-endpoint", "", "export spans to the OTLP gRPC collector at this `host:port` or URL (Jaeger and the OpenTelemetry Collector listen on 4317); default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT, else none")
}

// Config returns the configuration the flags and the environment (read
// with getenv, os.Getenv in production) give, the flags first, on top of
// base.
func (f *Flags) Config(base Config, getenv func(string) string) (Config, error) {
	cfg, err := FromEnv(base, getenv)
	if err != nil {
		return cfg, err
	}
	if f.endpoint != "" {
		cfg.Endpoint = f.endpoint
	}
	if f.sampleGiven {
		cfg.Sample = f.sample
	}
	return cfg, nil
}

// FromEnv applies the standard OpenTelemetry variables to base:
// OTEL_SDK_DISABLED, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or
// OTEL_EXPORTER_OTLP_ENDPOINT), OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG. Every sampler is parent-based here, since a
// node must trace what its caller traced for a trace to be whole:
// "always_off" samples no root, "always_on" every root, "traceidratio"
// the fraction OTEL_TRACES_SAMPLER_ARG (1 if unset).
func FromEnv(base Config, getenv func(string) string) (Config, error) {
	cfg := base
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		cfg.Endpoint, cfg.Sample = "", 0
		return cfg, nil
	}
	if e := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); e != "" {
		cfg.Endpoint = e
	} else if e := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); e != "" {
		cfg.Endpoint = e
	}
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	switch strings.TrimPrefix(name, "parentbased_") {
	case "":
	case "always_on":
		cfg.Sample = 1
	case "always_off":
		cfg.Sample = 0
	case "traceidratio":
		cfg.Sample = 1
		if arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); arg != "" {
			v, err := strconv.ParseFloat(arg, 64)
			if err != nil || v < 0 || v > 1 {
				return cfg, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q is not a fraction from 0 to 1", arg)
			}
			cfg.Sample = v
		}
	default:
		return cfg, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: shardd knows always_on, always_off, traceidratio and their parentbased_ forms", name)
	}
	return cfg, nil
}
