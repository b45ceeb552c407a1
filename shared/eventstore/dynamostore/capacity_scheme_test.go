package dynamostore

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// modelSchemeWith is the key design with the index sharded n ways.
func modelSchemeWith(n int) scheme {
	var s scheme
	s.tables.events, s.tables.index, s.tables.docs, s.tables.list = "events", "index", "read models", "read models: byCollection"
	s.eventPK = func(st eventstore.Stream) string { return st.Key() }
	s.guardPK = guardPK
	s.indexPKs = func(e event.Event) []string { return IndexPartitionKeys(e, n) }
	s.docPK = func(coll, key string) string {
		it := docKey{coll: coll, key: key}.item()
		return it[infra.AttrPK].(*types.AttributeValueMemberS).Value
	}
	// Every collection is listed but the idempotency records; the projection guards are
	// listed too (a rebuild deletes them), their index entry written once per stream.
	s.listPK = func(coll, key string) string {
		if coll == "_idempotency" {
			return ""
		}
		return listPK(coll, ListShard(key))
	}
	return s
}
