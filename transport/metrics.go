package transport

import (
	"context"

	"github.com/shardd/shardd/internal/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// transportMetrics are the transport's instruments (see package
// internal/metrics). The sender records the messages of each frame it
// sends; everything else is observed from the counters behind Stats when
// the metrics are collected.
type transportMetrics struct {
	messagesPerFrame metric.Int64Histogram
	reg              metric.Registration
}

// dropReasonNames label shardd_transport_dropped_messages_total, by
// dropReason.
var dropReasonNames = [numDropReasons]string{
	dropQueueFull:    "queue_full",
	dropTooLarge:     "too_large",
	dropNoRoute:      "no_route",
	dropDisconnected: "disconnected",
	dropFault:        "fault",
	dropClosed:       "closed",
}

func (t *Transport) newMetrics(mp metric.MeterProvider) error {
	b := metrics.NewBuilder(mp, "github.com/shardd/shardd/transport")
	m, check, counter, gauge := b.Meter, b.Check, b.ObservableCounter, b.ObservableGauge
	var err error
	t.metrics.messagesPerFrame, err = m.Int64Histogram("shardd.transport.messages_per_frame", metric.WithUnit("{message}"),
		metric.WithDescription("Messages carried by each frame sent to a peer: the batching of every group's traffic on one stream."),
		metric.WithExplicitBucketBoundaries(metrics.CountBuckets...))
	check(err)
	framesSent := counter("shardd.transport.frames_sent", "{frame}", "Frames sent to peers, one stream send each.")
	messagesSent := counter("shardd.transport.messages_sent", "{message}", "Paxos and liveness messages sent to peers.")
	bytesSent := counter("shardd.transport.sent", "By", "Encoded bytes of the frames sent to peers.")
	framesReceived := counter("shardd.transport.frames_received", "{frame}", "Frames received from peers.")
	messagesReceived := counter("shardd.transport.messages_received", "{message}", "Messages received from peers.")
	bytesReceived := counter("shardd.transport.received", "By", "Encoded bytes of the frames received from peers.")
	dropped := counter("shardd.transport.dropped_messages", "{message}", "Messages never sent, by reason; Paxos retransmits what matters.")
	streamFailures := counter("shardd.transport.stream_failures", "{stream}", "Streams to peers that broke after opening.")
	snapshotsSent := counter("shardd.snapshot.sent", "{snapshot}", "Snapshots sent to peers in full.")
	snapshotsReceived := counter("shardd.snapshot.received", "{snapshot}", "Snapshots received from peers in full.")
	snapshotsFailed := counter("shardd.snapshot.failed", "{snapshot}", "Snapshot streams that failed, sent or received.")
	snapshotBytesSent := counter("shardd.snapshot.sent_bytes", "By", "Bytes of snapshot data sent to peers.")
	snapshotBytesReceived := counter("shardd.snapshot.received_bytes", "By", "Bytes of snapshot data received from peers.")
	queuedMessages := gauge("shardd.transport.queue.messages", "{message}", "Messages queued or in flight to every peer.")
	queuedBytes := gauge("shardd.transport.queue.bytes", "By", "What the queued messages cost against the per-peer queue bound (MaxQueueBytes).")
	lostPeers := gauge("shardd.transport.lost_peers", "{node}", "Peers whose stream broke and could not be opened again.")
	var dropAttrs [numDropReasons]metric.ObserveOption
	for r, name := range dropReasonNames {
		dropAttrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", name)))
	}
	t.metrics.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := t.Stats()
		o.ObserveInt64(framesSent, int64(s.FramesSent))
		o.ObserveInt64(messagesSent, int64(s.MessagesSent))
		o.ObserveInt64(bytesSent, int64(s.BytesSent))
		o.ObserveInt64(framesReceived, int64(s.FramesReceived))
		o.ObserveInt64(messagesReceived, int64(s.MessagesReceived))
		o.ObserveInt64(bytesReceived, int64(s.BytesReceived))
		for r := range numDropReasons {
			o.ObserveInt64(dropped, int64(t.stats.dropped[r].Load()), dropAttrs[r])
		}
		o.ObserveInt64(streamFailures, int64(s.StreamFailures))
		o.ObserveInt64(snapshotsSent, int64(s.SnapshotsSent))
		o.ObserveInt64(snapshotsReceived, int64(s.SnapshotsReceived))
		o.ObserveInt64(snapshotsFailed, int64(s.SnapshotsFailed))
		o.ObserveInt64(snapshotBytesSent, int64(s.SnapshotBytesSent))
		o.ObserveInt64(snapshotBytesReceived, int64(s.SnapshotBytesReceived))
		o.ObserveInt64(queuedMessages, int64(s.QueuedMessages))
		o.ObserveInt64(queuedBytes, int64(s.QueuedBytes))
		o.ObserveInt64(lostPeers, int64(len(t.Lost())))
		return nil
	}, framesSent, messagesSent, bytesSent, framesReceived, messagesReceived, bytesReceived, dropped, streamFailures,
		snapshotsSent, snapshotsReceived, snapshotsFailed, snapshotBytesSent, snapshotBytesReceived,
		queuedMessages, queuedBytes, lostPeers)
	check(err)
	return b.Err()
}

// frameSent records a frame of n messages.
func (m *transportMetrics) frameSent(n int) {
	m.messagesPerFrame.Record(context.Background(), int64(n))
}

// close stops observing the transport.
func (m *transportMetrics) close() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
