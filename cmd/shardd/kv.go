package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
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
and unreachable nodes until --timeout. The nodes serve keys without the
placement service: while it is down, --addr NODE still works.

` + kvBytesDoc + `

Flags may come before or after the arguments; --placement, --addr,
--timeout, --json, --hex and --base64 may also go before the verb. An
argument that starts with "-" goes after "--", as in:
shardd kv put -- -key value.

Exit status: 0 when the request was served (a del that found no key and a
cas that did not swap included: read the output); 1 when it failed, or
get found no key; 2 for a bad command line.

Examples ("shardd demo" prints them with its placement address):

  shardd kv put --placement 127.0.0.1:PORT k0001 hello
  shardd kv put --placement 127.0.0.1:PORT k0002 - < photo.jpg
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

// kvBytesDoc says how keys and values are written and shown, with the
// KV API's default limits (kvpb.DefaultLimits), which the nodes enforce.
var kvBytesDoc = fmt.Sprintf(`Keys and values are the arguments as typed (UTF-8 text), or, with --hex or
--base64, written in that encoding: the way to give any bytes. A VALUE of
"-" is read from standard input, and --value-file reads it from a file;
either takes the bytes as they are, and a value longer than one argument
may be (Linux caps it at 128 KiB) needs one of them. A key is 1 to %d
bytes and a value at most %d bytes (%d MiB): the KV API's limits.

--hex and --base64 show keys and values in that encoding too. --json
prints one JSON object whose keys and values are strings in the encoding
its "encoding" field names: "text" (the bytes themselves) when every one
is UTF-8, else "base64", so that different bytes never print alike; or
the encoding --hex or --base64 asks for.`, kvpb.DefaultMaxKeyBytes, kvpb.DefaultMaxValueBytes, kvpb.DefaultMaxValueBytes>>20)

// kvFlags are the flags of every kv verb.
type kvFlags struct {
	addr      string
	placement string
	timeout   time.Duration
	asJSON    bool
	hex       bool
	base64    bool
}

func (f *kvFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.placement, "placement", "", "gRPC `addresses` of the placement processes, comma-separated; if given, the router learns the ranges there and --addr is not used")
	fs.StringVar(&f.addr, "addr", defaultNodeAddr, "gRPC `host:port` of a node (its --listen address), or a comma-separated list of them; the router finds the other nodes from there")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long the command may take, retries through leader changes and unreachable nodes included")
	fs.BoolVar(&f.asJSON, "json", false, "print a JSON object instead of text (see 'shardd help kv')")
	fs.BoolVar(&f.hex, "hex", false, "keys and values are written in hex, on the command line and in the output")
	fs.BoolVar(&f.base64, "base64", false, "keys and values are written in base64 (standard, padded), on the command line and in the output")
}

// encoding is how the command line writes keys and values.
func (f *kvFlags) encoding() (byteEncoding, error) {
	switch {
	case f.hex && f.base64:
		return "", usagef("--hex and --base64 exclude each other: give one")
	case f.hex:
		return encHex, nil
	case f.base64:
		return encBase64, nil
	}
	return encText, nil
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
	// The placement client retries refused connections for as long as a
	// placement failover may take; a command that finds nothing listening
	// says so at once.
	if err := cli.Probe(ctx, t.addrs); err != nil {
		return nil, nil, fmt.Errorf("cannot reach %s: is %s running? (%v)%s", t.where(), t.runs(), err, nodesServeHint)
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

// nodesServeHint ends the messages of a kv command that cannot reach the
// placement service.
const nodesServeHint = "; the nodes serve keys without it: --addr NODE (a node's --listen address) instead of --placement still works"

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
	// that checks the command line l left after the flags and makes the
	// request.
	setup func(fs *flag.FlagSet) func(l *kvLine) (kvOp, error)
}

// kvRetryDoc is how the writes' help says what a retry does.
const kvRetryDoc = `A write whose outcome a leader change or a broken connection leaves
unknown is sent again, and applied at most once: the range remembers the
result of each numbered write and answers a retry with it. If the outcome
stays unknown (the retries or --timeout run out), the command fails and
says the write may or may not have been applied; "shardd kv get" tells
which.`

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
				target, op, err := checkKV(&f, parse, args, e.stdin)
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
// arguments left after the flags, which parse turns into the request.
// A VALUE of "-" reads stdin.
func checkKV(f *kvFlags, parse func(*kvLine) (kvOp, error), args []string, stdin io.Reader) (kvTarget, kvOp, error) {
	target, err := f.target()
	if err != nil {
		return kvTarget{}, nil, err
	}
	enc, err := f.encoding()
	if err != nil {
		return kvTarget{}, nil, err
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	op, err := parse(&kvLine{args: args, enc: enc, json: f.asJSON, stdin: stdin})
	if err != nil {
		return kvTarget{}, nil, err
	}
	return target, op, nil
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

// nestedStatus is how a gRPC status error that became another's message
// starts.
var nestedStatus = regexp.MustCompile(`rpc error: code = \w+ desc = `)

// explainKVError says what a failed kv request means and what to do.
// connecting is set for the errors of router.New: the client could not
// learn the cluster's ranges from the target. Errors that are not gRPC
// status errors (the verbs' own) are returned as they are.
func explainKVError(verb string, target kvTarget, timeout time.Duration, connecting bool, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	// A node's refusal reaches here wrapped by the router: say it once.
	msg := nestedStatus.ReplaceAllString(st.Message(), "")
	at := target.where()
	// A write whose fate the router could not learn says so (router's
	// ErrAmbiguous); every other failed write was certainly not applied.
	ambiguous := errors.Is(err, router.ErrAmbiguous)
	unknownFate := ""
	if ambiguous {
		msg = strings.TrimPrefix(msg, router.ErrAmbiguous.Error()+": ")
		unknownFate = fmt.Sprintf("; the %s may or may not have been applied: read the key (shardd kv get) to find out", verb)
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
				return fmt.Errorf("cannot reach %s within %v: is %s running there? (--timeout raises the wait) (%s)%s", at, timeout, target.runs(), msg, nodesServeHint)
			}
			return fmt.Errorf("the %s did not answer within %v: is %s running there, and not overloaded? (--timeout raises the wait) (%s)", at, timeout, target.runs(), msg)
		}
		return fmt.Errorf("cannot learn the cluster's ranges from the %s: %s: %s", at, st.Code(), msg)
	}
	switch st.Code() {
	case codes.Unavailable:
		if ambiguous {
			return fmt.Errorf("lost track of the %s: %s%s", verb, msg, unknownFate)
		}
		return fmt.Errorf("the cluster did not serve the request: it may have lost quorum (fewer than a majority of the range's replicas running) or be electing a leader; check `shardd ranges` and `shardd status`, and retry (%s)", msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer within %v: the cluster may have lost quorum, or be overloaded (--timeout raises the wait) (%s)%s", timeout, msg, unknownFate)
	}
	return fmt.Errorf("%s: %s", st.Code(), msg)
}

// kvLine is a verb's command line after its flags: its arguments, how
// they write keys and values, and how the output shows them.
type kvLine struct {
	args  []string
	enc   byteEncoding // of the arguments and the output
	json  bool         // print JSON
	stdin io.Reader    // what a VALUE of "-" reads
}

// count checks the count of the arguments: names are their names, the
// first required of them required.
func (l *kvLine) count(names []string, required int) error {
	if len(l.args) < required {
		return usagef("missing %s", strings.Join(names[len(l.args):required], " and "))
	}
	if len(l.args) > len(names) {
		return usagef("unexpected arguments %q after %s", l.args[len(names):], strings.Join(names, " "))
	}
	return nil
}

// bytes is argument i, named name, decoded.
func (l *kvLine) bytes(i int, name string) ([]byte, error) {
	return l.enc.decode(name, l.args[i])
}

// key is argument i, named name: a key, which is not empty.
func (l *kvLine) key(i int, name string) ([]byte, error) {
	if l.args[i] == "" {
		return nil, usagef("%s is empty: a key is at least one byte", name)
	}
	return l.bytes(i, name)
}

// value is a value: the bytes of file if it is not "", else those of
// standard input if argument i is "-", else argument i decoded.
func (l *kvLine) value(i int, name, file string) ([]byte, error) {
	switch {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--value-file: %w", err)
		}
		defer f.Close()
		return readValue(f, "--value-file "+file)
	case l.args[i] == "-":
		return readValue(l.stdin, "standard input")
	}
	return l.bytes(i, name)
}

// maxReadValue bounds the value read from a file or stdin: a node takes
// no message larger (its gRPC limit), so reading more is pointless, and
// a mistaken path (a disk image) fails at once rather than filling memory.
const maxReadValue = 64 << 20

// readValue reads a value from r, which from names in errors.
func readValue(r io.Reader, from string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxReadValue+1))
	if err != nil {
		return nil, fmt.Errorf("reading the value from %s: %w", from, err)
	}
	if len(b) > maxReadValue {
		return nil, fmt.Errorf("the value in %s is more than %d MiB, more than a node accepts (a value is at most %d bytes)", from, maxReadValue>>20, kvpb.DefaultMaxValueBytes)
	}
	return b, nil
}

// print prints the outcome of a verb: v as JSON with --json, else text
// and a newline.
func (l *kvLine) print(w io.Writer, text string, v any) error {
	if l.json {
		return writeJSON(w, v)
	}
	_, err := fmt.Fprintln(w, text)
	return err
}

// byteEncoding is how keys and values are written: on the command line,
// the bytes as typed ("text") or in hex or base64; in the output, the same
// (text quoted where it would be ambiguous, see show).
type byteEncoding string

const (
	encText   byteEncoding = "text"
	encHex    byteEncoding = "hex"
	encBase64 byteEncoding = "base64"
)

// decode reads an argument written in e; name names it in errors.
func (e byteEncoding) decode(name, s string) ([]byte, error) {
	var b []byte
	var err error
	switch e {
	case encHex:
		b, err = hex.DecodeString(s)
	case encBase64:
		b, err = base64.StdEncoding.DecodeString(s)
	default:
		return []byte(s), nil
	}
	if err != nil {
		return nil, usagef("%s %q is not %s (--%s): %v", name, s, e, e, err)
	}
	if b == nil {
		b = []byte{} // "" decodes to the empty value, not to no value
	}
	return b, nil
}

// encode writes b in e, for JSON: text is b itself.
func (e byteEncoding) encode(b []byte) string {
	switch e {
	case encHex:
		return hex.EncodeToString(b)
	case encBase64:
		return base64.StdEncoding.EncodeToString(b)
	}
	return string(b)
}

// show writes b on one line: text as it is if it is printable without
// spaces, else quoted (Go syntax); hex and base64 as they are; "" if
// empty.
func (e byteEncoding) show(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	if e == encText {
		return formatKey(b, false)
	}
	return e.encode(b)
}

// forJSON is the encoding of a JSON output holding bs: e if --hex or
// --base64 chose it; else text if every one of bs is UTF-8, and base64 if
// not, for JSON strings hold only UTF-8 (encoding/json turns other bytes
// into U+FFFD, so different keys would print alike).
func (e byteEncoding) forJSON(bs ...[]byte) byteEncoding {
	if e != encText {
		return e
	}
	for _, b := range bs {
		if !utf8.Valid(b) {
			return encBase64
		}
	}
	return encText
}

func staleOpts(stale bool) []router.ReadOption {
	if stale {
		return []router.ReadOption{router.Stale()}
	}
	return nil
}

const staleUsage = "let any replica answer from what it has applied, which may lag behind the latest writes (spares the leader, and works while the range has no leader)"

const valueFileUsage = "read the value from this `file`, its bytes exactly, instead of an argument"

// The JSON outputs of the verbs. Encoding names how their keys and
// values are written (see byteEncoding.forJSON).

type putOutput struct {
	Key      string       `json:"key"`
	OK       bool         `json:"ok"`
	Encoding byteEncoding `json:"encoding"`
}

type getOutput struct {
	Key   string `json:"key"`
	Found bool   `json:"found"`
	// Value is there if Found.
	Value    *string      `json:"value,omitempty"`
	Encoding byteEncoding `json:"encoding"`
}

type delOutput struct {
	Key      string       `json:"key"`
	Deleted  bool         `json:"deleted"`
	Encoding byteEncoding `json:"encoding"`
}

type casOutput struct {
	Key     string `json:"key"`
	Swapped bool   `json:"swapped"`
	// Found and Current are KEY's value that a cas that did not swap
	// found: Current is there if Found.
	Found    bool         `json:"found,omitempty"`
	Current  *string      `json:"current,omitempty"`
	Encoding byteEncoding `json:"encoding"`
}

var kvPut = &kvVerb{
	name:    "put",
	args:    "[--addr host:port] [--placement ADDRS] [--value-file FILE] KEY [VALUE | -]",
	summary: "set KEY to VALUE",
	doc: `
Put sets KEY to VALUE (which may be empty: "") and prints "ok" once a
majority of the replicas of the range holding KEY have stored it.

` + kvBytesDoc + `

` + kvRetryDoc,
	setup: func(fs *flag.FlagSet) func(*kvLine) (kvOp, error) {
		valueFile := fs.String("value-file", "", valueFileUsage)
		return func(l *kvLine) (kvOp, error) {
			names := []string{"KEY", "VALUE"}
			if *valueFile != "" {
				names = names[:1]
			}
			if err := l.count(names, len(names)); err != nil {
				if *valueFile != "" && len(l.args) == 2 {
					return nil, usagef("--value-file gives the value, but %q follows KEY", l.args[1])
				}
				return nil, err
			}
			key, err := l.key(0, "KEY")
			if err != nil {
				return nil, err
			}
			value, err := l.value(1, "VALUE", *valueFile)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				if err := s.Put(ctx, key, value); err != nil {
					return err
				}
				enc := l.enc.forJSON(key)
				return l.print(w, "ok", putOutput{Key: enc.encode(key), OK: true, Encoding: enc})
			}, nil
		}
	},
}

var kvGet = &kvVerb{
	name:    "get",
	args:    "[--addr host:port] [--placement ADDRS] [--stale] [--value-file FILE] KEY",
	summary: "print KEY's value",
	doc: `
Get prints KEY's value and a newline (the bytes as they are, unless --hex
or --base64 encodes them), or with --value-file writes the value's bytes,
exactly, to a file. If KEY does not exist, it prints "key not found" on
stderr (and with --json an object whose "found" is false on stdout) and
exits 1.

The read is linearizable (it sees every write acknowledged before it
began), served by the range's leader, unless --stale lets any replica
answer.`,
	setup: func(fs *flag.FlagSet) func(*kvLine) (kvOp, error) {
		stale := fs.Bool("stale", false, staleUsage)
		valueFile := fs.String("value-file", "", "write the value to this `file` (created or truncated), its bytes exactly, instead of printing it")
		return func(l *kvLine) (kvOp, error) {
			if err := l.count([]string{"KEY"}, 1); err != nil {
				return nil, err
			}
			key, err := l.key(0, "KEY")
			if err != nil {
				return nil, err
			}
			opts, file := staleOpts(*stale), *valueFile
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				value, found, err := s.Get(ctx, key, opts...)
				if err != nil {
					return err
				}
				if found && file != "" {
					if err := os.WriteFile(file, value, 0o644); err != nil {
						return fmt.Errorf("--value-file: %w", err)
					}
				}
				if l.json {
					enc := l.enc.forJSON(key, value)
					out := getOutput{Key: enc.encode(key), Found: found, Encoding: enc}
					if found && file == "" {
						v := enc.encode(value)
						out.Value = &v
					}
					if err := writeJSON(w, out); err != nil {
						return err
					}
				}
				if !found {
					return fmt.Errorf("key not found: %s", l.enc.show(key))
				}
				if l.json || file != "" {
					return nil
				}
				if l.enc != encText {
					value = []byte(l.enc.encode(value))
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

` + kvRetryDoc,
	setup: func(fs *flag.FlagSet) func(*kvLine) (kvOp, error) {
		return func(l *kvLine) (kvOp, error) {
			if err := l.count([]string{"KEY"}, 1); err != nil {
				return nil, err
			}
			key, err := l.key(0, "KEY")
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
				enc := l.enc.forJSON(key)
				return l.print(w, out, delOutput{Key: enc.encode(key), Deleted: found, Encoding: enc})
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
else quoted (Go syntax), or in hex or base64 with --hex or --base64; "" is
an empty value. When --limit stops the scan before END, a last line gives
the resume key: scan again from it (as START, with the same --hex or
--base64) for the keys after. --json prints {"kvs": [{"key": ...,
"value": ...}], "resume_key": ..., "encoding": ...}, "resume_key" only
then (see 'shardd help kv' for "encoding").

The keys are read by requests of up to 1,000 keys of one range each, each
linearizable (served by the range's leader; --stale lets any replica
answer): the result is not a snapshot of the whole span at one instant.`,
	setup: func(fs *flag.FlagSet) func(*kvLine) (kvOp, error) {
		limit := fs.Int("limit", 1000, "print at most `N` keys (0: no limit)")
		stale := fs.Bool("stale", false, staleUsage)
		return func(l *kvLine) (kvOp, error) {
			if err := l.count([]string{"START", "END"}, 1); err != nil {
				return nil, err
			}
			if *limit < 0 {
				return nil, usagef("--limit must be 0 (no limit) or more, not %d", *limit)
			}
			start, err := l.bytes(0, "START")
			if err != nil {
				return nil, err
			}
			var end []byte
			if len(l.args) == 2 {
				if end, err = l.bytes(1, "END"); err != nil {
					return nil, err
				}
			}
			if len(end) > 0 && bytes.Compare(start, end) >= 0 {
				return nil, usagef("START %s does not sort before END %s: the scan would be empty", l.enc.show(start), l.enc.show(end))
			}
			n, opts := *limit, staleOpts(*stale)
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				kvs, resume, err := s.Scan(ctx, start, end, n, opts...)
				if err != nil {
					return err
				}
				if l.json {
					return writeJSON(w, scanJSON(l.enc, kvs, resume))
				}
				return writeScanTable(w, l.enc, kvs, resume, n)
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
	ResumeKey string       `json:"resume_key,omitempty"`
	Encoding  byteEncoding `json:"encoding"`
}

// scanJSON is the --json of a scan; e is the command line's encoding.
func scanJSON(e byteEncoding, kvs []router.KeyValue, resume []byte) scanOutput {
	all := [][]byte{resume}
	for _, kv := range kvs {
		all = append(all, kv.Key, kv.Value)
	}
	enc := e.forJSON(all...)
	out := scanOutput{KVs: make([]kvJSON, 0, len(kvs)), ResumeKey: enc.encode(resume), Encoding: enc}
	for _, kv := range kvs {
		out.KVs = append(out.KVs, kvJSON{Key: enc.encode(kv.Key), Value: enc.encode(kv.Value)})
	}
	return out
}

func writeScanTable(w io.Writer, e byteEncoding, kvs []router.KeyValue, resume []byte, limit int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, kv := range kvs {
		fmt.Fprintf(tw, "%s\t%s\n", e.show(kv.Key), e.show(kv.Value))
	}
	if len(kvs) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if resume != nil {
		_, err := fmt.Fprintf(w, "(stopped at --limit %d; resume key: %s)\n", limit, e.show(resume))
		return err
	}
	return nil
}

var kvCAS = &kvVerb{
	name:    "cas",
	args:    "[--addr host:port] [--placement ADDRS] (--expect VALUE | --absent) [--delete | --value-file FILE] KEY [NEWVALUE | -]",
	summary: "compare-and-swap: set KEY to NEWVALUE (or delete it) if its value is as expected",
	doc: `
Cas atomically sets KEY to NEWVALUE, or deletes it with --delete, if its
current value is the --expect VALUE (--expect "" expects an empty value),
or, with --absent, if KEY does not exist. It prints "swapped", or "not
swapped (current: ...)" with the value it found, quoted, or "absent"
(exit status 0 either way). NEWVALUE "-" reads the new value from
standard input, and --value-file from a file; --expect is written like
the arguments (in hex with --hex).

` + kvRetryDoc,
	setup: func(fs *flag.FlagSet) func(*kvLine) (kvOp, error) {
		expect := fs.String("expect", "", "swap only if KEY's current value is `VALUE`")
		absent := fs.Bool("absent", false, "swap only if KEY does not exist")
		del := fs.Bool("delete", false, "delete KEY instead of setting it to NEWVALUE")
		valueFile := fs.String("value-file", "", valueFileUsage)
		return func(l *kvLine) (kvOp, error) {
			expectSet := false
			fs.Visit(func(f *flag.Flag) { expectSet = expectSet || f.Name == "expect" })
			if *del && *valueFile != "" {
				return nil, usagef("--delete and --value-file exclude each other: a delete sets no value")
			}
			names, required := []string{"KEY", "NEWVALUE"}, 2
			if *del || *valueFile != "" {
				names, required = names[:1], 1
			}
			if err := l.count(names, required); err != nil {
				switch {
				case *del && len(l.args) == 2:
					return nil, usagef("--delete takes no NEWVALUE, but %q follows KEY", l.args[1])
				case *valueFile != "" && len(l.args) == 2:
					return nil, usagef("--value-file gives NEWVALUE, but %q follows KEY", l.args[1])
				case len(l.args) == 1:
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
			key, err := l.key(0, "KEY")
			if err != nil {
				return nil, err
			}
			cas := router.CAS{Key: key, ExpectAbsent: *absent, Delete: *del}
			if expectSet {
				if cas.Expected, err = l.enc.decode("--expect", *expect); err != nil {
					return nil, err
				}
			}
			if !*del {
				if cas.NewValue, err = l.value(1, "NEWVALUE", *valueFile); err != nil {
					return nil, err
				}
			}
			return func(ctx context.Context, s kvStore, w io.Writer) error {
				res, err := s.CompareAndSwap(ctx, cas)
				if err != nil {
					return err
				}
				out := "swapped"
				switch {
				case res.Swapped:
				case res.Found && l.enc == encText:
					out = "not swapped (current: " + strconv.Quote(string(res.Current)) + ")"
				case res.Found:
					out = "not swapped (current: " + l.enc.show(res.Current) + ")"
				default:
					out = "not swapped (current: absent)"
				}
				enc := l.enc.forJSON(key, res.Current)
				jout := casOutput{Key: enc.encode(key), Swapped: res.Swapped, Encoding: enc}
				if !res.Swapped && res.Found {
					cur := enc.encode(res.Current)
					jout.Found, jout.Current = true, &cur
				}
				return l.print(w, out, jout)
			}, nil
		}
	},
}
