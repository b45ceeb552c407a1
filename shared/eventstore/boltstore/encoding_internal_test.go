package boltstore

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
)

// The binary envelope gives back exactly what the JSON envelope did: payloads compacted,
// empty metadata empty, a missing payload null.
func TestEnvelopeRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		name        string
		e           event.Event
		wantPayload string
	}{
		{"full", event.Event{EventID: "id-1", EventType: "Deposited", AggregateID: "acc-1", AggregateType: "Account",
			SchemaVersion: 3, Payload: json.RawMessage(`{"amount": 5, "memo": "é\u00e9"}`),
			Metadata: event.Metadata{Actor: "ann", Source: "api", CorrelationID: "c", CausationID: "k"}},
			`{"amount":5,"memo":"é\u00e9"}`},
		{"no metadata, no payload", event.Event{EventID: "id-2", EventType: "Closed", AggregateID: "a", AggregateType: "T", SchemaVersion: 1}, `null`},
		{"negative schema version survives", event.Event{EventID: "x", EventType: "E", AggregateID: "a", AggregateType: "T", SchemaVersion: -2, Payload: json.RawMessage(`[1, 2]`)}, `[1,2]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := encodeBody(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			setHeader(v, 7, ts)
			got, err := pageDecoder().decode(42, v)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.e
			want.Version, want.Timestamp, want.Position, want.Payload = 7, ts, 42, json.RawMessage(tc.wantPayload)
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(g) != string(w) || string(got.Payload) != tc.wantPayload {
				t.Fatalf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// A damaged value is reported as ErrCorrupt, whatever byte it is cut at: never a panic,
// never an event made of a neighbour's bytes.
func TestEnvelopeTruncated(t *testing.T) {
	e := event.Event{EventID: "id-1", EventType: "Deposited", AggregateID: "acc-1", AggregateType: "Account",
		SchemaVersion: 1, Payload: json.RawMessage(`{"amount":5}`), Metadata: event.Metadata{Actor: "ann"}}
	v, err := encodeBody(e)
	if err != nil {
		t.Fatal(err)
	}
	payloadStart := len(v) - len(e.Payload)
	for n := 0; n <= payloadStart; n++ {
		if _, err := pageDecoder().decode(1, v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d of %d bytes: %v, want ErrCorrupt", n, len(v), err)
		}
	}
	bad := append([]byte(nil), v...)
	bad[0] = 0x7f
	if _, err := pageDecoder().decode(1, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown format byte: %v, want ErrCorrupt", err)
	}
}

// Any bytes decode to an event or to ErrCorrupt, never to a panic; what encodes decodes
// back to itself.
func FuzzDecode(f *testing.F) {
	v, _ := encodeBody(event.Event{EventID: "i", EventType: "E", AggregateID: "a", AggregateType: "T", Payload: json.RawMessage(`{}`)})
	f.Add(v)
	f.Add([]byte(`{"eventId":"x"}`))
	f.Add([]byte{formatJSONHeader, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		if _, err := pageDecoder().decode(1, v); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%v is not ErrCorrupt", err)
		}
	})
}
