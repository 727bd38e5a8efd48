package node

import (
	"context"
	"sync"
	"time"
)

// byteRate is a token bucket of bytes, shared by every outgoing snapshot
// of the node (Config.SnapshotBytesPerSecond), so that moving replicas to
// a new node, however many at once, takes no more of the node's disk and
// network than it allows. A sender reserves the bytes of its next chunk
// and sleeps off any debt, like golang.org/x/time/rate's Reserve: the
// bucket's level may go below zero, and concurrent senders queue behind
// each other's reservations in arrival order.
type byteRate struct {
	perSec float64 // bytes per second
	burst  float64 // bytes the bucket holds when full

	mu    sync.Mutex
	level float64
	at    time.Time
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

// newByteRate returns a bucket that refills at perSec bytes a second up to
// burst bytes, full at first; nil (no limit) if perSec is not positive.
func newByteRate(perSec, burst int64) *byteRate {
	if perSec <= 0 {
		return nil
	}
	return &byteRate{perSec: float64(perSec), burst: float64(burst), level: float64(burst),
		at: time.Now(), now: time.Now, sleep: sleepCtx}
}

// reserve takes n bytes from the bucket and returns how long the caller
// must wait to repay the debt it leaves. A nil byteRate never waits.
func (l *byteRate) reserve(n int) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.level = min(l.burst, l.level+now.Sub(l.at).Seconds()*l.perSec)
	l.at = now
	l.level -= float64(n)
	if l.level >= 0 {
		return 0
	}
	return time.Duration(-l.level / l.perSec * float64(time.Second))
}

// wait takes n bytes from the bucket, sleeping until the debt it leaves
// is repaid. If ctx ends first, the bytes (never sent) go back into the
// bucket.
func (l *byteRate) wait(ctx context.Context, n int) error {
	d := l.reserve(n)
	if d == 0 {
		return nil
	}
	if err := l.sleep(ctx, d); err != nil {
		l.mu.Lock()
		l.level = min(l.burst, l.level+float64(n))
		l.mu.Unlock()
		return err
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
