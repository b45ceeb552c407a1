package lambdatest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/lambdatest"
)

var (
	buildOnce sync.Once
	echoBin   string
	buildErr  error
	buildOut  []byte
)

// echo builds testdata/echo the way Lambda binaries are built (lambda.norpc, static).
func echo(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lambdatest")
		if err != nil {
			buildErr = err
			return
		}
		echoBin = filepath.Join(dir, "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", echoBin, "./testdata/echo")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build echo: %v\n%s", buildErr, buildOut)
	}
	return echoBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if echoBin != "" {
		_ = os.RemoveAll(filepath.Dir(echoBin))
	}
	os.Exit(code)
}

// One process answers a sequence of invocations, as a warm Lambda does: the Runtime API
// headers reach the handler's context, errors come back through invocation/{id}/error,
// an oversized response is refused, and a panic ends the process, which the next
// invocation reports at once instead of waiting for its deadline. (TestResponseTooLarge
// covers the 6 MB limit in a process of its own: aws-lambda-go exits when its response is
// refused.)
func TestInvocations(t *testing.T) {
	rt := lambdatest.Start(t)
	rt.FunctionName = "echo-fn"
	rt.Launch(t, echo(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Ready(ctx); err != nil || rt.InitDuration() <= 0 {
		t.Fatalf("ready: %v, init %v", err, rt.InitDuration())
	}
	for _, tc := range []struct {
		name, payload string
		isErr         bool
		errorType     string
		want          map[string]any // fields of the JSON answer
		wantErr       string         // Invoke's own error
	}{
		{name: "response", payload: `{"say":"hi"}`,
			want: map[string]any{"echo": "hi", "arn": "arn:aws:lambda:us-east-1:123456789012:function:echo-fn",
				"deadlineOk": true, "function": "echo-fn", "region": "us-east-1", "handler": "bootstrap"}},
		{name: "function error", payload: `{"fail":true}`, isErr: true, errorType: "errorString",
			want: map[string]any{"errorMessage": "asked to fail"}},
		{name: "warm again", payload: `{"say":"again"}`, want: map[string]any{"echo": "again"}},
		{name: "panic", payload: `{"panic":true}`, isErr: true, want: map[string]any{"errorMessage": "asked to panic"}},
		{name: "after the process died", payload: `{"say":"anyone?"}`, wantErr: "exited without answering"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := rt.Invoke(ctx, []byte(tc.payload))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("took %v to notice", time.Since(start))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError != tc.isErr || (tc.errorType != "" && res.ErrorType != tc.errorType) {
				t.Fatalf("IsError %v ErrorType %q, want %v %q: %.200s", res.IsError, res.ErrorType, tc.isErr, tc.errorType, res.Body)
			}
			if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(res.RequestID) {
				t.Errorf("request id %q", res.RequestID)
			}
			var got map[string]any
			if len(tc.want) > 0 {
				if err := json.Unmarshal(res.Body, &got); err != nil {
					t.Fatalf("%v: %.200s", err, res.Body)
				}
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if !tc.isErr {
				if got["requestId"] != res.RequestID {
					t.Errorf("handler saw request id %v, runtime sent %s", got["requestId"], res.RequestID)
				}
				if tr, _ := got["traceId"].(string); !regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$`).MatchString(tr) {
					t.Errorf("trace id %q", tr)
				}
			}
		})
	}
	if in, cs := rt.InitDuration(), rt.ColdStart(); in <= 0 || cs < in || cs > 30*time.Second {
		t.Errorf("init %v, cold start %v", in, cs)
	}
}

// A response over Lambda's 6 MB is refused with 413 and the invocation fails with
// Function.ResponseSizeTooLarge; aws-lambda-go then exits, as it does on AWS, where the
// next invocation gets a fresh process.
func TestResponseTooLarge(t *testing.T) {
	rt := lambdatest.Start(t)
	rt.Launch(t, echo(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := rt.Invoke(ctx, []byte(`{"say":"fits"}`))
	if err != nil || res.IsError {
		t.Fatalf("%v %s", err, res.Body)
	}
	res, err = rt.Invoke(ctx, fmt.Appendf(nil, `{"big":%d}`, lambdatest.MaxResponseBytes))
	if err != nil || !res.IsError || res.ErrorType != "Function.ResponseSizeTooLarge" {
		t.Fatalf("%v %v %q %.200s", err, res.IsError, res.ErrorType, res.Body)
	}
	if _, err := rt.Invoke(ctx, []byte(`{"say":"small"}`)); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("after a refused response: %v", err)
	}
}

// A runtime that fails to initialise posts init/error and exits; Invoke says so.
func TestInitError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		call func(*lambdatest.Runtime) error
	}{
		{"Ready", func(rt *lambdatest.Runtime) error { return rt.Ready(ctx) }},
		{"Invoke", func(rt *lambdatest.Runtime) error { _, err := rt.Invoke(ctx, []byte(`{}`)); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := lambdatest.Start(t)
			rt.Launch(t, echo(t), "ECHO_INIT_ERROR=no table configured")
			err := tc.call(rt)
			if err == nil || !strings.Contains(err.Error(), "failed to initialise") || !strings.Contains(err.Error(), "no table configured") {
				t.Fatalf("err %v", err)
			}
			if rt.ColdStart() != 0 || rt.InitDuration() != 0 {
				t.Errorf("cold start %v, init %v for a function that never started", rt.ColdStart(), rt.InitDuration())
			}
		})
	}
}

// The Runtime API itself, driven by hand: an answer for an unknown request id is refused.
func TestUnknownRequestID(t *testing.T) {
	rt := lambdatest.Start(t)
	for _, path := range []string{"/invocation/nope/response", "/invocation/nope/error"} {
		resp, err := httpPost("http://" + rt.Addr() + "/2018-06-01/runtime" + path)
		if err != nil {
			t.Fatal(err)
		}
		if resp != 400 {
			t.Errorf("%s: status %d, want 400", path, resp)
		}
	}
}

func httpPost(url string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}
