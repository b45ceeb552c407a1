package ecmctl

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

func TestProgressOf(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   progress
	}{
		{`{"name":"accounts","status":"running"}`, progress{}},
		{`{"status":"rebuilding","rebuild":{"eventsDone":10,"eventsTotal":100,"phase":"replaying","eventsPerSecond":5.5,"etaSeconds":18}}`, progress{10, 100, "replaying"}},
		{`{"status":"rebuilding","rebuild":{"eventsDone":7,"eventsTotal":9}}`, progress{7, 9, ""}},
		{`{"status":"rebuilding","rebuild":{"phase":"swap"}}`, progress{phase: "swap"}},
		{`{"status":"rebuilding","rebuild":"odd"}`, progress{}},
	} {
		var st map[string]any
		decode(t, tc.status, &st)
		if got := progressOf(st); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.status, got, tc.want)
		}
	}
}

// jobServer is a server whose rebuild runs as a background job: the request returns at
// once and the status reports progress until the job ends.
type jobServer struct {
	mu     sync.Mutex
	polls  int
	script []map[string]any // statuses served in turn; the last one repeats
}

func (j *jobServer) Projections(context.Context) ([]map[string]any, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.script[min(j.polls, len(j.script)-1)]
	j.polls++
	return []map[string]any{{"name": "other", "status": "running"}, st}, nil
}

func (j *jobServer) Rebuild(context.Context, string) (map[string]any, error) {
	return map[string]any{"projection": "accounts", "status": "started"}, nil
}

func (*jobServer) DeadLetters(context.Context) ([]projection.DeadLetter, error) { return nil, nil }
func (*jobServer) Redrive(context.Context, string) (projection.RedriveResult, error) {
	return projection.RedriveResult{}, nil
}
func (*jobServer) Stream(context.Context, eventstore.Stream, time.Time) ([]event.Event, error) {
	return nil, nil
}
func (*jobServer) Query(context.Context, eventstore.Filter) (eventstore.Page, error) {
	return eventstore.Page{}, nil
}

// --watch follows a rebuild that runs as a job until its status leaves rebuilding,
// showing the progress it reports.
func TestWatchFollowsABackgroundRebuild(t *testing.T) {
	rb := func(done, total int, phase string) map[string]any {
		return map[string]any{"name": "accounts", "status": "rebuilding",
			"rebuild": map[string]any{"eventsDone": float64(done), "eventsTotal": float64(total), "phase": phase}}
	}
	j := &jobServer{script: []map[string]any{
		rb(0, 0, "queued"), rb(10, 100, "replaying"), rb(60, 100, "replaying"), rb(100, 120, "catching-up"),
		{"name": "accounts", "status": "running", "checkpoint": float64(120), "rebuiltAt": "2026-01-01T00:00:00Z"},
	}}
	a := &app{interval: time.Millisecond}
	root := newRoot(a)
	a.interval = time.Millisecond
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	cmd, _, err := root.Find([]string{"projections", "rebuild"})
	if err != nil {
		t.Fatal(err)
	}
	cmd.SetContext(context.Background())
	if err := a.watchRebuild(cmd, j, "accounts"); err != nil {
		t.Fatal(err)
	}
	if j.polls < len(j.script) {
		t.Fatalf("stopped after %d polls, while the job was still rebuilding", j.polls)
	}
	if !strings.Contains(out.String(), "accounts: rebuilt") || !regexpLine(out.String(), `accounts\s+running\s+120`) {
		t.Fatalf("output:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "/120") {
		t.Fatalf("the bar never showed the reported total:\n%q", errOut.String())
	}
}
