package api_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

var screenshotTo = flag.String("ops-screenshot", "", "also write the ops page's screenshot here (docs/ops.png for the README)")

// chromium finds Debian's Chromium. The test fails without it: `make test` installs it
// (make chromium), as it installs Java for DynamoDB Local.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is not installed (neither chromium nor chromium-browser is on PATH): run `make chromium`, " +
		"which installs Debian's chromium package; the ops page's test drives it headless")
	return ""
}

// consoleErrors collects what the page reports as broken through the console: console
// error/assert/warning calls, uncaught exceptions (and unhandled rejections), and the
// browser's own error log entries (a blocked script, a refused style sheet, a failed
// request). It reads until the page logs endMark, so every message written before it is
// seen.
type consoleErrors struct {
	done chan struct{}
	errs []string
}

const endMark = "ops-test: end of the page's messages"

func collectConsole(ctx context.Context) *consoleErrors {
	c := &consoleErrors{done: make(chan struct{})}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(c.done)
		for m, err := range messages {
			if err != nil {
				c.errs = append(c.errs, "console: "+err.Error())
				return
			}
			switch {
			case m.Text == endMark:
				return
			case m.IsException(), m.Type == chromedp.ConsoleError, m.Type == chromedp.ConsoleWarning, m.Type == "assert":
				c.errs = append(c.errs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			}
		}
	}()
	return c
}

// wait returns the messages once the page has logged endMark.
func (c *consoleErrors) wait(t *testing.T, ctx context.Context) []string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("console.info(%q)", endMark))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		t.Fatal("the console's messages did not arrive within a minute")
	}
	return c.errs
}

// The ops page in headless Chromium, against the real handler over a memory system: it
// loads with no console error, shows a parked event with its error, the redrive button
// clears it once the cause is fixed, the stream browser answers as of an instant, and the
// charts draw from /metrics.json. A screenshot is written as the test's artifact (and to
// .data/ops.png).
func TestOpsPageInChromium(t *testing.T) {
	exe := chromium(t)
	sys, err := system.Open(context.Background(), system.Config{EventStore: "memory", SnapshotEvery: 3},
		slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	loops, stopLoops := context.WithCancel(context.Background())
	done := sys.Start(loops)
	t.Cleanup(func() { stopLoops(); <-done; _ = sys.Close() })
	srv := httptest.NewServer(sys.Handler)
	t.Cleanup(srv.Close)

	// Traffic for the charts, then a poison event: a type this build does not know.
	c := &apitest.Client{T: t, H: sys.Handler, OpenAPI: apitest.Contract(t)}
	bad, good := apitest.ID("bad"), apitest.ID("good")
	c.Must(201, "POST", "/accounts/"+bad+"/open", map[string]any{"initialDeposit": 100})
	c.Must(201, "POST", "/accounts/"+good+"/open", map[string]any{"initialDeposit": 1})
	for i := range 7 {
		c.Must(200, "POST", "/accounts/"+good+"/deposit", map[string]any{"amount": i + 1})
	}
	c.Do("POST", "/accounts/"+good+"/withdraw", map[string]any{"amount": 1000000}) // 422, for the 4xx line
	c.Must(202, "POST", "/projections/accounts/rebuild", nil)
	c.Eventually(60*time.Second, func() string { // done, so the rebuild-times chart has a bar
		if r := c.Must(200, "GET", "/projections/accounts", nil); !strings.Contains(string(r.Raw), `"phase":"done"`) {
			return "the rebuild has not finished: " + string(r.Raw)
		}
		return ""
	})
	poison, err := sys.Store.Append(context.Background(), eventstore.Stream{Type: "BankAccount", ID: bad}, 1,
		[]event.Event{event.MustNew("InterestAccrued", map[string]string{"amount": "5"})})
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, func() string {
		if r := c.Do("GET", "/dead-letters", nil); !strings.Contains(string(r.Raw), poison[0].EventID) {
			return "the poison event is not parked yet: " + string(r.Raw)
		}
		return ""
	})
	opened := c.Must(200, "GET", "/accounts/"+bad+"/events", nil)
	firstAt := opened.Body["events"].([]any)[0].(map[string]any)["timestamp"].(string)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Headless, chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, with no deadline
		t.Fatalf("starting %s: %v", exe, err)
	}
	// Generous: the machine is shared and Chromium is slow under load.
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancel)
	console := collectConsole(ctx)
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}

	row := chromedp.CSS(fmt.Sprintf(`tr.dead-letter[data-event-id=%q]`, poison[0].EventID))
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ops"),
		chromedp.WaitVisible(row),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-projection="accounts"]`)),
		// A few polls, so the time-series charts have lines.
		chromedp.Poll[chromedp.Void](`series.p50.length >= 3`, chromedp.WithPollingTimeout(2*time.Minute)),
	); err != nil {
		t.Fatalf("loading /ops: %v", err)
	}
	rowText, projText, totals := text(string(row)), text("#projections"), text("#totals")
	for _, want := range []string{"accounts", bad, "InterestAccrued", "unknown event type"} {
		if !strings.Contains(rowText+projText, want) {
			t.Errorf("page lacks %q: dead letter %q, projections %q", want, rowText, projText)
		}
	}
	if !strings.Contains(totals, "events appended 10") {
		t.Errorf("totals %q: want the 10 events appended (the poison event's append included)", totals)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writeScreenshot(t, shot)

	// The fix is deployed (the type is known now); the operator presses redrive.
	sys.Registry.Register("InterestAccrued", 1)
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("redrive")),
		chromedp.WaitNotPresent(row),
		chromedp.WaitVisible(chromedp.ID("dl-empty")),
		chromedp.Poll[chromedp.Void](`document.getElementById("redrive-result").textContent.startsWith("redriven")`,
			chromedp.WithPollingTimeout(time.Minute)),
	); err != nil {
		t.Fatalf("redrive: %v", err)
	}
	if result := text("#redrive-result"); result != "redriven 1, still failing 0" {
		t.Errorf("redrive result %q", result)
	}
	if r := c.Must(200, "GET", "/dead-letters", nil); strings.Contains(string(r.Raw), poison[0].EventID) {
		t.Errorf("still parked after the page's redrive: %s", r.Raw)
	}

	// The stream browser, as of the account's first event: one event, version 1.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("stream-kind"), "accounts"),
		chromedp.SendKeys(chromedp.ID("stream-id"), bad),
		chromedp.SendKeys(chromedp.ID("stream-asof"), firstAt),
		chromedp.Click(chromedp.CSS(`#stream-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#stream-events tbody tr`)),
	); err != nil {
		t.Fatalf("stream browser: %v", err)
	}
	state := text("#stream-state")
	events, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`#stream-events tbody tr`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || !strings.Contains(state, `"version": 1`) || !strings.Contains(state, `"balance": 100`) {
		t.Errorf("as of %s: %d events, state %s", firstAt, len(events), state)
	}
	// The rebuild progress and lag as GET /projections reports them when a rebuild runs.
	cell, err := chromedp.Run(ctx, chromedp.Evaluate[string](`rebuildCell({name: "accounts", status: "rebuilding",
		rebuild: {phase: "catching-up", eventsDone: 50, eventsTotal: 200, eventsPerSecond: 1234.5, etaSeconds: 4.6}}).textContent + " | " +
		lagText(lagOf({lag: 7})) + " | " + lagText(lagOf({lag: null, lastRecord: {ageSeconds: 1.2}})) + " | " + lagText(null)`))
	if want := " catching-up · 50/200 · 1235 ev/s · eta 5s | 7 events | last record age s 1.2 | —"; err != nil || cell != want {
		t.Errorf("rebuild progress and lag: %q, want %q (%v)", cell, want, err)
	}
	if errs := console.wait(t, ctx); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

func writeScreenshot(t *testing.T, png []byte) {
	t.Helper()
	paths := []string{filepath.Join(t.ArtifactDir(), "ops.png"), filepath.Join("..", "..", ".data", "ops.png")}
	if *screenshotTo != "" {
		paths = append(paths, *screenshotTo)
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}
