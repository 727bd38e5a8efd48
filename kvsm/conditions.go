package kvsm

// failedCheck evaluates a conditional batch's checks against the state the
// batch is applied to. It returns the index of the first check that does
// not hold, plus one, or zero if they all hold. Every replica evaluates
// the same checks against the same state, so they all agree.
func failedCheck(rw ReadWriter, checks []Check) int {
	for i := range checks {
		k := &checks[i]
		if cur, found := rw.Get(k.Key); !expectationHolds(cur, found, k.Expected, k.ExpectAbsent) {
			return i + 1
		}
	}
	return 0
}

// expectationHolds reports whether a key's current state (cur, found) is
// the expected value, or, with expectAbsent, no value: the comparison of
// a CAS and of a batch's checks.
func expectationHolds(cur []byte, found bool, expected []byte, expectAbsent bool) bool {
	if expectAbsent {
		return !found
	}
	return found && string(cur) == string(expected)
}
