package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The by-hand commands are the lines of the code block between these
// markers in README.md.
const (
	byHandBegin = "<!-- by-hand:begin"
	byHandEnd   = "<!-- by-hand:end -->"
)

// TestReadmeByHand runs the commands README.md gives for a cluster of
// separate processes built by hand, read from the README itself, as
// written: from the repository root, each `start` as a process of its own
// (as in a terminal of its own) and the others to completion. Only their
// loopback ports and /tmp directories are moved, to free ports and the
// test's temporary directory, so that the test never meets another
// cluster. The binaries are built where the README builds them (bin/,
// gitignored). The put must print ok and the get the value put; then every
// process stops cleanly on SIGTERM.
//
//	go test -run TestReadmeByHand -v ./cmd/shardd
func TestReadmeByHand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs four processes")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := byHandCommands(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cmds = localize(t, cmds, tmp)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the README's commands with")
	}
	// The commands run in bash from the repository root, with the go
	// command that runs this test first on PATH.
	script := func(cmd string) string {
		return fmt.Sprintf("export PATH=%s:\"$PATH\" && cd %s && %s", shellQuote(filepath.Dir(goCommand(t))), shellQuote(root), cmd)
	}

	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(tmp, "command*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				t.Logf("%s:\n%s", filepath.Base(l), tail(string(b), 30))
			}
		}
	})
	var servers []*proc
	var putKey, putValue string
	gotten := false
	for i, cmd := range cmds {
		t.Logf("$ %s", cmd)
		fields := strings.Fields(cmd)
		if len(fields) > 1 && fields[1] == "start" {
			name := fmt.Sprintf("%s (command %d)", filepath.Base(fields[0]), i+1)
			p := startProcUntil(t, bash, name, filepath.Join(tmp, fmt.Sprintf("command%d.log", i+1)), "serving on", "-c", script("exec "+cmd))
			p.waitReady(t)
			servers = append(servers, p)
			continue
		}
		code, stdout, stderr := runBinary(t, bash, "-c", script(cmd))
		if code != 0 {
			t.Fatalf("%q exited %d:\n%s%s", cmd, code, stdout, stderr)
		}
		switch kv := slices.Index(fields, "kv"); {
		case kv < 0 || kv+1 >= len(fields):
		case fields[kv+1] == "put":
			putKey, putValue = fields[len(fields)-2], fields[len(fields)-1]
			if stdout != "ok\n" {
				t.Errorf("%q printed %q, want ok", cmd, stdout)
			}
		case fields[kv+1] == "get":
			gotten = true
			if key := fields[len(fields)-1]; key != putKey || stdout != putValue+"\n" {
				t.Errorf("%q printed %q after a put of %q to %q", cmd, stdout, putValue, putKey)
			}
		}
	}
	if len(servers) == 0 || putKey == "" || !gotten {
		t.Fatalf("the README's by-hand commands start %d processes and put %q and get: %v; want processes, a put and a get of it", len(servers), putKey, gotten)
	}
	for _, p := range slices.Backward(servers) {
		if code := p.terminate(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM; log %s", p.name, code, p.logPath)
		}
	}
}

// byHandCommands returns the commands of the code block between the
// by-hand markers of a README, with continuation lines (ending in a
// backslash) joined.
func byHandCommands(readme string) ([]string, error) {
	begin := strings.Index(readme, byHandBegin)
	end := strings.Index(readme, byHandEnd)
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("README.md has no %q ... %q section", byHandBegin, byHandEnd)
	}
	var cmds []string
	var cur strings.Builder
	fenced := false
	for _, line := range strings.Split(readme[begin:end], "\n")[1:] {
		switch {
		case strings.HasPrefix(line, "```"):
			fenced = !fenced
			continue
		case !fenced:
			continue
		}
		line = strings.TrimSpace(line)
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont)
			continue
		}
		cur.WriteString(line)
		if c := strings.Join(strings.Fields(cur.String()), " "); c != "" {
			cmds = append(cmds, c)
		}
		cur.Reset()
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("the by-hand section of README.md has no commands in a code block")
	}
	return cmds, nil
}

var (
	loopbackAddr = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
	tmpPath      = regexp.MustCompile(`/tmp/([A-Za-z0-9._-]+)`)
)

// localize moves the commands' loopback ports to free ones (the same port
// to the same free port everywhere) and their /tmp paths into dir.
func localize(t *testing.T, cmds []string, dir string) []string {
	t.Helper()
	var ports []string
	for _, c := range cmds {
		for _, m := range loopbackAddr.FindAllString(c, -1) {
			if !slices.Contains(ports, m) {
				ports = append(ports, m)
			}
		}
	}
	free := freePorts(t, len(ports))
	out := make([]string, len(cmds))
	for i, c := range cmds {
		c = loopbackAddr.ReplaceAllStringFunc(c, func(m string) string {
			return fmt.Sprintf("127.0.0.1:%d", free[slices.Index(ports, m)])
		})
		out[i] = tmpPath.ReplaceAllStringFunc(c, func(m string) string {
			return shellQuote(filepath.Join(dir, strings.TrimPrefix(m, "/tmp/")))
		})
	}
	return out
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
