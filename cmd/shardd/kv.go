package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/router"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultNodeAddr is start's default --listen address, and so where the
// commands that talk to a node look for one without --addr.
const defaultNodeAddr = "127.0.0.1:7100"

var kvCommand = &command{
	name:    "kv",
	args:    "<verb> [flags] [arguments]",
	summary: "read and write keys: put, get, del, scan, cas",
	doc: `
Kv reads and writes keys through the router client library. It learns the
cluster's ranges from the placement service --placement names, or without
it from the nodes --addr names (any node of the cluster will do; list
several, comma-separated, in case one is down), sends each request to the
leader of the range holding its key, and retries through leader changes
and unreachable nodes until --timeout.

Keys and values are the command-line arguments as typed (UTF-8 text);
keys must not be empty. Flags go before the arguments; --placement, --addr
and --timeout may also go before the verb. An argument that starts with "-"
goes after "--", as in: shardd kv put -- -key value.

Exit status: 0 when the request was served (a del that found no key and a
cas that did not swap included: read the output); 1 when it failed, or
get found no key; 2 for a bad command line.

Examples ("shardd demo" prints them with its placement address):

  shardd kv put --placement 127.0.0.1:PORT k0001 hello
  shardd kv get --placement 127.0.0.1:PORT k0001
  shardd kv scan --placement 127.0.0.1:PORT k0000 k9999
  shardd kv cas --placement 127.0.0.1:PORT --expect hello k0001 world
  shardd kv del --placement 127.0.0.1:PORT k0001`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f kvFlags
		f.register(fs)
		return nil // a verb runs
	},
	verbs: kvVerbCommands(),
}

// kvFlags are the flags of every kv verb.
type kvFlags struct {
	addr      string
	placement string
	timeout   time.Duration
}

func (f *kvFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.placement, "placement", "", "gRPC `addresses` of the placement processes, comma-separated; if given, the router learns the ranges there and --addr is not used")
	fs.StringVar(&f.addr, "addr", defaultNodeAddr, "gRPC `host:port` of a node (its --listen address), or a comma-separated list of them; the router finds the other nodes from there")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long the command may take, retries through leader changes and unreachable nodes included")
}

// kvTarget is where a kv command learns the cluster's ranges.
type kvTarget struct {
	addrs     []string
	placement bool // addrs are placement processes, not nodes
	// tracer traces the requests (see clientTracing); nil for none.
	tracer trace.TracerProvider
}

// where names the target in messages: "node at a:1", "placement at a:1".
func (t kvTarget) where() string {
	what := "node"
	if t.placement {
		what = "placement"
	}
	if len(t.addrs) > 1 {
		what += "s"
		if t.placement {
			what = "placement processes"
		}
	}
	return what + " at " + strings.Join(t.addrs, ", ")
}

// runs names the command that should be serving at the target.
func (t kvTarget) runs() string {
	if t.placement {
		return "`placement start`"
	}
	return "`shardd start`"
}

// connect returns a router client that learns ranges from the target.
func (t kvTarget) connect(ctx context.Context) (*router.Client, func(), error) {
	if !t.placement {
		c, err := router.New(ctx, router.Config{Seeds: t.addrs, TracerProvider: t.tracer})
		if err != nil {
			return nil, nil, err
		}
		return c, func() { c.Close() }, nil
	}
	pc, err := client.New(t.addrs)
	if err != nil {
		return nil, nil, err
	}
	c, err := router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}, TracerProvider: t.tracer})
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); pc.Close() }, nil
}

// target checks the flags and returns where to learn the ranges.
func (f *kvFlags) target() (kvTarget, error) {
	if f.timeout <= 0 {
		return kvTarget{}, usagef("--timeout must be positive, not %v", f.timeout)
	}
	if f.placement != "" {
		addrs, err := cli.ParseAddrList(f.placement)
		if err != nil {
			return kvTarget{}, usagef("--placement: %v", err)
		}
		return kvTarget{addrs: addrs, placement: true}, nil
	}
	seeds, err := cli.ParseAddrList(f.addr)
	if err != nil {
		return kvTarget{}, usagef("--addr: %v", err)
	}
	if len(seeds) == 0 {
		return kvTarget{}, usagef("--addr is empty: give the host:port of a node")
	}
	return kvTarget{addrs: seeds}, nil
}

// kvStore is what the kv verbs ask of a router.Client.
type kvStore interface {
	Get(ctx context.Context, key []byte, opts ...router.ReadOption) ([]byte, bool, error)
	Put(ctx context.Context, key, value []byte) error
	Delete(ctx context.Context, key []byte) (bool, error)
	Scan(ctx context.Context, start, end []byte, limit int, opts ...router.ReadOption) ([]router.KeyValue, []byte, error)
	CompareAndSwap(ctx context.Context, cas router.CAS) (router.CASResult, error)
}

var _ kvStore = (*router.Client)(nil)

// kvOp is a verb's request, made from its checked command line: it sends
// the request to s and prints the outcome on w.
type kvOp func(ctx context.Context, s kvStore, w io.Writer) error

// kvVerb is one verb of kv.
type kvVerb struct {
	name    string
	args    string // synopsis after "shardd kv <name>"
	summary string
	doc     string
	// setup defines the verb's own flags on fs and returns the function
	// that checks the arguments left after the flags and makes the
	// request.
	setup func(fs *flag.FlagSet) func(args []string) (kvOp, error)
}

var kvVerbs = []*kvVerb{kvPut, kvGet, kvDel, kvScan, kvCAS}

func kvVerbCommands() []*command {
	cmds := make([]*command, 0, len(kvVerbs))
	for _, v := range kvVerbs {
		cmds = append(cmds, v.command())
	}
	return cmds
}

// command is v as a verb of kvCommand.
func (v *kvVerb) command() *command {
	return &command{
		name:    "kv " + v.name,
		args:    v.args,
		summary: v.summary,
		doc:     v.doc,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var f kvFlags
			var tf provider.Flags
			f.register(fs)
			tf.Register(fs)
			parse := v.setup(fs)
			return func(ctx context.Context, e *env, args []string) error {
				target, op, err := checkKV(fs, &f, parse, args)
				if err != nil {
					return err
				}
				stopTracing, err := clientTracing(&tf, &target)
				if err != nil {
					return err
				}
				defer stopTracing()
				return runKV(ctx, e, v.name, target, f.timeout, op)
			}
		},
	}
}

// checkKV checks a verb's command line: the common flags f, then the
// arguments left after the flags of fs, which parse turns into the
// request.
func checkKV(fs *flag.FlagSet, f *kvFlags, parse func([]string) (kvOp, error), args []string) (kvTarget, kvOp, error) {
	target, err := f.target()
	if err != nil {
		return kvTarget{}, nil, err
	}
	op, err := parse(args)
	if err != nil {
		return kvTarget{}, nil, withFlagHint(fs, args, err)
	}
	return target, op, nil
}

// withFlagHint adds to a usage error the likely cause when an argument
// is one of the verb's flags, given after the arguments where the flag
// package no longer looks for flags.
func withFlagHint(fs *flag.FlagSet, args []string, err error) error {
	var ue *usageError
	if !errors.As(err, &ue) {
		return err
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name != "" && fs.Lookup(name) != nil {
			return usagef("%v (%s was taken as an argument: flags go before the arguments)", err, a)
		}
	}
	return err
}

// runKV connects a router client to the target and runs op with it, all
// within timeout.
func runKV(ctx context.Context, e *env, verb string, target kvTarget, timeout time.Duration, op kvOp) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, closeClient, err := target.connect(ctx)
	if err != nil {
		return explainKVError(verb, target, timeout, true, err)
	}
	defer closeClient()
	if err := op(ctx, c, e.stdout); err != nil {
		return explainKVError(verb, target, timeout, false, err)
	}
	return nil
}

// explainKVError says what a failed kv request means and what to do.
// connecting is set for the errors of router.New: the client could not
// learn the cluster's ranges from the target. Errors that are not gRPC
// status errors (the verbs' own) are returned as they are.
func explainKVError(verb string, target kvTarget, timeout time.Duration, connecting bool, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	at := target.where()
	unknownFate := ""
	if verb == "cas" {
		unknownFate = "; the cas may or may not have been applied: read the key (shardd kv get) to find out"
	}
	switch st.Code() {
	case codes.Canceled:
		return errors.New("interrupted")
	case codes.InvalidArgument:
		return fmt.Errorf("the request was refused: %s", msg)
	}
	if connecting {
		switch st.Code() {
		case codes.Unavailable:
			const noAnswer = "no node answered a range lookup: "
			if i := strings.Index(msg, noAnswer); i >= 0 {
				return fmt.Errorf("cannot reach %s: is %s running? (%s)", at, target.runs(), msg[i+len(noAnswer):])
			}
			if target.placement {
				return fmt.Errorf("the %s cannot say where the ranges are yet (%s): have enough nodes registered for it to create them? (see `shardd nodes`)", at, msg)
			}
			return fmt.Errorf("cannot learn the cluster's ranges from the %s (%s): is it a node of a bootstrapped cluster?", at, msg)
		case codes.DeadlineExceeded:
			if target.placement {
				return fmt.Errorf("cannot reach %s within %v: is %s running there? (--timeout raises the wait) (%s)", at, timeout, target.runs(), msg)
			}
			return fmt.Errorf("the %s did not answer within %v: is %s running there, and not overloaded? (--timeout raises the wait) (%s)", at, timeout, target.runs(), msg)
		}
		return fmt.Errorf("cannot learn the cluster's ranges from the %s: %s: %s", at, st.Code(), msg)
	}
	switch st.Code() {
	case codes.Unavailable:
		if verb == "cas" && strings.Contains(msg, "may or may not have been applied") {
			return fmt.Errorf("lost track of the cas: %s%s", msg, unknownFate)
		}
		return fmt.Errorf("the cluster did not serve the request: it may have lost quorum (fewer than a majority of the range's replicas running) or be electing a leader; check `shardd ranges` and `shardd status`, and retry (%s)", msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer within %v: the cluster may have lost quorum, or be overloaded (--timeout raises the wait) (%s)%s", timeout, msg, unknownFate)
	}
	return fmt.Errorf("%s: %s", st.Code(), msg)
}

// kvArgs checks the count of a verb's arguments: names are their names,
// the first required of them required.
func kvArgs(args []string, names []string, required int) error {
	if len(args) < required {
		return usagef("missing %s", strings.Join(names[len(args):required], " and "))
	}
	if len(args) > len(names) {
		return usagef("unexpected arguments %q after %s", args[len(names):], strings.Join(names, " "))
	}
	return nil
}

// keyArg is a key from the command line: any non-empty string.
func keyArg(name, s string) ([]byte, error) {
	if s == "" {
		return nil, usagef("%s is empty: a key is at least one byte", name)
	}
	return []byte(s), nil
}

// showBytes shows a key or value on one line: as it is if it is printable
// without spaces, else quoted; "" if empty.
func showBytes(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	return formatKey(b, false)
}

func staleOpts(stale bool) []router.ReadOption {
	if stale {
		return []router.ReadOption{router.Stale()}
	}
	return nil
}

const staleUsage = "let any replica answer from what it has applied, which may lag behind the latest writes (spares the leader, and works while the range has no leader)"

var kvPut = &kvVerb{
	name:    "put",
	args:    "[--addr host:port] [--placement ADDRS] KEY VALUE",
	summary: "set KEY to VALUE",
	doc: `
Put sets KEY to VALUE (which may be empty: "") and prints "ok" once a
majority of the replicas of the range holding KEY have stored it.

A put that a leader change or a broken connection leaves in doubt is sent
again: harmless, unless another client wrote KEY in between.`,
	setup: func(fs *flag.FlagSet) func([]string) (kvOp, error) {
		return func(args []string) (kvOp, error) {
			if err := kvArgs(args, []string{"KEY", "VALUE"}, 2); err != nil {
				return nil, err
			}
			key, err := keyArg("KEY", args[0])
			if err != nil {
				return nil, err
			}
			value := []byte(args[1])
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				if err := s.Put(ctx, key, value); err != nil {
					return err
				}
				_, err := fmt.Fprintln(w, "ok")
				return err
			}, nil
		}
	},
}

var kvGet = &kvVerb{
	name:    "get",
	args:    "[--addr host:port] [--placement ADDRS] [--stale] KEY",
	summary: "print KEY's value",
	doc: `
Get prints KEY's value and a newline. If KEY does not exist, it prints
"key not found" on stderr and exits 1.

The read is linearizable (it sees every write acknowledged before it
began), served by the range's leader, unless --stale lets any replica
answer.`,
	setup: func(fs *flag.FlagSet) func([]string) (kvOp, error) {
		stale := fs.Bool("stale", false, staleUsage)
		return func(args []string) (kvOp, error) {
			if err := kvArgs(args, []string{"KEY"}, 1); err != nil {
				return nil, err
			}
			key, err := keyArg("KEY", args[0])
			if err != nil {
				return nil, err
			}
			opts := staleOpts(*stale)
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				value, found, err := s.Get(ctx, key, opts...)
				if err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("key not found: %s", showBytes(key))
				}
				_, err = w.Write(append(value, '\n'))
				return err
			}, nil
		}
	},
}

var kvDel = &kvVerb{
	name:    "del",
	args:    "[--addr host:port] [--placement ADDRS] KEY",
	summary: "delete KEY",
	doc: `
Del deletes KEY and prints "deleted", or "not found" if there was no such
key (exit status 0 either way).

A delete that a leader change or a broken connection leaves in doubt is
sent again, and then reports what the last attempt found: "not found"
although the first one may have deleted the key.`,
	setup: func(fs *flag.FlagSet) func([]string) (kvOp, error) {
		return func(args []string) (kvOp, error) {
			if err := kvArgs(args, []string{"KEY"}, 1); err != nil {
				return nil, err
			}
			key, err := keyArg("KEY", args[0])
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				found, err := s.Delete(ctx, key)
				if err != nil {
					return err
				}
				out := "deleted"
				if !found {
					out = "not found"
				}
				_, err = fmt.Fprintln(w, out)
				return err
			}, nil
		}
	},
}

var kvScan = &kvVerb{
	name:    "scan",
	args:    "[--addr host:port] [--placement ADDRS] [--limit N] [--json] [--stale] START [END]",
	summary: "list the keys from START up to END, and their values, across ranges",
	doc: `
Scan prints the keys in [START, END) in order, with their values, walking
the ranges that hold them. START "" is the start of the key space; without
END (or with END "") the scan runs to its end.

The table shows a key or value as it is if it is printable without spaces,
else quoted (Go syntax); "" is an empty value. When --limit stops the scan
before END, a last line gives the resume key: scan again from it (as
START) for the keys after. In --json, keys and values are strings (bytes
that are not UTF-8 show as U+FFFD) and "resume_key" is there only then.

The keys are read by requests of up to 1,000 keys of one range each, each
linearizable (served by the range's leader; --stale lets any replica
answer): the result is not a snapshot of the whole span at one instant.`,
	setup: func(fs *flag.FlagSet) func([]string) (kvOp, error) {
		limit := fs.Int("limit", 1000, "print at most `N` keys (0: no limit)")
		asJSON := fs.Bool("json", false, "print JSON instead of a table: {\"kvs\": [{\"key\": ..., \"value\": ...}], \"resume_key\": ...}")
		stale := fs.Bool("stale", false, staleUsage)
		return func(args []string) (kvOp, error) {
			if err := kvArgs(args, []string{"START", "END"}, 1); err != nil {
				return nil, err
			}
			if *limit < 0 {
				return nil, usagef("--limit must be 0 (no limit) or more, not %d", *limit)
			}
			start, end := []byte(args[0]), []byte(nil)
			if len(args) == 2 {
				end = []byte(args[1])
			}
			if len(end) > 0 && bytes.Compare(start, end) >= 0 {
				return nil, usagef("START %s does not sort before END %s: the scan would be empty", showBytes(start), showBytes(end))
			}
			n, jsonOut, opts := *limit, *asJSON, staleOpts(*stale)
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				kvs, resume, err := s.Scan(ctx, start, end, n, opts...)
				if err != nil {
					return err
				}
				if jsonOut {
					return writeJSON(w, scanJSON(kvs, resume))
				}
				return writeScanTable(w, kvs, resume, n)
			}, nil
		}
	},
}

// kvJSON is a key and its value in scan --json.
type kvJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type scanOutput struct {
	KVs []kvJSON `json:"kvs"`
	// ResumeKey is where to continue when --limit stopped the scan.
	ResumeKey string `json:"resume_key,omitempty"`
}

func scanJSON(kvs []router.KeyValue, resume []byte) scanOutput {
	out := scanOutput{KVs: make([]kvJSON, 0, len(kvs)), ResumeKey: string(resume)}
	for _, kv := range kvs {
		out.KVs = append(out.KVs, kvJSON{Key: string(kv.Key), Value: string(kv.Value)})
	}
	return out
}

func writeScanTable(w io.Writer, kvs []router.KeyValue, resume []byte, limit int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, kv := range kvs {
		fmt.Fprintf(tw, "%s\t%s\n", showBytes(kv.Key), showBytes(kv.Value))
	}
	if len(kvs) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if resume != nil {
		_, err := fmt.Fprintf(w, "(stopped at --limit %d; resume key: %s)\n", limit, showBytes(resume))
		return err
	}
	return nil
}

var kvCAS = &kvVerb{
	name:    "cas",
	args:    "[--addr host:port] [--placement ADDRS] (--expect VALUE | --absent) [--delete] KEY [NEWVALUE]",
	summary: "compare-and-swap: set KEY to NEWVALUE (or delete it) if its value is as expected",
	doc: `
Cas atomically sets KEY to NEWVALUE, or deletes it with --delete, if its
current value is the --expect VALUE (--expect "" expects an empty value),
or, with --absent, if KEY does not exist. It prints "swapped", or "not
swapped (current: ...)" with the value it found, quoted, or "absent"
(exit status 0 either way).

Unlike put and del, a cas is not sent again once it may have reached the
range: if a leader change, a broken connection or --timeout leaves its
fate unknown, cas fails and says so, and "shardd kv get" tells whether it
was applied.`,
	setup: func(fs *flag.FlagSet) func([]string) (kvOp, error) {
		expect := fs.String("expect", "", "swap only if KEY's current value is `VALUE`")
		absent := fs.Bool("absent", false, "swap only if KEY does not exist")
		del := fs.Bool("delete", false, "delete KEY instead of setting it to NEWVALUE")
		return func(args []string) (kvOp, error) {
			expectSet := false
			fs.Visit(func(f *flag.Flag) { expectSet = expectSet || f.Name == "expect" })
			names, required := []string{"KEY", "NEWVALUE"}, 2
			if *del {
				names, required = names[:1], 1
			}
			if err := kvArgs(args, names, required); err != nil {
				if *del && len(args) == 2 {
					return nil, usagef("--delete takes no NEWVALUE, but %q follows KEY", args[1])
				}
				if !*del && len(args) == 1 {
					return nil, usagef("missing NEWVALUE (or --delete, to delete KEY)")
				}
				return nil, err
			}
			switch {
			case expectSet && *absent:
				return nil, usagef("--expect and --absent exclude each other: give one")
			case !expectSet && !*absent:
				return nil, usagef("missing the condition: --expect VALUE (swap if KEY's value is VALUE) or --absent (swap if KEY does not exist)")
			}
			key, err := keyArg("KEY", args[0])
			if err != nil {
				return nil, err
			}
			cas := router.CAS{Key: key, ExpectAbsent: *absent, Delete: *del}
			if expectSet {
				cas.Expected = []byte(*expect)
			}
			if !*del {
				cas.NewValue = []byte(args[1])
			}
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				res, err := s.CompareAndSwap(ctx, cas)
				if err != nil {
					return err
				}
				out := "swapped"
				switch {
				case res.Swapped:
				case res.Found:
					out = "not swapped (current: " + strconv.Quote(string(res.Current)) + ")"
				default:
					out = "not swapped (current: absent)"
				}
				_, err = fmt.Fprintln(w, out)
				return err
			}, nil
		}
	},
}
