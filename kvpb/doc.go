// Package kvpb holds the wire types of a shardd node's gRPC API, generated
// from kv.proto, and the input validation the server applies to them.
//
// kv.proto defines two services:
//
//   - KV, the client-facing API: Get, Put, Delete, Scan, CompareAndSwap and
//     Batch as unary RPCs, and Stream, which carries frames of many
//     independent Requests and Responses over one bidirectional stream.
//   - Transport, the node-to-node API: Messages, the long-lived stream of
//     Paxos message frames between two nodes, and Snapshot, which streams
//     a group's snapshot in chunks.
//
// fault.proto defines Fault, a test hook that cuts a node's links to
// given peers (either direction) and to its clients; a node serves it only
// when started with --enable-fault-injection.
//
// kv.pb.go (messages, by protoc-gen-go) and kv_grpc.pb.go (service stubs, by
// protoc-gen-go-grpc) are generated; do not edit them. After changing
// kv.proto or fault.proto, regenerate them from the repository root with
//
//	./scripts/genproto
//
// which installs protoc (Debian's protobuf-compiler) if it is missing and
// the pinned protoc-gen-go and protoc-gen-go-grpc into ./bin.
//
// validate.go is hand-written: Limits and its Validate methods check a
// request's keys, values, scan bounds and batch sizes before it is routed,
// and report violations as gRPC InvalidArgument errors.
package kvpb
