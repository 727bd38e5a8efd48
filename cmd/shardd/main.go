// Command shardd runs and inspects the nodes of a shardd cluster, a sharded
// Multi-Paxos key-value store, and reads and writes its keys.
//
//	shardd start   run one node
//	shardd demo    run a three-node cluster inside this process
//	shardd kv      read and write keys: put, get, del, scan, cas
//	shardd trace   run one kv request traced and show where its time went
//	shardd ranges  list the ranges of the cluster, or of a node
//	shardd nodes   list the nodes registered with the placement service
//	shardd status  show a node's status
//	shardd transfer  move the leadership of a range to another node
//	shardd version print the build of this binary
//	shardd help    explain a command and its flags
//
// The command is thin: it parses flags, wires a node.Node up and handles
// signals. Everything it decides is in small functions of this package with
// unit tests; e2e_test.go runs the built binary as a cluster of processes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/node"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad command line
)

// env is what a command runs against: the process's output streams, and
// hooks for tests.
type env struct {
	stdout, stderr io.Writer
	// stdin is what "-" reads (kv put KEY -); nil reads as empty.
	stdin io.Reader
	// releaseSignals, if set, is called once a command has begun shutting
	// down after a signal, so that a second Ctrl-C kills the process.
	releaseSignals func()
	// tweakNode, if set, adjusts each node.Config before the node starts
	// (tests inject a failing filesystem through it).
	tweakNode func(*node.Config)
}

// command is one subcommand. setup defines the command's flags on fs and
// returns the function that runs it with the arguments left after the
// flags. New subcommands are one more entry in commands.
//
// A command with verbs (kv) is run by the verb its first argument after
// its flags names; its own run function is never called. Its flags are
// defaults for the verb's flags of the same names.
type command struct {
	name    string // for a verb, its command's name, a space and its own
	args    string // synopsis after "shardd <name>"
	summary string // one line, for the command list
	doc     string // paragraphs shown by "shardd help <name>" and -h
	setup   func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
	verbs   []*command
}

// verbList is "a, b or c": the names of c's verbs.
func (c *command) verbList() string {
	names := make([]string, len(c.verbs))
	for i, v := range c.verbs {
		names[i] = strings.TrimPrefix(v.name, c.name+" ")
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// verb returns c's verb called name, or nil.
func (c *command) verb(name string) *command {
	for _, v := range c.verbs {
		if v.name == c.name+" "+name {
			return v
		}
	}
	return nil
}

// commands is the subcommand table, in the order help lists it.
var commands []*command

func init() {
	commands = []*command{startCommand, demoCommand, kvCommand, traceCommand, rangesCommand, nodesCommand, statusCommand, splitCommand, transferCommand, moveCommand, drainCommand, versionCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, releaseSignals: stop}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the process's exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		writeUsage(e.stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return runHelp(e, rest)
	case "-version", "--version":
		name = versionCommand.name
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "shardd: unknown command %q\n\n", name)
		writeUsage(e.stderr)
		return exitUsage
	}
	return runCommand(ctx, e, c, rest, nil)
}

// runCommand parses c's flags in args and runs c, or the verb of c that
// the first argument left names. parent is the flag set of the command c
// is a verb of (nil for a top-level command): the flags set there are
// defaults for c's flags of the same names.
func runCommand(ctx context.Context, e *env, c *command, args []string, parent *flag.FlagSet) int {
	fs := newFlagSet(c, e.stderr)
	runFn := c.setup(fs)
	if parent != nil {
		parent.Visit(func(f *flag.Flag) {
			if fs.Lookup(f.Name) != nil {
				_ = fs.Set(f.Name, f.Value.String()) // the same flag: its value parses
			}
		})
	}
	// A command's flags may follow its arguments; a command with verbs
	// takes its own flags before the verb only, the rest being the verb's.
	var rest []string
	var err error
	if len(c.verbs) > 0 {
		err = fs.Parse(args)
		rest = fs.Args()
	} else {
		rest, err = cli.ParseInterspersed(fs, args)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // fs printed the error and the usage
	}
	if len(c.verbs) > 0 {
		if len(rest) == 0 {
			fmt.Fprintf(e.stderr, "shardd %s: missing verb (want %s)\n", c.name, c.verbList())
		} else if v := c.verb(rest[0]); v != nil {
			return runCommand(ctx, e, v, rest[1:], fs)
		} else {
			fmt.Fprintf(e.stderr, "shardd %s: unknown verb %q (want %s)\n", c.name, rest[0], c.verbList())
		}
		fmt.Fprintf(e.stderr, "Run 'shardd help %s' for its verbs and flags.\n", c.name)
		return exitUsage
	}
	if err = runFn(ctx, e, rest); err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "shardd %s: %v\n", c.name, err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "Run 'shardd help %s' for its flags.\n", c.name)
		return exitUsage
	}
	return exitError
}

func newFlagSet(c *command, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shardd "+c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { writeCommandUsage(fs.Output(), c, fs) }
	return fs
}

func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		writeUsage(e.stdout)
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "shardd help: unknown command %q\n\n", args[0])
		writeUsage(e.stderr)
		return exitUsage
	}
	if len(args) > 1 && len(c.verbs) > 0 {
		v := c.verb(args[1])
		if v == nil {
			fmt.Fprintf(e.stderr, "shardd help: %s has no verb %q (want %s)\n", c.name, args[1], c.verbList())
			return exitUsage
		}
		c = v
	}
	fs := newFlagSet(c, e.stdout)
	c.setup(fs)
	fs.Usage()
	return exitOK
}

// program is shardd's help.
func program() cli.Program {
	p := cli.Program{
		Name:     "shardd",
		Synopsis: "<command> [flags] [arguments]",
		About: `shardd runs and inspects the nodes of a shardd cluster, a sharded
Multi-Paxos key-value store, and reads and writes its keys.`,
		Notes: `Run 'shardd help <command>' or 'shardd <command> -h' for a command's flags
('shardd help kv <verb>' for a kv verb's).`,
	}
	for _, c := range commands {
		p.Commands = append(p.Commands, [2]string{c.name, c.summary})
	}
	return p
}

func writeUsage(w io.Writer) { program().WriteUsage(w) }

func writeCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	cli.WriteCommandHead(w, "shardd "+c.name+" "+c.args, c.doc)
	if len(c.verbs) > 0 {
		fmt.Fprint(w, "\nVerbs:\n")
		for _, v := range c.verbs {
			fmt.Fprintf(w, "  %s %s\n    \t%s\n", strings.TrimPrefix(v.name, c.name+" "), v.args, v.summary)
		}
		fmt.Fprintf(w, "\nRun 'shardd help %s <verb>' or 'shardd %s <verb> -h' for a verb's flags.\n", c.name, c.name)
		cli.WriteFlags(w, "Flags of every verb:", fs)
		return
	}
	cli.WriteFlags(w, "Flags:", fs)
}
