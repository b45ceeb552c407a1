// Command echo is a minimal Lambda used to test the local Runtime API itself.
package main

import (
	"context"
	"errors"

	"github.com/aws/aws-lambda-go/lambda"
)

type in struct {
	Say  string `json:"say"`
	Fail bool   `json:"fail"`
}

func main() {
	lambda.Start(func(_ context.Context, e in) (map[string]string, error) {
		if e.Fail {
			return nil, errors.New("asked to fail")
		}
		return map[string]string{"echo": e.Say}, nil
	})
}
