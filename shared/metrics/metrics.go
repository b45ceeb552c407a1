// Package metrics keeps the operational figures seed 001 asks to watch (events/s,
// latency, error rate, dead letters, snapshots created) in process, cheaply, for
// GET /metrics. On AWS the same figures also reach CloudWatch through the JSON logs.
package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics is safe for concurrent use. The zero value is not usable: call New.
type Metrics struct {
	started   time.Time
	events    atomic.Int64
	requests  atomic.Int64
	errors5xx atomic.Int64
	rejected  atomic.Int64 // 4xx
	snapshots atomic.Int64
	parked    atomic.Int64

	mu        sync.Mutex
	perSecond [60]int64 // ring of appended-event counts per second
	stamp     [60]int64 // which unix second each slot holds
	latencies []float64 // ring of the last N request latencies in ms
	next      int
	byType    map[string]int64 // failures (parked events) by event type
}

const latencyWindow = 1024

// New returns empty metrics.
func New() *Metrics {
	return &Metrics{started: time.Now(), latencies: make([]float64, 0, latencyWindow), byType: map[string]int64{}}
}

// EventsAppended counts appended events.
func (m *Metrics) EventsAppended(n int) {
	m.events.Add(int64(n))
	now := time.Now().Unix()
	m.mu.Lock()
	i := now % 60
	if m.stamp[i] != now {
		m.stamp[i], m.perSecond[i] = now, 0
	}
	m.perSecond[i] += int64(n)
	m.mu.Unlock()
}

// Request records one HTTP request.
func (m *Metrics) Request(status int, d time.Duration) {
	m.requests.Add(1)
	switch {
	case status >= 500:
		m.errors5xx.Add(1)
	case status >= 400:
		m.rejected.Add(1)
	}
	ms := float64(d.Microseconds()) / 1000
	m.mu.Lock()
	if len(m.latencies) < latencyWindow {
		m.latencies = append(m.latencies, ms)
	} else {
		m.latencies[m.next] = ms
		m.next = (m.next + 1) % latencyWindow
	}
	m.mu.Unlock()
}

// SnapshotCreated counts a snapshot.
func (m *Metrics) SnapshotCreated() { m.snapshots.Add(1) }

// Parked counts a newly parked event.
func (m *Metrics) Parked(eventType string) {
	m.parked.Add(1)
	m.mu.Lock()
	m.byType[eventType]++
	m.mu.Unlock()
}

// Report is the GET /metrics body.
type Report struct {
	EventsPerSecond  float64          `json:"eventsPerSecond"` // over the last minute
	EventsAppended   int64            `json:"eventsAppended"`
	Requests         int64            `json:"requests"`
	ErrorRate        float64          `json:"errorRate"` // 5xx / requests
	RejectedRate     float64          `json:"rejectedRate"`
	LatencyMs        Latency          `json:"latencyMs"`
	DeadLetters      int              `json:"deadLetters"` // parked now
	ParkedTotal      int64            `json:"parkedTotal"`
	FailuresByType   map[string]int64 `json:"failuresByEventType"`
	SnapshotsCreated int64            `json:"snapshotsCreated"`
	UptimeSeconds    int64            `json:"uptimeSeconds"`
}

// Latency percentiles over the last requests.
type Latency struct {
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Snapshot reports the figures; deadLetters is the number parked now.
func (m *Metrics) Snapshot(deadLetters int) Report {
	now := time.Now().Unix()
	r := Report{EventsAppended: m.events.Load(), Requests: m.requests.Load(), DeadLetters: deadLetters,
		ParkedTotal: m.parked.Load(), SnapshotsCreated: m.snapshots.Load(), FailuresByType: map[string]int64{},
		UptimeSeconds: int64(time.Since(m.started).Seconds())}
	if r.Requests > 0 {
		r.ErrorRate = float64(m.errors5xx.Load()) / float64(r.Requests)
		r.RejectedRate = float64(m.rejected.Load()) / float64(r.Requests)
	}
	m.mu.Lock()
	var recent int64
	for i := range m.stamp {
		if now-m.stamp[i] < 60 {
			recent += m.perSecond[i]
		}
	}
	window := min(60, max(1, now-m.started.Unix()+1))
	r.EventsPerSecond = float64(recent) / float64(window)
	lat := append([]float64(nil), m.latencies...)
	for k, v := range m.byType {
		r.FailuresByType[k] = v
	}
	m.mu.Unlock()
	if len(lat) > 0 {
		sort.Float64s(lat)
		var sum float64
		for _, v := range lat {
			sum += v
		}
		r.LatencyMs = Latency{Avg: sum / float64(len(lat)), P50: lat[len(lat)/2], P99: lat[min(len(lat)-1, len(lat)*99/100)]}
	}
	return r
}
