package service

import "github.com/shardd/shardd/placement/client"

// The client side of the placement service lives in package
// placement/client, which Go clients import without the server (node,
// Pebble, memberlist). These names keep this package's tests, which drive
// the service through its client, short and unchanged.
type (
	Client       = client.Client
	RouterSource = client.RouterSource
	Load         = client.Load
	Registrant   = client.Registrant
)

var (
	NewClient  = client.New
	Heartbeat  = client.Heartbeat
	ErrRefused = client.ErrRefused
)
