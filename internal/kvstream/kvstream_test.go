package kvstream

import (
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// echoKV answers every streamed Get with the key as the value, and breaks
// the stream on a Get of "break".
type echoKV struct {
	kvpb.UnimplementedKVServer
}

func (echoKV) Stream(st kvpb.KV_StreamServer) error {
	for {
		frame, err := st.Recv()
		if err != nil {
			return nil
		}
		out := &kvpb.ResponseFrame{}
		for _, r := range frame.Requests {
			key := r.GetGet().GetKey()
			if string(key) == "break" {
				return errors.New("broken on purpose")
			}
			out.Responses = append(out.Responses, &kvpb.Response{Id: r.Id, Result: &kvpb.Response_Get{Get: &kvpb.GetResponse{Value: key, Found: true}}})
		}
		if err := st.Send(out); err != nil {
			return err
		}
	}
}

func TestClient(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	kvpb.RegisterKVServer(srv, echoKV{})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := New(kvpb.NewKVClient(conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Concurrent callers each get their own answer.
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := range 50 {
				key := []byte{byte(w), byte(i)}
				resp, err := c.Do(&kvpb.Request{Op: &kvpb.Request_Get{Get: &kvpb.GetRequest{Key: key}}})
				if err != nil || string(resp.GetGet().GetValue()) != string(key) {
					t.Errorf("get %v: %v %v", key, resp, err)
					return
				}
			}
		})
	}
	wg.Wait()

	// A broken stream fails the pending request and every later one.
	if _, err := c.Do(&kvpb.Request{Op: &kvpb.Request_Get{Get: &kvpb.GetRequest{Key: []byte("break")}}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("request on a broken stream: %v", err)
	}
	if _, err := c.Do(&kvpb.Request{Op: &kvpb.Request_Get{Get: &kvpb.GetRequest{Key: []byte("x")}}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after the stream broke: %v", err)
	}
}
