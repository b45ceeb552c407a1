// Package ddbstream connects DynamoDB Streams to the projection engine the way AWS Lambda
// does: the projector handler (stream batch → partial batch response), the redrive
// handler (SQS dead letters and Lambda on-failure records → re-applied from the events
// table), the SQS dead-letter sink, and a local poller that plays the part of Lambda's
// event source mapping against DynamoDB Local.
package ddbstream

import (
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streams "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// ToSDK converts a stream image as aws-lambda-go delivers it to the SDK's attribute
// values (the two libraries have distinct types for the same wire format).
func ToSDK(m map[string]events.DynamoDBAttributeValue) (map[string]ddb.AttributeValue, error) {
	out := make(map[string]ddb.AttributeValue, len(m))
	for k, v := range m {
		av, err := toSDK(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

func toSDK(v events.DynamoDBAttributeValue) (ddb.AttributeValue, error) {
	switch v.DataType() {
	case events.DataTypeString:
		return &ddb.AttributeValueMemberS{Value: v.String()}, nil
	case events.DataTypeNumber:
		return &ddb.AttributeValueMemberN{Value: v.Number()}, nil
	case events.DataTypeBinary:
		return &ddb.AttributeValueMemberB{Value: v.Binary()}, nil
	case events.DataTypeBoolean:
		return &ddb.AttributeValueMemberBOOL{Value: v.Boolean()}, nil
	case events.DataTypeNull:
		return &ddb.AttributeValueMemberNULL{Value: true}, nil
	case events.DataTypeStringSet:
		return &ddb.AttributeValueMemberSS{Value: v.StringSet()}, nil
	case events.DataTypeNumberSet:
		return &ddb.AttributeValueMemberNS{Value: v.NumberSet()}, nil
	case events.DataTypeBinarySet:
		return &ddb.AttributeValueMemberBS{Value: v.BinarySet()}, nil
	case events.DataTypeList:
		var l []ddb.AttributeValue
		for _, e := range v.List() {
			av, err := toSDK(e)
			if err != nil {
				return nil, err
			}
			l = append(l, av)
		}
		return &ddb.AttributeValueMemberL{Value: l}, nil
	case events.DataTypeMap:
		m, err := ToSDK(v.Map())
		if err != nil {
			return nil, err
		}
		return &ddb.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unsupported attribute type %v", v.DataType())
}

// FromStreams converts a record read with the DynamoDB Streams API to the shape Lambda
// delivers, so the local poller invokes handlers with exactly what AWS would send.
func FromStreams(r streams.Record, streamArn string) events.DynamoDBEventRecord {
	out := events.DynamoDBEventRecord{
		AWSRegion:      deref(r.AwsRegion),
		EventID:        deref(r.EventID),
		EventName:      string(r.EventName),
		EventSource:    deref(r.EventSource),
		EventVersion:   deref(r.EventVersion),
		EventSourceArn: streamArn,
	}
	if d := r.Dynamodb; d != nil {
		out.Change = events.DynamoDBStreamRecord{
			Keys:           fromStreamsMap(d.Keys),
			NewImage:       fromStreamsMap(d.NewImage),
			OldImage:       fromStreamsMap(d.OldImage),
			SequenceNumber: deref(d.SequenceNumber),
			StreamViewType: string(d.StreamViewType),
		}
		if d.SizeBytes != nil {
			out.Change.SizeBytes = *d.SizeBytes
		}
		if d.ApproximateCreationDateTime != nil {
			out.Change.ApproximateCreationDateTime = events.SecondsEpochTime{Time: *d.ApproximateCreationDateTime}
		}
	}
	return out
}

func fromStreamsMap(m map[string]streams.AttributeValue) map[string]events.DynamoDBAttributeValue {
	if m == nil {
		return nil
	}
	out := make(map[string]events.DynamoDBAttributeValue, len(m))
	for k, v := range m {
		out[k] = fromStreams(v)
	}
	return out
}

func fromStreams(v streams.AttributeValue) events.DynamoDBAttributeValue {
	switch t := v.(type) {
	case *streams.AttributeValueMemberS:
		return events.NewStringAttribute(t.Value)
	case *streams.AttributeValueMemberN:
		return events.NewNumberAttribute(t.Value)
	case *streams.AttributeValueMemberB:
		return events.NewBinaryAttribute(t.Value)
	case *streams.AttributeValueMemberBOOL:
		return events.NewBooleanAttribute(t.Value)
	case *streams.AttributeValueMemberSS:
		return events.NewStringSetAttribute(t.Value)
	case *streams.AttributeValueMemberNS:
		return events.NewNumberSetAttribute(t.Value)
	case *streams.AttributeValueMemberBS:
		return events.NewBinarySetAttribute(t.Value)
	case *streams.AttributeValueMemberL:
		l := make([]events.DynamoDBAttributeValue, len(t.Value))
		for i, e := range t.Value {
			l[i] = fromStreams(e)
		}
		return events.NewListAttribute(l)
	case *streams.AttributeValueMemberM:
		return events.NewMapAttribute(fromStreamsMap(t.Value))
	}
	return events.NewNullAttribute()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
