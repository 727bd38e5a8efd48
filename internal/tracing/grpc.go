package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// metadataKey is the gRPC metadata key of the W3C trace context.
const metadataKey = "traceparent"

// UnaryClientInterceptor sends the sampled span context of a call's
// context as a traceparent in the call's metadata, so that the server's
// spans join the caller's trace (placement's Admin calls to nodes). An
// unsampled call carries nothing.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
			ctx = metadata.AppendToOutgoingContext(ctx, metadataKey, string(AppendTraceparent(nil, sc)))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// UnaryServerInterceptor starts a server span, named after the method, for
// each call of the methods traced selects whose metadata carries a sampled
// traceparent; other calls pay one metadata lookup, or nothing if traced
// rejects their method.
func UnaryServerInterceptor(t trace.Tracer, traced func(method string) bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !traced(info.FullMethod) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		v := md.Get(metadataKey)
		if len(v) == 0 {
			return handler(ctx, req)
		}
		ctx, ok := ContextFrom(ctx, []byte(v[0]))
		if !ok {
			return handler(ctx, req)
		}
		ctx, span := t.Start(ctx, info.FullMethod, trace.WithSpanKind(trace.SpanKindServer))
		resp, err := handler(ctx, req)
		EndWith(span, err)
		return resp, err
	}
}
