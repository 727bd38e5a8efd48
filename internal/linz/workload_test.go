package linz

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestLostWrites proves the end-of-run check on small histories: the final
// value may be the last acknowledged write's or a later or unknown one's,
// never an overwritten value or absence.
func TestLostWrites(t *testing.T) {
	history := []porcupine.Operation{
		op(0, 0, 1, put("k", "a"), Output{}),
		op(1, 2, 3, put("k", "b"), Output{}),                         // the last acknowledged write
		op(2, 2, 9, cas("k", "b", "c"), notSwapped("x")),             // wrote nothing
		op(3, 2, 4, put("k", "d"), Output{}),                         // overlaps b: may come after it
		op(4, 5, 6, put("k", "e"), unknown),                          // may land any time after 5
		op(5, 0, 1, put("j", "only"), Output{}),                      // j: one write
		op(6, 7, 8, cas("j", "only", "then"), Output{Swapped: true}), // j's last
	}
	ops := historyOf(history)
	for _, tc := range []struct {
		name  string
		final map[string]string
		lost  int
	}{
		{"the last acknowledged values", map[string]string{"k": "b", "j": "then"}, 0},
		{"a concurrent write", map[string]string{"k": "d", "j": "then"}, 0},
		{"a write of unknown outcome", map[string]string{"k": "e", "j": "then"}, 0},
		{"an overwritten value", map[string]string{"k": "a", "j": "then"}, 1},
		{"a CAS that did not swap", map[string]string{"k": "c", "j": "then"}, 1},
		{"absent", map[string]string{"j": "then"}, 1},
		{"both lost", map[string]string{"k": "a", "j": "only"}, 2},
	} {
		if lost := LostWrites(ops, tc.final); len(lost) != tc.lost {
			t.Errorf("%s: %d lost, want %d: %q", tc.name, len(lost), tc.lost, lost)
		}
	}
}

func TestLongestGap(t *testing.T) {
	ms := time.Millisecond
	ops := historyOf([]porcupine.Operation{
		op(0, 0, 10, put("k", "a"), Output{}),
		op(1, 0, 35, get("j"), read("")),
		op(2, 0, 50, put("k", "b"), unknown), // not a success: its return is the end
		op(3, 0, 70, get("k"), read("a")),
		op(4, 0, 75, get("other"), read("")),
	})
	if got, at := LongestGap(ops, []string{"k", "j"}, 0, 100*ms); got != 35*ms || at != 35*ms {
		t.Errorf("longest gap %v at %v, want 35ms from 35ms", got, at)
	}
	if got, at := LongestGap(ops, []string{"k"}, 0, 100*ms); got != 60*ms || at != 10*ms {
		t.Errorf("longest gap %v at %v, want 60ms from 10ms", got, at)
	}
	if got, at := LongestGap(ops, []string{"none"}, 5*ms, 20*ms); got != 15*ms || at != 5*ms {
		t.Errorf("longest gap %v at %v with no operation, want the whole window", got, at)
	}
}
