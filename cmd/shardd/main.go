// Command shardd runs and inspects the nodes of a shardd cluster, a sharded
// Multi-Paxos key-value store.
//
//	shardd start   run one node
//	shardd demo    run a three-node cluster inside this process
//	shardd ranges  list the ranges a node hosts
//	shardd status  show a node's status
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
	// releaseSignals, if set, is called once a command has begun shutting
	// down after a signal, so that a second Ctrl-C kills the process.
	releaseSignals func()
	// tweakNode, if set, adjusts each node.Config before the node starts
	// (tests inject a failing filesystem through it).
	tweakNode func(*node.Config)
}

// command is one subcommand. setup defines the command's flags on fs and
// returns the function that runs it with the arguments left after the
// flags. New subcommands (such as kv, on top of the router) are one more
// entry in commands.
type command struct {
	name    string
	args    string // synopsis after "shardd <name>"
	summary string // one line, for the command list
	doc     string // paragraphs shown by "shardd help <name>" and -h
	setup   func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

// commands is the subcommand table, in the order help lists it.
var commands []*command

func init() {
	commands = []*command{startCommand, demoCommand, rangesCommand, statusCommand}
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
	e := &env{stdout: os.Stdout, stderr: os.Stderr, releaseSignals: stop}
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
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "shardd: unknown command %q\n\n", name)
		writeUsage(e.stderr)
		return exitUsage
	}
	fs := newFlagSet(c, e.stderr)
	runFn := c.setup(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // fs printed the error and the usage
	}
	err := runFn(ctx, e, fs.Args())
	if err == nil {
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
	fs := newFlagSet(c, e.stdout)
	c.setup(fs)
	fs.Usage()
	return exitOK
}

func writeUsage(w io.Writer) {
	fmt.Fprint(w, `shardd runs and inspects the nodes of a shardd cluster, a sharded
Multi-Paxos key-value store.

Usage:
  shardd <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help     explain a command and its flags

Run 'shardd help <command>' or 'shardd <command> -h' for a command's flags.
Flags may be written -flag or --flag, with a value as --flag=value or
--flag value.
`)
}

func writeCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: shardd %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.doc))
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
}
