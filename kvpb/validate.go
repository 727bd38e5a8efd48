package kvpb

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Default limits; see Limits.
const (
	DefaultMaxKeyBytes      = 4 << 10  // 4 KiB
	DefaultMaxValueBytes    = 1 << 20  // 1 MiB
	DefaultMaxBatchOps      = 10_000   // ops in one BatchRequest
	DefaultMaxBatchBytes    = 16 << 20 // 16 MiB of keys plus values in one BatchRequest
	DefaultMaxScanLimit     = 10_000   // largest ScanRequest.limit accepted
	DefaultDefaultScanLimit = 1_000    // the limit of a ScanRequest whose limit is 0
)

// Limits bounds the requests the KV API accepts. A field that is zero (or
// negative) means its default, so the zero Limits is DefaultLimits().
type Limits struct {
	// MaxKeyBytes bounds every key, including a scan's start_key and
	// end_key. Default 4 KiB.
	MaxKeyBytes int
	// MaxValueBytes bounds every value: a put's value and a
	// compare-and-swap's expected_value and new_value. Default 1 MiB.
	MaxValueBytes int
	// MaxBatchOps bounds the number of ops in a BatchRequest. Default 10,000.
	MaxBatchOps int
	// MaxBatchBytes bounds the sum of the lengths of all keys and values in
	// a BatchRequest. Default 16 MiB.
	MaxBatchBytes int
	// MaxScanLimit bounds ScanRequest.limit. Default 10,000.
	MaxScanLimit uint32
	// DefaultScanLimit is the limit of a ScanRequest whose limit is 0
	// (capped at MaxScanLimit). Default 1,000.
	DefaultScanLimit uint32
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxKeyBytes:      DefaultMaxKeyBytes,
		MaxValueBytes:    DefaultMaxValueBytes,
		MaxBatchOps:      DefaultMaxBatchOps,
		MaxBatchBytes:    DefaultMaxBatchBytes,
		MaxScanLimit:     DefaultMaxScanLimit,
		DefaultScanLimit: DefaultDefaultScanLimit,
	}
}

// normalized returns l with its unset fields replaced by their defaults.
func (l Limits) normalized() Limits {
	d := DefaultLimits()
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = d.MaxKeyBytes
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = d.MaxValueBytes
	}
	if l.MaxBatchOps <= 0 {
		l.MaxBatchOps = d.MaxBatchOps
	}
	if l.MaxBatchBytes <= 0 {
		l.MaxBatchBytes = d.MaxBatchBytes
	}
	if l.MaxScanLimit == 0 {
		l.MaxScanLimit = d.MaxScanLimit
	}
	if l.DefaultScanLimit == 0 {
		l.DefaultScanLimit = d.DefaultScanLimit
	}
	if l.DefaultScanLimit > l.MaxScanLimit {
		l.DefaultScanLimit = l.MaxScanLimit
	}
	return l
}

// ScanLimit returns the number of keys a scan should return at most: its
// limit, or DefaultScanLimit when that is 0. It does not validate req; a
// limit above MaxScanLimit is returned as MaxScanLimit.
func (l Limits) ScanLimit(req *ScanRequest) uint32 {
	l = l.normalized()
	n := req.GetLimit()
	switch {
	case n == 0:
		return l.DefaultScanLimit
	case n > l.MaxScanLimit:
		return l.MaxScanLimit
	}
	return n
}

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

func (l Limits) checkKey(field string, key []byte) error {
	if len(key) == 0 {
		return invalid("%s is empty", field)
	}
	return l.checkKeyLen(field, key)
}

func (l Limits) checkKeyLen(field string, key []byte) error {
	if len(key) > l.MaxKeyBytes {
		return invalid("%s is %d bytes, limit is %d", field, len(key), l.MaxKeyBytes)
	}
	return nil
}

func (l Limits) checkValue(field string, value []byte) error {
	if len(value) > l.MaxValueBytes {
		return invalid("%s is %d bytes, limit is %d", field, len(value), l.MaxValueBytes)
	}
	return nil
}

// ValidateSplit checks a SplitRangeRequest: both range ids set and
// distinct, and a split key as a key must be. It returns nil or a gRPC
// InvalidArgument status error.
func (l Limits) ValidateSplit(req *SplitRangeRequest) error {
	switch {
	case req.GetRangeId() == 0 || req.GetNewRangeId() == 0:
		return invalid("range_id and new_range_id must be set")
	case req.RangeId == req.NewRangeId:
		return invalid("new_range_id must differ from range_id")
	}
	return l.normalized().checkKey("split_key", req.GetSplitKey())
}

// ValidateGet checks a GetRequest: its key must be non-empty and at most
// MaxKeyBytes. It returns nil or a gRPC InvalidArgument status error.
func (l Limits) ValidateGet(req *GetRequest) error {
	return l.normalized().validateGet("", req)
}

func (l Limits) validateGet(prefix string, req *GetRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	return l.checkKey(prefix+"key", req.Key)
}

// ValidatePut checks a PutRequest: its key must be non-empty and at most
// MaxKeyBytes, its value (which may be empty) at most MaxValueBytes.
func (l Limits) ValidatePut(req *PutRequest) error {
	if err := l.normalized().validatePut("", req); err != nil {
		return err
	}
	return ValidateSession(req.GetHeader())
}

func (l Limits) validatePut(prefix string, req *PutRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	if err := l.checkKey(prefix+"key", req.Key); err != nil {
		return err
	}
	return l.checkValue(prefix+"value", req.Value)
}

// ValidateDelete checks a DeleteRequest: its key must be non-empty and at
// most MaxKeyBytes.
func (l Limits) ValidateDelete(req *DeleteRequest) error {
	if err := l.normalized().validateDelete("", req); err != nil {
		return err
	}
	return ValidateSession(req.GetHeader())
}

func (l Limits) validateDelete(prefix string, req *DeleteRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	return l.checkKey(prefix+"key", req.Key)
}

// ValidateScan checks a ScanRequest. An empty start_key means the start of
// the key space and an empty end_key its end; otherwise both are at most
// MaxKeyBytes and, when end_key is set, start_key must sort before it.
// limit must be at most MaxScanLimit (0 means DefaultScanLimit).
func (l Limits) ValidateScan(req *ScanRequest) error {
	return l.normalized().validateScan("", req)
}

func (l Limits) validateScan(prefix string, req *ScanRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	if err := l.checkKeyLen(prefix+"start_key", req.StartKey); err != nil {
		return err
	}
	if err := l.checkKeyLen(prefix+"end_key", req.EndKey); err != nil {
		return err
	}
	if len(req.EndKey) > 0 && bytes.Compare(req.StartKey, req.EndKey) >= 0 {
		return invalid("%sstart_key must sort before %send_key", prefix, prefix)
	}
	if req.Limit > l.MaxScanLimit {
		return invalid("%slimit is %d, maximum is %d", prefix, req.Limit, l.MaxScanLimit)
	}
	return nil
}

// ValidateCompareAndSwap checks a CompareAndSwapRequest: its key must be
// non-empty and at most MaxKeyBytes, expected_value and new_value at most
// MaxValueBytes. expect_absent excludes a non-empty expected_value, and
// delete a non-empty new_value.
func (l Limits) ValidateCompareAndSwap(req *CompareAndSwapRequest) error {
	if err := l.normalized().validateCompareAndSwap("", req); err != nil {
		return err
	}
	return ValidateSession(req.GetHeader())
}

func (l Limits) validateCompareAndSwap(prefix string, req *CompareAndSwapRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	if err := l.checkKey(prefix+"key", req.Key); err != nil {
		return err
	}
	if err := l.checkValue(prefix+"expected_value", req.ExpectedValue); err != nil {
		return err
	}
	if err := l.checkValue(prefix+"new_value", req.NewValue); err != nil {
		return err
	}
	if req.ExpectAbsent && len(req.ExpectedValue) > 0 {
		return invalid("%sexpect_absent is set with a non-empty %sexpected_value (%d bytes)", prefix, prefix, len(req.ExpectedValue))
	}
	if req.Delete && len(req.NewValue) > 0 {
		return invalid("%sdelete is set with a non-empty %snew_value (%d bytes)", prefix, prefix, len(req.NewValue))
	}
	return nil
}

// ValidateBatch checks a BatchRequest: it has between 1 and MaxBatchOps
// ops, each of them a valid put or delete; its conditions (which count
// towards MaxBatchOps too) have non-empty keys of at most MaxKeyBytes and
// expected values of at most MaxValueBytes; and the lengths of all keys
// and values sum to at most MaxBatchBytes.
func (l Limits) ValidateBatch(req *BatchRequest) error {
	if err := l.normalized().validateBatch("", req); err != nil {
		return err
	}
	return ValidateSession(req.GetHeader())
}

func (l Limits) validateBatch(prefix string, req *BatchRequest) error {
	if req == nil {
		return invalid("%s is not set", name(prefix, "request"))
	}
	n := len(req.Ops)
	if n == 0 {
		return invalid("%sops is empty", prefix)
	}
	if n > l.MaxBatchOps {
		return invalid("%sops has %d ops, limit is %d", prefix, n, l.MaxBatchOps)
	}
	if c := len(req.Conditions); n+c > l.MaxBatchOps {
		return invalid("%sops and conditions are %d, limit is %d", prefix, n+c, l.MaxBatchOps)
	}
	var total int64
	for i, c := range req.Conditions {
		p := fmt.Sprintf("%sconditions[%d].", prefix, i)
		if c == nil {
			return invalid("%s is not set", name(p, ""))
		}
		if err := l.checkKey(p+"key", c.Key); err != nil {
			return err
		}
		if err := l.checkValue(p+"expected_value", c.ExpectedValue); err != nil {
			return err
		}
		if c.ExpectAbsent && len(c.ExpectedValue) > 0 {
			return invalid("%sexpect_absent is set with a non-empty expected_value", p)
		}
		total += int64(len(c.Key)) + int64(len(c.ExpectedValue))
	}
	for i, op := range req.Ops {
		p := fmt.Sprintf("%sops[%d].", prefix, i)
		switch o := op.GetOp().(type) {
		case *BatchOp_Put:
			if o.Put == nil {
				return invalid("%sput is not set", p)
			}
			if err := l.validatePut(p+"put.", o.Put); err != nil {
				return err
			}
			total += int64(len(o.Put.Key)) + int64(len(o.Put.Value))
		case *BatchOp_Delete:
			if o.Delete == nil {
				return invalid("%sdelete is not set", p)
			}
			if err := l.validateDelete(p+"delete.", o.Delete); err != nil {
				return err
			}
			total += int64(len(o.Delete.Key))
		default:
			return invalid("%sop is not set", p)
		}
	}
	if total > int64(l.MaxBatchBytes) {
		return invalid("%sops are %d bytes of keys and values, limit is %d", prefix, total, l.MaxBatchBytes)
	}
	return nil
}

// ValidateSession checks a write's exactly-once session: a client_id
// needs a seq of at least 1 and an acked_below of at most seq (a client
// can't hold the outcome of a write it is still making); without a
// client_id both must be 0.
func ValidateSession(h *RequestHeader) error {
	client, seq, acked := h.GetClientId(), h.GetSeq(), h.GetAckedBelow()
	switch {
	case client == 0 && (seq != 0 || acked != 0):
		return invalid("header.seq and header.acked_below need a header.client_id")
	case client != 0 && seq == 0:
		return invalid("header.seq must be at least 1 with a header.client_id")
	case acked > seq:
		return invalid("header.acked_below (%d) is above header.seq (%d)", acked, seq)
	}
	return nil
}

// ValidateRequest checks one request of a Stream by the rules of its op; a
// Request without an op is invalid. Field names in its errors are prefixed
// with the op's, e.g. "put.key".
func (l Limits) ValidateRequest(req *Request) error {
	if req == nil {
		return invalid("request is not set")
	}
	l = l.normalized()
	switch o := req.GetOp().(type) {
	case *Request_Get:
		return l.validateGet("get.", o.Get)
	case *Request_Put:
		return l.validatePut("put.", o.Put)
	case *Request_Delete:
		return l.validateDelete("delete.", o.Delete)
	case *Request_Scan:
		return l.validateScan("scan.", o.Scan)
	case *Request_Cas:
		return l.validateCompareAndSwap("cas.", o.Cas)
	case *Request_Batch:
		return l.validateBatch("batch.", o.Batch)
	default:
		return invalid("request %d has no op", req.GetId())
	}
}

// name is what a nil message is called in an error: the field path without
// its trailing dot, or def at the top level.
func name(prefix, def string) string {
	if prefix == "" {
		return def
	}
	return prefix[:len(prefix)-1]
}
