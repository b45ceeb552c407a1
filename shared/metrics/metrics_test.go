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
				m.EventsAppended("BankAccount", 2)
				m.Request(200, time.Millisecond)
				m.AggregateLoaded(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	m.Request(500, 10*time.Millisecond)
	m.Request(422, time.Millisecond)
	m.SnapshotSaved(100)
	m.SnapshotSaved(300)
	m.Parked("X")
	m.Conflict()
	m.Rebuilt("accounts", 1500*time.Millisecond)
	r := m.Snapshot(1)
	checks := []struct {
		name string
		ok   bool
	}{
		{"events appended", r.EventsAppended == 200 && r.ByAggregateType["BankAccount"] == 200},
		{"requests", r.Requests == 102},
		{"snapshots", r.SnapshotsCreated == 2 && len(r.SnapshotsPerDay) == 1 && r.SnapshotsPerDay[0].Count == 2 &&
			r.SnapshotsPerDay[0].Bytes == 400 && r.SnapshotsPerDay[0].AvgBytes == 200},
		{"dead letters", r.DeadLetters == 1 && r.ParkedTotal == 1 && r.FailuresByType["X"] == 1},
		{"conflicts", r.Conflicts == 1},
		{"rebuilds", len(r.Rebuilds) == 1 && r.Rebuilds[0].Projection == "accounts" && r.Rebuilds[0].Ms == 1500},
		{"error rate", r.ErrorRate > 0 && r.ErrorRate <= 0.02},
		{"events per second", r.EventsPerSecond > 0 && sum(r.EventsLastMinute) == 200 && len(r.EventsLastMinute) == 60},
		{"latency", r.LatencyMs.Count == 102 && r.LatencyMs.P99 >= r.LatencyMs.P50 && r.LatencyMs.Max == 10},
		{"load", r.AggregateLoadMs.Count == 100 && r.AggregateLoadMs.P50 == 1},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
}

// Snapshots per day keep the last keptDays days, oldest dropped first.
func TestSnapshotsPerDayWindow(t *testing.T) {
	m := New()
	day0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range keptDays + 3 {
		m.now = func() time.Time { return day0.AddDate(0, 0, i) }
		m.SnapshotSaved(10 * (i + 1))
	}
	r := m.Snapshot(0)
	if len(r.SnapshotsPerDay) != keptDays || r.SnapshotsPerDay[0].Day != "2026-01-04" ||
		r.SnapshotsPerDay[keptDays-1].Day != "2026-01-17" {
		t.Fatalf("days %+v", r.SnapshotsPerDay)
	}
}

func sum(v []int64) (n int64) {
	for _, x := range v {
		n += x
	}
	return n
}
