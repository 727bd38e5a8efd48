// Package client is the client side of the placement service (package
// placement/service): what Go programs that follow the range map, and the
// shardd nodes that register with the service, import.
//
// Client sends every call to the service's leader, following its
// NotPlacementLeader hints and trying the other processes when one is
// unreachable. RouterSource adapts a Client to router.Source and
// router.Watcher, so that a router looks ranges up in the service's map
// and follows its changes:
//
//	pc, err := client.New([]string{"10.0.0.1:7000"})
//	c, err := router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}})
//
// Heartbeat and FollowNodes are the node side: register and report load,
// and learn the other nodes' addresses.
//
// The package imports only the generated API (kvpb, placementpb), the
// router and gRPC, never the server (node, engine, Pebble, memberlist), so
// that a client stays small and links with other modules' versions of the
// server's dependencies; TestLightImports checks it.
package client
