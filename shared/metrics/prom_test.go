package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The exposition carries each figure under its series; two Metrics in one process have
// registries of their own (no duplicate-registration panic) and the global default
// registry is left alone.
func TestPrometheusExposition(t *testing.T) {
	m, other := New(), New()
	m.EventsAppended("Order", 3)
	m.Request(200, 2*time.Millisecond)
	m.Request(500, 2*time.Millisecond)
	m.Conflict()
	m.Parked("InterestAccrued")
	m.DeadLetters(1)
	m.SnapshotSaved(100)
	m.ProjectorLag(1500 * time.Millisecond)
	m.Rebuilt("accounts", time.Second)
	other.EventsAppended("Order", 100)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	var res *http.Response
	var text string
	for range 2 { // a scrape changes nothing a second one would trip on
		r, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		res, text = r, string(body)
	}
	for _, want := range []string{
		`ecm_events_appended_total{aggregate_type="Order"} 3`,
		`ecm_http_requests_total{code="2xx"} 1`,
		`ecm_http_requests_total{code="5xx"} 1`,
		`ecm_http_request_duration_seconds_count 2`,
		`ecm_append_conflicts_total 1`,
		`ecm_events_parked_total{event_type="InterestAccrued"} 1`,
		`ecm_dead_letters 1`,
		`ecm_snapshots_created_total 1`,
		`ecm_snapshot_bytes_sum 100`,
		`ecm_projector_lag_seconds 1.5`,
		`ecm_projection_rebuild_duration_seconds_count{projection="accounts"} 1`,
		`go_goroutines `,
		`ecm_uptime_seconds `,
		`promhttp_metric_handler_errors_total{cause="encoding"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("status %d, content type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "ecm_") {
			t.Errorf("%s is in the global default registry", f.GetName())
		}
	}
}
