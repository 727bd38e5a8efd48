package group

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Transcript tests, in the style of etcd raft's datadriven interaction
// tests: each testdata/*.txt file is a scenario written as commands, each
// followed by the output it must produce:
//
//	# A comment says what the next commands do and why.
//	command arg key=value
//	----
//	output
//	<blank line>
//
// The commands drive the harness (harness_test.go); they are listed in
// transcript_cmds_test.go. After a deliberate change of behaviour,
// regenerate the expected output and read the diff:
//
//	go test ./group -run TestTranscripts -rewrite
var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt transcripts")

// transcriptCmd is one command of a transcript.
type transcriptCmd struct {
	pos  string // file:line, for failures
	line string
	name string
	args []string          // positional arguments
	kv   map[string]string // key=value arguments
}

func parseTranscriptCmd(pos, line string) transcriptCmd {
	c := transcriptCmd{pos: pos, line: line, kv: make(map[string]string)}
	fields := strings.Fields(line)
	c.name = fields[0]
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			c.kv[k] = v
		} else {
			c.args = append(c.args, f)
		}
	}
	return c
}

// runTranscript runs the commands of the file at path through run and
// compares each output with the expected one, or with -rewrite writes the
// actual outputs back into the file.
func runTranscript(t *testing.T, path string, run func(c transcriptCmd) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		pos := fmt.Sprintf("%s:%d", filepath.Base(path), i+1)
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s: command %q is not followed by ----", pos, line)
		}
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		got := strings.TrimRight(run(parseTranscriptCmd(pos, line)), "\n")
		if got == "" {
			got = "ok"
		}
		if strings.Contains(got, "\n\n") {
			t.Fatalf("%s: output of %q has a blank line, which would end it early:\n%s", pos, line, got)
		}
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", pos, line, indent(got), indent(strings.Join(want, "\n")))
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n", line, got)
		if i < len(lines) {
			out.WriteString("\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func indent(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var b strings.Builder
	for sc.Scan() {
		b.WriteString("    " + sc.Text() + "\n")
	}
	return b.String()
}

// TestTranscripts runs every testdata/*.txt transcript against a fresh
// world.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			e := &transcriptEnv{t: t}
			runTranscript(t, f, e.run)
		})
	}
}
