package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/keelson-dev/keelson/codec"
)

// labCodec is the lab's payload encryption (infra/lab/lib.sh): the lab's
// worker encrypts with the key KEELSON_CODEC_KEYS names, which `make
// test-integration` sets, and so do the tests' own workers, the harness's
// client and the CLI they run.
type labCodec struct {
	keys  string
	codec *codec.Codec
	dc    converter.DataConverter
	fc    converter.FailureConverter
}

// theLabCodec is loaded once, by TestMain's check of the lab.
var theLabCodec *labCodec

func loadLabCodec() (*labCodec, error) {
	keys := os.Getenv(codec.EnvKeys)
	if keys == "" {
		return nil, fmt.Errorf("%s is not set: the lab encrypts payloads with its key (.cache/lab/codec.key, made by `make up`), and `make test-integration` sets it", codec.EnvKeys)
	}
	ring, err := codec.ParseKeys(keys, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", codec.EnvKeys, err)
	}
	dc := codec.NewDataConverter(ring)
	return &labCodec{keys: keys, codec: codec.New(ring), dc: dc, fc: codec.NewFailureConverter(dc)}, nil
}

// decoded returns a copy of events with every payload decrypted, as the
// worker reads them: what a test inspects, and what the replay corpus holds
// (it replays without the lab's key). Payloads in clear pass unchanged.
func (c *labCodec) decoded(t *testing.T, events []*historypb.HistoryEvent) []*historypb.HistoryEvent {
	t.Helper()
	h := &historypb.History{}
	for _, e := range events {
		h.Events = append(h.Events, proto.Clone(e).(*historypb.HistoryEvent))
	}
	err := proxy.VisitPayloads(context.Background(), h, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			return c.codec.Decode(ps)
		},
	})
	if err != nil {
		t.Fatalf("decode history payloads with the lab's key: %v", err)
	}
	// A failure's message and stack trace travel in its encoded attributes
	// (codec.NewFailureConverter): put them back where a worker without
	// keys would have written them.
	err = proxy.VisitFailures(context.Background(), h, proxy.VisitFailuresOptions{
		Visitor: func(_ *proxy.VisitFailuresContext, f *failurepb.Failure) error {
			if f.GetEncodedAttributes() == nil {
				return nil
			}
			var attrs struct {
				Message    string `json:"message"`
				StackTrace string `json:"stack_trace"`
			}
			if err := converter.GetDefaultDataConverter().FromPayload(f.GetEncodedAttributes(), &attrs); err != nil {
				return fmt.Errorf("a failure's encoded attributes: %w", err)
			}
			f.Message, f.StackTrace, f.EncodedAttributes = attrs.Message, attrs.StackTrace, nil
			return nil
		},
	})
	if err != nil {
		t.Fatalf("decode history failures: %v", err)
	}
	return h.Events
}
