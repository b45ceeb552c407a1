package dynamostore

import (
	"container/list"
	"sync"
	"time"
)

// DefaultSeenStreams is how many streams the store remembers by default (a few hundred
// bytes each).
const DefaultSeenStreams = 10000

// seen is what this process knows for certain about one stream. Versions are immutable
// and never deleted, so a version once seen to exist exists forever: no entry can go
// stale, an evicted one only costs a GetItem later.
type seen struct {
	version int64     // highest version seen to exist (0: none)
	ts      time.Time // timestamp of that version: the floor for the next store-assigned one
	// snapshotFloor: no snapshot below this version is left (this process deleted them),
	// so DeleteSnapshots need not read that part of the partition again.
	snapshotFloor int64
}

// seenCache is a bounded, concurrency-safe LRU of stream key → seen.
type seenCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used; values are *seenEntry
	byKey map[string]*list.Element
}

type seenEntry struct {
	key string
	seen
}

func newSeenCache(max int) *seenCache {
	return &seenCache{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns what is known about the stream (the zero value when nothing is).
func (c *seenCache) get(key string) seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*seenEntry).seen
	}
	return seen{}
}

// observe records that version v (stamped ts) exists. Lower versions change nothing:
// the entry only ever moves up.
func (c *seenCache) observe(key string, v int64, ts time.Time) {
	if v <= 0 {
		return
	}
	c.update(key, func(s *seen) {
		if v > s.version {
			s.version, s.ts = v, ts
		}
	})
}

// snapshotsDeleted records that no snapshot below `below` remains.
func (c *seenCache) snapshotsDeleted(key string, below int64) {
	c.update(key, func(s *seen) { s.snapshotFloor = max(s.snapshotFloor, below) })
}

func (c *seenCache) update(key string, fn func(*seen)) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		fn(&el.Value.(*seenEntry).seen)
		c.order.MoveToFront(el)
		return
	}
	e := &seenEntry{key: key}
	fn(&e.seen)
	c.byKey[key] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*seenEntry).key)
	}
}

func (c *seenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
