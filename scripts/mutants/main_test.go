package main

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// TestEveryMutantMatchesOnce keeps the list in step with the code: a change
// under a snippet fails here, in CI, rather than in a mutation run.
func TestEveryMutantMatchesOnce(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSnippets(os.DirFS(root), mutants); err != nil {
		t.Fatal(err)
	}
	if _, err := selectMutants(""); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSnippetsNamesEveryMismatch(t *testing.T) {
	fsys := fstest.MapFS{"a.go": {Data: []byte("x := 1\nx := 1\ny := 2\n")}}
	err := checkSnippets(fsys, []mutant{
		{Name: "twice", File: "a.go", Old: "x := 1", New: "x := 2"},
		{Name: "never", File: "a.go", Old: "z := 3", New: "z := 4"},
		{Name: "once", File: "a.go", Old: "y := 2", New: "y := 3"},
		{Name: "nofile", File: "b.go", Old: "y", New: "z"},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"twice: the snippet occurs 2 times", "never: the snippet occurs 0 times", "nofile:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "once: the snippet") {
		t.Errorf("a snippet that occurs once was reported:\n%v", err)
	}
}

func TestFlagDefault(t *testing.T) {
	usage := `Usage of /tmp/sim.test:
  -sim.seed uint
    	run only this seed (replays a failure)
  -sim.seeds int
    	seeds to run per configuration (default 500)
  -sim.steps int
    	faulty steps per run (default 2000)
`
	if n, ok := flagDefault(usage, "sim.seeds"); !ok || n != 500 {
		t.Fatalf("sim.seeds default: %d, %v", n, ok)
	}
	if _, ok := flagDefault(usage, "sim.seed"); ok {
		t.Fatal("found an int default for a uint flag without one")
	}
}

func TestFirstFailure(t *testing.T) {
	out := []byte("=== RUN   TestA\n--- FAIL: TestA (0.00s)\n    --- FAIL: TestA/sub (0.00s)\nFAIL\n")
	if got := firstFailure(out); got != "TestA" {
		t.Fatalf("got %q", got)
	}
	if got := firstFailure([]byte("panic: test timed out after 1s\n")); got != "test timeout" {
		t.Fatalf("got %q", got)
	}
}
