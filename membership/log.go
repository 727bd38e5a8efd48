package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter adapts memberlist's *log.Logger output to slog. Memberlist
// writes one line per message, prefixed with a level tag such as "[DEBUG]"
// or "[WARN]". Every line goes to slog at debug level, as memberlist is
// chatty and routinely logs "[ERR]" for a single failed probe, which is
// normal while a peer is down; the original tag is kept as the "ml_level"
// attribute so that it can still be filtered on.
type slogWriter struct {
	logger *slog.Logger
}

func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{logger: l.With("component", "memberlist")}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	ctx := context.Background()
	if !w.logger.Enabled(ctx, slog.LevelDebug) {
		return len(p), nil
	}
	msg := strings.TrimRight(string(p), "\r\n")
	tag := ""
	if strings.HasPrefix(msg, "[") {
		if end := strings.IndexByte(msg, ']'); end > 0 {
			tag = msg[1:end]
			msg = strings.TrimLeft(msg[end+1:], " ")
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if tag != "" {
		w.logger.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("ml_level", tag))
	} else {
		w.logger.LogAttrs(ctx, slog.LevelDebug, msg)
	}
	return len(p), nil
}
