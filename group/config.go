package group

import (
	"errors"
	"fmt"
)

// Clock is the replica's monotonic clock in nanoseconds. Leases are measured
// on it; nothing else in this package reads time. The node runtime passes a
// monotonic wall clock, the simulation a drifting simulated one.
type Clock interface {
	Now() int64
}

// Rand is the source of randomized election timeouts. *math/rand/v2.Rand
// satisfies it; a seeded one makes a run replayable.
type Rand interface {
	IntN(n int) int
}

// Liveness is node-level support shared by every group on a node pair
// (package liveness implements it). Replica ids are node ids. A replica
// with no Liveness never quiesces.
type Liveness interface {
	// SupportFor reports the epoch at which this node supports node id and
	// until when on this node's Clock; support lapsed is never renewed at
	// the same epoch.
	SupportFor(id uint64) (epoch uint64, until int64)
	// SupportFrom reports the epoch at which node id supports this node
	// and until when, measured conservatively on this node's Clock.
	SupportFrom(id uint64) (epoch uint64, until int64)
}

// Config configures one replica. Times are in ticks of the caller's logical
// clock (Replica.Tick) except the lease, which is in nanoseconds of Clock.
type Config struct {
	// ID is this replica's id, unique within the group and never zero.
	ID uint64
	// ElectionTicks is the number of ticks without word from a leader after
	// which a voter campaigns; the actual timeout is randomized in
	// [ElectionTicks, 2*ElectionTicks). The default value is 10.
	ElectionTicks int
	// HeartbeatTicks is the interval at which a leader renews its lease and
	// retransmits unacknowledged accepts. The default value is 2.
	HeartbeatTicks int
	// LeaseDuration is, in nanoseconds of Clock, how long an acceptor that
	// heard from a leader refuses to promise anyone else. It should be about
	// ElectionTicks ticks long. The default value is 1s.
	LeaseDuration int64
	// MaxClockDrift bounds, in nanoseconds, how much two replicas' clocks
	// may disagree about the length of one LeaseDuration. The leader counts
	// its lease as LeaseDuration-MaxClockDrift from the moment it asked for
	// it, so that it expires before any acceptor's promise does. The default
	// value is LeaseDuration/10.
	MaxClockDrift int64
	// MaxInflight bounds the slots a leader has proposed but not yet seen
	// chosen (the Phase 2 pipeline window). The default value is 256.
	MaxInflight int
	// MaxEntriesPerMsg bounds the entries in one accept or commit message.
	// The default value is 128.
	MaxEntriesPerMsg int
	// MaxCommittedPerReady bounds the chosen entries handed out by one Ready.
	// The default value is 1024.
	MaxCommittedPerReady int
	// LogRetention is how many applied entries stay in the log so that a
	// lagging replica can catch up without a snapshot. The log is truncated
	// once it holds twice as many. The default value is 1024.
	LogRetention uint64
	// Clock and Rand are required.
	Clock Clock
	Rand  Rand
	// Liveness, if set, lets an idle group quiesce: stop ticking and
	// sending, while its leader keeps a lease backed by node support.
	// Its support must not outlast LeaseDuration (see package liveness).
	Liveness Liveness
	// Knobs plant faults for tests that prove the simulation's checkers can
	// fail. Nil in production.
	Knobs *TestingKnobs
}

// TestingKnobs deliberately break the protocol. Each one must make the
// simulation report a violation; see sim's planted-bug tests.
type TestingKnobs struct {
	// ForgetPromiseOnRestart drops the promised ballot when a replica is
	// rebuilt from durable state, as if it had never been persisted.
	ForgetPromiseOnRestart bool
	// IgnoreAcceptedValues makes a new leader fill every open slot with its
	// own no-op instead of the highest-ballot value it learned in Phase 1.
	IgnoreAcceptedValues bool
}

// DefaultConfig returns a Config with every default set except ID, Clock
// and Rand.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults fills every zero field that has a default.
func (c *Config) EnsureDefaults() {
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 2
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 1_000_000_000
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = c.LeaseDuration / 10
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 256
	}
	if c.MaxEntriesPerMsg == 0 {
		c.MaxEntriesPerMsg = 128
	}
	if c.MaxCommittedPerReady == 0 {
		c.MaxCommittedPerReady = 1024
	}
	if c.LogRetention == 0 {
		c.LogRetention = 1024
	}
}

// Validate reports the first field that is missing or in conflict.
func (c *Config) Validate() error {
	switch {
	case c.ID == 0:
		return errors.New("group: Config.ID must not be zero")
	case c.Clock == nil:
		return errors.New("group: Config.Clock is required")
	case c.Rand == nil:
		return errors.New("group: Config.Rand is required")
	case c.ElectionTicks <= 0 || c.HeartbeatTicks <= 0:
		return fmt.Errorf("group: ElectionTicks (%d) and HeartbeatTicks (%d) must be positive", c.ElectionTicks, c.HeartbeatTicks)
	case c.HeartbeatTicks >= c.ElectionTicks:
		return fmt.Errorf("group: HeartbeatTicks (%d) must be less than ElectionTicks (%d)", c.HeartbeatTicks, c.ElectionTicks)
	case c.LeaseDuration <= 0:
		return fmt.Errorf("group: LeaseDuration (%d) must be positive", c.LeaseDuration)
	case c.MaxClockDrift < 0 || c.MaxClockDrift >= c.LeaseDuration:
		return fmt.Errorf("group: MaxClockDrift (%d) must be in [0, LeaseDuration=%d)", c.MaxClockDrift, c.LeaseDuration)
	case c.MaxInflight <= 0 || c.MaxEntriesPerMsg <= 0 || c.MaxCommittedPerReady <= 0:
		return fmt.Errorf("group: MaxInflight (%d), MaxEntriesPerMsg (%d) and MaxCommittedPerReady (%d) must be positive",
			c.MaxInflight, c.MaxEntriesPerMsg, c.MaxCommittedPerReady)
	case c.LogRetention == 0:
		return errors.New("group: LogRetention must be positive")
	}
	return nil
}
