package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// cluster is three shardd processes on loopback, each with its own store,
// bootstrapped with the same ranges on all three.
type cluster struct {
	bin, dir string
	groups   int
	nodes    []*proc
	// pprof, if set, is where node 1 serves its profiles.
	pprof string
	// extra are more flags for every node's start.
	extra []string
}

type proc struct {
	id           uint64
	addr, gossip string
	cmd          *exec.Cmd
	conn         *grpc.ClientConn
}

// buildShardd compiles cmd/shardd into dir, so every run measures the
// current code.
func buildShardd(dir string) (string, error) {
	bin := filepath.Join(dir, "shardd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/shardd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
}

// setupBinary starts a cluster of groups ranges from bin, or from
// cmd/shardd built from this tree if bin is empty, in a new temporary
// directory, which the returned cleanup removes after stopping the
// nodes.
func setupBinary(bin string, groups int, pprof string, extra []string) (*cluster, func(), error) {
	dir, err := os.MkdirTemp("", "shardd-bench-")
	if err != nil {
		return nil, nil, err
	}
	if bin == "" {
		if bin, err = buildShardd(dir); err != nil {
			os.RemoveAll(dir)
			return nil, nil, fmt.Errorf("build cmd/shardd (run from the repository root): %w", err)
		}
	}
	c, err := startCluster(bin, dir, groups, pprof, extra)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return c, func() { c.stop(); os.RemoveAll(dir) }, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startCluster(bin, dir string, groups int, pprof string, extra []string) (*cluster, error) {
	c := &cluster{bin: bin, dir: dir, groups: groups, pprof: pprof, extra: extra}
	var peers []string
	for id := uint64(1); id <= 3; id++ {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		gossip, err := freePort()
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &proc{id: id, addr: addr, gossip: gossip})
		peers = append(peers, fmt.Sprintf("%d=%s", id, addr))
	}
	for _, p := range c.nodes {
		if err := c.start(p, strings.Join(peers, ",")); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) start(p *proc, peers string) error {
	p.cmd = exec.Command(c.bin, "start",
		"--id", strconv.FormatUint(p.id, 10), "--listen", p.addr, "--gossip", p.gossip,
		"--join", c.nodes[0].gossip, "--peers", peers,
		"--data-dir", filepath.Join(c.dir, fmt.Sprintf("node%d", p.id)),
		"--bootstrap-ranges", strconv.Itoa(c.groups), "--bootstrap-replicas", "1,2,3",
		"--log-level", "error")
	if p.id == 1 && c.pprof != "" {
		p.cmd.Args = append(p.cmd.Args, "--pprof", c.pprof)
	}
	p.cmd.Args = append(p.cmd.Args, c.extra...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return err
	}
	if p.conn == nil {
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		p.conn = conn
	}
	return nil
}

func (c *cluster) peers() string {
	var ps []string
	for _, p := range c.nodes {
		ps = append(ps, fmt.Sprintf("%d=%s", p.id, p.addr))
	}
	return strings.Join(ps, ",")
}

// kill stops a node the hard way, as a crash would.
func (c *cluster) kill(p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (c *cluster) stop() {
	for _, p := range c.nodes {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				c.kill(p)
			}
		}
		if p.conn != nil {
			p.conn.Close()
		}
	}
}

func (p *proc) status(ctx context.Context) (*kvpb.NodeStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return kvpb.NewAdminClient(p.conn).NodeStatus(ctx, &kvpb.NodeStatusRequest{})
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// waitLeaders waits until every range has a leader somewhere.
func (c *cluster) waitLeaders(timeout time.Duration) error {
	return waitFor("a leader for every range", timeout, func() bool {
		leaders := 0
		for _, p := range c.nodes {
			st, err := p.status(context.Background())
			if err != nil {
				return false
			}
			leaders += int(st.Leaders)
		}
		return leaders >= c.groups
	})
}

// waitIdle waits until no node has an active (unquiesced) group.
func (c *cluster) waitIdle(timeout time.Duration) error {
	return waitFor("every group to quiesce", timeout, func() bool {
		for _, p := range c.nodes {
			st, err := p.status(context.Background())
			if err != nil || st.ActiveGroups != 0 || st.Groups == 0 {
				return false
			}
		}
		return true
	})
}

// cpuTime returns the process's user+system CPU time.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesized command name; utime and stime are
	// the 14th and 15th fields of the whole line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// rss returns the process's resident set size in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
