package ddbstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Decoder turns an events-table item into an event; isEvent is false for other items
// (snapshots). The DynamoDB backend provides it.
type Decoder func(item map[string]ddb.AttributeValue) (e event.Event, isEvent bool, err error)

// Indexer writes the index table cross-stream queries read (dynamostore.Indexer). Its
// writes are idempotent: a batch indexed again changes nothing.
type Indexer interface {
	Index(ctx context.Context, events []event.Event) error
}

// Projector is the stream-triggered handler: it indexes the events of a batch (when Index
// is set: the read models' projector, the index's only writer), then runs the engine's
// projections on every event of the batch, in order.
type Projector struct {
	Engine *projection.Engine
	Decode Decoder
	Index  Indexer // nil: the batch is not indexed (the saga's handler)
	Logger *slog.Logger
	// Parallel, above 1, projects the records of different aggregates of a batch
	// concurrently, at most Parallel at a time, each aggregate's in stream order: a batch
	// then costs about its longest aggregate's round trips instead of the sum of all. A
	// transient failure stops its aggregate only; the first failed record of each such
	// aggregate is reported, Lambda checkpoints at the lowest and redelivers from there,
	// and what other aggregates applied past it comes back as duplicates the guards skip.
	// Only for projections that do not depend on the order of events across aggregates
	// (read models; not the saga, which reacts to several aggregates' events).
	Parallel int
}

// Handle processes one DynamoDB Streams batch. Poison events are parked by the engine
// (dead-letter queue, later events of that aggregate waiting behind). A transient
// failure stops the batch and reports that record as the first failure, so Lambda
// checkpoints there and redelivers it and everything after it, in order.
//
// Indexing comes first, so every event a read model has applied is in the index (a
// rebuild that finds streams in the index misses none it had applied). When it fails,
// every record of the batch is reported as failed and Lambda delivers the batch again;
// the projections have not run, and the index puts are idempotent.
func (p *Projector) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	res := events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{}}
	if err := p.index(ctx, ev.Records); err != nil {
		p.logger().Warn("stream batch not indexed; it will be retried", "records", len(ev.Records), "err", err)
		for _, rec := range ev.Records {
			res.BatchItemFailures = append(res.BatchItemFailures,
				events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
		}
		return res, nil
	}
	if p.Parallel > 1 {
		res = p.parallel(ctx, ev.Records, res)
		if len(res.BatchItemFailures) == 0 && len(ev.Records) > 0 {
			p.recordPosition(ctx, &ev.Records[len(ev.Records)-1])
		}
		return res, nil
	}
	n, failed := p.inOrder(ctx, ev.Records)
	if n > 0 {
		p.recordPosition(ctx, &ev.Records[n-1])
	}
	if failed {
		res.BatchItemFailures = append(res.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: ev.Records[n].Change.SequenceNumber})
	}
	return res, nil
}

// recordPosition notes the last record processed in the projections' status documents,
// where the API function reads the stream path's lag. A failure to note it is logged
// only: the batch itself went through.
func (p *Projector) recordPosition(ctx context.Context, rec *events.DynamoDBEventRecord) {
	if rec == nil {
		return
	}
	pos := projection.StreamPosition{SequenceNumber: rec.Change.SequenceNumber, CreatedAt: rec.Change.ApproximateCreationDateTime.UTC()}
	if err := p.Engine.RecordStreamPosition(ctx, pos); err != nil {
		p.logger().Warn("stream position not recorded", "sequenceNumber", rec.Change.SequenceNumber, "err", err)
	}
}

// inOrder projects records one after the other up to the first transient failure: it
// returns how many went through and whether recs[n] failed.
func (p *Projector) inOrder(ctx context.Context, recs []events.DynamoDBEventRecord) (n int, failed bool) {
	for i, rec := range recs {
		if err := p.record(ctx, rec); err != nil {
			p.logger().Warn("stream record will be retried", "sequenceNumber", rec.Change.SequenceNumber, "err", err)
			return i, true
		}
	}
	return len(recs), false
}

// parallel projects each aggregate's records in order, aggregates concurrently (see
// Parallel), and reports the first failed record of every aggregate that failed.
func (p *Projector) parallel(ctx context.Context, recs []events.DynamoDBEventRecord, res events.DynamoDBEventResponse) events.DynamoDBEventResponse {
	var order []string
	byKey := map[string][]events.DynamoDBEventRecord{}
	for _, rec := range recs {
		// The partition key is the stream (a guard item's is its own: harmless).
		k := ""
		if pk, ok := rec.Change.Keys[infra.AttrPK]; ok && pk.DataType() == events.DataTypeString {
			k = pk.String()
		}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], rec)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, p.Parallel)
	for _, k := range order {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			if n, failed := p.inOrder(ctx, byKey[k]); failed {
				mu.Lock()
				res.BatchItemFailures = append(res.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: byKey[k][n].Change.SequenceNumber})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// index writes the index items of the batch's events. Snapshots, id guards and records
// that do not decode are skipped: the last are the engine's to park.
func (p *Projector) index(ctx context.Context, recs []events.DynamoDBEventRecord) error {
	if p.Index == nil {
		return nil
	}
	var evs []event.Event
	for _, rec := range recs {
		if rec.EventName != "INSERT" {
			continue
		}
		item, err := ToSDK(rec.Change.NewImage)
		if err != nil {
			continue
		}
		if e, isEvent, err := p.Decode(item); err == nil && isEvent {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	return p.Index.Index(ctx, evs)
}

func (p *Projector) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Projector) record(ctx context.Context, rec events.DynamoDBEventRecord) error {
	// Events are immutable: only inserts carry events (MODIFY/REMOVE touch snapshots).
	if rec.EventName != "INSERT" {
		return nil
	}
	e, isEvent, err := p.decode(rec)
	if !isEvent && err == nil {
		return nil
	}
	if err != nil {
		// Undecodable: park it under its keys so its aggregate waits and an operator sees it.
		return p.Engine.Poison(ctx, e, err)
	}
	_, err = p.Engine.Handle(ctx, e)
	return err
}

func (p *Projector) decode(rec events.DynamoDBEventRecord) (event.Event, bool, error) {
	item, err := ToSDK(rec.Change.NewImage)
	if err == nil {
		var e event.Event
		var isEvent bool
		if e, isEvent, err = p.Decode(item); err == nil {
			return e, isEvent, nil
		}
	}
	// Fall back to the keys for the aggregate and version, so the failure can be parked.
	e, kerr := eventFromKeys(rec.Change.Keys)
	if kerr != nil {
		return e, true, fmt.Errorf("%w; keys: %v", err, kerr)
	}
	e.EventID = rec.EventID
	return e, true, err
}

func eventFromKeys(keys map[string]events.DynamoDBAttributeValue) (event.Event, error) {
	pk, sk := keys[infra.AttrPK], keys[infra.AttrSK]
	if pk.DataType() != events.DataTypeString || sk.DataType() != events.DataTypeNumber {
		return event.Event{}, errors.New("record without pk/sk")
	}
	typ, id, ok := strings.Cut(pk.String(), "#")
	if !ok {
		return event.Event{}, fmt.Errorf("pk %q is not a stream key", pk.String())
	}
	v, err := strconv.ParseInt(sk.Number(), 10, 64)
	if err != nil {
		return event.Event{}, fmt.Errorf("sk %q is not a version", sk.Number())
	}
	return event.Event{AggregateType: typ, AggregateID: id, Version: v}, nil
}
