package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRunSmoke runs `bench run` end to end: it builds cmd/shardd, starts
// three nodes with 8 ranges, loads 500 records and runs workload A for 2
// seconds, then reads back the JSON record and the charts. It takes some
// 20 seconds of building and starting, so -short skips it.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes")
	}
	out := t.TempDir()
	t.Chdir("..") // buildShardd builds ./cmd/shardd from the repository root
	err := runCmd([]string{"--workload", "A", "--ranges", "8", "--keys", "500", "--clients", "8", "--duration", "2s",
		"--progress", "1s", "--json", filepath.Join(out, "a.json"), "--charts", out})
	if err != nil {
		t.Fatal(err)
	}
	checkRunRecord(t, filepath.Join(out, "a.json"), "shardd", []string{"read", "update"})
	for _, chart := range []string{"throughput", "latency", "distribution"} {
		if _, err := os.Stat(filepath.Join(out, "shardd-A-"+chart+".png")); err != nil {
			t.Error(err)
		}
	}
}

// TestRunEtcdSmoke runs workload F against three etcd members for 2
// seconds, if scripts/build-etcd has built bin/etcd.
func TestRunEtcdSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes")
	}
	t.Chdir("..")
	if _, err := os.Stat(defaultEtcdBinary); err != nil {
		t.Skipf("no etcd binary (scripts/build-etcd builds it): %v", err)
	}
	out := t.TempDir()
	err := runCmd([]string{"--system", "etcd", "--workload", "F", "--keys", "500", "--clients", "8", "--duration", "2s",
		"--json", filepath.Join(out, "f.json")})
	if err != nil {
		t.Fatal(err)
	}
	checkRunRecord(t, filepath.Join(out, "f.json"), "etcd", []string{"read", "rmw"})
}

// checkRunRecord reads a one-run JSON record and checks that every
// operation of ops ran, none failed, and the processes' CPU was measured.
func checkRunRecord(t *testing.T, path, system string, ops []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs in the record, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.System != system || len(r.Ops) != len(ops) || len(r.Samples) == 0 || r.CPU == nil || rep.Machine.CPUs == 0 {
		t.Fatalf("run record %+v", r)
	}
	for i, op := range r.Ops {
		if op.Op != ops[i] || op.Count == 0 || op.Errors != 0 || op.P99 <= 0 {
			t.Errorf("%s: %+v (first errors %v)", ops[i], op, r.FirstErrors)
		}
	}
}
