package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placement/service"
	"github.com/shardd/shardd/router"
)

// ExampleRouterSource runs a placement service and one node that registers
// with it; the service creates two ranges on the node, and a router that
// learns the map from the service writes and reads a key.
func ExampleRouterSource() {
	dir, err := os.MkdirTemp("", "shardd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	pl, err := service.Start(service.Config{ID: 1, ListenAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "placement"),
		InitialRanges: 2, Replicas: 1, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer pl.Stop()
	n, err := node.Start(node.Config{NodeID: 1, Dir: filepath.Join(dir, "node"), ListenAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Stop()
	pc, err := client.New([]string{pl.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()

	// The node registers, and keeps reporting its load, until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { _ = client.Heartbeat(ctx, pc, n, time.Second, nil) }()

	// The first lookup waits (with retries) for the service to create
	// the ranges.
	c, err := router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}})
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
