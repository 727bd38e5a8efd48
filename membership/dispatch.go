package membership

import "sync"

type eventKind int

const (
	evJoined eventKind = iota
	evUpdated
	evLeft
)

type event struct {
	kind   eventKind
	member Member
}

// dispatcher hands events to the user's Events on one goroutine of its own.
// Memberlist calls its event delegate while holding its node lock, so a
// handler that blocked or called back into memberlist (UpdateMeta, Leave)
// would stall gossip or deadlock. Queuing decouples the two: memberlist
// never waits for the handler, and handlers see events in the order
// memberlist produced them. The queue is unbounded, which is acceptable for
// membership changes (a handful per node event); a handler stuck forever
// only grows memory, never blocks failure detection.
type dispatcher struct {
	ev Events

	mu     sync.Mutex
	queue  []event
	closed bool

	started bool
	wake    chan struct{} // capacity 1: "the queue may be non-empty"
	quit    chan struct{}
	done    chan struct{}
}

// newDispatcher returns a dispatcher that queues events but delivers none
// until start, so that a Start that fails reports nothing.
func newDispatcher(ev Events) *dispatcher {
	return &dispatcher{
		ev:   ev,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// start begins delivering queued and future events.
func (d *dispatcher) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ev == nil || d.closed || d.started {
		return
	}
	d.started = true
	go d.run()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// post queues an event. It never blocks; events posted after stop are
// dropped.
func (d *dispatcher) post(e event) {
	if d.ev == nil {
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.queue = append(d.queue, e)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		select {
		case <-d.quit:
			return
		case <-d.wake:
		}
		for {
			d.mu.Lock()
			if d.closed || len(d.queue) == 0 {
				d.mu.Unlock()
				break
			}
			e := d.queue[0]
			d.queue[0] = event{}
			d.queue = d.queue[1:]
			d.mu.Unlock()
			switch e.kind {
			case evJoined:
				d.ev.NodeJoined(e.member)
			case evUpdated:
				d.ev.NodeUpdated(e.member)
			case evLeft:
				d.ev.NodeLeft(e.member)
			}
		}
	}
}

// stop drops undelivered events and waits for a handler in progress to
// return. It must not be called from a handler.
func (d *dispatcher) stop() {
	d.mu.Lock()
	started := d.started
	if !d.closed {
		d.closed = true
		d.queue = nil
		close(d.quit)
	}
	d.mu.Unlock()
	if started {
		<-d.done
	}
}
