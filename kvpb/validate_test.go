package kvpb

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// small limits make both sides of every bound cheap to build.
var small = Limits{
	MaxKeyBytes:      8,
	MaxValueBytes:    16,
	MaxBatchOps:      4,
	MaxBatchBytes:    40,
	MaxScanLimit:     100,
	DefaultScanLimit: 10,
}

func b(n int) []byte { return bytes.Repeat([]byte{'k'}, n) }

func put(k, v []byte) *BatchOp { return &BatchOp{Op: &BatchOp_Put{Put: &PutRequest{Key: k, Value: v}}} }
func del(k []byte) *BatchOp    { return &BatchOp{Op: &BatchOp_Delete{Delete: &DeleteRequest{Key: k}}} }

// checkErr asserts err is nil when want is "", and otherwise an
// InvalidArgument status whose message contains want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got nil, want error containing %q", want)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("got non-status error %v", err)
	}
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got code %v (%v), want InvalidArgument", st.Code(), err)
	}
	if !strings.Contains(st.Message(), want) {
		t.Fatalf("got message %q, want it to contain %q", st.Message(), want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  any // one of the request types; validated with its method
		want string
	}{
		// Get.
		{"get nil", (*GetRequest)(nil), "request is not set"},
		{"get empty key", &GetRequest{}, "key is empty"},
		{"get key 1", &GetRequest{Key: b(1)}, ""},
		{"get key at limit", &GetRequest{Key: b(8)}, ""},
		{"get key over limit", &GetRequest{Key: b(9)}, "key is 9 bytes, limit is 8"},

		// Put.
		{"put nil", (*PutRequest)(nil), "request is not set"},
		{"put empty key", &PutRequest{Value: b(1)}, "key is empty"},
		{"put key at limit", &PutRequest{Key: b(8)}, ""},
		{"put key over limit", &PutRequest{Key: b(9)}, "key is 9 bytes, limit is 8"},
		{"put empty value", &PutRequest{Key: b(1)}, ""},
		{"put value at limit", &PutRequest{Key: b(1), Value: b(16)}, ""},
		{"put value over limit", &PutRequest{Key: b(1), Value: b(17)}, "value is 17 bytes, limit is 16"},

		// Delete.
		{"delete nil", (*DeleteRequest)(nil), "request is not set"},
		{"delete empty key", &DeleteRequest{}, "key is empty"},
		{"delete key at limit", &DeleteRequest{Key: b(8)}, ""},
		{"delete key over limit", &DeleteRequest{Key: b(9)}, "key is 9 bytes, limit is 8"},

		// Scan.
		{"scan nil", (*ScanRequest)(nil), "request is not set"},
		{"scan everything", &ScanRequest{}, ""},
		{"scan from start", &ScanRequest{EndKey: []byte("m")}, ""},
		{"scan to end", &ScanRequest{StartKey: []byte("m")}, ""},
		{"scan start before end", &ScanRequest{StartKey: []byte("a"), EndKey: []byte("b")}, ""},
		{"scan prefix before longer", &ScanRequest{StartKey: []byte("a"), EndKey: []byte("a\x00")}, ""},
		{"scan start equals end", &ScanRequest{StartKey: []byte("a"), EndKey: []byte("a")}, "start_key must sort before end_key"},
		{"scan start after end", &ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")}, "start_key must sort before end_key"},
		{"scan start key at limit", &ScanRequest{StartKey: b(8)}, ""},
		{"scan start key over limit", &ScanRequest{StartKey: b(9)}, "start_key is 9 bytes, limit is 8"},
		{"scan end key at limit", &ScanRequest{EndKey: b(8)}, ""},
		{"scan end key over limit", &ScanRequest{EndKey: b(9)}, "end_key is 9 bytes, limit is 8"},
		{"scan limit 0", &ScanRequest{Limit: 0}, ""},
		{"scan limit at max", &ScanRequest{Limit: 100}, ""},
		{"scan limit over max", &ScanRequest{Limit: 101}, "limit is 101, maximum is 100"},

		// CompareAndSwap.
		{"cas nil", (*CompareAndSwapRequest)(nil), "request is not set"},
		{"cas empty key", &CompareAndSwapRequest{NewValue: b(1)}, "key is empty"},
		{"cas key at limit", &CompareAndSwapRequest{Key: b(8)}, ""},
		{"cas key over limit", &CompareAndSwapRequest{Key: b(9)}, "key is 9 bytes, limit is 8"},
		{"cas expected at limit", &CompareAndSwapRequest{Key: b(1), ExpectedValue: b(16)}, ""},
		{"cas expected over limit", &CompareAndSwapRequest{Key: b(1), ExpectedValue: b(17)}, "expected_value is 17 bytes, limit is 16"},
		{"cas new at limit", &CompareAndSwapRequest{Key: b(1), NewValue: b(16)}, ""},
		{"cas new over limit", &CompareAndSwapRequest{Key: b(1), NewValue: b(17)}, "new_value is 17 bytes, limit is 16"},
		{"cas expect absent", &CompareAndSwapRequest{Key: b(1), ExpectAbsent: true, NewValue: b(1)}, ""},
		{"cas expect absent with expected", &CompareAndSwapRequest{Key: b(1), ExpectAbsent: true, ExpectedValue: b(1)}, "expect_absent is set with a non-empty expected_value"},
		{"cas delete", &CompareAndSwapRequest{Key: b(1), ExpectedValue: b(1), Delete: true}, ""},
		{"cas delete with new value", &CompareAndSwapRequest{Key: b(1), Delete: true, NewValue: b(1)}, "delete is set with a non-empty new_value"},
		{"cas expect absent and delete", &CompareAndSwapRequest{Key: b(1), ExpectAbsent: true, Delete: true}, ""},

		// Batch.
		{"batch nil", (*BatchRequest)(nil), "request is not set"},
		{"batch no ops", &BatchRequest{}, "ops is empty"},
		{"batch one op", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}}, ""},
		{"batch ops at limit", &BatchRequest{Ops: []*BatchOp{put(b(1), nil), del(b(1)), put(b(1), b(1)), del(b(1))}}, ""},
		{"batch ops over limit", &BatchRequest{Ops: []*BatchOp{del(b(1)), del(b(1)), del(b(1)), del(b(1)), del(b(1))}}, "ops has 5 ops, limit is 4"},
		// 8+16 + 8+8 = 40 bytes; one more byte in the last key's place is over.
		{"batch bytes at limit", &BatchRequest{Ops: []*BatchOp{put(b(8), b(16)), put(b(8), b(8))}}, ""},
		{"batch bytes over limit", &BatchRequest{Ops: []*BatchOp{put(b(8), b(16)), put(b(8), b(8)), del(b(1))}}, "ops are 41 bytes of keys and values, limit is 40"},
		{"batch delete keys count", &BatchRequest{Ops: []*BatchOp{put(b(8), b(16)), put(b(8), b(7)), del(b(1))}}, ""},
		{"batch nil op", &BatchRequest{Ops: []*BatchOp{put(b(1), nil), nil}}, "ops[1].op is not set"},
		{"batch unset op", &BatchRequest{Ops: []*BatchOp{{}}}, "ops[0].op is not set"},
		{"batch nil put", &BatchRequest{Ops: []*BatchOp{{Op: &BatchOp_Put{}}}}, "ops[0].put is not set"},
		{"batch nil delete", &BatchRequest{Ops: []*BatchOp{{Op: &BatchOp_Delete{}}}}, "ops[0].delete is not set"},
		{"batch put empty key", &BatchRequest{Ops: []*BatchOp{put(b(1), nil), put(nil, b(1))}}, "ops[1].put.key is empty"},
		{"batch put key over limit", &BatchRequest{Ops: []*BatchOp{put(b(9), nil)}}, "ops[0].put.key is 9 bytes, limit is 8"},
		{"batch put value over limit", &BatchRequest{Ops: []*BatchOp{put(b(1), b(17))}}, "ops[0].put.value is 17 bytes, limit is 16"},
		{"batch delete empty key", &BatchRequest{Ops: []*BatchOp{del(nil)}}, "ops[0].delete.key is empty"},
		{"batch delete key over limit", &BatchRequest{Ops: []*BatchOp{del(b(9))}}, "ops[0].delete.key is 9 bytes, limit is 8"},
		{"batch with conditions", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{{Key: b(1), ExpectedValue: b(2)}, {Key: b(2), ExpectAbsent: true}}}, ""},
		{"batch conditions only", &BatchRequest{Conditions: []*BatchCondition{{Key: b(1)}}}, "ops is empty"},
		{"batch ops and conditions over limit", &BatchRequest{Ops: []*BatchOp{del(b(1)), del(b(1)), del(b(1))}, Conditions: []*BatchCondition{{Key: b(1)}, {Key: b(1)}}}, "ops and conditions are 5, limit is 4"},
		{"batch nil condition", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{nil}}, "conditions[0] is not set"},
		{"batch condition empty key", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{{}}}, "conditions[0].key is empty"},
		{"batch condition key over limit", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{{Key: b(9)}}}, "conditions[0].key is 9 bytes, limit is 8"},
		{"batch condition expected over limit", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{{Key: b(1), ExpectedValue: b(17)}}}, "conditions[0].expected_value is 17 bytes, limit is 16"},
		{"batch condition absent with expected", &BatchRequest{Ops: []*BatchOp{put(b(1), nil)}, Conditions: []*BatchCondition{{Key: b(1), ExpectAbsent: true, ExpectedValue: b(1)}}}, "conditions[0].expect_absent is set with a non-empty expected_value"},
		{"batch condition bytes count", &BatchRequest{Ops: []*BatchOp{put(b(8), b(16))}, Conditions: []*BatchCondition{{Key: b(8), ExpectedValue: b(9)}}}, "ops are 41 bytes of keys and values, limit is 40"},

		// Request: the same rules through the oneof, with prefixed fields.
		{"request nil", (*Request)(nil), "request is not set"},
		{"request no op", &Request{Id: 7}, "request 7 has no op"},
		{"request nil get", &Request{Op: &Request_Get{}}, "get is not set"},
		{"request nil put", &Request{Op: &Request_Put{}}, "put is not set"},
		{"request nil delete", &Request{Op: &Request_Delete{}}, "delete is not set"},
		{"request nil scan", &Request{Op: &Request_Scan{}}, "scan is not set"},
		{"request nil cas", &Request{Op: &Request_Cas{}}, "cas is not set"},
		{"request nil batch", &Request{Op: &Request_Batch{}}, "batch is not set"},
		{"request get", &Request{Op: &Request_Get{Get: &GetRequest{Key: b(8)}}}, ""},
		{"request get bad", &Request{Op: &Request_Get{Get: &GetRequest{Key: b(9)}}}, "get.key is 9 bytes, limit is 8"},
		{"request put", &Request{Op: &Request_Put{Put: &PutRequest{Key: b(1), Value: b(16)}}}, ""},
		{"request put bad", &Request{Op: &Request_Put{Put: &PutRequest{Key: b(1), Value: b(17)}}}, "put.value is 17 bytes, limit is 16"},
		{"request delete", &Request{Op: &Request_Delete{Delete: &DeleteRequest{Key: b(1)}}}, ""},
		{"request delete bad", &Request{Op: &Request_Delete{Delete: &DeleteRequest{}}}, "delete.key is empty"},
		{"request scan", &Request{Op: &Request_Scan{Scan: &ScanRequest{Limit: 100}}}, ""},
		{"request scan bad", &Request{Op: &Request_Scan{Scan: &ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")}}}, "scan.start_key must sort before scan.end_key"},
		{"request cas", &Request{Op: &Request_Cas{Cas: &CompareAndSwapRequest{Key: b(1), ExpectAbsent: true}}}, ""},
		{"request cas bad", &Request{Op: &Request_Cas{Cas: &CompareAndSwapRequest{Key: b(1), Delete: true, NewValue: b(1)}}}, "cas.delete is set with a non-empty cas.new_value"},
		{"request batch", &Request{Op: &Request_Batch{Batch: &BatchRequest{Ops: []*BatchOp{del(b(1))}}}}, ""},
		{"request batch bad", &Request{Op: &Request_Batch{Batch: &BatchRequest{Ops: []*BatchOp{del(b(1)), {}}}}}, "batch.ops[1].op is not set"},
		{"request batch empty", &Request{Op: &Request_Batch{Batch: &BatchRequest{}}}, "batch.ops is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			switch r := tc.req.(type) {
			case *GetRequest:
				err = small.ValidateGet(r)
			case *PutRequest:
				err = small.ValidatePut(r)
			case *DeleteRequest:
				err = small.ValidateDelete(r)
			case *ScanRequest:
				err = small.ValidateScan(r)
			case *CompareAndSwapRequest:
				err = small.ValidateCompareAndSwap(r)
			case *BatchRequest:
				err = small.ValidateBatch(r)
			case *Request:
				err = small.ValidateRequest(r)
			default:
				t.Fatalf("unknown request type %T", r)
			}
			checkErr(t, err, tc.want)
		})
	}
}

// TestDefaultLimits checks both sides of every default limit, through the
// zero Limits (which means the defaults) as well as DefaultLimits().
func TestDefaultLimits(t *testing.T) {
	d := DefaultLimits()
	want := Limits{
		MaxKeyBytes:      4096,
		MaxValueBytes:    1 << 20,
		MaxBatchOps:      10_000,
		MaxBatchBytes:    16 << 20,
		MaxScanLimit:     10_000,
		DefaultScanLimit: 1_000,
	}
	if d != want {
		t.Fatalf("DefaultLimits() = %+v, want %+v", d, want)
	}
	for _, l := range []Limits{d, {}} {
		checkErr(t, l.ValidateGet(&GetRequest{Key: b(4096)}), "")
		checkErr(t, l.ValidateGet(&GetRequest{Key: b(5000)}), "key is 5000 bytes, limit is 4096")
		checkErr(t, l.ValidatePut(&PutRequest{Key: b(1), Value: b(1 << 20)}), "")
		checkErr(t, l.ValidatePut(&PutRequest{Key: b(1), Value: b(1<<20 + 1)}), "value is 1048577 bytes, limit is 1048576")
		checkErr(t, l.ValidateScan(&ScanRequest{Limit: 10_000}), "")
		checkErr(t, l.ValidateScan(&ScanRequest{Limit: 10_001}), "limit is 10001, maximum is 10000")

		ops := make([]*BatchOp, 10_000)
		for i := range ops {
			ops[i] = del(b(1))
		}
		checkErr(t, l.ValidateBatch(&BatchRequest{Ops: ops}), "")
		checkErr(t, l.ValidateBatch(&BatchRequest{Ops: append(ops, del(b(1)))}), "ops has 10001 ops, limit is 10000")

		// 16 puts of 1 MiB values with 1-byte keys are 16 MiB + 16 bytes.
		v := b(1 << 20)
		var big []*BatchOp
		for range 15 {
			big = append(big, put(b(1), v))
		}
		big = append(big, put(b(1), v[:1<<20-16])) // exactly 16 MiB
		checkErr(t, l.ValidateBatch(&BatchRequest{Ops: big}), "")
		big = append(big, del(b(1)))
		checkErr(t, l.ValidateBatch(&BatchRequest{Ops: big}), "ops are 16777217 bytes of keys and values, limit is 16777216")
	}
}

// TestPartialLimits checks that unset fields take their defaults while set
// ones are kept.
func TestPartialLimits(t *testing.T) {
	l := Limits{MaxKeyBytes: 2}
	checkErr(t, l.ValidateGet(&GetRequest{Key: b(3)}), "key is 3 bytes, limit is 2")
	checkErr(t, l.ValidatePut(&PutRequest{Key: b(1), Value: b(1 << 20)}), "")
	checkErr(t, l.ValidatePut(&PutRequest{Key: b(1), Value: b(1<<20 + 1)}), "limit is 1048576")
	// Negative means default, too.
	checkErr(t, Limits{MaxKeyBytes: -1}.ValidateGet(&GetRequest{Key: b(4096)}), "")
}

func TestScanLimit(t *testing.T) {
	tests := []struct {
		l     Limits
		limit uint32
		want  uint32
	}{
		{small, 0, 10},
		{small, 1, 1},
		{small, 100, 100},
		{small, 101, 100},
		{Limits{}, 0, 1_000},
		{Limits{}, 5_000, 5_000},
		{Limits{}, 20_000, 10_000},
		{Limits{MaxScanLimit: 50}, 0, 50}, // the default is capped at the maximum
	}
	for _, tc := range tests {
		if got := tc.l.ScanLimit(&ScanRequest{Limit: tc.limit}); got != tc.want {
			t.Errorf("%+v.ScanLimit(%d) = %d, want %d", tc.l, tc.limit, got, tc.want)
		}
	}
	if got := small.ScanLimit(nil); got != 10 {
		t.Errorf("ScanLimit(nil) = %d, want 10", got)
	}
}

func FuzzValidateRequest(f *testing.F) {
	seeds := []*Request{
		{},
		{Id: 1, Op: &Request_Get{Get: &GetRequest{Key: []byte("k")}}},
		{Id: 2, Op: &Request_Get{Get: &GetRequest{}}},
		{Id: 3, Op: &Request_Put{Put: &PutRequest{Key: []byte("k"), Value: []byte("v")}}},
		{Id: 4, Op: &Request_Delete{Delete: &DeleteRequest{Key: []byte("k")}}},
		{Id: 5, Op: &Request_Scan{Scan: &ScanRequest{StartKey: []byte("a"), EndKey: []byte("b"), Limit: 10}}},
		{Id: 6, Op: &Request_Scan{Scan: &ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")}}},
		{Id: 7, Op: &Request_Cas{Cas: &CompareAndSwapRequest{Key: []byte("k"), ExpectAbsent: true, NewValue: []byte("v")}}},
		{Id: 8, Op: &Request_Cas{Cas: &CompareAndSwapRequest{Key: []byte("k"), ExpectedValue: []byte("v"), Delete: true}}},
		{Id: 9, Op: &Request_Batch{Batch: &BatchRequest{Ops: []*BatchOp{put([]byte("a"), []byte("1")), del([]byte("b")), {}}}}},
		{Id: 10, Op: &Request_Batch{Batch: &BatchRequest{}}},
	}
	for _, s := range seeds {
		data, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x00}) // get, present but empty

	f.Fuzz(func(t *testing.T, data []byte) {
		var req Request
		if err := proto.Unmarshal(data, &req); err != nil {
			t.Skip()
		}
		before := proto.Clone(&req)
		for _, l := range []Limits{small, DefaultLimits()} {
			err := l.ValidateRequest(&req)
			if err != nil {
				st, ok := status.FromError(err)
				if !ok || st.Code() != codes.InvalidArgument {
					t.Fatalf("ValidateRequest returned %v (%T), want nil or InvalidArgument", err, err)
				}
				if st.Message() == "" {
					t.Fatal("InvalidArgument with an empty message")
				}
			} else {
				checkValid(t, l, &req)
			}
		}
		if !proto.Equal(before, &req) {
			t.Fatal("ValidateRequest modified the request")
		}
	})
}

// checkValid re-checks the main rules, independently, on a request that
// ValidateRequest accepted.
func checkValid(t *testing.T, l Limits, req *Request) {
	t.Helper()
	keyOK := func(k []byte) bool { return len(k) > 0 && len(k) <= l.MaxKeyBytes }
	switch o := req.Op.(type) {
	case *Request_Get:
		if !keyOK(o.Get.Key) {
			t.Fatalf("accepted get with %d-byte key", len(o.Get.Key))
		}
	case *Request_Put:
		if !keyOK(o.Put.Key) || len(o.Put.Value) > l.MaxValueBytes {
			t.Fatalf("accepted put with %d-byte key, %d-byte value", len(o.Put.Key), len(o.Put.Value))
		}
	case *Request_Delete:
		if !keyOK(o.Delete.Key) {
			t.Fatalf("accepted delete with %d-byte key", len(o.Delete.Key))
		}
	case *Request_Scan:
		s := o.Scan
		if s.Limit > l.MaxScanLimit || (len(s.EndKey) > 0 && bytes.Compare(s.StartKey, s.EndKey) >= 0) {
			t.Fatalf("accepted scan %v", s)
		}
	case *Request_Cas:
		c := o.Cas
		if !keyOK(c.Key) || (c.ExpectAbsent && len(c.ExpectedValue) > 0) || (c.Delete && len(c.NewValue) > 0) {
			t.Fatalf("accepted cas %v", c)
		}
	case *Request_Batch:
		ops := o.Batch.Ops
		if len(ops) == 0 || len(ops) > l.MaxBatchOps {
			t.Fatalf("accepted batch of %d ops", len(ops))
		}
		total := 0
		for _, op := range ops {
			switch x := op.Op.(type) {
			case *BatchOp_Put:
				total += len(x.Put.Key) + len(x.Put.Value)
			case *BatchOp_Delete:
				total += len(x.Delete.Key)
			default:
				t.Fatalf("accepted batch op %v", op)
			}
		}
		if total > l.MaxBatchBytes {
			t.Fatalf("accepted batch of %d bytes", total)
		}
	default:
		t.Fatalf("accepted request without op: %v", req)
	}
}
