package metrics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var fixed = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func fixedMetrics() *Metrics {
	m := New()
	m.now = func() time.Time { return fixed }
	return m
}

// The lines of one invocation's flush, byte for byte: the figures a Lambda reports.
func TestEMFGolden(t *testing.T) {
	m := fixedMetrics()
	m.EventsAppended("Order", 2)
	m.EventsAppended("BankAccount", 1)
	m.Request(201, 12500*time.Microsecond)
	m.Request(503, 3*time.Millisecond)
	m.AggregateLoaded(800 * time.Microsecond)
	m.Conflict()
	m.Retries(2)
	m.ProjectorLag(1500 * time.Millisecond)
	m.SnapshotSaved(512)
	m.Parked("InterestAccrued")
	m.Parked("InterestAccrued")
	m.Parked("OrderPlaced")
	m.Rebuilt("accounts", 2*time.Second)
	var buf bytes.Buffer
	e := &EMF{Namespace: "ecmstore/test", Function: "projector", Now: m.now, w: &buf}
	if err := e.Flush(m); err != nil {
		t.Fatal(err)
	}
	// A second flush reports only what happened since: counts at zero, no values.
	if err := e.Flush(m); err != nil {
		t.Fatal(err)
	}
	validEMF(t, buf.Bytes())
	golden(t, "emf.golden.jsonl", buf.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

var emfUnitsAllowed = map[string]bool{"Count": true, "Milliseconds": true, "Bytes": true, "Seconds": true, "None": true}

// validEMF checks each line against the EMF specification: a root _aws member with an
// integer Timestamp and CloudWatchMetrics directives, each with a Namespace, Dimensions
// (arrays of at most 30 names, each a string member of the root) and Metrics (each
// Name a number, or an array of at most 100 numbers, at the root).
func validEMF(t *testing.T, out []byte) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		var root map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &root); err != nil {
			t.Fatalf("line %d is not a JSON object: %v", n, err)
		}
		var meta struct {
			Timestamp         *int64 `json:"Timestamp"`
			CloudWatchMetrics []struct {
				Namespace  string     `json:"Namespace"`
				Dimensions [][]string `json:"Dimensions"`
				Metrics    []struct {
					Name string `json:"Name"`
					Unit string `json:"Unit"`
				} `json:"Metrics"`
			} `json:"CloudWatchMetrics"`
		}
		dec := json.NewDecoder(bytes.NewReader(root["_aws"]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&meta); err != nil || meta.Timestamp == nil || len(meta.CloudWatchMetrics) == 0 {
			t.Fatalf("line %d: _aws %s: %v", n, root["_aws"], err)
		}
		for _, d := range meta.CloudWatchMetrics {
			if d.Namespace == "" || len(d.Dimensions) == 0 || len(d.Metrics) == 0 || len(d.Metrics) > 100 {
				t.Fatalf("line %d: directive %+v", n, d)
			}
			for _, set := range d.Dimensions {
				if len(set) == 0 || len(set) > 30 {
					t.Fatalf("line %d: dimension set %v", n, set)
				}
				for _, dim := range set {
					var v string
					if err := json.Unmarshal(root[dim], &v); err != nil || v == "" {
						t.Fatalf("line %d: dimension %s is not a string member: %s", n, dim, root[dim])
					}
				}
			}
			for _, mt := range d.Metrics {
				if !emfUnitsAllowed[mt.Unit] {
					t.Fatalf("line %d: unit %q", n, mt.Unit)
				}
				var one float64
				var many []float64
				if json.Unmarshal(root[mt.Name], &one) != nil && (json.Unmarshal(root[mt.Name], &many) != nil || len(many) == 0 || len(many) > 100) {
					t.Fatalf("line %d: metric %s is %s", n, mt.Name, root[mt.Name])
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no EMF lines")
	}
}

// Past 100 observations in one flush, EMF's limit, the first 100 are kept.
func TestEMFValueLimit(t *testing.T) {
	m := fixedMetrics()
	for range 150 {
		m.Request(200, time.Millisecond)
	}
	var buf bytes.Buffer
	if err := (&EMF{Namespace: "n", Function: "api", Now: m.now, w: &buf}).Flush(m); err != nil {
		t.Fatal(err)
	}
	validEMF(t, buf.Bytes())
	var line struct {
		Requests       float64   `json:"Requests"`
		CommandLatency []float64 `json:"CommandLatency"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line.Requests != 150 || len(line.CommandLatency) != 100 {
		t.Fatalf("%s %v", buf.Bytes(), err)
	}
}

func TestNewEMFNamespace(t *testing.T) {
	t.Setenv("METRICS_NAMESPACE", "ecmstore/prod")
	if e := NewEMF(os.Stdout, "api"); e.Namespace != "ecmstore/prod" || e.Function != "api" {
		t.Fatalf("%+v", e)
	}
	t.Setenv("METRICS_NAMESPACE", "")
	if e := NewEMF(os.Stdout, "api"); e.Namespace != "ecmstore" {
		t.Fatalf("%+v", e)
	}
}

func streamEvent(ages ...time.Duration) events.DynamoDBEvent {
	var ev events.DynamoDBEvent
	for i, a := range ages {
		ev.Records = append(ev.Records, events.DynamoDBEventRecord{EventID: string(rune('a' + i)), EventName: "INSERT",
			Change: events.DynamoDBStreamRecord{ApproximateCreationDateTime: events.SecondsEpochTime{Time: fixed.Add(-a)},
				SequenceNumber: string(rune('1' + i))}})
	}
	return ev
}

// The stream wrapper reports the age of the batch's last record and the records handed
// back; a whole failed batch counts every record as a retry.
func TestStreamBatch(t *testing.T) {
	cases := []struct {
		name    string
		ev      events.DynamoDBEvent
		failed  int
		err     error
		lagMs   float64
		retries float64
	}{
		{name: "all applied", ev: streamEvent(5*time.Second, 2*time.Second), lagMs: 2000},
		{name: "one handed back", ev: streamEvent(9*time.Second, 3*time.Second, time.Second), failed: 1, lagMs: 1000, retries: 1},
		{name: "batch failed", ev: streamEvent(4*time.Second, 4*time.Second), err: errors.New("throttled"), lagMs: 4000, retries: 2},
		{name: "empty", ev: events.DynamoDBEvent{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := fixedMetrics()
			h := StreamBatch(m, func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				res := events.DynamoDBEventResponse{}
				for i := range c.failed {
					res.BatchItemFailures = append(res.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: c.ev.Records[i].Change.SequenceNumber})
				}
				return res, c.err
			})
			var buf bytes.Buffer
			e := &EMF{Namespace: "n", Function: "projector", Now: m.now, w: &buf}
			if _, err := Flushed(e, m, h)(context.Background(), c.ev); !errors.Is(err, c.err) {
				t.Fatalf("error %v", err)
			}
			validEMF(t, buf.Bytes())
			var line struct {
				ProjectorLag []float64 `json:"ProjectorLag"`
				Retries      float64   `json:"Retries"`
			}
			if err := json.Unmarshal([]byte(strings.SplitN(buf.String(), "\n", 2)[0]), &line); err != nil {
				t.Fatal(err)
			}
			if line.Retries != c.retries || (c.lagMs == 0) != (len(line.ProjectorLag) == 0) ||
				(c.lagMs > 0 && line.ProjectorLag[0] != c.lagMs) {
				t.Fatalf("line %s", buf.String())
			}
		})
	}
}

func TestQueueBatch(t *testing.T) {
	m := fixedMetrics()
	h := QueueBatch(m, func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "m-2"}}}, nil
	})
	if _, err := h(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-1"}, {MessageId: "m-2"}}}); err != nil {
		t.Fatal(err)
	}
	if m.retries.Load() != 1 {
		t.Fatalf("retries %d", m.retries.Load())
	}
}
