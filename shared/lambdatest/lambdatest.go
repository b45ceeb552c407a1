// Package lambdatest runs real Lambda bootstrap binaries locally under an implementation
// of the documented Lambda Runtime API (2018-06-01: invocation/next, invocation/{id}/response,
// invocation/{id}/error, init/error), so tests can invoke the very binaries `make build`
// ships, with Lambda's environment, and time their cold start.
//
//	rt := lambdatest.Start(t)
//	rt.Launch(t, "path/to/bootstrap", "EVENTS_TABLE=…")
//	res, err := rt.Invoke(ctx, payload) // res.Body, res.IsError
//	t.Log(rt.ColdStart())               // process start → first answer
//	t.Log(rt.InitDuration())            // process start → first invocation/next
package lambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MaxResponseBytes is Lambda's limit on a synchronous response; a larger one is refused
// with 413, as the real Runtime API does, and the invocation fails.
const MaxResponseBytes = 6 << 20

const prefix = "/2018-06-01/runtime"

// Result is one invocation's outcome.
type Result struct {
	RequestID string
	Body      []byte
	// IsError: the function reported an error (invocation/{id}/error, or an error trailer
	// on a streamed response) or its response was too large.
	IsError bool
	// ErrorType is the errorType the runtime reported (Lambda-Runtime-Function-Error-Type
	// or the body's errorType).
	ErrorType string
}

type invocation struct {
	id      string
	payload []byte
	done    chan Result
}

// Runtime is one function's Runtime API endpoint and, once launched, its process.
type Runtime struct {
	// FunctionName goes into the invoked function ARN and AWS_LAMBDA_FUNCTION_NAME.
	FunctionName string
	// Timeout sets each invocation's deadline (Lambda-Runtime-Deadline-Ms).
	Timeout time.Duration

	srv   *http.Server
	addr  string
	queue chan *invocation

	mu       sync.Mutex
	pending  map[string]*invocation
	started  time.Time
	polled   time.Time     // first invocation/next after launch: initialisation done
	ready    chan struct{} // closed at that first invocation/next
	answered time.Time     // first answer after launch

	initErr  chan []byte
	exited   chan struct{} // closed when the launched process has exited
	exitErr  error
	output   *lockedBuffer
	launched bool
}

// Start serves the Runtime API on a free loopback port; the server stops, and any launched
// process is killed, when the test ends.
func Start(t testing.TB) *Runtime {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{FunctionName: "test-function", Timeout: 15 * time.Second, addr: l.Addr().String(),
		queue: make(chan *invocation, 16), pending: map[string]*invocation{}, initErr: make(chan []byte, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/invocation/next", r.next)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/response", r.response)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/error", r.error)
	mux.HandleFunc("POST "+prefix+"/init/error", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		select {
		case r.initErr <- body:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	})
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(r.stopServer)
	return r
}

// Addr is the AWS_LAMBDA_RUNTIME_API value (host:port) for a runtime started by hand.
func (r *Runtime) Addr() string { return r.addr }

func (r *Runtime) next(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.polled.IsZero() && !r.started.IsZero() {
		r.polled = time.Now()
		close(r.ready)
	}
	r.mu.Unlock()
	select {
	case inv := <-r.queue:
		r.mu.Lock()
		r.pending[inv.id] = inv
		r.mu.Unlock()
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(r.Timeout).UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", r.arn())
		h.Set("Lambda-Runtime-Trace-Id", traceID())
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-req.Context().Done():
	}
}

func (r *Runtime) arn() string {
	return "arn:aws:lambda:us-east-1:123456789012:function:" + r.FunctionName
}

// take removes a pending invocation and notes the first answer after launch.
func (r *Runtime) take(id string) (*invocation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inv, ok := r.pending[id]
	delete(r.pending, id)
	if ok && r.answered.IsZero() && !r.started.IsZero() {
		r.answered = time.Now()
	}
	return inv, ok
}

func (r *Runtime) response(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxResponseBytes+1))
	inv, ok := r.take(req.PathValue("id"))
	if !ok {
		http.Error(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	res := Result{RequestID: inv.id, Body: body}
	switch {
	case len(body) > MaxResponseBytes:
		_, _ = io.Copy(io.Discard, req.Body)
		res = Result{RequestID: inv.id, IsError: true, ErrorType: "Function.ResponseSizeTooLarge",
			Body: fmt.Appendf(nil, `{"errorMessage":"Response payload size exceeded maximum allowed payload size (%d bytes).","errorType":"Function.ResponseSizeTooLarge"}`, MaxResponseBytes)}
		inv.done <- res
		http.Error(w, string(res.Body), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		res = Result{RequestID: inv.id, IsError: true, ErrorType: "Runtime.TruncatedResponse", Body: []byte(err.Error())}
	case req.Trailer.Get("Lambda-Runtime-Function-Error-Type") != "":
		// A streamed response that failed midway reports its error in trailers.
		res = Result{RequestID: inv.id, IsError: true, ErrorType: req.Trailer.Get("Lambda-Runtime-Function-Error-Type"),
			Body: []byte(req.Trailer.Get("Lambda-Runtime-Function-Error-Body"))}
	}
	inv.done <- res
	w.WriteHeader(http.StatusAccepted)
}

func (r *Runtime) error(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	inv, ok := r.take(req.PathValue("id"))
	if !ok {
		http.Error(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	typ := req.Header.Get("Lambda-Runtime-Function-Error-Type")
	if typ == "" {
		var e struct {
			ErrorType string `json:"errorType"`
		}
		_ = json.Unmarshal(body, &e)
		typ = e.ErrorType
	}
	inv.done <- Result{RequestID: inv.id, Body: body, IsError: true, ErrorType: typ}
	w.WriteHeader(http.StatusAccepted)
}

// Launch starts the bootstrap binary against this runtime with Lambda's environment
// (AWS_LAMBDA_RUNTIME_API, function name, handler, region, …) followed by env, which may
// override any of it. When the test ends the process is killed by its PID (its whole
// process group), and its output is logged if the test failed.
func (r *Runtime) Launch(t testing.TB, binary string, env ...string) {
	t.Helper()
	if r.launched {
		t.Fatal("lambdatest: one process per Runtime")
	}
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+r.addr,
		"AWS_LAMBDA_FUNCTION_NAME="+r.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+r.FunctionName,
		"AWS_LAMBDA_LOG_STREAM_NAME=2026/01/01/[$LATEST]0123456789abcdef",
		"AWS_EXECUTION_ENV=AWS_Lambda_provided.al2023",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"_HANDLER=bootstrap",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"LAMBDA_TASK_ROOT="+t.TempDir(),
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		"TZ=:UTC",
	)
	cmd.Env = append(cmd.Env, env...)
	r.output = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = r.output, r.output
	// Its own process group, so the kill reaches anything it started; and it dies with the
	// test process even if the cleanup never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r.mu.Lock()
	r.started, r.polled, r.answered, r.ready = time.Now(), time.Time{}, time.Time{}, make(chan struct{})
	r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	r.launched, r.exited = true, make(chan struct{})
	go func() {
		r.exitErr = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", binary, r.output.String())
		}
	})
}

// Invoke queues an invocation and waits for the function's answer. It fails at once when
// the function reported an init error or its process exited without answering.
func (r *Runtime) Invoke(ctx context.Context, payload []byte) (Result, error) {
	inv := &invocation{id: requestID(), payload: payload, done: make(chan Result, 1)}
	exited := r.exited // nil (never ready) when nothing was launched
	select {
	case r.queue <- inv:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	select {
	case res := <-inv.done:
		return res, nil
	case body := <-r.initErr:
		return Result{}, fmt.Errorf("function failed to initialise: %s", body)
	case <-exited:
		// An answer posted just before exiting still counts.
		select {
		case res := <-inv.done:
			return res, nil
		case body := <-r.initErr:
			return Result{}, fmt.Errorf("function failed to initialise: %s (then exited: %v)", body, r.exitErr)
		default:
		}
		return Result{}, fmt.Errorf("function process exited without answering (%v); output:\n%s", r.exitErr, r.output.String())
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Ready waits until the launched process asks for its first invocation (its
// initialisation is over), and fails if it reports an init error or exits first.
func (r *Runtime) Ready(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case body := <-r.initErr:
		return fmt.Errorf("function failed to initialise: %s", body)
	case <-r.exited:
		return fmt.Errorf("function process exited during init (%v); output:\n%s", r.exitErr, r.output.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ColdStart is the time from process start to its first answer (response or error), or 0
// before it has answered.
func (r *Runtime) ColdStart() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answered.IsZero() {
		return 0
	}
	return r.answered.Sub(r.started)
}

// InitDuration is the time from process start to its first invocation/next request: what
// the binary spends before it can take work (Lambda's Init Duration), or 0 before that.
func (r *Runtime) InitDuration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.polled.IsZero() {
		return 0
	}
	return r.polled.Sub(r.started)
}

// Output is what the process has written to stdout and stderr so far.
func (r *Runtime) Output() string {
	if r.output == nil {
		return ""
	}
	return r.output.String()
}

func (r *Runtime) stopServer() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = r.srv.Close()
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requestID is a UUID-shaped id, like Lambda's.
func requestID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// traceID is an X-Ray trace header: Root=1-<epoch seconds, hex>-<96 random bits>.
func traceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(12), randomHex(8))
}
