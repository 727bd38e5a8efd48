package router

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// replyCutter is a stream interceptor that loses replies: when a response
// frame carrying one that match selects arrives, it breaks the stream
// instead of delivering it, so the write was applied and the client can't
// know. It cuts the next armed replies (all of them with armed < 0). With
// cut set, it first tells the test and waits for release.
type replyCutter struct {
	match   func(*kvpb.Response) bool
	cut     chan struct{}
	release chan struct{}

	mu    sync.Mutex
	armed int
	cuts  int
}

func (rc *replyCutter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &cuttingStream{ClientStream: cs, rc: rc}, nil
		}),
	}
}

// take reports whether to cut a matching reply now.
func (rc *replyCutter) take() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.armed == 0 {
		return false
	}
	if rc.armed > 0 {
		rc.armed--
	}
	rc.cuts++
	return true
}

func (rc *replyCutter) arm(n int) {
	rc.mu.Lock()
	rc.armed = n
	rc.mu.Unlock()
}

func (rc *replyCutter) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.cuts
}

type cuttingStream struct {
	grpc.ClientStream
	rc *replyCutter
}

func (s *cuttingStream) RecvMsg(m any) error {
	if err := s.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	f, ok := m.(*kvpb.ResponseFrame)
	if !ok {
		return nil
	}
	for _, r := range f.Responses {
		if s.rc.match(r) && s.rc.take() {
			if s.rc.cut != nil {
				s.rc.cut <- struct{}{}
				<-s.rc.release
			}
			return status.Error(codes.Unavailable, "test: reply lost")
		}
	}
	return nil
}

func isPut(r *kvpb.Response) bool    { return r.GetPut() != nil }
func isCAS(r *kvpb.Response) bool    { return r.GetCas() != nil }
func isDelete(r *kvpb.Response) bool { return r.GetDelete() != nil }

// TestRetriedPutAfterLostReplyIsAppliedOnce replays, deterministically,
// the smallest violating history that the multi-process check of issue 9
// found: worker 8's put of k1 is applied but its reply is lost with the
// stream; worker 3 then puts k1 and is acknowledged; worker 8's router
// retries its put. Before exactly-once writes, the retry was applied again
// and worker 8's compare-and-swap from its own value then succeeded: worker
// 3's acknowledged write was lost.
func TestRetriedPutAfterLostReplyIsAppliedOnce(t *testing.T) {
	c := newCluster(t, 3, splitRanges(1, 3, 1))
	rc := &replyCutter{match: isPut, armed: 1, cut: make(chan struct{}), release: make(chan struct{})}
	worker8 := c.client(Config{DialOptions: rc.dialOptions()})
	worker3 := c.client(Config{})
	ctx := testCtx(t)
	k1 := []byte("k1")

	put8 := make(chan error, 1)
	go func() { put8 <- worker8.Put(ctx, k1, []byte("8.4417")) }()
	select {
	case <-rc.cut:
	case err := <-put8:
		t.Fatalf("worker 8's put returned before its reply was cut: %v", err)
	case <-ctx.Done():
		t.Fatal("worker 8's put never got a reply")
	}
	if v, _, err := worker3.Get(ctx, k1); err != nil || string(v) != "8.4417" {
		t.Fatalf("worker 3 reads %q, %v; want worker 8's applied put", v, err)
	}
	if err := worker3.Put(ctx, k1, []byte("3.4400")); err != nil {
		t.Fatal(err)
	}
	close(rc.release) // the stream breaks; worker 8's router retries
	if err := <-put8; err != nil {
		t.Fatalf("worker 8's put: %v", err)
	}
	res, err := worker8.CompareAndSwap(ctx, CAS{Key: k1, Expected: []byte("8.4417"), NewValue: []byte("8.4420")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Swapped || string(res.Current) != "3.4400" {
		t.Fatalf("worker 8's CAS from its own value: %+v; worker 3's acknowledged put was overwritten by a retry", res)
	}
	if v, _, _ := worker3.Get(ctx, k1); string(v) != "3.4400" {
		t.Fatalf("k1 = %q, want worker 3's %q", v, "3.4400")
	}
}

// TestRetriedCASAfterLostReplyReportsTheSwap: a CAS whose reply is lost is
// retried, and reports the swap it made rather than comparing against its
// own write.
func TestRetriedCASAfterLostReplyReportsTheSwap(t *testing.T) {
	c := newCluster(t, 3, splitRanges(1, 3, 1))
	ctx := testCtx(t)
	cutter := &replyCutter{match: isCAS}
	cl := c.client(Config{DialOptions: cutter.dialOptions()})
	if err := cl.Put(ctx, []byte("a"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	cutter.arm(1)
	res, err := cl.CompareAndSwap(ctx, CAS{Key: []byte("a"), Expected: []byte("old"), NewValue: []byte("new")})
	if err != nil || !res.Swapped || string(res.Current) != "old" {
		t.Fatalf("CAS after a lost reply: %+v, %v; want swapped from %q", res, err, "old")
	}
	if n := cutter.count(); n != 1 {
		t.Fatalf("%d replies cut, want 1", n)
	}
}

// TestRetriedDeleteAfterLostReplyReportsWhatItFound: a delete whose reply
// is lost is retried and reports that the key existed, as its one
// application saw; applied again, it would find nothing.
func TestRetriedDeleteAfterLostReplyReportsWhatItFound(t *testing.T) {
	c := newCluster(t, 3, splitRanges(1, 3, 1))
	ctx := testCtx(t)
	cutter := &replyCutter{match: isDelete}
	cl := c.client(Config{DialOptions: cutter.dialOptions()})
	if err := cl.Put(ctx, []byte("a"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	cutter.arm(1)
	found, err := cl.Delete(ctx, []byte("a"))
	if err != nil || !found || cutter.count() != 1 {
		t.Fatalf("delete after a lost reply: found %v, %v (%d replies cut); want found", found, err, cutter.count())
	}
}

// TestWriteErrorsSayTheirFate: a write whose every attempt may have been
// applied but whose outcome was never learned is ErrAmbiguous; one that
// never reached a node, or was refused, is ErrNotApplied. Both keep their
// gRPC code.
func TestWriteErrorsSayTheirFate(t *testing.T) {
	c := newCluster(t, 3, splitRanges(1, 3, 1))
	ctx := testCtx(t)
	cutter := &replyCutter{match: isCAS, armed: -1}
	cl := c.client(Config{MaxAttempts: 3, DialOptions: cutter.dialOptions()})
	_, err := cl.CompareAndSwap(ctx, CAS{Key: []byte("a"), ExpectAbsent: true, NewValue: []byte("x")})
	if !errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrNotApplied) || status.Code(err) != codes.Unavailable {
		t.Fatalf("every reply lost: %v (code %v); want ErrAmbiguous, Unavailable", err, status.Code(err))
	}
	// It was applied, once.
	if v, _, err := c.client(Config{}).Get(ctx, []byte("a")); err != nil || string(v) != "x" {
		t.Fatalf("a = %q, %v", v, err)
	}

	err = cl.Put(ctx, nil, []byte("v"))
	if !errors.Is(err, ErrNotApplied) || errors.Is(err, ErrAmbiguous) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty key: %v; want ErrNotApplied, InvalidArgument", err)
	}

	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	<-short.Done()
	err = cl.Put(short, []byte("b"), []byte("v"))
	if !errors.Is(err, ErrNotApplied) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("put with an expired context: %v; want ErrNotApplied, DeadlineExceeded", err)
	}
}
