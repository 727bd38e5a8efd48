// Command mutants measures the power of the tests of group/ and liveness/:
// it plants each bug of the list in mutants.go, one at a time, in a
// temporary copy of the repository (never in the real tree), runs the test
// layers and reports which caught it.
//
// The layers, cheapest first:
//
//	unit    go test ./group/ ./liveness/
//	sim     go test ./group/sim/ (the simulator at CI seeds, with its
//	        planted-bug tests)
//	sim10x  the simulation at ten times the CI seeds
//
// Every mutant runs unit and sim. sim10x runs only for mutants that no
// earlier layer caught (with -full, for every mutant sim missed); its seeds
// include the CI seeds, so a mutant sim caught counts as caught by sim10x
// too, shown "(yes)".
//
// The run fails if a snippet no longer occurs exactly once in its file (the
// list is out of step with the code), if a mutant does not compile, if an
// unmutated run fails, if a mutant survives every layer without being
// marked equivalent, or if one marked equivalent is caught.
//
// Usage (9m20s for 43 mutants on 2 shared cores when unit or sim catches
// every one, plus about 2 minutes for each that needs sim10x; so not in CI,
// see the README's Testing section):
//
//	go run ./scripts/mutants [-run regexp] [-full] [-list]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// layer is one test command, run from the root of the copy.
type layer struct {
	name string
	argv []string
}

// outcome is what one layer said about one mutant.
type outcome int

const (
	notRun outcome = iota
	missed
	caught
	impliedCaught // sim10x, when sim caught it: sim10x's seeds include sim's
)

func (o outcome) String() string {
	return [...]string{"-", "no", "yes", "(yes)"}[o]
}

type result struct {
	m        *mutant
	layers   [3]outcome
	failures [3]string // first failing test of a layer that caught it
	took     time.Duration
}

func (r *result) caught() bool {
	for _, o := range r.layers {
		if o == caught || o == impliedCaught {
			return true
		}
	}
	return false
}

func (r *result) verdict() string {
	switch {
	case r.m.Equivalent != "" && r.caught():
		return "CAUGHT, marked equivalent"
	case r.m.Equivalent != "":
		return "equivalent"
	case r.caught():
		return "yes"
	}
	return "NO"
}

// options are the command's flags. Layer commands are split at spaces.
type options struct {
	run               string
	list, full, keep  bool
	timeout           time.Duration
	unit, sim, sim10x string
}

func main() {
	var o options
	flag.StringVar(&o.run, "run", "", "run only the mutants whose name matches this regexp")
	flag.BoolVar(&o.list, "list", false, "print the mutants and exit")
	flag.BoolVar(&o.full, "full", false, "run sim10x for every mutant sim missed, not only those no layer caught")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary copy of the repository")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "timeout of one layer's run (a run that times out counts as caught)")
	flag.StringVar(&o.unit, "unit", "go test -count=1 ./group/ ./liveness/", "the unit layer's command")
	flag.StringVar(&o.sim, "sim", "go test -count=1 ./group/sim/", "the simulator layer's command, at CI seeds")
	flag.StringVar(&o.sim10x, "sim10x", "", "the simulator layer's command at 10x seeds (default: -sim.seeds at ten times its default, read from go test ./group/sim -args -h)")
	flag.Parse()
	if err := mainErr(o); err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(1)
	}
}

func mainErr(o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	selected, err := selectMutants(o.run)
	if err != nil {
		return err
	}
	if o.list {
		for _, m := range selected {
			fmt.Printf("%s\t%s\n", m.Name, m.Desc)
		}
		return nil
	}
	if err := checkSnippets(os.DirFS(root), mutants); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "shardd-mutants-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "copy kept in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if err := copyTree(root, tmp); err != nil {
		return err
	}
	r := &runner{dir: tmp, timeout: o.timeout, full: o.full}
	r.layers[0] = layer{"unit", strings.Fields(o.unit)}
	r.layers[1] = layer{"sim", strings.Fields(o.sim)}
	if o.sim10x == "" {
		if o.sim10x, err = r.derivedSim10x(); err != nil {
			return err
		}
	}
	r.layers[2] = layer{"sim10x", strings.Fields(o.sim10x)}

	start := time.Now()
	if err := r.compileAll(selected); err != nil {
		return err
	}
	for i := range 2 {
		if err := r.baseline(i); err != nil {
			return err
		}
	}
	var results []*result
	for _, m := range selected {
		res, err := r.try(m)
		if err != nil {
			return fmt.Errorf("mutant %s: %w", m.Name, err)
		}
		results = append(results, res)
		fmt.Fprintf(os.Stderr, "%-40s unit %-3s sim %-3s sim10x %-5s %s (%s)\n", m.Name,
			res.layers[0], res.layers[1], res.layers[2], res.verdict(), res.took.Round(time.Second))
	}
	bad := report(os.Stdout, results, r.layers)
	fmt.Printf("\n%d mutants in %s\n", len(results), time.Since(start).Round(time.Second))
	if bad > 0 {
		return fmt.Errorf("%d mutants survived (or are wrongly marked equivalent)", bad)
	}
	return nil
}

func selectMutants(run string) ([]*mutant, error) {
	re, err := regexp.Compile(run)
	if err != nil {
		return nil, fmt.Errorf("-run: %w", err)
	}
	seen := make(map[string]bool)
	var out []*mutant
	for i := range mutants {
		m := &mutants[i]
		if seen[m.Name] {
			return nil, fmt.Errorf("two mutants are named %s", m.Name)
		}
		seen[m.Name] = true
		if re.MatchString(m.Name) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no mutant matches -run %q", run)
	}
	return out, nil
}

// checkSnippets reports every mutant whose Old text does not occur exactly
// once in its file, or that changes nothing.
func checkSnippets(fsys fs.FS, ms []mutant) error {
	var errs []error
	for _, m := range ms {
		src, err := fs.ReadFile(fsys, m.File)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		if n := bytes.Count(src, []byte(m.Old)); n != 1 || m.Old == "" {
			errs = append(errs, fmt.Errorf("%s: the snippet occurs %d times in %s, want exactly once: re-anchor it\n\t%q", m.Name, n, m.File, m.Old))
		}
		if m.Old == m.New {
			errs = append(errs, fmt.Errorf("%s: New equals Old", m.Name))
		}
	}
	return errors.Join(errs...)
}

// apply returns src with m planted; checkSnippets has made sure it applies.
func apply(src []byte, m *mutant) []byte {
	return bytes.Replace(src, []byte(m.Old), []byte(m.New), 1)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from inside the repository")
	}
	return filepath.Dir(gomod), nil
}

// copyTree copies the working tree (uncommitted changes included) without
// .git into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case !d.Type().IsRegular():
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

type runner struct {
	dir     string
	timeout time.Duration
	full    bool
	layers  [3]layer
	// baselined marks the layers that passed on the unmutated copy.
	baselined [3]bool
}

// derivedSim10x builds the sim10x command from the simulation's flags: ten
// times the default of -sim.seeds.
func (r *runner) derivedSim10x() (string, error) {
	cmd := exec.Command("go", "test", "./group/sim/", "-run", "^$", "-args", "-h")
	cmd.Dir = r.dir
	out, _ := cmd.CombinedOutput() // -h exits non-zero by design
	seeds, ok := flagDefault(string(out), "sim.seeds")
	if !ok {
		return "", fmt.Errorf("can't find -sim.seeds with a default in go test ./group/sim -args -h; pass -sim10x:\n%s", out)
	}
	return fmt.Sprintf("go test -count=1 -run TestSimulation ./group/sim/ -sim.seeds=%d", 10*seeds), nil
}

// flagDefault finds an integer flag's default in a flag package usage text.
func flagDefault(usage, name string) (int, bool) {
	re := regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\s+int\n(?:\s+.*\n)*?\s+.*\(default (\d+)\)`)
	m := re.FindStringSubmatch(usage)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// baseline runs layer i on the unmutated copy, which must pass.
func (r *runner) baseline(i int) error {
	if r.baselined[i] {
		return nil
	}
	fmt.Fprintf(os.Stderr, "baseline %s: %s\n", r.layers[i].name, strings.Join(r.layers[i].argv, " "))
	failed, out, err := r.runLayer(i)
	if err != nil {
		return err
	}
	if failed != "" {
		return fmt.Errorf("the unmutated tree fails layer %s (%s):\n%s", r.layers[i].name, failed, tail(out, 40))
	}
	r.baselined[i] = true
	return nil
}

// try plants m in the copy, runs the layers and restores the file.
func (r *runner) try(m *mutant) (*result, error) {
	start := time.Now()
	path := filepath.Join(r.dir, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, apply(orig, m), 0o644); err != nil {
		return nil, err
	}
	res, err := r.runLayers(m, path, orig)
	if err := errors.Join(err, os.WriteFile(path, orig, 0o644)); err != nil {
		return nil, err
	}
	res.took = time.Since(start)
	return res, nil
}

// compileAll plants each mutant in turn and compiles the packages it
// touches, tests included: a mutant that does not compile proves nothing,
// and it is better to hear of it before a long run than in the middle.
func (r *runner) compileAll(ms []*mutant) error {
	var errs []error
	for _, m := range ms {
		path := filepath.Join(r.dir, m.File)
		orig, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, apply(orig, m), 0o644); err != nil {
			return err
		}
		build := exec.Command("go", "test", "-count=1", "-run", "^$", "./"+filepath.Dir(m.File)+"/...")
		build.Dir = r.dir
		if out, err := build.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("mutant %s does not compile:\n%s", m.Name, tail(out, 10)))
		}
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// runLayers runs the layers on the copy with m planted in path, whose
// unmutated text is orig.
func (r *runner) runLayers(m *mutant, path string, orig []byte) (*result, error) {
	res := &result{m: m}
	var err error
	for i := range 2 {
		if res.layers[i], res.failures[i], err = r.layerOutcome(i); err != nil {
			return nil, err
		}
	}
	switch {
	case res.layers[1] == caught:
		res.layers[2] = impliedCaught
	case r.full || (!res.caught() && m.Equivalent == ""):
		if err := r.withOriginal(path, orig, m, func() error { return r.baseline(2) }); err != nil {
			return nil, err
		}
		if res.layers[2], res.failures[2], err = r.layerOutcome(2); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// withOriginal runs f with the copy's file restored, then plants m again.
func (r *runner) withOriginal(path string, orig []byte, m *mutant, f func() error) error {
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		return err
	}
	err := f()
	return errors.Join(err, os.WriteFile(path, apply(orig, m), 0o644))
}

func (r *runner) layerOutcome(i int) (outcome, string, error) {
	failed, _, err := r.runLayer(i)
	switch {
	case err != nil:
		return notRun, "", err
	case failed != "":
		return caught, failed, nil
	}
	return missed, "", nil
}

// runLayer runs layer i and returns the first failing test ("" if it
// passed) and the output. A command that could not start, or a build
// failure, is an error: it says nothing about the mutant.
func (r *runner) runLayer(i int) (failed string, out []byte, err error) {
	l := r.layers[i]
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.argv[0], l.argv[1:]...)
	cmd.Dir = r.dir
	cmd.WaitDelay = 10 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	runErr := cmd.Run()
	out = buf.Bytes()
	if bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")) {
		return "", out, fmt.Errorf("layer %s does not build:\n%s", l.name, tail(out, 20))
	}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return "timed out after " + r.timeout.String(), out, nil
	case errors.As(runErr, &exit):
		return firstFailure(out), out, nil
	case runErr != nil:
		return "", out, fmt.Errorf("layer %s: %w", l.name, runErr)
	}
	return "", out, nil
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// firstFailure names the first failing test in go test output, or says
// how the run failed if no test did (a panic, a timeout).
func firstFailure(out []byte) string {
	if m := failLine.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	if bytes.Contains(out, []byte("panic: test timed out")) {
		return "test timeout"
	}
	if bytes.Contains(out, []byte("panic:")) {
		return "panic"
	}
	return "non-zero exit"
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// report prints the table and per-layer counts, and returns how many
// mutants make the run fail.
func report(w io.Writer, results []*result, layers [3]layer) int {
	fmt.Fprintln(w, "| mutant | description | unit | sim | sim10x | caught |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	bad := 0
	var counts, ran, implied [3]int
	for _, res := range results {
		v := res.verdict()
		if v == "NO" || strings.HasPrefix(v, "CAUGHT") {
			bad++
		}
		for i, o := range res.layers {
			if o != notRun {
				ran[i]++
			}
			if o == caught || o == impliedCaught {
				counts[i]++
			}
			if o == impliedCaught {
				implied[i]++
			}
		}
		desc := res.m.Desc
		if res.m.Equivalent != "" {
			desc += " (equivalent: " + res.m.Equivalent + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", res.m.Name, desc, res.layers[0], res.layers[1], res.layers[2], v)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, l := range layers {
		note := ""
		if implied[i] > 0 {
			note = fmt.Sprintf(" (%d by sim's seeds)", implied[i])
		}
		fmt.Fprintf(tw, "%s\tcaught %d of %d run%s\t%s\n", l.name, counts[i], ran[i], note, strings.Join(l.argv, " "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nfirst failing test per layer:")
	for _, res := range results {
		var by []string
		for i, f := range res.failures {
			if f != "" {
				by = append(by, layers[i].name+": "+f)
			}
		}
		if len(by) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", res.m.Name, strings.Join(by, "; "))
		}
	}
	return bad
}
