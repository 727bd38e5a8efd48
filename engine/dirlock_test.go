package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// lockHolderDirEnv names, in the environment of TestHoldDirLock, the
// directory it opens for TestOpenDirInUse.
const lockHolderDirEnv = "SHARDD_ENGINE_HOLD_DIR"

// TestHoldDirLock is not a test: TestOpenDirInUse runs the test binary
// with only it, as a second process that opens an engine on a directory,
// says "open" and holds it until its stdin closes.
func TestHoldDirLock(t *testing.T) {
	dir := os.Getenv(lockHolderDirEnv)
	if dir == "" {
		t.Skip("a helper process of TestOpenDirInUse")
	}
	o := testOptions(vfs.Default)
	o.Dir = dir
	e := mustOpen(t, o)
	fmt.Println("open")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenDirInUse: an engine on a directory another process holds fails
// with the holder's pid, before it changes anything there; the same
// directory opened twice in one process says so; once the holder has
// closed it, the directory opens. Before the lock was taken by the
// engine and its holder looked up, the error read "resource temporarily
// unavailable".
func TestOpenDirInUse(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("the holder's pid comes from fcntl(F_GETLK)")
	}
	dir := t.TempDir()
	o := testOptions(vfs.Default)
	o.Dir = dir
	holder := exec.Command(os.Args[0], "-test.run=^TestHoldDirLock$", "-test.count=1")
	holder.Env = append(os.Environ(), lockHolderDirEnv+"="+dir)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("the holder process said %q, %v", line, err)
	}
	// A snapshot ingest's leftovers, as the holder could have them under
	// way: a second process must not clear them.
	e := &Engine{opts: o}
	inflight := filepath.Join(e.tmpDir(), "ingest")
	if err := os.MkdirAll(filepath.Dir(inflight), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inflight, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	_, err = Open(o)
	want := fmt.Sprintf("data directory %s is in use by another process (pid %d)", dir, holder.Process.Pid)
	var inUse *DirInUseError
	if err == nil || err.Error() != want || !errors.As(err, &inUse) {
		t.Fatalf("Open of a held directory: %v, want %q", err, want)
	}
	if _, err := os.Stat(inflight); err != nil {
		t.Errorf("the second Open removed the holder's temporary files: %v", err)
	}

	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("the holder process: %v", err)
	}
	e = mustOpen(t, o)
	defer e.Close()
	_, err = Open(o)
	if want := fmt.Sprintf("data directory %s is in use by this process (opened twice)", dir); err == nil || err.Error() != want {
		t.Errorf("a second Open in this process: %v, want %q", err, want)
	}
}
