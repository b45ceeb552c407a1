// Package metrics keeps the operational figures seed 001 asks to watch (events/s, command
// latency, error rate and errors by event type, dead letters, aggregate load and rebuild
// times, snapshots per day and their size) in process, cheaply. Three views read them:
// Prometheus exposition (Handler, GET /metrics), a JSON report (Snapshot, GET
// /metrics.json, which the ops page polls) and CloudWatch Embedded Metric Format lines
// (EMF, written by the Lambdas after each invocation).
package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is safe for concurrent use. The zero value is not usable: call New.
type Metrics struct {
	started   time.Time
	now       func() time.Time
	events    atomic.Int64
	requests  atomic.Int64
	errors5xx atomic.Int64
	rejected  atomic.Int64 // 4xx
	snapshots atomic.Int64
	parked    atomic.Int64
	conflicts atomic.Int64
	retries   atomic.Int64

	mu          sync.Mutex
	perSecond   [60]int64        // ring of appended-event counts per second
	stamp       [60]int64        // which unix second each slot holds
	latencies   window           // request latencies, ms
	loads       window           // aggregate loads, ms
	byType      map[string]int64 // failures (parked events) by event type
	byAggregate map[string]int64 // appended events by aggregate type
	days        map[string]*day  // snapshots by UTC day
	rebuilds    []Rebuild        // the last rebuilds, newest last
	lagMs       float64          // age of the last stream record processed
	pending     pending          // what the next EMF flush reports

	prom *promMetrics
}

type day struct{ count, bytes int64 }

const (
	latencyWindow = 1024
	keptDays      = 14
	keptRebuilds  = 20
)

// New returns empty metrics with their own Prometheus registry.
func New() *Metrics {
	m := &Metrics{started: time.Now(), now: time.Now, byType: map[string]int64{}, byAggregate: map[string]int64{},
		days: map[string]*day{}, latencies: newWindow(latencyWindow), loads: newWindow(latencyWindow)}
	m.pending.reset()
	m.prom = newProm(m)
	return m
}

// Registry is the Prometheus registry these metrics are registered with (and only they,
// with the Go runtime and process collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.prom.reg }

// EventsAppended counts n events appended to a stream of the aggregate type.
func (m *Metrics) EventsAppended(aggregateType string, n int) {
	m.events.Add(int64(n))
	m.prom.appended.WithLabelValues(aggregateType).Add(float64(n))
	now := m.now().Unix()
	m.mu.Lock()
	i := now % 60
	if m.stamp[i] != now {
		m.stamp[i], m.perSecond[i] = now, 0
	}
	m.perSecond[i] += int64(n)
	m.byAggregate[aggregateType] += int64(n)
	m.pending.count("EventsAppended", float64(n))
	m.mu.Unlock()
}

// Request records one HTTP request.
func (m *Metrics) Request(status int, d time.Duration) {
	m.requests.Add(1)
	class := "2xx"
	switch {
	case status >= 500:
		m.errors5xx.Add(1)
		class = "5xx"
	case status >= 400:
		m.rejected.Add(1)
		class = "4xx"
	case status >= 300:
		class = "3xx"
	}
	m.prom.requests.WithLabelValues(class).Inc()
	m.prom.latency.Observe(d.Seconds())
	ms := millis(d)
	m.mu.Lock()
	m.latencies.add(ms)
	m.pending.count("Requests", 1)
	m.pending.count("Errors5xx", b2f(status >= 500))
	m.pending.count("Rejected4xx", b2f(status >= 400 && status < 500))
	m.pending.value("CommandLatency", ms)
	m.mu.Unlock()
}

// AggregateLoaded records how long loading one aggregate (snapshot + tail) took.
func (m *Metrics) AggregateLoaded(d time.Duration) {
	m.prom.load.Observe(d.Seconds())
	m.mu.Lock()
	m.loads.add(millis(d))
	m.pending.value("AggregateLoadTime", millis(d))
	m.mu.Unlock()
}

// Conflict counts an append refused for its expected version (each is retried by the
// repository or answered 409).
func (m *Metrics) Conflict() {
	m.conflicts.Add(1)
	m.prom.conflicts.Inc()
	m.mu.Lock()
	m.pending.count("Conflicts", 1)
	m.mu.Unlock()
}

// Retries counts records a Lambda handed back to be delivered again (batch item failures).
func (m *Metrics) Retries(n int) {
	m.retries.Add(int64(n))
	m.prom.retries.Add(float64(n))
	m.mu.Lock()
	m.pending.count("Retries", float64(n))
	m.mu.Unlock()
}

// ProjectorLag records the age of the last stream record processed.
func (m *Metrics) ProjectorLag(d time.Duration) {
	m.prom.lag.Set(d.Seconds())
	m.mu.Lock()
	m.lagMs = millis(d)
	m.pending.value("ProjectorLag", millis(d))
	m.mu.Unlock()
}

// SnapshotSaved counts a snapshot of size bytes (its state).
func (m *Metrics) SnapshotSaved(size int) {
	m.snapshots.Add(1)
	m.prom.snapshots.Inc()
	m.prom.snapshotBytes.Observe(float64(size))
	key := m.now().UTC().Format(time.DateOnly)
	m.mu.Lock()
	d := m.days[key]
	if d == nil {
		d = &day{}
		m.days[key] = d
		if len(m.days) > keptDays {
			oldest := key
			for k := range m.days {
				oldest = min(oldest, k)
			}
			delete(m.days, oldest)
		}
	}
	d.count++
	d.bytes += int64(size)
	m.pending.count("SnapshotsCreated", 1)
	m.pending.value("SnapshotSize", float64(size))
	m.mu.Unlock()
}

// Parked counts a newly parked event.
func (m *Metrics) Parked(eventType string) {
	m.parked.Add(1)
	m.prom.parked.WithLabelValues(eventType).Inc()
	m.mu.Lock()
	m.byType[eventType]++
	m.pending.count("ParkedEvents", 1)
	m.pending.byType[eventType]++
	m.mu.Unlock()
}

// Rebuilt records a finished rebuild of a projection.
func (m *Metrics) Rebuilt(projection string, d time.Duration) {
	m.prom.rebuild.WithLabelValues(projection).Observe(d.Seconds())
	m.mu.Lock()
	m.rebuilds = append(m.rebuilds, Rebuild{Projection: projection, Ms: millis(d), At: m.now().UTC()})
	if len(m.rebuilds) > keptRebuilds {
		m.rebuilds = m.rebuilds[len(m.rebuilds)-keptRebuilds:]
	}
	m.pending.value("RebuildTime", millis(d))
	m.mu.Unlock()
}

// DeadLetters sets the number of events parked now (read from the engine at scrape time).
func (m *Metrics) DeadLetters(n int) { m.prom.deadLetters.Set(float64(n)) }

// Report is the GET /metrics.json body.
type Report struct {
	At               time.Time        `json:"at"`
	EventsPerSecond  float64          `json:"eventsPerSecond"` // over the last minute
	EventsLastMinute []int64          `json:"eventsLastMinute"`
	EventsAppended   int64            `json:"eventsAppended"`
	ByAggregateType  map[string]int64 `json:"eventsByAggregateType"`
	Requests         int64            `json:"requests"`
	ErrorRate        float64          `json:"errorRate"` // 5xx / requests
	RejectedRate     float64          `json:"rejectedRate"`
	LatencyMs        Latency          `json:"latencyMs"`
	AggregateLoadMs  Latency          `json:"aggregateLoadMs"`
	Conflicts        int64            `json:"conflicts"`
	DeadLetters      int              `json:"deadLetters"` // parked now
	ParkedTotal      int64            `json:"parkedTotal"`
	FailuresByType   map[string]int64 `json:"failuresByEventType"`
	SnapshotsCreated int64            `json:"snapshotsCreated"`
	SnapshotsPerDay  []Day            `json:"snapshotsPerDay"`
	Rebuilds         []Rebuild        `json:"rebuilds"`
	UptimeSeconds    int64            `json:"uptimeSeconds"`
}

// Latency percentiles over the last observations (milliseconds).
type Latency struct {
	Count int     `json:"count"`
	Avg   float64 `json:"avg"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Day is one UTC day's snapshots.
type Day struct {
	Day      string `json:"day"`
	Count    int64  `json:"count"`
	Bytes    int64  `json:"bytes"`
	AvgBytes int64  `json:"avgBytes"`
}

// Rebuild is one finished rebuild.
type Rebuild struct {
	Projection string    `json:"projection"`
	Ms         float64   `json:"ms"`
	At         time.Time `json:"at"`
}

// Snapshot reports the figures; deadLetters is the number parked now.
func (m *Metrics) Snapshot(deadLetters int) Report {
	t := m.now()
	now := t.Unix()
	r := Report{At: t.UTC(), EventsAppended: m.events.Load(), Requests: m.requests.Load(), DeadLetters: deadLetters,
		ParkedTotal: m.parked.Load(), SnapshotsCreated: m.snapshots.Load(), Conflicts: m.conflicts.Load(),
		FailuresByType: map[string]int64{}, ByAggregateType: map[string]int64{},
		EventsLastMinute: make([]int64, 60), SnapshotsPerDay: []Day{}, Rebuilds: []Rebuild{},
		UptimeSeconds: int64(t.Sub(m.started).Seconds())}
	if r.Requests > 0 {
		r.ErrorRate = float64(m.errors5xx.Load()) / float64(r.Requests)
		r.RejectedRate = float64(m.rejected.Load()) / float64(r.Requests)
	}
	m.mu.Lock()
	var recent int64
	for i := range m.stamp {
		if age := now - m.stamp[i]; age < 60 && age >= 0 {
			recent += m.perSecond[i]
			r.EventsLastMinute[59-age] = m.perSecond[i]
		}
	}
	window := min(60, max(1, now-m.started.Unix()+1))
	r.EventsPerSecond = float64(recent) / float64(window)
	lat, loads := m.latencies.values(), m.loads.values()
	for k, v := range m.byType {
		r.FailuresByType[k] = v
	}
	for k, v := range m.byAggregate {
		r.ByAggregateType[k] = v
	}
	for k, d := range m.days {
		r.SnapshotsPerDay = append(r.SnapshotsPerDay, Day{Day: k, Count: d.count, Bytes: d.bytes, AvgBytes: d.bytes / max(1, d.count)})
	}
	r.Rebuilds = append(r.Rebuilds, m.rebuilds...)
	m.mu.Unlock()
	sort.Slice(r.SnapshotsPerDay, func(i, j int) bool { return r.SnapshotsPerDay[i].Day < r.SnapshotsPerDay[j].Day })
	r.LatencyMs, r.AggregateLoadMs = percentiles(lat), percentiles(loads)
	return r
}

// window is a ring of the last observations.
type window struct {
	vals []float64
	next int
}

func newWindow(n int) window { return window{vals: make([]float64, 0, n)} }

func (w *window) add(v float64) {
	if len(w.vals) < cap(w.vals) {
		w.vals = append(w.vals, v)
		return
	}
	w.vals[w.next] = v
	w.next = (w.next + 1) % len(w.vals)
}

func (w *window) values() []float64 { return append([]float64(nil), w.vals...) }

func percentiles(v []float64) Latency {
	if len(v) == 0 {
		return Latency{}
	}
	sort.Float64s(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	at := func(p int) float64 { return v[min(len(v)-1, len(v)*p/100)] }
	return Latency{Count: len(v), Avg: sum / float64(len(v)), P50: at(50), P90: at(90), P99: at(99), Max: v[len(v)-1]}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
