package lambdatest_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/lambdatest"
)

func TestRuntimeAPI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bootstrap")
	out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bin, "./testdata/echo").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	rt := lambdatest.Start(t)
	rt.Launch(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		payload, want string
		isErr         bool
	}{
		{`{"say":"hi"}`, `{"echo":"hi"}`, false},
		{`{"fail":true}`, `asked to fail`, true},
		{`{"say":"again"}`, `{"echo":"again"}`, false},
	} {
		res, err := rt.Invoke(ctx, []byte(tc.payload))
		if err != nil {
			t.Fatal(err)
		}
		if res.IsError != tc.isErr || !strings.Contains(string(res.Body), tc.want) {
			t.Fatalf("%s → %s (error %v)", tc.payload, res.Body, res.IsError)
		}
	}
}
