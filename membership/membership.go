// Package membership tells every shardd node which other nodes are up and
// how to reach them. Nodes gossip liveness and a small record about
// themselves (NodeMeta: node id, gRPC address, load) with
// github.com/hashicorp/memberlist, a SWIM implementation: failure detection
// by randomized probing with indirect probes and a suspicion period, and
// dissemination by piggybacked gossip plus periodic full-state push/pull.
//
// A node's memberlist name is derived from its NodeID ("node-<id>"), so the
// id is the member's identity: a process restarted with the same id on a
// different address replaces its previous incarnation rather than appearing
// next to it.
//
// Membership.Addr maps a node id to the gRPC address of a live member, which
// is what the transport needs to dial a peer replica.
package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as this node sees it.
//
// There is no "suspect" state: memberlist v0.7 does not expose suspicion
// through its API (the State field of the Node values it hands out is
// shadowed by an internal one and always reads alive), so a suspected
// member is reported as alive until it is declared dead.
type State int

const (
	// StateAlive is a member that is up, or suspected but not yet declared
	// dead.
	StateAlive State = iota + 1
	// StateDead is a member that failure detection declared dead: it
	// stopped answering probes without leaving.
	StateDead
	// StateLeft is a member that left gracefully with Leave.
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

// Member is one node as seen through gossip.
type Member struct {
	NodeMeta
	// GossipAddr is the member's memberlist host:port.
	GossipAddr string
	// State is StateAlive for members returned by Members and carried by
	// NodeJoined and NodeUpdated, and StateDead or StateLeft in NodeLeft.
	State State
	// Leaving is set once the member has announced a graceful Leave; it is
	// still up, but should not be given new work.
	Leaving bool
}

// Events receives membership changes. Calls come from one goroutine owned
// by the Membership, in the order memberlist observed the changes, and never
// while memberlist holds a lock: a handler may call any Membership method
// except Shutdown (which waits for the handler to return). A slow handler
// only delays later events. The local node is reported too: it joins during
// Start and leaves on Leave.
type Events interface {
	// NodeJoined reports a member that became alive: a new node, or one
	// that was dead or had left and came back (possibly at a new address).
	NodeJoined(Member)
	// NodeUpdated reports a change in a live member's NodeMeta or its
	// Leaving flag.
	NodeUpdated(Member)
	// NodeLeft reports a member that is gone: Member.State is StateLeft if
	// it left with Leave and StateDead if failure detection declared it
	// dead. Member carries its last known metadata.
	NodeLeft(Member)
}

var (
	// ErrClosed is returned by methods called after Shutdown.
	ErrClosed = errors.New("membership: shut down")
	// ErrLeft is returned by UpdateMeta after Leave: memberlist ignores
	// updates about a node that has left.
	ErrLeft = errors.New("membership: node has left the cluster")
	// ErrNoSeedReachable is wrapped by Start's error when none of the
	// configured seeds could be joined within Config.JoinAttempts.
	ErrNoSeedReachable = errors.New("membership: no seed reachable")
)

const (
	// deadNodeReclaimTime is memberlist's DeadNodeReclaimTime: how long
	// after a member is declared dead another process may take over its
	// name from a different address. Memberlist's default (0) forbids that
	// for good, which would lock a node that restarts on a new port out of
	// the cluster. Shardd node ids are Paxos replica identities that must
	// never run twice at once, so once the failure detector has declared
	// the old process dead, the newest claimant is the node: reclaim almost
	// at once.
	deadNodeReclaimTime = time.Millisecond
	// reassertInterval and reassertWindow bound how a restarted node keeps
	// pushing its state to the members while they still believe its
	// previous incarnation is alive at the old address (see reassert).
	// The window comfortably exceeds the worst-case time to declare the old
	// incarnation dead under either profile.
	reassertInterval = 500 * time.Millisecond
	reassertWindow   = 60 * time.Second
	// leavePropagateIntervals is how many gossip intervals Leave waits for
	// each of its messages to spread (see Leave).
	leavePropagateIntervals = 3
)

// Membership is a running member of the gossip cluster. Its methods are
// safe for concurrent use.
type Membership struct {
	cfg        Config
	name       string
	log        *slog.Logger
	list       *memberlist.Memberlist
	gossipAddr string
	dispatch   *dispatcher
	// gossipInterval is the profile's memberlist GossipInterval.
	gossipInterval time.Duration

	// selfAddr is gossipAddr for the merge delegate, which memberlist may
	// call before Start has finished.
	selfAddr atomic.Pointer[string]
	// restarted records that a peer's state, seen during a join, shows
	// this node's name at another address: this process replaces an
	// earlier incarnation. staleSelf records that the peer still considers
	// that incarnation alive (or suspect).
	restarted atomic.Bool
	staleSelf atomic.Bool

	// metaMu guards meta and metaBuf. It is never held while calling into
	// memberlist, which calls NodeMeta with its own locks held.
	metaMu  sync.Mutex
	meta    wireMeta
	metaBuf []byte

	// idxMu guards members: the live members by node id, maintained from
	// memberlist's event callbacks. Reading memberlist's own Node values
	// outside those callbacks would race with its updates to them.
	idxMu   sync.RWMutex
	members map[uint64]Member

	// lifeMu orders Leave and Shutdown (memberlist panics on Leave after
	// Shutdown) against each other and against the methods that use the
	// memberlist (shared).
	lifeMu sync.RWMutex
	left   bool
	closed bool
	stopc  chan struct{}
	wg     sync.WaitGroup
}

// Start creates this node's memberlist and joins the cluster through
// cfg.Seeds. With no seeds it starts a new cluster. With seeds it tries them
// up to cfg.JoinAttempts times with a doubling backoff, and fails (wrapping
// ErrNoSeedReachable) if none answers; joining through any one seed is
// enough. ev may be nil; it receives events only once Start has succeeded.
func Start(cfg Config, ev Events) (*Membership, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Membership{
		cfg:      cfg,
		name:     nodeName(cfg.NodeID),
		log:      cfg.Logger.With("component", "membership", "node", cfg.NodeID),
		dispatch: newDispatcher(ev),
		meta:     wireMeta{ID: cfg.NodeID, GRPC: cfg.GRPCAddr},
		members:  make(map[uint64]Member),
		stopc:    make(chan struct{}),
	}
	buf, err := encodeMeta(m.meta)
	if err != nil { // Validate checked this already.
		m.dispatch.stop()
		return nil, err
	}
	m.metaBuf = buf

	mlc := memberlistConfig(cfg)
	mlc.Delegate = metaDelegate{m}
	mlc.Events = eventDelegate{m}
	mlc.Merge = mergeDelegate{m}
	list, err := memberlist.Create(mlc)
	if err != nil {
		m.dispatch.stop()
		return nil, fmt.Errorf("membership: start gossip on %s: %w",
			net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	m.list = list
	m.gossipInterval = mlc.GossipInterval
	// Create replaced a zero BindPort/AdvertisePort with the port it bound.
	m.gossipAddr = net.JoinHostPort(net.ParseIP(mlc.AdvertiseAddr).String(), strconv.Itoa(mlc.AdvertisePort))
	addr := m.gossipAddr
	m.selfAddr.Store(&addr)

	seeds := m.otherSeeds(cfg.Seeds)
	if len(seeds) > 0 {
		if err := m.join(seeds); err != nil {
			_ = m.list.Shutdown()
			m.dispatch.stop()
			return nil, err
		}
	}
	if m.restarted.Load() {
		m.log.Info("cluster lists an earlier incarnation of this node at another address; re-announcing until it is replaced")
		m.wg.Add(1)
		go m.reassert()
	}
	m.dispatch.start()
	m.log.Debug("membership started", "gossip_addr", m.gossipAddr, "seeds", seeds)
	return m, nil
}

// memberlistConfig maps cfg onto the chosen memberlist profile. Only
// addressing, identity, the cluster label, dead-node reclaim and logging are
// changed; timing is the profile's.
func memberlistConfig(cfg Config) *memberlist.Config {
	var c *memberlist.Config
	if cfg.Profile == ProfileLAN {
		c = memberlist.DefaultLANConfig()
	} else {
		c = memberlist.DefaultLocalConfig()
	}
	c.Name = nodeName(cfg.NodeID)
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.BindPort
	// Both are set explicitly: an empty AdvertiseAddr makes memberlist pick
	// a private interface address, and the profiles' AdvertisePort is 7946
	// whatever BindPort is.
	c.AdvertiseAddr = cfg.AdvertiseAddr
	c.AdvertisePort = cfg.BindPort
	c.Label = cfg.Cluster
	c.DeadNodeReclaimTime = deadNodeReclaimTime
	c.LogOutput = nil
	c.Logger = newMemberlistLogger(cfg.Logger.With("node", cfg.NodeID))
	return c
}

// otherSeeds drops seeds that are this node's own gossip address, so that
// every node of a cluster can be given the same seed list.
func (m *Membership) otherSeeds(seeds []string) []string {
	out := make([]string, 0, len(seeds))
	for _, s := range seeds {
		if host, port, err := net.SplitHostPort(s); err == nil {
			if ip := net.ParseIP(host); ip != nil && net.JoinHostPort(ip.String(), port) == m.gossipAddr {
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// join contacts the seeds with bounded retries.
func (m *Membership) join(seeds []string) error {
	backoff := m.cfg.JoinBackoff
	var lastErr error
	for attempt := 1; ; attempt++ {
		n, err := m.list.Join(seeds)
		if n > 0 {
			m.log.Debug("joined cluster", "contacted", n, "attempt", attempt)
			return nil
		}
		lastErr = err
		if attempt >= m.cfg.JoinAttempts {
			break
		}
		m.log.Debug("join failed; retrying", "attempt", attempt, "backoff", backoff, "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, maxJoinBackoff)
	}
	if lastErr == nil {
		lastErr = errors.New("no seed answered")
	}
	return fmt.Errorf("%w: tried %v %d times: %v", ErrNoSeedReachable, seeds, m.cfg.JoinAttempts, lastErr)
}

// reassert makes sure every member adopts this node's new address after a
// restart. A member that has not yet declared the old incarnation dead
// rejects the new address as a conflict, and once it has, nothing would
// tell it about the new one before the next periodic push/pull (15-30s
// later): members gossip to the address they know, the old one. The seed
// may also have adopted the new address while another member still
// suspected the old one. So this node push/pulls with every member it knows,
// at once and then every reassertInterval, until none reports its name
// alive elsewhere, or reassertWindow has passed.
func (m *Membership) reassert() {
	defer m.wg.Done()
	deadline := time.Now().Add(reassertWindow)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.stopc:
			return
		case <-t.C:
		}
		done, err := m.reassertOnce()
		if done {
			m.log.Info("cluster adopted this node's new address")
			return
		}
		if time.Now().After(deadline) {
			m.log.Warn("cluster still lists an earlier incarnation of this node; left to periodic push/pull", "err", err)
			return
		}
		t.Reset(reassertInterval)
	}
}

func (m *Membership) reassertOnce() (done bool, err error) {
	m.lifeMu.RLock()
	defer m.lifeMu.RUnlock()
	if m.closed || m.left {
		return true, nil
	}
	var peers []string
	m.idxMu.RLock()
	for id, mem := range m.members {
		if id != m.cfg.NodeID {
			peers = append(peers, mem.GossipAddr)
		}
	}
	m.idxMu.RUnlock()
	if len(peers) == 0 {
		return true, nil
	}
	m.staleSelf.Store(false)
	if _, err = m.list.Join(peers); err != nil {
		m.log.Debug("re-announce push/pull failed", "err", err)
	}
	return !m.staleSelf.Load(), err
}

// NodeID returns this node's id.
func (m *Membership) NodeID() uint64 { return m.cfg.NodeID }

// GossipAddr returns the host:port other members reach this node's gossip
// listener at: the advertised address with the port actually bound (useful
// with BindPort 0). Pass it as another node's seed.
func (m *Membership) GossipAddr() string { return m.gossipAddr }

// Meta returns this node's current metadata.
func (m *Membership) Meta() NodeMeta {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.meta.public()
}

// Members returns the live members, this node included, sorted by NodeID.
// Suspected members are included until declared dead (see State).
func (m *Membership) Members() []Member {
	m.idxMu.RLock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, mem)
	}
	m.idxMu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.NodeID < b.NodeID:
			return -1
		case a.NodeID > b.NodeID:
			return 1
		}
		return 0
	})
	return out
}

// Member returns the live member with the given id.
func (m *Membership) Member(nodeID uint64) (Member, bool) {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	mem, ok := m.members[nodeID]
	return mem, ok
}

// Addr returns the gRPC address of the live member with the given id, and
// false if no such member is known (never joined, dead or left). It is the
// transport's Resolver. A suspected member still resolves: it is most
// likely up, and dropping it would turn a slow peer into an unreachable one.
func (m *Membership) Addr(nodeID uint64) (string, bool) {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	mem, ok := m.members[nodeID]
	if !ok || mem.GRPCAddr == "" {
		return "", false
	}
	return mem.GRPCAddr, true
}

// UpdateMeta applies f to a copy of this node's metadata and gossips the
// result. f must not change NodeID and must not call back into m. The new
// metadata is rejected whole if it is invalid or encodes to more than
// MaxMetaSize (ErrMetaTooLarge). Otherwise it takes effect locally at once
// and UpdateMeta waits up to Config.BroadcastTimeout for memberlist to hand
// it to other members; a timeout is reported as an error, but the update
// still spreads with the next push/pull.
func (m *Membership) UpdateMeta(f func(*NodeMeta)) error {
	m.lifeMu.RLock()
	defer m.lifeMu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	if m.left {
		return ErrLeft
	}
	m.metaMu.Lock()
	pub := m.meta.public()
	f(&pub)
	if pub.NodeID != m.meta.ID {
		m.metaMu.Unlock()
		return fmt.Errorf("membership: UpdateMeta may not change NodeID (%d to %d)", m.meta.ID, pub.NodeID)
	}
	w := wireFromPublic(pub, m.meta.Leaving)
	buf, err := encodeMeta(w)
	if err != nil {
		m.metaMu.Unlock()
		return err
	}
	m.meta, m.metaBuf = w, buf
	m.metaMu.Unlock()
	if err := m.list.UpdateNode(m.cfg.BroadcastTimeout); err != nil {
		return fmt.Errorf("membership: meta updated locally but not yet gossiped: %w", err)
	}
	return nil
}

// Leave announces a graceful departure, so that members record this node
// as StateLeft at once instead of detecting a failure. It first gossips the
// Leaving flag (which is how members tell a leave from a failure), then
// memberlist's leave message, and returns within timeout (Config's
// BroadcastTimeout if timeout <= 0). The node keeps gossiping until
// Shutdown, which should follow. Leave is idempotent.
//
// Memberlist considers a message delivered once it has been sent a few
// times, which may all have gone to the same peer; the others then learn it
// from that peer's gossip. So Leave lingers for a few gossip intervals after
// each message (as Serf's LeavePropagateDelay does): otherwise the leave
// message can overtake the Leaving flag, and a prompt Shutdown and restart
// can overtake the leave message.
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.left {
		return nil
	}
	m.left = true
	if timeout <= 0 {
		timeout = m.cfg.BroadcastTimeout
	}
	deadline := time.Now().Add(timeout)
	linger := func(share int) {
		if m.noOneToTell() {
			return
		}
		d := min(leavePropagateIntervals*m.gossipInterval, time.Until(deadline)/time.Duration(share))
		if d > 0 {
			time.Sleep(d)
		}
	}

	m.metaMu.Lock()
	w := m.meta
	w.Leaving = true
	buf, err := encodeMeta(w) // fits: encodeMeta reserves room for the flag
	if err == nil {
		m.meta, m.metaBuf = w, buf
	}
	m.metaMu.Unlock()
	if err == nil {
		if err := m.list.UpdateNode(timeout / 4); err != nil {
			m.log.Debug("leaving flag not confirmed; peers may record a failure instead of a leave", "err", err)
		}
		linger(3)
	}
	remaining := max(time.Until(deadline)/2, time.Millisecond) // 0 would wait forever
	if err := m.list.Leave(remaining); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	linger(1)
	return nil
}

// noOneToTell reports whether no other live member stays: there is none,
// or every one is leaving too (a whole cluster stopping, as shardd demo
// does). Leave's lingering lets its news spread to the members that stay;
// without any, it would only delay the process's exit.
func (m *Membership) noOneToTell() bool {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	for id, mem := range m.members {
		if id != m.cfg.NodeID && !mem.Leaving {
			return false
		}
	}
	return true
}

// Shutdown stops gossiping without a leave message, so members will detect
// a failure unless Leave was called first. Events still queued are dropped.
// Shutdown is idempotent; it must not be called from an Events handler.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stopc)
	err := m.list.Shutdown()
	m.lifeMu.Unlock()
	m.wg.Wait()
	m.dispatch.stop()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// memberFromNode builds a Member from memberlist's view of a node. It is
// only called from memberlist's event callbacks, where reading the Node is
// safe.
func memberFromNode(n *memberlist.Node) (Member, bool, error) {
	id, ok := parseNodeName(n.Name)
	if !ok {
		return Member{}, false, fmt.Errorf("membership: node name %q is not a shardd node name", n.Name)
	}
	w, err := decodeMeta(n.Meta)
	if err != nil {
		return Member{}, false, err
	}
	if w.ID != id {
		return Member{}, false, fmt.Errorf("membership: node %q gossips meta for node id %d", n.Name, w.ID)
	}
	return Member{NodeMeta: w.public(), GossipAddr: n.Address(), State: StateAlive, Leaving: w.Leaving}, true, nil
}

// metaDelegate serves this node's encoded metadata to memberlist.
type metaDelegate struct{ m *Membership }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.m.metaMu.Lock()
	defer d.m.metaMu.Unlock()
	if len(d.m.metaBuf) > limit { // encodeMeta enforces MaxMetaSize; never taken.
		return nil
	}
	return d.m.metaBuf
}

func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// eventDelegate maintains the member index and queues user events.
// Memberlist calls it with its node lock held: it must not call memberlist.
type eventDelegate struct{ m *Membership }

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.m.observeAlive(n, evJoined) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.m.observeAlive(n, evUpdated) }

func (d eventDelegate) NotifyLeave(n *memberlist.Node) {
	m := d.m
	id, ok := parseNodeName(n.Name)
	if !ok {
		return
	}
	m.idxMu.Lock()
	mem, known := m.members[id]
	delete(m.members, id)
	m.idxMu.Unlock()
	if latest, ok, _ := memberFromNode(n); ok {
		latest.Leaving = latest.Leaving || mem.Leaving
		mem, known = latest, true
	}
	if !known {
		return
	}
	mem.State = StateDead
	if mem.Leaving {
		mem.State = StateLeft
	}
	m.log.Debug("member gone", "id", id, "state", mem.State, "gossip_addr", mem.GossipAddr)
	m.dispatch.post(event{kind: evLeft, member: mem})
}

func (m *Membership) observeAlive(n *memberlist.Node, kind eventKind) {
	mem, ok, err := memberFromNode(n)
	if !ok {
		m.log.Warn("ignoring gossip member", "name", n.Name, "addr", n.Address(), "err", err)
		return
	}
	m.idxMu.Lock()
	_, known := m.members[mem.NodeID]
	m.members[mem.NodeID] = mem
	m.idxMu.Unlock()
	if !known {
		kind = evJoined
	}
	m.log.Debug("member alive", "id", mem.NodeID, "gossip_addr", mem.GossipAddr, "grpc_addr", mem.GRPCAddr, "joined", kind == evJoined)
	m.dispatch.post(event{kind: kind, member: mem})
}

// mergeDelegate inspects peers' state during joins (memberlist calls it for
// join push/pulls only) to notice an earlier incarnation of this node at
// another address, and whether they still consider it alive.
type mergeDelegate struct{ m *Membership }

func (d mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	self := d.m.selfAddr.Load()
	if self == nil {
		return nil
	}
	for _, p := range peers {
		if p.Name != d.m.name || p.Address() == *self {
			continue
		}
		d.m.restarted.Store(true)
		// Unlike event callbacks, State here is the peer's real view.
		if p.State == memberlist.StateAlive || p.State == memberlist.StateSuspect {
			d.m.staleSelf.Store(true)
		}
	}
	return nil
}
