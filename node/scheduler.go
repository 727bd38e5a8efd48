package node

import "sync"

// scheduler runs the groups that have work on a fixed pool of workers
// (CockroachDB's raft scheduler is the shape): a group sits in the queue
// at most once, is processed by one worker at a time, and a worker takes
// many groups per cycle so that all of their writes share one fsync.
// There is no goroutine, timer or queue per group.
type scheduler struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*replica
	stopped bool
	wg      sync.WaitGroup
}

// Bits of replica.sched, guarded by scheduler.mu.
const (
	schedQueued     = 1 << iota // in the queue, or to be requeued after processing
	schedProcessing             // a worker owns it
)

func newScheduler() *scheduler {
	s := &scheduler{}
	s.cond.L = &s.mu
	return s
}

// start runs n workers, each calling process with up to batch groups.
func (s *scheduler) start(n, batch int, process func([]*replica)) {
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.work(batch, process)
		}()
	}
}

// enqueue asks for r to be processed. A group already processing is
// requeued when its worker is done with it, never run twice at once.
func (s *scheduler) enqueue(r *replica) {
	s.mu.Lock()
	if r.sched&schedQueued == 0 {
		r.sched |= schedQueued
		if r.sched&schedProcessing == 0 {
			s.queue = append(s.queue, r)
			s.cond.Signal()
		}
	}
	s.mu.Unlock()
}

func (s *scheduler) work(batch int, process func([]*replica)) {
	var mine []*replica
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.stopped {
			s.cond.Wait()
		}
		if s.stopped {
			s.mu.Unlock()
			return
		}
		n := min(batch, len(s.queue))
		mine = append(mine[:0], s.queue[:n]...)
		s.queue = s.queue[n:]
		for _, r := range mine {
			r.sched = schedProcessing
		}
		if len(s.queue) > 0 {
			s.cond.Signal()
		}
		s.mu.Unlock()

		process(mine)
		s.release(mine...)
	}
}

// release ends the processing of rs: those asked for meanwhile are queued.
// A worker releases the groups it processed; a replica created held (see
// Node.newReplica) is released by its creator.
func (s *scheduler) release(rs ...*replica) {
	if len(rs) == 0 {
		return
	}
	s.mu.Lock()
	for _, r := range rs {
		r.sched &^= schedProcessing
		if r.sched&schedQueued != 0 {
			s.queue = append(s.queue, r)
			s.cond.Signal()
		}
	}
	s.mu.Unlock()
}

// queueLen returns the number of groups waiting for a worker.
func (s *scheduler) queueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

func (s *scheduler) stop() {
	s.mu.Lock()
	s.stopped = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
}
