package membership

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip timing profiles accepted by Config.Profile.
const (
	// ProfileLocal uses memberlist.DefaultLocalConfig: probes every second
	// with a 200ms timeout and a short suspicion period, so a crashed node
	// is declared dead within a few seconds. It suits loopback clusters,
	// tests and a single rack with a fast, quiet network.
	ProfileLocal = "local"
	// ProfileLAN uses memberlist.DefaultLANConfig: a 500ms probe timeout,
	// a longer suspicion period and 10s TCP timeouts, trading slower
	// failure detection for fewer false positives on a busier network.
	ProfileLAN = "lan"
)

// DefaultGossipPort is memberlist's customary port, used by DefaultConfig.
const DefaultGossipPort = 7946

// DefaultCluster is the cluster label used when Config.Cluster is empty.
const DefaultCluster = "shardd"

// Config configures one node's membership. Start applies EnsureDefaults to a
// copy, so zero values mean "default" everywhere except BindPort, where 0
// asks the kernel for a free port.
type Config struct {
	// NodeID is this node's identity, the same id its Paxos replicas use.
	// It must be non-zero and unique: the gossip node name is derived from
	// it ("node-<id>"), which is what lets a restarted process with the same
	// id replace its previous incarnation instead of appearing as a second
	// member.
	NodeID uint64
	// BindAddr is the IP address the gossip UDP and TCP listeners bind to.
	// It must be an IP literal, not a host name. The default is 127.0.0.1,
	// so that nothing is exposed beyond the host unless asked for.
	BindAddr string
	// BindPort is the gossip port (UDP and TCP). DefaultConfig sets 7946;
	// 0 picks a free port, which GossipAddr then reports.
	BindPort int
	// AdvertiseAddr is the IP address other members use to reach this node.
	// The default is BindAddr. It must be set explicitly when BindAddr is a
	// wildcard (0.0.0.0 or ::), because a wildcard cannot be dialled and
	// memberlist would otherwise guess a private interface address.
	AdvertiseAddr string
	// Seeds are host:port gossip addresses of existing members to join
	// through. Empty starts a new cluster. An entry equal to this node's own
	// gossip address is ignored, so every node can share one seed list.
	Seeds []string
	// GRPCAddr is this node's gRPC address (host:port), gossiped to every
	// member so that they can reach it by node id (see Membership.Addr).
	GRPCAddr string
	// Profile selects memberlist's timing: ProfileLocal (the default) or
	// ProfileLAN.
	Profile string
	// Cluster is memberlist's packet label. Nodes only talk to nodes with
	// the same label, so two clusters that accidentally share seeds or
	// ports (or another memberlist-based program on the same port) cannot
	// merge. The default is DefaultCluster; at most 255 bytes.
	Cluster string
	// Logger receives memberlist's own log output at debug level. The
	// default is slog.Default().
	Logger *slog.Logger
	// JoinAttempts bounds how many times Start tries to reach the seeds
	// before giving up; seeds may still be starting. The default is 5.
	JoinAttempts int
	// JoinBackoff is the pause after the first failed join attempt; it
	// doubles after each further failure, up to 2s. The default is 250ms.
	JoinBackoff time.Duration
	// BroadcastTimeout bounds how long UpdateMeta and Leave wait for their
	// gossip message to be handed to other members. The default is 2s.
	BroadcastTimeout time.Duration
}

// maxJoinBackoff caps the doubling join backoff so that a bounded number of
// attempts also takes a bounded, predictable time.
const maxJoinBackoff = 2 * time.Second

// DefaultConfig returns a Config with every default filled in and the gossip
// port set to DefaultGossipPort. NodeID and GRPCAddr must still be set.
func DefaultConfig() Config {
	c := Config{BindPort: DefaultGossipPort}
	c.EnsureDefaults()
	return c
}

// EnsureDefaults fills in zero-valued fields. BindPort is left alone because
// its zero value (pick a free port) is meaningful.
func (c *Config) EnsureDefaults() {
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if c.Profile == "" {
		c.Profile = ProfileLocal
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.JoinAttempts == 0 {
		c.JoinAttempts = 5
	}
	if c.JoinBackoff == 0 {
		c.JoinBackoff = 250 * time.Millisecond
	}
	if c.BroadcastTimeout == 0 {
		c.BroadcastTimeout = 2 * time.Second
	}
}

// ConfigError reports an invalid Config field. Field is the Go field name,
// so that the message points at what to fix.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("membership: invalid Config.%s: %s", e.Field, e.Reason)
}

func cfgErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks the configuration as Start would use it, that is after
// EnsureDefaults (it works on a copy and does not modify c). The returned
// error, if any, is a *ConfigError naming the first offending field.
func (c Config) Validate() error {
	c.EnsureDefaults()
	if c.NodeID == 0 {
		return cfgErr("NodeID", "must be non-zero")
	}
	if c.GRPCAddr == "" {
		return cfgErr("GRPCAddr", "required: peers find this node's gRPC server through it")
	}
	if err := checkHostPort(c.GRPCAddr); err != nil {
		return cfgErr("GRPCAddr", "%q: %v", c.GRPCAddr, err)
	}
	if net.ParseIP(c.BindAddr) == nil {
		return cfgErr("BindAddr", "%q is not an IP address (memberlist binds to it directly)", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return cfgErr("BindPort", "%d is out of range [0, 65535]", c.BindPort)
	}
	adv := net.ParseIP(c.AdvertiseAddr)
	if adv == nil {
		return cfgErr("AdvertiseAddr", "%q is not an IP address", c.AdvertiseAddr)
	}
	if adv.IsUnspecified() {
		return cfgErr("AdvertiseAddr", "%q cannot be dialled by peers; set a concrete address when binding to a wildcard", c.AdvertiseAddr)
	}
	for i, s := range c.Seeds {
		if err := checkHostPort(s); err != nil {
			return cfgErr("Seeds", "entry %d %q: %v", i, s, err)
		}
	}
	if c.Profile != ProfileLocal && c.Profile != ProfileLAN {
		return cfgErr("Profile", "%q is not %q or %q", c.Profile, ProfileLocal, ProfileLAN)
	}
	if len(c.Cluster) > memberlist.LabelMaxSize {
		return cfgErr("Cluster", "%d bytes is over memberlist's %d-byte label limit", len(c.Cluster), memberlist.LabelMaxSize)
	}
	if c.JoinAttempts < 1 {
		return cfgErr("JoinAttempts", "%d is below 1", c.JoinAttempts)
	}
	if c.JoinBackoff < 0 {
		return cfgErr("JoinBackoff", "%v is negative", c.JoinBackoff)
	}
	if c.BroadcastTimeout < 0 {
		return cfgErr("BroadcastTimeout", "%v is negative", c.BroadcastTimeout)
	}
	// The gRPC address is the only unbounded part of the gossiped meta, so
	// an oversized meta is its fault.
	if _, err := encodeMeta(wireMeta{ID: c.NodeID, GRPC: c.GRPCAddr}); err != nil {
		return cfgErr("GRPCAddr", "%v", err)
	}
	return nil
}

// checkHostPort requires an explicit host and numeric port, so that a typo
// is caught at startup rather than turning into a silent default.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("missing host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not in [1, 65535]", port)
	}
	return nil
}

// nodeName is the memberlist node name for a node id. Memberlist identifies
// members by name, so deriving it from the id makes a restarted process
// (same id, possibly a new port) the same member.
func nodeName(id uint64) string {
	return "node-" + strconv.FormatUint(id, 10)
}

// parseNodeName is the inverse of nodeName.
func parseNodeName(name string) (uint64, bool) {
	const prefix = "node-"
	if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
		return 0, false
	}
	id, err := strconv.ParseUint(name[len(prefix):], 10, 64)
	if err != nil || id == 0 {
		return 0, false
	}
	return id, true
}
