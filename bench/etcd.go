package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// defaultEtcdBinary is where scripts/build-etcd puts etcd.
const defaultEtcdBinary = "bin/etcd"

// etcdStore drives etcd through its Go client: linearizable (quorum)
// reads, puts, ranges from a key, and compare-and-swap as a transaction
// on the key's value. It spreads requests round-robin over several
// clients, each with its own connection, as etcd's own benchmark tool
// does with --conns.
type etcdStore struct {
	clients []*clientv3.Client
	next    atomic.Uint64
}

func newEtcdStore(endpoints []string, conns int) (*etcdStore, error) {
	s := &etcdStore{}
	for range max(conns, 1) {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	return s, nil
}

func (s *etcdStore) client() *clientv3.Client {
	return s.clients[s.next.Add(1)%uint64(len(s.clients))]
}

func (s *etcdStore) close() {
	for _, c := range s.clients {
		c.Close()
	}
}

func (s *etcdStore) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	resp, err := s.client().Get(ctx, string(key))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, false, err
	}
	return resp.Kvs[0].Value, true, nil
}

func (s *etcdStore) Put(ctx context.Context, key, value []byte) error {
	_, err := s.client().Put(ctx, string(key), string(value))
	return err
}

func (s *etcdStore) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	resp, err := s.client().Get(ctx, string(start), clientv3.WithFromKey(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return 0, err
	}
	return len(resp.Kvs), nil
}

func (s *etcdStore) CompareAndSwap(ctx context.Context, key, expected []byte, found bool, value []byte) (bool, error) {
	k := string(key)
	cond := clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	if found {
		cond = clientv3.Compare(clientv3.Value(k), "=", string(expected))
	}
	resp, err := s.client().Txn(ctx).If(cond).Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// etcdSystem is a three-member etcd cluster of real processes on
// loopback that this tool started, each with its own data directory
// (fsync on, etcd's default), or (with no processes) one already running.
type etcdSystem struct {
	dir   string
	procs []*exec.Cmd
	st    *etcdStore
}

// startEtcdSystem starts three etcd members from bin and waits until the
// cluster answers a linearizable read.
func startEtcdSystem(ctx context.Context, bin string, conns int) (*etcdSystem, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("etcd binary: %w (build it with scripts/build-etcd)", err)
	}
	dir, err := os.MkdirTemp("", "etcd-bench-")
	if err != nil {
		return nil, err
	}
	e := &etcdSystem{dir: dir}
	var peers, clients, initial []string
	for i := range 3 {
		peer, err := freePort()
		if err != nil {
			e.close()
			return nil, err
		}
		client, err := freePort()
		if err != nil {
			e.close()
			return nil, err
		}
		peers = append(peers, "http://"+peer)
		clients = append(clients, "http://"+client)
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i+1, peer))
	}
	for i := range 3 {
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("m%d", i+1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i+1)),
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "bench", "--log-level", "error")
		// etcd logs its shutdown at level error, so its log goes to a
		// file, shown only if the cluster does not come up.
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i+1)))
		if err != nil {
			e.close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			e.close()
			return nil, fmt.Errorf("start etcd: %w", err)
		}
		e.procs = append(e.procs, cmd)
	}
	if e.st, err = newEtcdStore(clients, conns); err != nil {
		e.close()
		return nil, err
	}
	err = waitFor("etcd to answer a linearizable read", 2*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, _, err := e.st.Get(ctx, []byte("bench-ready"))
		return err == nil
	})
	if err != nil {
		for i := range 3 {
			if b, rerr := os.ReadFile(filepath.Join(dir, fmt.Sprintf("m%d.log", i+1))); rerr == nil {
				fmt.Fprintf(os.Stderr, "etcd member m%d's log:\n%s\n", i+1, lastLines(string(b), 20))
			}
		}
		e.close()
		return nil, err
	}
	return e, nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// dialEtcdSystem reaches a running etcd cluster at endpoints
// (comma-separated).
func dialEtcdSystem(endpoints string, conns int) (*etcdSystem, error) {
	st, err := newEtcdStore(strings.Split(endpoints, ","), conns)
	if err != nil {
		return nil, err
	}
	return &etcdSystem{st: st}, nil
}

func (e *etcdSystem) name() string { return "etcd" }
func (e *etcdSystem) store() store { return e.st }

func (e *etcdSystem) pids() []int {
	var out []int
	for _, p := range e.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}

func (e *etcdSystem) close() {
	if e.st != nil {
		e.st.close()
	}
	for _, p := range e.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}
