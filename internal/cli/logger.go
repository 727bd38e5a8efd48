package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// LogFormat is the value of --log-format: how a process writes its logs.
type LogFormat string

const (
	// LogText is slog's text format, key=value pairs: for people.
	LogText LogFormat = "text"
	// LogJSON is one JSON object a line: for log collectors.
	LogJSON LogFormat = "json"
)

// ParseLogFormat checks a --log-format value: text or json; empty is the
// default, text.
func ParseLogFormat(s string) (LogFormat, error) {
	switch f := LogFormat(s); f {
	case "":
		return LogText, nil
	case LogText, LogJSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown log format %q: text or json", s)
}

// NewLogger returns a logger that writes to w in format f, from level up.
func (f LogFormat) NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if f == LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// RegisterLogFormatFlag defines --log-format, the same on every command
// that runs a server.
func RegisterLogFormatFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "log-format", string(LogText), "log `format`: text (key=value) or json (one object a line)")
}

// RegisterMetricsAddrFlag defines --metrics-addr, the same on every
// command that runs a server. Its default, a free loopback port, keeps
// several processes on one machine from colliding and the metrics off the
// network; the port is printed at start, and a scraper wants a fixed one.
func RegisterMetricsAddrFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "metrics-addr", "127.0.0.1:0", "serve Prometheus metrics on http://`host:port`/metrics (port 0 picks a free port, printed at start); empty disables")
}
