package cli

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// StopClock returns a function that tells how long ago ctx ended: the
// moment a signal asked the process to stop (0 while it has not).
func StopClock(ctx context.Context) func() time.Duration {
	var at atomic.Int64 // UnixNano
	context.AfterFunc(ctx, func() { at.Store(time.Now().UnixNano()) })
	return func() time.Duration {
		if t := at.Load(); t != 0 {
			return time.Since(time.Unix(0, t))
		}
		return 0
	}
}

// LogStopped logs that the process stopped cleanly, its last line, and
// how long after the signal that asked it to (sinceSignal 0: no signal
// did).
func LogStopped(logger *slog.Logger, sinceSignal time.Duration) {
	if sinceSignal == 0 {
		logger.Info("stopped cleanly")
		return
	}
	logger.Info("stopped cleanly", "since_signal", sinceSignal.Round(time.Millisecond))
}
