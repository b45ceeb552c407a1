package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// promMetrics are the Prometheus series, registered with a registry of their own: two
// systems in one process (tests) never collide, and nothing registers behind the
// caller's back.
type promMetrics struct {
	reg           *prometheus.Registry
	appended      *prometheus.CounterVec
	requests      *prometheus.CounterVec
	latency       prometheus.Histogram
	load          prometheus.Histogram
	rebuild       *prometheus.HistogramVec
	conflicts     prometheus.Counter
	retries       prometheus.Counter
	parked        *prometheus.CounterVec
	deadLetters   prometheus.Gauge
	snapshots     prometheus.Counter
	snapshotBytes prometheus.Histogram
	lag           prometheus.Gauge
	handler       http.Handler
}

func newProm(m *Metrics) *promMetrics {
	p := &promMetrics{
		reg: prometheus.NewRegistry(),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ecm_events_appended_total",
			Help: "Events appended to the store, by aggregate type (every writer: commands, saga, tools)."}, []string{"aggregate_type"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ecm_http_requests_total",
			Help: "HTTP requests answered, by status class."}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ecm_http_request_duration_seconds",
			Help: "Time to answer an HTTP request (commands and reads).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		load: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ecm_aggregate_load_duration_seconds",
			Help: "Time to load an aggregate (newest snapshot and the events after it).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		rebuild: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ecm_projection_rebuild_duration_seconds",
			Help: "Time a projection rebuild took.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"projection"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "ecm_append_conflicts_total",
			Help: "Appends refused for their expected version (retried or answered 409)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ecm_stream_retries_total",
			Help: "Stream or queue records handed back to be delivered again."}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ecm_events_parked_total",
			Help: "Events parked as dead letters, by event type."}, []string{"event_type"}),
		deadLetters: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ecm_dead_letters",
			Help: "Events parked now (read at scrape time)."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "ecm_snapshots_created_total",
			Help: "Aggregate snapshots written."}),
		snapshotBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ecm_snapshot_bytes",
			Help: "Size of a snapshot's state.", Buckets: prometheus.ExponentialBuckets(64, 4, 8)}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ecm_projector_lag_seconds",
			Help: "Age of the last stream record the projector processed."}),
	}
	p.reg.MustRegister(p.appended, p.requests, p.latency, p.load, p.rebuild, p.conflicts, p.retries, p.parked,
		p.deadLetters, p.snapshots, p.snapshotBytes, p.lag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ecm_uptime_seconds", Help: "Seconds since the process's metrics began."},
			func() float64 { return m.now().Sub(m.started).Seconds() }))
	p.handler = promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg})
	return p
}

// Handler serves the Prometheus text exposition of these metrics.
func (m *Metrics) Handler() http.Handler { return m.prom.handler }
