package perf

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// wire counts what a DynamoDB client sends: requests by operation (X-Amz-Target) and
// the bytes of their bodies both ways. It sits where the SDK hands a signed request to
// HTTP, so SDK retries are counted as the requests they are.
type wire struct {
	next    http.RoundTripper
	mu      sync.Mutex
	ops     map[string]int64
	sent    atomic.Int64
	recvd   atomic.Int64
	enabled atomic.Bool
}

func newWire() *wire {
	return &wire{next: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}, ops: map[string]int64{}}
}

// option installs the counter on a DynamoDB client.
func (w *wire) option(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: w} }

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	if !w.enabled.Load() {
		return w.next.RoundTrip(r)
	}
	op := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	w.mu.Lock()
	w.ops[op]++
	w.mu.Unlock()
	if r.ContentLength > 0 {
		w.sent.Add(r.ContentLength)
	}
	resp, err := w.next.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &w.recvd}
	}
	return resp, err
}

// start clears the counts and begins counting.
func (w *wire) start() {
	w.mu.Lock()
	w.ops = map[string]int64{}
	w.mu.Unlock()
	w.sent.Store(0)
	w.recvd.Store(0)
	w.enabled.Store(true)
}

// stop ends counting and returns the counts.
func (w *wire) stop() wireCounts {
	w.enabled.Store(false)
	w.mu.Lock()
	defer w.mu.Unlock()
	c := wireCounts{ops: map[string]int64{}, sent: w.sent.Load(), recvd: w.recvd.Load()}
	for k, v := range w.ops {
		c.ops[k] = v
		c.requests += v
	}
	return c
}

type wireCounts struct {
	ops         map[string]int64
	requests    int64
	sent, recvd int64
}

// per renders the counts per unit of work (per command), operations by name.
func (c wireCounts) per(n int64) string {
	if n == 0 {
		return "no work"
	}
	names := make([]string, 0, len(c.ops))
	for k := range c.ops {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%.2f requests (", float64(c.requests)/float64(n))
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f", k, float64(c.ops[k])/float64(n))
	}
	fmt.Fprintf(&b, "), %.0f B sent, %.0f B received", float64(c.sent)/float64(n), float64(c.recvd)/float64(n))
	return b.String()
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// cpuTime is the user+system CPU time a process has used (/proc/<pid>/stat), or 0 when
// it cannot be read (no pid: the emulator was not started by this process).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after its ")" are plain.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// selfCPU is this process's CPU time (the client side: HTTP server, SDK, JSON).
func selfCPU() time.Duration { return cpuTime(os.Getpid()) }
