package dynamostore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// eventItem is one event as stored: keys, the attributes queries filter on (the
// correlation id left out when empty, so the byCorrelation GSI of a table created by
// earlier versions stays sparse) and the envelope. Index items (index.go) are this item
// with other keys. The payload is kept as JSON text so numbers
// come back exactly as written.
type eventItem struct {
	PK            string `dynamodbav:"pk"`
	SK            int64  `dynamodbav:"sk"`
	Kind          string `dynamodbav:"kind"`
	EventID       string `dynamodbav:"eventId"`
	EventType     string `dynamodbav:"eventType"`
	AggregateType string `dynamodbav:"aggregateType"`
	AggregateID   string `dynamodbav:"aggregateId"`
	SchemaVersion int    `dynamodbav:"schemaVersion"`
	Timestamp     string `dynamodbav:"ts"`
	TK            string `dynamodbav:"tk"`
	CorrelationID string `dynamodbav:"correlationId,omitempty"`
	Metadata      string `dynamodbav:"md"`
	Payload       string `dynamodbav:"payload"`
}

// snapshotItem is a snapshot as stored, at sk = version + 0.5 (a number: it sorts just
// above the event it covers) and without index attributes: the indexer skips it, and the
// GSIs of a table created by earlier versions never held it.
type snapshotItem struct {
	PK           string                `dynamodbav:"pk"`
	SK           attributevalue.Number `dynamodbav:"sk"`
	Kind         string                `dynamodbav:"kind"`
	Version      int64                 `dynamodbav:"version"`
	StateVersion int                   `dynamodbav:"stateVersion"`
	Timestamp    string                `dynamodbav:"ts"`
	State        string                `dynamodbav:"state"`
	ExpiresAt    int64                 `dynamodbav:"expiresAt,omitempty"`
}

// idGuard is the claim of an append's first event id, in a partition of its own
// (pk = "$id#" + id, sk = 0: no stream type can start with '$'), written in the
// append's transaction. It is no event (kind "eventid"), so neither the indexer nor the
// projector takes it from the stream, like a snapshot.
type idGuard struct {
	PK      string `dynamodbav:"pk"`
	SK      int64  `dynamodbav:"sk"`
	Kind    string `dynamodbav:"kind"`
	Stream  string `dynamodbav:"stream"`
	Version int64  `dynamodbav:"version"`
	Count   int    `dynamodbav:"count"`
}

// streamOfKey splits a stream key ("Type#ID").
func streamOfKey(key string) (eventstore.Stream, bool) {
	typ, id, ok := strings.Cut(key, "#")
	return eventstore.Stream{Type: typ, ID: id}, ok
}

func guardPK(id string) string { return "$id#" + id }

func guardItem(out []event.Event) (map[string]types.AttributeValue, error) {
	return attributevalue.MarshalMap(idGuard{PK: guardPK(out[0].EventID), Kind: kindGuard,
		Stream: eventstore.StreamOf(out[0]).Key(), Version: out[0].Version, Count: len(out)})
}

func decodeGuard(item map[string]types.AttributeValue) (eventstore.Stream, int64, error) {
	var g idGuard
	if err := attributevalue.UnmarshalMap(item, &g); err != nil || g.Kind != kindGuard {
		return eventstore.Stream{}, 0, fmt.Errorf("dynamodb: decode id guard %v: %v", item[infra.AttrPK], err)
	}
	typ, id, ok := strings.Cut(g.Stream, "#")
	if !ok {
		return eventstore.Stream{}, 0, fmt.Errorf("dynamodb: id guard %s names no stream (%q)", g.PK, g.Stream)
	}
	return eventstore.Stream{Type: typ, ID: id}, g.Version, nil
}

const (
	kindGuard    = "eventid"
	kindEvent    = "event"
	kindSnapshot = "snapshot"
	tsLayout     = "2006-01-02T15:04:05.000000Z"
	attrTS       = "ts"
)

func eventKey(pk string, v int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: pk},
		infra.AttrSK: &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}}
}

func formatTS(t time.Time) string { return t.UTC().Format(tsLayout) }

func timeKey(ts time.Time, pk string, version int64) string {
	return fmt.Sprintf("%s#%s#%020d", formatTS(ts), pk, version)
}

func toItem(e event.Event) (map[string]types.AttributeValue, error) {
	md := e.Metadata
	md.CorrelationID = ""
	mdRaw, _ := json.Marshal(md)
	payload := string(e.Payload)
	if payload == "" {
		payload = "null"
	}
	pk := eventstore.StreamOf(e).Key()
	return attributevalue.MarshalMap(eventItem{PK: pk, SK: e.Version, Kind: kindEvent, EventID: e.EventID,
		EventType: e.EventType, AggregateType: e.AggregateType, AggregateID: e.AggregateID,
		SchemaVersion: e.SchemaVersion, Timestamp: formatTS(e.Timestamp), TK: timeKey(e.Timestamp, pk, e.Version),
		CorrelationID: e.Metadata.CorrelationID, Metadata: string(mdRaw), Payload: payload})
}

// DecodeItem turns an events-table item into an event; isEvent is false for snapshot
// items. The projector uses it on stream images.
func DecodeItem(item map[string]types.AttributeValue) (e event.Event, isEvent bool, err error) {
	if k, ok := item[infra.AttrKind].(*types.AttributeValueMemberS); !ok || k.Value != kindEvent {
		return e, false, nil
	}
	var it eventItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return e, true, fmt.Errorf("decode event item: %w", err)
	}
	corrupt := func(format string, args ...any) error {
		st, _ := streamOfKey(it.PK)
		return &eventstore.CorruptEventError{Stream: st, Version: it.SK, Err: fmt.Errorf(format, args...)}
	}
	ts, err := time.Parse(time.RFC3339Nano, it.Timestamp)
	if err != nil {
		return e, true, corrupt("timestamp %q", it.Timestamp)
	}
	var md event.Metadata
	if it.Metadata != "" {
		if err := json.Unmarshal([]byte(it.Metadata), &md); err != nil {
			return e, true, corrupt("metadata: %v", err)
		}
	}
	md.CorrelationID = it.CorrelationID
	if !json.Valid([]byte(it.Payload)) {
		return e, true, corrupt("payload is not JSON")
	}
	return event.Event{EventID: it.EventID, EventType: it.EventType, AggregateType: it.AggregateType,
		AggregateID: it.AggregateID, Version: it.SK, SchemaVersion: it.SchemaVersion, Timestamp: ts,
		Payload: json.RawMessage(it.Payload), Metadata: md}, true, nil
}

// snapshotSK is the sort key of the snapshot of version v, exact as a decimal string.
func snapshotSK(v int64) attributevalue.Number {
	return attributevalue.Number(strconv.FormatInt(v, 10) + ".5")
}

func marshalSnapshot(s eventstore.Snapshot, expiresAt int64) (map[string]types.AttributeValue, error) {
	return attributevalue.MarshalMap(snapshotItem{PK: s.Stream.Key(), SK: snapshotSK(s.Version), Kind: kindSnapshot,
		Version: s.Version, StateVersion: s.StateVersion, Timestamp: formatTS(s.Timestamp), State: string(s.State),
		ExpiresAt: expiresAt})
}

func decodeSnapshot(st eventstore.Stream, item map[string]types.AttributeValue) (eventstore.Snapshot, error) {
	var it snapshotItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("decode snapshot of %s: %w", st, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, it.Timestamp)
	if err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("decode snapshot of %s v%d: timestamp %q", st, it.Version, it.Timestamp)
	}
	if !json.Valid([]byte(it.State)) {
		return eventstore.Snapshot{}, fmt.Errorf("decode snapshot of %s v%d: state is not JSON", st, it.Version)
	}
	return eventstore.Snapshot{Stream: st, Version: it.Version, StateVersion: it.StateVersion, Timestamp: ts,
		State: json.RawMessage(it.State)}, nil
}

func isSnapshot(item map[string]types.AttributeValue) bool {
	k, ok := item[infra.AttrKind].(*types.AttributeValueMemberS)
	if ok {
		return k.Value == kindSnapshot
	}
	n, ok := item[infra.AttrSK].(*types.AttributeValueMemberN)
	return ok && strings.Contains(n.Value, ".")
}

// ItemSize is the billable size of an event's item (attribute names plus values), the
// measure DynamoDB's capacity units are computed from.
func ItemSize(e event.Event) int {
	item, err := toItem(e)
	if err != nil {
		return 0
	}
	return itemSize(item)
}
