package metrics

import (
	"sync"
	"testing"
	"time"
)

func TestReport(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				m.EventsAppended(2)
				m.Request(200, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	m.Request(500, 10*time.Millisecond)
	m.Request(422, time.Millisecond)
	m.SnapshotCreated()
	m.Parked("X")
	r := m.Snapshot(1)
	if r.EventsAppended != 200 || r.Requests != 102 || r.SnapshotsCreated != 1 || r.DeadLetters != 1 || r.FailuresByType["X"] != 1 {
		t.Fatalf("report %+v", r)
	}
	if r.ErrorRate <= 0 || r.ErrorRate > 0.02 || r.EventsPerSecond <= 0 || r.LatencyMs.P99 < r.LatencyMs.P50 {
		t.Fatalf("rates %+v", r)
	}
}
