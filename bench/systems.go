package main

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	placementclient "github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/router"
)

// system is a store under test: a cluster this tool started (whose
// processes' CPU it measures) or one already running.
type system interface {
	// name labels the system's results, tables and chart lines.
	name() string
	store() store
	// pids are the store's processes on this machine; none for a
	// cluster this tool did not start.
	pids() []int
	close()
}

func numCPU() int { return runtime.NumCPU() }

// routerStore drives shardd through the router client library.
type routerStore struct{ c *router.Client }

func (s routerStore) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	return s.c.Get(ctx, key)
}

func (s routerStore) Put(ctx context.Context, key, value []byte) error {
	return s.c.Put(ctx, key, value)
}

func (s routerStore) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	kvs, _, err := s.c.Scan(ctx, start, nil, limit)
	return len(kvs), err
}

func (s routerStore) CompareAndSwap(ctx context.Context, key, expected []byte, found bool, value []byte) (bool, error) {
	res, err := s.c.CompareAndSwap(ctx, router.CAS{Key: key, Expected: expected, ExpectAbsent: !found, NewValue: value})
	return res.Swapped, err
}

// sharddSystem is a three-node shardd cluster of real processes that this
// tool started, or (with no cluster) one it reaches through a placement
// service.
type sharddSystem struct {
	label   string
	cluster *cluster
	cleanup func()
	client  *router.Client
	pc      *placementclient.Client
}

// startSharddSystem starts three shardd processes from bin (built from
// this tree when bin is empty) with ranges ranges, and waits until every
// range has a leader.
func startSharddSystem(ctx context.Context, label, bin string, ranges int) (*sharddSystem, error) {
	var err error
	if bin != "" {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, err
		}
	}
	s := &sharddSystem{label: label}
	if s.cluster, s.cleanup, err = setupBinary(bin, ranges, "", nil); err != nil {
		return nil, err
	}
	if err := s.cluster.waitLeaders(5 * time.Minute); err != nil {
		s.close()
		return nil, err
	}
	var seeds []string
	for _, p := range s.cluster.nodes {
		seeds = append(seeds, p.addr)
	}
	if s.client, err = router.New(ctx, router.Config{Seeds: seeds}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// dialSharddSystem reaches a running cluster through its placement
// service at addrs (comma-separated).
func dialSharddSystem(ctx context.Context, addrs string) (*sharddSystem, error) {
	pc, err := placementclient.New(strings.Split(addrs, ","))
	if err != nil {
		return nil, err
	}
	c, err := router.New(ctx, router.Config{Source: placementclient.RouterSource{Client: pc}})
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &sharddSystem{label: "shardd", client: c, pc: pc}, nil
}

func (s *sharddSystem) name() string { return s.label }
func (s *sharddSystem) store() store { return routerStore{s.client} }

func (s *sharddSystem) pids() []int {
	if s.cluster == nil {
		return nil
	}
	var out []int
	for _, p := range s.cluster.nodes {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func (s *sharddSystem) close() {
	if s.client != nil {
		s.client.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	if s.cleanup != nil {
		s.cleanup()
	}
}
