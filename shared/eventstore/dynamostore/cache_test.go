package dynamostore

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSeenCache(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	type op struct {
		key     string
		version int64 // observe this version (0: only read the key, refreshing it)
	}
	for _, tc := range []struct {
		name string
		max  int
		ops  []op
		want map[string]int64 // key → version known afterwards (0: forgotten or never known)
	}{
		{"versions only move up", 10, []op{{"a", 5}, {"a", 3}, {"a", 7}, {"a", 6}}, map[string]int64{"a": 7}},
		{"the least recently used goes first", 2, []op{{"a", 1}, {"b", 1}, {"c", 1}}, map[string]int64{"a": 0, "b": 1, "c": 1}},
		{"a read counts as a use", 2, []op{{"a", 1}, {"b", 1}, {"a", 0}, {"c", 1}}, map[string]int64{"a": 1, "b": 0, "c": 1}},
		{"an update counts as a use", 2, []op{{"a", 1}, {"b", 1}, {"a", 2}, {"c", 1}}, map[string]int64{"a": 2, "b": 0, "c": 1}},
		{"disabled", 0, []op{{"a", 1}}, map[string]int64{"a": 0}},
		{"version 0 is no news", 10, []op{{"a", 0}}, map[string]int64{"a": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSeenCache(tc.max)
			for _, o := range tc.ops {
				if o.version == 0 {
					c.get(o.key)
					continue
				}
				c.observe(o.key, o.version, t0.Add(time.Duration(o.version)*time.Second))
			}
			for key, want := range tc.want {
				got := c.get(key)
				if got.version != want {
					t.Errorf("%s: version %d, want %d", key, got.version, want)
				}
				if want > 0 && !got.ts.Equal(t0.Add(time.Duration(want)*time.Second)) {
					t.Errorf("%s: timestamp %v is not that of version %d", key, got.ts, want)
				}
			}
			if c.len() > max(tc.max, 0) {
				t.Errorf("%d entries, bound %d", c.len(), tc.max)
			}
		})
	}
}

func TestSeenCacheSnapshotFloor(t *testing.T) {
	c := newSeenCache(10)
	c.snapshotsDeleted("a", 50)
	c.observe("a", 60, time.Now())
	c.snapshotsDeleted("a", 40)
	if s := c.get("a"); s.snapshotFloor != 50 || s.version != 60 {
		t.Fatalf("got %+v, want floor 50 and version 60", s)
	}
}

// Run with -race: many goroutines on few keys, under eviction pressure.
func TestSeenCacheConcurrent(t *testing.T) {
	c := newSeenCache(8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := fmt.Sprint((g + i) % 16)
				c.observe(key, int64(i+1), time.Now())
				c.get(key)
				c.snapshotsDeleted(key, int64(i))
			}
		}()
	}
	wg.Wait()
	if c.len() > 8 {
		t.Fatalf("%d entries, bound 8", c.len())
	}
}
