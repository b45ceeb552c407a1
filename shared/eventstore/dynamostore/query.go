package dynamostore

import (
	"context"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// queryCursor is the last returned item's keys: resuming right after it gives pages with
// neither duplicates nor gaps even though FilterExpression runs after Limit.
type queryCursor struct {
	PK   string `json:"pk"`
	SK   int64  `json:"sk"`
	Hash string `json:"h"`
	TK   string `json:"tk"`
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	var index, hashAttr, hashValue string
	switch {
	case f.CorrelationID != "":
		index, hashAttr, hashValue = infra.IndexByCorrelation, infra.AttrCorrelationID, f.CorrelationID
	case f.EventType != "":
		index, hashAttr, hashValue = infra.IndexByType, infra.AttrEventType, f.EventType
	case f.AggregateType != "":
		index, hashAttr, hashValue = infra.IndexByAggregateType, infra.AttrAggregateType, f.AggregateType
	default:
		return eventstore.Page{}, eventstore.Invalid("on DynamoDB a query needs eventType, aggregateType or correlationId")
	}
	var start map[string]types.AttributeValue
	if f.Cursor != "" {
		var c queryCursor
		if err := eventstore.DecodeCursor(f.Cursor, &c); err != nil {
			return eventstore.Page{}, err
		}
		start = map[string]types.AttributeValue{
			infra.AttrPK: &types.AttributeValueMemberS{Value: c.PK}, infra.AttrSK: &types.AttributeValueMemberN{Value: strconv.FormatInt(c.SK, 10)},
			hashAttr: &types.AttributeValueMemberS{Value: c.Hash}, infra.AttrTimeKey: &types.AttributeValueMemberS{Value: c.TK}}
	}
	lo, hi := "0", "9~"
	if !f.Since.IsZero() {
		lo = formatTS(f.Since)
	}
	if !f.Until.IsZero() {
		hi = formatTS(f.Until) + "#~"
	}
	keyCond := expression.Key(hashAttr).Equal(expression.Value(hashValue)).
		And(expression.Key(infra.AttrTimeKey).Between(expression.Value(lo), expression.Value(hi)))
	b := expression.NewBuilder().WithKeyCondition(keyCond)
	var conds []expression.ConditionBuilder
	if f.EventType != "" && hashAttr != infra.AttrEventType {
		conds = append(conds, expression.Name(infra.AttrEventType).Equal(expression.Value(f.EventType)))
	}
	if f.AggregateType != "" && hashAttr != infra.AttrAggregateType {
		conds = append(conds, expression.Name(infra.AttrAggregateType).Equal(expression.Value(f.AggregateType)))
	}
	if len(conds) == 1 {
		b = b.WithFilter(conds[0])
	} else if len(conds) == 2 {
		b = b.WithFilter(conds[0].And(conds[1]))
	}
	expr, err := b.Build()
	if err != nil {
		return eventstore.Page{}, eventstore.Invalid("query: %v", err)
	}
	limit := eventstore.PageSize(f.Limit)
	page := eventstore.Page{Events: []event.Event{}}
	for {
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), IndexName: aws.String(index),
			KeyConditionExpression: expr.KeyCondition(), FilterExpression: expr.Filter(),
			ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
			ExclusiveStartKey: start, Limit: aws.Int32(int32(limit + 1))})
		if err != nil {
			return page, mapError(err)
		}
		for _, item := range out.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				return page, err
			}
			if !ok {
				continue
			}
			if len(page.Events) == limit {
				// More matched than fit: resume after the last one returned.
				page.NextCursor = cursorFor(page.Events[limit-1], hashValue)
				return page, nil
			}
			page.Events = append(page.Events, e)
		}
		if out.LastEvaluatedKey == nil {
			return page, nil
		}
		start = out.LastEvaluatedKey
		if len(page.Events) == limit {
			page.NextCursor = cursorFor(page.Events[limit-1], hashValue)
			return page, nil
		}
	}
}

func cursorFor(e event.Event, hash string) string {
	pk := eventstore.StreamOf(e).Key()
	return eventstore.EncodeCursor(queryCursor{PK: pk, SK: e.Version, Hash: hash, TK: timeKey(e.Timestamp, pk, e.Version)})
}
