package control

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
)

func TestStartProbeInterceptor(t *testing.T) {
	invoke := func(started bool, err error) grpc.UnaryInvoker {
		return func(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			if r, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok {
				r.Started = started
			}
			return err
		}
	}
	for _, started := range []bool{true, false} {
		p := &startProbe{}
		reply := &workflowservice.StartWorkflowExecutionResponse{}
		if err := startProbeInterceptor(withStartProbe(context.Background(), p), "/Start", nil, reply, nil, invoke(started, nil)); err != nil {
			t.Fatal(err)
		}
		if !p.seen || p.started != started {
			t.Errorf("started=%v: probe %+v", started, p)
		}
	}
	// A failed call, or a call without a probe, reports nothing.
	p := &startProbe{}
	boom := errors.New("boom")
	if err := startProbeInterceptor(withStartProbe(context.Background(), p), "/Start", nil, &workflowservice.StartWorkflowExecutionResponse{}, nil, invoke(true, boom)); err != boom {
		t.Errorf("error %v not passed through", err)
	}
	if p.seen {
		t.Error("probe set by a failed call")
	}
	if err := startProbeInterceptor(context.Background(), "/Start", nil, &workflowservice.StartWorkflowExecutionResponse{}, nil, invoke(true, nil)); err != nil {
		t.Error(err)
	}
}
