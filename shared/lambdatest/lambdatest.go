// Package lambdatest runs real Lambda bootstrap binaries locally under an implementation
// of the documented Lambda Runtime API (invocation/next, /response, /error, init/error),
// so tests can invoke the very binaries `make build` ships and time their cold start.
package lambdatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Result is one invocation's outcome.
type Result struct {
	Body    []byte
	IsError bool // the function reported an error (invocation/{id}/error)
}

type invocation struct {
	id      string
	payload []byte
	done    chan Result
}

// Runtime is one function's Runtime API endpoint and its process.
type Runtime struct {
	srv     *http.Server
	addr    string
	queue   chan *invocation
	mu      sync.Mutex
	pending map[string]*invocation
	initErr chan []byte
	cmd     *exec.Cmd
	started time.Time
	seq     int
}

// Start serves the Runtime API on a free loopback port and stops it when the test ends.
func Start(t testing.TB) *Runtime {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{addr: l.Addr().String(), queue: make(chan *invocation, 16), pending: map[string]*invocation{},
		initErr: make(chan []byte, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", r.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, req *http.Request) {
		r.finish(w, req, false)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", func(w http.ResponseWriter, req *http.Request) {
		r.finish(w, req, true)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		select {
		case r.initErr <- body:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	})
	r.srv = &http.Server{Handler: mux}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(r.stop)
	return r
}

func (r *Runtime) next(w http.ResponseWriter, req *http.Request) {
	select {
	case inv := <-r.queue:
		r.mu.Lock()
		r.pending[inv.id] = inv
		r.mu.Unlock()
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(30*time.Second).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:test")
		w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-req.Context().Done():
	}
}

func (r *Runtime) finish(w http.ResponseWriter, req *http.Request, isErr bool) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	inv, ok := r.pending[req.PathValue("id")]
	delete(r.pending, req.PathValue("id"))
	r.mu.Unlock()
	if !ok {
		http.Error(w, "unknown request id", http.StatusBadRequest)
		return
	}
	inv.done <- Result{Body: body, IsError: isErr}
	w.WriteHeader(http.StatusAccepted)
}

// Launch starts the bootstrap binary against this runtime with Lambda's environment plus
// env; the process is killed (by PID) when the test ends.
func (r *Runtime) Launch(t testing.TB, binary string, env ...string) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+r.addr,
		"AWS_LAMBDA_FUNCTION_NAME=test-function",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/test-function",
		"_HANDLER=bootstrap",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"LAMBDA_TASK_ROOT="+t.TempDir(),
	)
	cmd.Env = append(cmd.Env, env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &out}, &lockedWriter{w: &out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	r.cmd = cmd
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", binary, out.String())
		}
	})
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Invoke queues an invocation and waits for the function's answer.
func (r *Runtime) Invoke(ctx context.Context, payload []byte) (Result, error) {
	r.mu.Lock()
	r.seq++
	inv := &invocation{id: fmt.Sprintf("req-%d", r.seq), payload: payload, done: make(chan Result, 1)}
	r.mu.Unlock()
	r.queue <- inv
	select {
	case res := <-inv.done:
		return res, nil
	case body := <-r.initErr:
		return Result{}, fmt.Errorf("function failed to initialise: %s", body)
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// SinceLaunch is the time since the process was started (cold start when read right
// after the first answer).
func (r *Runtime) SinceLaunch() time.Duration { return time.Since(r.started) }

func (r *Runtime) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		_ = r.cmd.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = r.srv.Close()
	}
}
