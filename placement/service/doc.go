// Package service is shardd's replicated placement service: it owns the
// authoritative range map (package placement's RangeMap), registers nodes,
// bootstraps a cluster's first ranges, spreads range leadership over the
// nodes, and serves the map to routers (lookup, paginated list, node list,
// and a watch stream of changes). It is never on the data path.
//
// # Replication
//
// Each placement process (1 or 3; 3 tolerate one failure) runs an
// in-process node.Node with its own store, listening on the process's
// address, with the other placement processes as static peers and no
// gossip. Those nodes host ONE range, the placement group, covering their
// whole key space and replicated by a Paxos group like any data range. The
// placement state lives there as keys (see store.go):
//
//	d/<range id, 8 bytes big-endian>  kvpb.RangeDescriptor
//	n/<node id, 8 bytes big-endian>   placementpb.NodeRecord
//	m/rev                             revision, bumped by every mutation
//	m/boot, m/created, m/nextid       bootstrap progress, next range id
//	m/cluster                         the cluster id
//
// # Leadership and fencing
//
// The placement leader is the process whose node leads the placement
// group. Only it serves the API and does control work; the others refuse
// with FailedPrecondition and a placementpb.NotPlacementLeader detail
// naming the leader (they do not forward: Client follows the hint). On
// taking over, a leader loads the state with linearizable scans into a
// RangeMap. Every mutation is one conditional batch that expects m/rev to
// hold the revision the leader's state is at, and bumps it: two processes
// that both believe they lead can never both apply a change, because the
// condition is evaluated at apply time, in log order. A mutation that
// fails for any reason ends the leader's term; if its node still leads, it
// reloads the state from the store and goes on, so memory never runs ahead
// of, or behind, what is durable.
//
// # Identity
//
// The first leader of a new placement state chooses a random cluster id.
// Every registration answers it, and a node records it in its store at
// its first registration (node.JoinCluster). A node's registration names
// its store id (random, chosen when its store was created) and, after the
// first, its cluster id. The service refuses, with FailedPrecondition and
// a placementpb.RegistrationRefused detail, a node of another cluster, and
// a known node id with another store id than it first registered with: a
// node whose data directory was wiped must not rejoin as if it still held
// its promises. Heartbeat returns such a refusal (ErrRefused), and the
// node must stop.
//
// # Control work
//
// Once Config.ExpectedNodes nodes have registered, the leader builds the
// first map (placement.InitialRanges over placement.EvenSplitKeys or the
// configured split keys), persists it in one batch, and asks every node to
// create its replicas (Admin.CreateRanges, idempotent). A node that died
// after registering is skipped if every range keeps a majority without it,
// and recorded as pending (m/pending/<id>); when it is live again it
// creates its replicas then. Every BalanceInterval, it asks the live nodes which
// ranges they lead (Admin.Ranges), records the leaders as hints, plans
// with placement.PlanLeaderBalance and asks the current leaders to hand
// off (Admin.TransferLeader), a bounded number at a time. In the same
// round it asks the live nodes for the load and size of the ranges they
// lead (Admin.RangeLoad), and splits those past Config.SplitSize or
// Config.SplitQPS, through the same recorded operation as a split asked
// for (autosplit.go), at most Config.MaxConcurrentSplits at once. In a
// round that moved no leader for the counts, the same answers drive load
// balancing (loadbalance.go): placement.PlanLoadBalance's leader transfers
// and replica moves off nodes serving more ops/s than the mean by over
// Config.LoadThreshold of it and Config.LoadFloor.
//
// # Clients
//
// The client side lives in package placement/client, which imports none
// of the server: client.Client calls the leader wherever it is. Nodes run
// client.Heartbeat (register, then report their load) and
// client.FollowNodes (learn the other nodes' addresses, so a cluster
// needs no gossip). client.RouterSource serves a router the map: lookups
// on a cache miss, and the Watch stream, which keeps the router's cache
// fresh and lets it work from its cache while the service is down.
package service
