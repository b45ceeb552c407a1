package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// queryCursor is the last returned item's keys (table and index): resuming right after
// it gives pages with neither duplicates nor gaps even though FilterExpression runs after
// Limit, so DynamoDB's LastEvaluatedKey may lie past matches a full page left out.
type queryCursor struct {
	Index string `json:"i"`
	Hash  string `json:"h"`
	TK    string `json:"tk"`
	PK    string `json:"pk"`
	SK    int64  `json:"sk"`
}

// index picks the GSI for a filter, the most selective first: a correlation id names one
// request's events, an event type fewer than an aggregate type.
func index(f eventstore.Filter) (name, hashAttr, hash string, err error) {
	switch {
	case f.CorrelationID != "":
		return infra.IndexByCorrelation, infra.AttrCorrelationID, f.CorrelationID, nil
	case f.EventType != "":
		return infra.IndexByType, infra.AttrEventType, f.EventType, nil
	case f.AggregateType != "":
		return infra.IndexByAggregateType, infra.AttrAggregateType, f.AggregateType, nil
	}
	return "", "", "", eventstore.Invalid("the DynamoDB store has no global order: a query needs eventType, aggregateType or correlationId")
}

// Query pages through one GSI in time order (tk = timestamp, stream key, version). Store
// timestamps increase within a stream, so each stream comes in version order.
func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	if err := eventstore.CheckFilter(f); err != nil {
		return eventstore.Page{}, err
	}
	idx, hashAttr, hash, err := index(f)
	if err != nil {
		return eventstore.Page{}, err
	}
	lo, hi := "0", "9~" // every fixed-width RFC 3339 time key sorts between these
	if !f.Since.IsZero() {
		lo = formatTS(f.Since)
	}
	if !f.Until.IsZero() {
		hi = formatTS(f.Until) + "#~" // '~' sorts after every stream-key character
	}
	if lo > hi {
		return eventstore.Page{Events: []event.Event{}}, nil // an empty window (BETWEEN would reject it)
	}
	var start map[string]types.AttributeValue
	if f.Cursor != "" {
		var c queryCursor
		if err := eventstore.DecodeCursor(f.Cursor, &c); err != nil {
			return eventstore.Page{}, err
		}
		if c.Index != idx || c.Hash != hash || c.TK < lo || c.TK > hi || c.PK == "" {
			return eventstore.Page{}, eventstore.InvalidCursor("it belongs to another query")
		}
		start = map[string]types.AttributeValue{
			infra.AttrPK: &types.AttributeValueMemberS{Value: c.PK}, infra.AttrSK: &types.AttributeValueMemberN{Value: strconv.FormatInt(c.SK, 10)},
			hashAttr: &types.AttributeValueMemberS{Value: c.Hash}, infra.AttrTimeKey: &types.AttributeValueMemberS{Value: c.TK}}
	}
	b := expression.NewBuilder().WithKeyCondition(expression.Key(hashAttr).Equal(expression.Value(hash)).
		And(expression.Key(infra.AttrTimeKey).Between(expression.Value(lo), expression.Value(hi))))
	var conds []expression.ConditionBuilder
	if f.EventType != "" && hashAttr != infra.AttrEventType {
		conds = append(conds, expression.Name(infra.AttrEventType).Equal(expression.Value(f.EventType)))
	}
	if f.AggregateType != "" && hashAttr != infra.AttrAggregateType {
		conds = append(conds, expression.Name(infra.AttrAggregateType).Equal(expression.Value(f.AggregateType)))
	}
	switch len(conds) {
	case 1:
		b = b.WithFilter(conds[0])
	case 2:
		b = b.WithFilter(conds[0].And(conds[1]))
	}
	expr, err := b.Build()
	if err != nil {
		return eventstore.Page{}, fmt.Errorf("dynamodb: build query: %w", err)
	}
	limit := eventstore.PageSize(f.Limit)
	page := eventstore.Page{Events: []event.Event{}}
	for {
		// One more than the page still needs, so a page that ends at the last match needs
		// no further request to know there is nothing after it; more when a filter will
		// drop some, at the price of reading items the next page reads again.
		read := limit - len(page.Events) + 1
		if len(conds) > 0 {
			read = max(read, min(4*read, eventstore.MaxPageSize))
		}
		var out *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			out, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), IndexName: aws.String(idx),
				KeyConditionExpression: expr.KeyCondition(), FilterExpression: expr.Filter(),
				ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
				ExclusiveStartKey: start, Limit: aws.Int32(int32(read))})
			return err
		})
		if err != nil {
			var api smithy.APIError
			if start != nil && errors.As(err, &api) && api.ErrorCode() == "ValidationException" {
				return eventstore.Page{}, eventstore.InvalidCursor("it does not fit this query")
			}
			return eventstore.Page{}, err
		}
		for _, item := range out.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				return eventstore.Page{}, err
			}
			if !ok {
				continue
			}
			if len(page.Events) == limit {
				page.NextCursor = cursorAfter(page.Events[limit-1], idx, hash)
				return page, nil
			}
			page.Events = append(page.Events, e)
		}
		if out.LastEvaluatedKey == nil {
			return page, nil
		}
		if len(page.Events) == limit {
			page.NextCursor = cursorAfter(page.Events[limit-1], idx, hash)
			return page, nil
		}
		start = out.LastEvaluatedKey
	}
}

func cursorAfter(e event.Event, idx, hash string) string {
	pk := eventstore.StreamOf(e).Key()
	return eventstore.EncodeCursor(queryCursor{Index: idx, Hash: hash, TK: timeKey(e.Timestamp, pk, e.Version), PK: pk, SK: e.Version})
}
