package router_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/router"
)

// Example starts a one-node cluster holding one range, then writes and
// reads a key through a router Client.
func Example() {
	dir, err := os.MkdirTemp("", "shardd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A node with one range covering every key, which it leads.
	n, err := node.Start(node.Config{NodeID: 1, Dir: dir, ListenAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Stop()
	err = n.CreateGroup(&kvpb.RangeDescriptor{RangeId: 1, Generation: 1, LeaderNodeId: 1,
		Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}}})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := router.New(ctx, router.Config{Seeds: []string{n.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Put(ctx, []byte("greeting"), []byte("hello, shardd")); err != nil {
		log.Fatal(err)
	}
	value, found, err := c.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found, string(value))
	// Output: true hello, shardd
}
