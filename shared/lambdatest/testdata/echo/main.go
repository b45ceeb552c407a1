// Command echo is a minimal Lambda used to test the local Runtime API itself: it answers
// with what the runtime told it, fails, panics or answers too much on request, and with
// ECHO_INIT_ERROR set reports an init error as a custom runtime does.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type in struct {
	Say   string `json:"say"`
	Fail  bool   `json:"fail"`
	Panic bool   `json:"panic"`
	Big   int    `json:"big"`
}

type out struct {
	Echo       string `json:"echo"`
	RequestID  string `json:"requestId"`
	ARN        string `json:"arn"`
	TraceID    string `json:"traceId"`
	DeadlineOK bool   `json:"deadlineOk"`
	Function   string `json:"function"`
	Region     string `json:"region"`
	Handler    string `json:"handler"`
	Padding    string `json:"padding,omitempty"`
}

func main() {
	if msg := os.Getenv("ECHO_INIT_ERROR"); msg != "" {
		body := `{"errorMessage":"` + msg + `","errorType":"Runtime.ConfigError"}`
		resp, err := http.Post("http://"+os.Getenv("AWS_LAMBDA_RUNTIME_API")+"/2018-06-01/runtime/init/error",
			"application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, e in) (out, error) {
		switch {
		case e.Fail:
			return out{}, errors.New("asked to fail")
		case e.Panic:
			panic("asked to panic")
		}
		lc, _ := lambdacontext.FromContext(ctx)
		deadline, ok := ctx.Deadline()
		trace, _ := ctx.Value("x-amzn-trace-id").(string)
		return out{Echo: e.Say, RequestID: lc.AwsRequestID, ARN: lc.InvokedFunctionArn, TraceID: trace,
			DeadlineOK: ok && time.Until(deadline) > time.Second, Function: lambdacontext.FunctionName,
			Region: os.Getenv("AWS_REGION"), Handler: os.Getenv("_HANDLER"), Padding: strings.Repeat("x", e.Big)}, nil
	})
}
