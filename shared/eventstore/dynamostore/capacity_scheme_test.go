package dynamostore

import (
	"fmt"
	"hash/fnv"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func fnvShard(s string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int(h.Sum32() % uint32(n))
}

// modelSchemeWith is the key design with the index sharded n ways.
func modelSchemeWith(n int) scheme {
	var s scheme
	s.tables.events, s.tables.index, s.tables.docs, s.tables.list = "events", "index", "read models", "read models: byCollection"
	s.eventPK = func(st eventstore.Stream) string { return st.Key() }
	s.guardPK = guardPK
	s.indexPKs = func(e event.Event) []string { return IndexPartitionKeys(e, n) }
	s.docPK = func(coll, key string) string { return coll + "#" + key }
	s.listPK = func(coll, key string) string {
		if coll == "_idempotency" || len(coll) > 6 && coll[:6] == "guard:" {
			return ""
		}
		return fmt.Sprintf("%s#%d", coll, fnvShard(key, 16))
	}
	return s
}
