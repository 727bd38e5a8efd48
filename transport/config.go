package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
)

// Config configures a Transport. Sizes are in bytes and times in wall-clock
// durations: unlike group/, the transport is I/O and lives in real time.
type Config struct {
	// NodeID is this node's id. Frames carry it as their sender, and the
	// receiving side refuses frames addressed to any other node, so that a
	// stale address that now belongs to another process cannot deliver
	// messages to the wrong node. It is required and never zero.
	NodeID uint64

	// MaxQueueBytes bounds, per destination node, the messages that are
	// queued or in flight. A message costs its encoded size plus the fixed
	// in-memory size of a paxospb.Message, so that the bound holds for
	// memory too: counting only the encoded size would let tiny messages
	// such as heartbeats (about ten bytes on the wire, two hundred in
	// memory) use twenty times the budget. When the bound would be exceeded
	// Send drops the message and counts it, because Paxos retransmits and a
	// sender must never block on a slow peer. The default value is 16 MiB.
	MaxQueueBytes int

	// MaxFrameBytes bounds the encoded size of one frame, the unit of one
	// stream send. A single message larger than that goes alone in its own
	// frame. The receiving gRPC server's MaxRecvMsgSize (4 MiB unless set)
	// must exceed the largest single message. The default value is 1 MiB.
	MaxFrameBytes int

	// DialTimeout bounds how long opening a stream to a peer waits for the
	// connection to become ready, both for the message stream and for
	// SendSnapshot. It is also gRPC's minimum connect timeout. The default
	// value is 1s.
	DialTimeout time.Duration

	// ReconnectBackoff is the first delay before redialing a peer after a
	// failed dial or a broken stream; it doubles after each further failure
	// up to MaxReconnectBackoff and resets after a frame is sent. The
	// default value is 100ms.
	ReconnectBackoff time.Duration

	// MaxReconnectBackoff caps ReconnectBackoff's growth. The default value
	// is 1s.
	MaxReconnectBackoff time.Duration

	// DialOptions are appended to the transport's own options when it
	// dials a peer, so they override them. The transport's own are
	// insecure credentials (loopback and trusted networks only) and connect
	// parameters derived from DialTimeout and the backoffs. The default
	// value is nil.
	DialOptions []grpc.DialOption

	// FaultSeed seeds the random drop decisions of Faults.SetDrop, together
	// with the destination, so that a failing test replays exactly. The
	// default value is 0.
	FaultSeed uint64

	// Logger receives connection events (connected, lost, dial failures).
	// The default value is slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the transport's metrics: messages per frame,
	// queue depths, traffic and drops (see metrics.go). The default value
	// is nil: no metrics.
	MeterProvider metric.MeterProvider
}

// DefaultConfig returns a Config with every default set except NodeID.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults fills every zero field that has a default.
func (c *Config) EnsureDefaults() {
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 16 << 20
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 1 << 20
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.ReconnectBackoff == 0 {
		c.ReconnectBackoff = 100 * time.Millisecond
	}
	if c.MaxReconnectBackoff == 0 {
		c.MaxReconnectBackoff = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first field that is missing or in conflict.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("transport: Config.NodeID must not be zero")
	case c.MaxQueueBytes <= 0 || c.MaxFrameBytes <= 0:
		return fmt.Errorf("transport: MaxQueueBytes (%d) and MaxFrameBytes (%d) must be positive", c.MaxQueueBytes, c.MaxFrameBytes)
	case c.MaxFrameBytes > c.MaxQueueBytes:
		return fmt.Errorf("transport: MaxFrameBytes (%d) must not exceed MaxQueueBytes (%d)", c.MaxFrameBytes, c.MaxQueueBytes)
	case c.DialTimeout <= 0:
		return fmt.Errorf("transport: DialTimeout (%v) must be positive", c.DialTimeout)
	case c.ReconnectBackoff <= 0:
		return fmt.Errorf("transport: ReconnectBackoff (%v) must be positive", c.ReconnectBackoff)
	case c.MaxReconnectBackoff < c.ReconnectBackoff:
		return fmt.Errorf("transport: MaxReconnectBackoff (%v) must be at least ReconnectBackoff (%v)", c.MaxReconnectBackoff, c.ReconnectBackoff)
	}
	return nil
}
