package transport

import "sync/atomic"

// Stats is a snapshot of a Transport's counters since New. Counters only
// grow; QueuedMessages and QueuedBytes are the current depth. Callers derive
// rates and ratios, such as MessagesSent/FramesSent, the average number of
// messages that one stream send carried.
type Stats struct {
	// FramesSent, MessagesSent and BytesSent count what stream sends
	// accepted; BytesSent is the encoded frame payload, without gRPC's own
	// framing.
	FramesSent, MessagesSent, BytesSent uint64
	// FramesReceived, MessagesReceived and BytesReceived count frames that
	// decoded and were handed to the Handler.
	FramesReceived, MessagesReceived, BytesReceived uint64
	// DroppedOnArrival counts received messages that Faults.CutFrom
	// dropped; they are not in MessagesReceived.
	DroppedOnArrival uint64
	// CorruptFrames counts received frames (and snapshot headers) that
	// failed to decode or were misaddressed; each one closed its stream.
	CorruptFrames uint64
	// Dropped counts messages that were never sent, by reason.
	Dropped Drops
	// StreamsOpened counts message streams opened to peers; more than one
	// per peer means reconnects.
	StreamsOpened uint64
	// DialFailures counts failed attempts to open a message stream.
	DialFailures uint64
	// StreamFailures counts message streams that broke after opening.
	StreamFailures uint64
	// SnapshotsSent and SnapshotsReceived count snapshot streams that
	// completed; SnapshotsFailed counts the ones that did not, on either
	// side.
	SnapshotsSent, SnapshotsReceived, SnapshotsFailed uint64
	// SnapshotBytesSent and SnapshotBytesReceived count the snapshot data
	// chunks' bytes that snapshot streams carried, completed or not.
	SnapshotBytesSent, SnapshotBytesReceived uint64
	// QueuedMessages and QueuedBytes are the messages queued or in flight
	// to all peers now, and their cost against MaxQueueBytes.
	QueuedMessages, QueuedBytes int
	// Peers is the number of destinations that have a queue.
	Peers int
}

// Drops counts messages the transport gave up on, by reason. Every message
// passed to Send or SendBatch is either sent (Stats.MessagesSent) or counted
// here exactly once, except messages still queued.
type Drops struct {
	// QueueFull: the destination's queue was at MaxQueueBytes.
	QueueFull uint64
	// TooLarge: the message alone costs more than MaxQueueBytes.
	TooLarge uint64
	// NoRoute: the destination is zero, this node, or unknown to the
	// Resolver.
	NoRoute uint64
	// Disconnected: the message was in the batch being sent when the
	// stream broke.
	Disconnected uint64
	// Fault: a test fault (Faults.Cut, Faults.SetDrop) dropped it.
	Fault uint64
	// Closed: the transport was closed before the message was sent.
	Closed uint64
}

// Total returns the number of dropped messages for every reason.
func (d Drops) Total() uint64 {
	return d.QueueFull + d.TooLarge + d.NoRoute + d.Disconnected + d.Fault + d.Closed
}

// dropReason indexes counters.dropped.
type dropReason int

const (
	dropQueueFull dropReason = iota
	dropTooLarge
	dropNoRoute
	dropDisconnected
	dropFault
	dropClosed
	numDropReasons
)

// counters are the atomic counters behind Stats. They are updated by the
// sender goroutines, the stream receive goroutines and the callers of Send.
type counters struct {
	framesSent, messagesSent, bytesSent             atomic.Uint64
	framesReceived, messagesReceived, bytesReceived atomic.Uint64
	corruptFrames, droppedOnArrival                 atomic.Uint64
	dropped                                         [numDropReasons]atomic.Uint64
	streamsOpened, dialFailures, streamFailures     atomic.Uint64
	snapshotsSent, snapshotsReceived                atomic.Uint64
	snapshotsFailed                                 atomic.Uint64
	snapshotBytesSent, snapshotBytesReceived        atomic.Uint64
}

func (c *counters) drop(r dropReason, n int) {
	if n > 0 {
		c.dropped[r].Add(uint64(n))
	}
}

func (c *counters) load() Stats {
	return Stats{
		FramesSent:            c.framesSent.Load(),
		MessagesSent:          c.messagesSent.Load(),
		BytesSent:             c.bytesSent.Load(),
		FramesReceived:        c.framesReceived.Load(),
		MessagesReceived:      c.messagesReceived.Load(),
		BytesReceived:         c.bytesReceived.Load(),
		CorruptFrames:         c.corruptFrames.Load(),
		DroppedOnArrival:      c.droppedOnArrival.Load(),
		StreamsOpened:         c.streamsOpened.Load(),
		DialFailures:          c.dialFailures.Load(),
		StreamFailures:        c.streamFailures.Load(),
		SnapshotsSent:         c.snapshotsSent.Load(),
		SnapshotsReceived:     c.snapshotsReceived.Load(),
		SnapshotsFailed:       c.snapshotsFailed.Load(),
		SnapshotBytesSent:     c.snapshotBytesSent.Load(),
		SnapshotBytesReceived: c.snapshotBytesReceived.Load(),
		Dropped: Drops{
			QueueFull:    c.dropped[dropQueueFull].Load(),
			TooLarge:     c.dropped[dropTooLarge].Load(),
			NoRoute:      c.dropped[dropNoRoute].Load(),
			Disconnected: c.dropped[dropDisconnected].Load(),
			Fault:        c.dropped[dropFault].Load(),
			Closed:       c.dropped[dropClosed].Load(),
		},
	}
}
