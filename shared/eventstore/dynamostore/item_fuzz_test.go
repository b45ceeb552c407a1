package dynamostore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/shared/ddbstream"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// streamJSON writes an item in the JSON shape stream records carry it in (S and N only,
// which is all an event item has).
func streamJSON(tb testing.TB, item map[string]types.AttributeValue) []byte {
	out := map[string]map[string]string{}
	for k, v := range item {
		switch a := v.(type) {
		case *types.AttributeValueMemberS:
			out[k] = map[string]string{"S": a.Value}
		case *types.AttributeValueMemberN:
			out[k] = map[string]string{"N": a.Value}
		default:
			tb.Fatalf("attribute %s: %T", k, v)
		}
	}
	raw, _ := json.Marshal(out)
	return raw
}

// FuzzDecodeItem: a stored item (as the projector receives it from the stream) never
// panics the decoder; whatever it accepts as an event survives a write and a read back.
func FuzzDecodeItem(f *testing.F) {
	e := event.MustNew("MoneyDeposited", map[string]any{"amount": 12.5})
	e.AggregateType, e.AggregateID, e.Version, e.SchemaVersion, e.EventID = "BankAccount", "acc-1", 3, 1, event.NewID()
	e.Timestamp = time.Date(2024, 1, 15, 10, 30, 0, 1000, time.UTC)
	e.Metadata = event.Metadata{Actor: "alice", Source: "api", CorrelationID: "corr-1", CausationID: "cmd-1"}
	item, err := toItem(e)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(streamJSON(f, item))
	snap, err := marshalSnapshot(eventstore.Snapshot{Stream: eventstore.StreamOf(e), Version: 3, StateVersion: 1,
		Timestamp: e.Timestamp, State: json.RawMessage(`{"balance":12.5}`)}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(streamJSON(f, snap))
	f.Add([]byte(`{"kind":{"S":"event"},"sk":{"N":"1.5"},"ts":{"S":"x"}}`))
	f.Add([]byte(`{"kind":{"S":"event"},"pk":{"S":"a#b"},"sk":{"N":"1"},"ts":{"S":"2024-01-01T00:00:00Z"},"payload":{"S":""},"md":{"BOOL":true}}`))
	f.Add([]byte(`{"kind":{"L":[{"S":"event"}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var image map[string]events.DynamoDBAttributeValue
		if json.Unmarshal(raw, &image) != nil {
			return
		}
		item, err := ddbstream.ToSDK(image)
		if err != nil {
			return
		}
		e, isEvent, err := DecodeItem(item)
		if !isEvent && err != nil {
			t.Fatalf("not an event, yet an error: %v", err)
		}
		if !isEvent || err != nil {
			return
		}
		if !json.Valid(e.Payload) {
			t.Fatalf("accepted a payload that is not JSON: %q", e.Payload)
		}
		if y := e.Timestamp.UTC().Year(); y < 1 || y > 9999 {
			return // RFC 3339 cannot write it back; the store never writes such a time
		}
		again, err := toItem(e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		back, ok, err := DecodeItem(again)
		if err != nil || !ok {
			t.Fatalf("read back %+v: %v %v", e, ok, err)
		}
		e.Timestamp = e.Timestamp.UTC().Truncate(time.Microsecond)
		if !back.Timestamp.Equal(e.Timestamp) {
			t.Fatalf("timestamp %v read back as %v", e.Timestamp, back.Timestamp)
		}
		back.Timestamp = e.Timestamp
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("round trip:\n%+v\n%+v", e, back)
		}
	})
}
