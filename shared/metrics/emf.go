package metrics

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// CloudWatch Embedded Metric Format
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
// a Lambda writes a JSON line to stdout and CloudWatch Logs turns it into metrics, with no
// API call on the request path and no agent.

// Units of the metrics an EMF line carries; the dashboard in template.yaml plots these
// names, and infra's template test checks that every one it plots is emitted.
var emfUnits = map[string]string{
	"EventsAppended":    "Count",
	"Requests":          "Count",
	"Errors5xx":         "Count",
	"Rejected4xx":       "Count",
	"Conflicts":         "Count",
	"Retries":           "Count",
	"ParkedEvents":      "Count",
	"SnapshotsCreated":  "Count",
	"CommandLatency":    "Milliseconds",
	"AggregateLoadTime": "Milliseconds",
	"RebuildTime":       "Milliseconds",
	"ProjectorLag":      "Milliseconds",
	"SnapshotSize":      "Bytes",
}

// EMFMetricNames are the names EMF lines may carry, sorted.
func EMFMetricNames() []string {
	out := make([]string, 0, len(emfUnits))
	for k := range emfUnits {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EMF dimensions: every line has Function; the parked-event line also has EventType.
const (
	DimFunction  = "Function"
	DimEventType = "EventType"
)

// maxValues is EMF's limit of values per metric in one line.
const maxValues = 100

// pending is what happened since the last flush.
type pending struct {
	counts map[string]float64
	values map[string][]float64
	byType map[string]float64
}

func (p *pending) reset() {
	p.counts, p.values, p.byType = map[string]float64{}, map[string][]float64{}, map[string]float64{}
}

func (p *pending) count(name string, n float64) { p.counts[name] += n }

// value keeps the first maxValues observations of a flush interval: a Lambda flushes
// after every invocation, and no invocation of ours makes more than a batch (100 records).
func (p *pending) value(name string, v float64) {
	if len(p.values[name]) < maxValues {
		p.values[name] = append(p.values[name], v)
	}
}

// EMF writes a process's figures as Embedded Metric Format lines.
type EMF struct {
	Namespace string
	Function  string // the Function dimension's value: api, projector, saga, redrive-…
	Now       func() time.Time

	mu sync.Mutex
	w  io.Writer
}

// NewEMF writes lines to w. The namespace is METRICS_NAMESPACE (template.yaml sets it per
// stack) or "ecmstore".
func NewEMF(w io.Writer, function string) *EMF {
	ns := os.Getenv("METRICS_NAMESPACE")
	if ns == "" {
		ns = "ecmstore"
	}
	return &EMF{Namespace: ns, Function: function, Now: time.Now, w: w}
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMeta struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// Flush writes what m recorded since the last flush: one line with every count (zeros
// included, so rates and sums have data points) and the observed values, plus one line per
// event type that had events parked. One write per line: CloudWatch reads a line as one
// log event.
func (e *EMF) Flush(m *Metrics) error {
	m.mu.Lock()
	p := m.pending
	m.pending.reset()
	m.mu.Unlock()

	ts := e.Now().UnixMilli()
	line := map[string]any{DimFunction: e.Function}
	var ms []emfMetric
	for _, name := range EMFMetricNames() {
		if emfUnits[name] == "Count" {
			line[name] = p.counts[name]
		} else if vs := p.values[name]; len(vs) > 0 {
			line[name] = vs
		} else {
			continue
		}
		ms = append(ms, emfMetric{Name: name, Unit: emfUnits[name]})
	}
	line["_aws"] = emfMeta{Timestamp: ts, CloudWatchMetrics: []emfDirective{{Namespace: e.Namespace,
		Dimensions: [][]string{{DimFunction}}, Metrics: ms}}}
	lines := []map[string]any{line}
	types := make([]string, 0, len(p.byType))
	for t := range p.byType {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		lines = append(lines, map[string]any{DimFunction: e.Function, DimEventType: t, "ParkedEvents": p.byType[t],
			"_aws": emfMeta{Timestamp: ts, CloudWatchMetrics: []emfDirective{{Namespace: e.Namespace,
				Dimensions: [][]string{{DimFunction, DimEventType}}, Metrics: []emfMetric{{Name: "ParkedEvents", Unit: "Count"}}}}}})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if _, err := e.w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// Flushed wraps a Lambda handler: after each invocation, m's figures go out as EMF lines.
// A failed write is not the invocation's failure (the figures are lost, the work is not).
func Flushed[In, Out any](e *EMF, m *Metrics, h func(context.Context, In) (Out, error)) func(context.Context, In) (Out, error) {
	return func(ctx context.Context, in In) (Out, error) {
		out, err := h(ctx, in)
		_ = e.Flush(m)
		return out, err
	}
}

// StreamBatch wraps a DynamoDB Streams handler: it records the projector lag (the age of
// the batch's last record when the batch is done) and the records handed back for retry.
func StreamBatch(m *Metrics, h func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)) func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	return func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		res, err := h(ctx, ev)
		if n := len(ev.Records); n > 0 {
			if at := ev.Records[n-1].Change.ApproximateCreationDateTime.Time; !at.IsZero() {
				m.ProjectorLag(max(0, m.now().Sub(at)))
			}
		}
		if err != nil {
			m.Retries(len(ev.Records)) // the whole batch comes again
		} else {
			m.Retries(len(res.BatchItemFailures))
		}
		return res, err
	}
}

// QueueBatch wraps an SQS handler: messages handed back count as retries.
func QueueBatch(m *Metrics, h func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)) func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		res, err := h(ctx, ev)
		if err != nil {
			m.Retries(len(ev.Records))
		} else {
			m.Retries(len(res.BatchItemFailures))
		}
		return res, err
	}
}
