package group

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// transcriptEnv runs the commands of one transcript (transcript_test.go)
// on the harness's world. Every command prints the messages handed out by
// Readys while it ran (and those the network dropped), then one line per
// replica whose role, ballot, promise, chosen point or configuration
// changed. The commands:
//
//	new voters=1,2,3 [learners=4] [max-inflight=16] [log-retention=1024]
//	elect <id>                  campaign now and stabilize; <id> must win
//	campaign <id>               start Phase 1, process nothing
//	explicit-campaign <id>      Campaign, as the node calls it (no probe)
//	propose <id> <value>
//	propose-conf-change <id> add-learner=<r> | promote=<r> | remove=<r>
//	transfer-leader <id> <to>
//	process-ready <id>...       persist, send, apply, Advance until idle
//	deliver-msgs [from=] [to=] [type=]   deliver the queued matching ones
//	hold [from=] [to=] [type=]  take matching messages off the network
//	unhold                      put them back on it
//	stabilize                   deliver and process until nothing is left
//	tick <id> [n]               tick one replica, processing nothing
//	tick-all [n]                tick every replica, stabilizing after each
//	advance-clocks lease | <ticks>
//	drop-to <id> | isolate <id> | cut <a> <b> | heal
//	add-replica <id>            a new, empty replica
//	wipe <id>                   lose all of <id>'s state; restart it empty
//	crash-restart <id>          lose what <id> did not persist
//	status [<id>...]
//	log <id>
type transcriptEnv struct {
	t    *testing.T
	n    *network
	held []pb.Message
}

// view is what the state-change lines of a command compare.
type view struct {
	role     Role
	ballot   pb.Ballot
	promised pb.Ballot
	chosen   uint64
	conf     string
}

func (e *transcriptEnv) views() map[uint64]view {
	out := make(map[uint64]view)
	if e.n == nil {
		return out
	}
	for _, id := range e.n.ids() {
		r := e.n.nodes[id]
		out[id] = view{role: r.role, ballot: r.ballot, promised: r.promised, chosen: r.chosen, conf: describeConfig(r.conf)}
	}
	return out
}

func describeConfig(c pb.Config) string {
	s := fmt.Sprintf("voters=%v", c.Voters)
	if len(c.Learners) > 0 {
		s += fmt.Sprintf(" learners=%v", c.Learners)
	}
	return s
}

// changes describes, one line per replica, what differs between two views.
func changes(before, after map[uint64]view, ids []uint64) []string {
	var out []string
	for _, id := range ids {
		a, b := after[id], before[id]
		if a == b {
			continue
		}
		var fs []string
		if a.role != b.role {
			fs = append(fs, "role="+a.role.String())
		}
		if a.ballot != b.ballot && a.role != Follower {
			fs = append(fs, "ballot="+a.ballot.String())
		}
		if a.promised != b.promised {
			fs = append(fs, "promised="+a.promised.String())
		}
		if a.chosen != b.chosen {
			fs = append(fs, fmt.Sprintf("chosen=%d", a.chosen))
		}
		if a.conf != b.conf {
			fs = append(fs, "config: "+a.conf)
		}
		if len(fs) > 0 {
			out = append(out, fmt.Sprintf("%d: %s", id, strings.Join(fs, " ")))
		}
	}
	return out
}

func (e *transcriptEnv) run(c transcriptCmd) string {
	e.t.Helper()
	before := e.views()
	sent := 0
	if e.n != nil {
		sent = len(e.n.sent)
	}
	var out []string
	printf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch c.name {
	case "new":
		e.cmdNew(c)
	case "elect":
		e.n.elect(e.id(c, 0))
	case "campaign":
		e.n.node(e.id(c, 0)).campaign(pb.Ballot{})
	case "explicit-campaign":
		e.n.node(e.id(c, 0)).Campaign()
	case "propose":
		if err := e.n.node(e.id(c, 0)).Propose([]byte(e.arg(c, 1))); err != nil {
			printf("error: %v", err)
		}
	case "propose-conf-change":
		if err := e.n.node(e.id(c, 0)).ProposeConfChange(e.confChange(c)); err != nil {
			printf("error: %v", err)
		}
	case "transfer-leader":
		if err := e.n.node(e.id(c, 0)).TransferLeader(e.id(c, 1)); err != nil {
			printf("error: %v", err)
		}
	case "process-ready":
		for i := range c.args {
			for e.n.processReady(e.id(c, i)) {
			}
		}
	case "deliver-msgs":
		match := e.filter(c)
		var todo []pb.Message
		e.n.queue = slices.DeleteFunc(e.n.queue, func(m pb.Message) bool {
			if match(m) {
				todo = append(todo, m)
				return true
			}
			return false
		})
		for _, m := range todo {
			verb := "deliver"
			if e.n.blocked(m) {
				verb = "dropped"
			}
			printf("%s %s", verb, describeMsg(m))
			e.n.deliver(m)
		}
		sent = len(e.n.sent) // the drops are printed above, in order
	case "hold":
		held := e.n.dropQueued(e.filter(c))
		for _, m := range held {
			printf("hold %s", describeMsg(m))
		}
		e.held = append(e.held, held...)
	case "unhold":
		for _, m := range e.held {
			printf("unhold %s", describeMsg(m))
		}
		e.n.queue = append(e.n.queue, e.held...)
		e.held = nil
	case "stabilize":
		e.n.stabilize()
	case "tick":
		for range e.count(c, 1, 1) {
			e.n.tick(e.id(c, 0))
		}
	case "tick-all":
		e.n.tickAll(e.count(c, 0, 1))
	case "advance-clocks":
		d := int64(0)
		if e.arg(c, 0) == "lease" {
			d = testLease
		} else {
			d = int64(e.count(c, 0, 1)) * testTick
		}
		e.n.advanceClocks(d)
	case "drop-to":
		e.n.dropTo(e.id(c, 0))
	case "isolate":
		e.n.isolate(e.id(c, 0))
	case "cut":
		a, b := e.id(c, 0), e.id(c, 1)
		e.n.cut[[2]uint64{a, b}], e.n.cut[[2]uint64{b, a}] = true, true
	case "heal":
		e.n.heal()
	case "add-replica":
		id := e.id(c, 0)
		tr := e.n.addReplica(id, State{})
		tr.clock.now = e.n.node(e.n.ids()[0]).clock.now
	case "wipe":
		e.n.wipe(e.id(c, 0))
	case "crash-restart":
		e.n.crashAndRestart(e.id(c, 0))
	case "status":
		ids := e.n.ids()
		if len(c.args) > 0 {
			ids = nil
			for i := range c.args {
				ids = append(ids, e.id(c, i))
			}
		}
		for _, id := range ids {
			out = append(out, e.status(id))
		}
		return strings.Join(out, "\n")
	case "log":
		r := e.n.node(e.id(c, 0))
		out = append(out, describeEntries(r.log.slice(r.meta.Index+1, r.log.last()))...)
		return strings.Join(out, "\n")
	default:
		e.t.Fatalf("%s: unknown command %q", c.pos, c.name)
	}
	if e.n != nil {
		out = append(slices.Clone(e.n.sent[sent:]), out...)
		out = append(out, changes(before, e.views(), e.n.ids())...)
	}
	return strings.Join(out, "\n")
}

func (e *transcriptEnv) cmdNew(c transcriptCmd) {
	conf := pb.Config{Voters: e.ids(c, "voters"), Learners: e.ids(c, "learners")}
	tweak := func(cfg *Config) {
		if v, ok := c.kv["max-inflight"]; ok {
			cfg.MaxInflight = e.atoi(c, v)
		}
		if v, ok := c.kv["log-retention"]; ok {
			cfg.LogRetention = uint64(e.atoi(c, v))
		}
	}
	e.n = newNetwork(e.t, conf, tweak)
}

func (e *transcriptEnv) confChange(c transcriptCmd) pb.ConfChange {
	for k, t := range map[string]pb.ConfChangeType{"add-learner": pb.ConfAddLearner, "promote": pb.ConfPromote, "remove": pb.ConfRemove} {
		if v, ok := c.kv[k]; ok {
			return pb.ConfChange{Type: t, Replica: uint64(e.atoi(c, v))}
		}
	}
	e.t.Fatalf("%s: want add-learner=, promote= or remove=", c.pos)
	return pb.ConfChange{}
}

// filter matches the messages named by from=, to= and type= (any if
// absent).
func (e *transcriptEnv) filter(c transcriptCmd) func(pb.Message) bool {
	from, to := uint64(0), uint64(0)
	if v, ok := c.kv["from"]; ok {
		from = uint64(e.atoi(c, v))
	}
	if v, ok := c.kv["to"]; ok {
		to = uint64(e.atoi(c, v))
	}
	typ := c.kv["type"]
	return func(m pb.Message) bool {
		return (from == 0 || m.From == from) && (to == 0 || m.To == to) && (typ == "" || m.Type.String() == typ)
	}
}

func (e *transcriptEnv) status(id uint64) string {
	r := e.n.node(id)
	s := fmt.Sprintf("%d: %v", id, r.role)
	if r.role != Follower {
		s += fmt.Sprintf(" ballot=%v", r.ballot)
	}
	s += fmt.Sprintf(" promised=%v chosen=%d applied=%d last=%d %s", r.promised, r.chosen, r.applied, r.log.last(), describeConfig(r.conf))
	if r.probe != nil {
		s += fmt.Sprintf(" probing=%v", r.probe.ballot)
	}
	if r.role == Leader {
		if r.LeaseValid() {
			s += " lease=valid"
		}
		if pc := r.lead.pendingConf; pc != 0 {
			s += fmt.Sprintf(" pending-conf=%d", pc)
		}
	}
	if r.Transferring() {
		s += " transferring"
	}
	return s
}

func (e *transcriptEnv) arg(c transcriptCmd, i int) string {
	if i >= len(c.args) {
		e.t.Fatalf("%s: %s needs argument %d", c.pos, c.name, i+1)
	}
	return c.args[i]
}

func (e *transcriptEnv) id(c transcriptCmd, i int) uint64 { return uint64(e.atoi(c, e.arg(c, i))) }

// count returns positional argument i as a number, or def if absent.
func (e *transcriptEnv) count(c transcriptCmd, i, def int) int {
	if i >= len(c.args) {
		return def
	}
	return e.atoi(c, c.args[i])
}

func (e *transcriptEnv) ids(c transcriptCmd, key string) []uint64 {
	var out []uint64
	if v, ok := c.kv[key]; ok {
		for _, f := range strings.Split(v, ",") {
			out = append(out, uint64(e.atoi(c, f)))
		}
	}
	return out
}

func (e *transcriptEnv) atoi(c transcriptCmd, s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		e.t.Fatalf("%s: %q is not a number", c.pos, s)
	}
	return v
}
