package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersion checks that version and --version print the build on one
// line.
func TestVersion(t *testing.T) {
	var lines []string
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, stdout, stderr := runSync(t, args...)
		if code != exitOK || stderr != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, stderr)
		}
		lines = append(lines, stdout)
	}
	out := lines[0]
	if !strings.HasPrefix(out, "shardd ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
		t.Errorf("version printed %q, want one line naming shardd and %s", out, runtime.Version())
	}
	if lines[1] != out || lines[2] != out {
		t.Errorf("--version printed %q and -version %q, version %q", lines[1], lines[2], out)
	}
	if code, _, _ := runSync(t, "version", "extra"); code != exitUsage {
		t.Errorf("version extra: exit %d, want %d", code, exitUsage)
	}
}
