package service

import (
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement/client"
)

// A shardd node registers with the service through client.Heartbeat; the
// client package cannot import the node to check that it can.
var (
	_ client.Registrant           = (*node.Node)(nil)
	_ client.RegistrationObserver = (*node.Node)(nil)
)
