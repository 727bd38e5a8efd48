package transport

import (
	"testing"
)

// TestPeerStatuses follows one link through what an operator's status
// shows: up once a message went, down with the error and the time it was
// lost when the peer's server dies, up again (keeping the last error) once
// it is back.
func TestPeerStatuses(t *testing.T) {
	nodes := startCluster(t, 2, false, nil)
	a, b := nodes[0], nodes[1]
	if got := a.tr.PeerStatuses(); len(got) != 0 {
		t.Fatalf("before any send: %+v", got)
	}
	status := func() PeerStatus {
		ps := a.tr.PeerStatuses()
		if len(ps) != 1 || ps[0].NodeID != 2 {
			t.Fatalf("want the link to node 2 alone, got %+v", ps)
		}
		return ps[0]
	}
	a.tr.Send(heartbeat(1, 2, 1, 1))
	waitFor(t, "the link to node 2 to open", func() bool { return status().Connected })
	if s := status(); s.Addr != b.addr || s.LastError != nil || !s.LostAt.IsZero() {
		t.Errorf("open link: %+v, want address %s, no error, not lost", s, b.addr)
	}

	b.stopServer()
	waitFor(t, "the link to node 2 to be lost", func() bool { s := status(); return !s.Connected && !s.LostAt.IsZero() })
	if s := status(); s.LastError == nil || s.LastErrorAt.IsZero() {
		t.Errorf("lost link: %+v, want the error that broke it", s)
	}

	b.restartServer(t)
	waitFor(t, "the link to node 2 to open again", func() bool {
		a.tr.Send(heartbeat(1, 2, 1, 2))
		return status().Connected
	})
	if s := status(); !s.LostAt.IsZero() || s.LastError == nil {
		t.Errorf("reopened link: %+v, want not lost, with the last error kept", s)
	}
}
