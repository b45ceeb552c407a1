package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// OpenAPI checks requests and responses against the contract, openapi.yaml.
type OpenAPI struct {
	Doc    *openapi3.T
	router routers.Router
}

// ContractPath is openapi.yaml at the root of the module holding the working directory
// (a test's working directory is its package's).
func ContractPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "openapi.yaml"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// textDecoders lets kin-openapi check the ops page's files (text/html, text/javascript,
// text/css) as the strings their schemas say, as it checks text/plain. kin-openapi keeps
// its decoders in one table for the process, hence once.
var textDecoders sync.Once

// LoadOpenAPI loads the document at path and checks that it is a valid OpenAPI document.
func LoadOpenAPI(path string) (*OpenAPI, error) {
	textDecoders.Do(func() {
		plain := openapi3filter.RegisteredBodyDecoder("text/plain")
		for _, ct := range []string{"text/html", "text/javascript", "text/css"} {
			if openapi3filter.RegisteredBodyDecoder(ct) == nil {
				openapi3filter.RegisterBodyDecoder(ct, plain)
			}
		}
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", path, err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", path, err)
	}
	return &OpenAPI{Doc: doc, router: router}, nil
}

// Contract loads the module's openapi.yaml or fails the test.
func Contract(t testing.TB) *OpenAPI {
	t.Helper()
	path, err := ContractPath()
	if err != nil {
		t.Fatal(err)
	}
	o, err := LoadOpenAPI(path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// errorResponses names the document's error response of each status, for requests no
// operation matches (unknown routes, unclean paths): their answers must still be errors
// of the contract's shape.
var errorResponses = map[int]string{
	400: "BadRequest", 403: "Forbidden", 404: "NotFound", 408: "RequestTimeout", 413: "PayloadTooLarge", 431: "HeadersTooLarge",
	500: "ServerError", 503: "Unavailable",
}

// Check validates one exchange: the request (body as sent) and the response. A request
// answered with 4xx is not validated itself, since the suites send malformed requests on
// purpose to see them refused; its response is. Every status must be one the document
// lists for the operation.
func (o *OpenAPI) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	// The server does not consult Content-Type (curl sends a form type); the document
	// describes the JSON it parses.
	if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	route, params, err := o.router.FindRoute(r)
	if err != nil {
		if status < 400 {
			return fmt.Errorf("answered %d but no operation of the document serves it: %v", status, err)
		}
		return o.checkError(status, header, body)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	opts.WithCustomSchemaErrorFunc(schemaError)
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	op := route.Method + " " + route.Path
	if status < 400 || status >= 500 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("%s: request (answered %d): %w", op, status, err)
		}
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{RequestValidationInput: in,
		Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts})
	if err != nil {
		return fmt.Errorf("%s: response %d: %w", op, status, err)
	}
	return nil
}

// schemaError names where the value broke which rule, without kin-openapi's dump of the
// whole schema and value.
func schemaError(err *openapi3.SchemaError) string {
	msg := fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	if cause := err.Unwrap(); cause != nil { // the 2020-12 validator's own, naming the nested rule
		msg += ": " + cause.Error()
	}
	return msg
}

// checkError validates an error answered outside every operation against the document's
// error response for its status.
func (o *OpenAPI) checkError(status int, header http.Header, body []byte) error {
	name, ok := errorResponses[status]
	if !ok {
		return fmt.Errorf("answered %d outside every operation, a status the document has no error response for", status)
	}
	ref := o.Doc.Components.Responses[name]
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("the document lacks components/responses/%s", name)
	}
	for h, hr := range ref.Value.Headers {
		if hr.Value.Required && header.Get(h) == "" {
			return fmt.Errorf("response %d lacks the required header %s", status, h)
		}
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("response %d has content type %q", status, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("response %d body is not JSON: %v", status, err)
	}
	schema := ref.Value.Content.Get("application/json").Schema.Value
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.SetSchemaErrorMessageCustomizer(schemaError)); err != nil {
		return fmt.Errorf("no operation: response %d (components/responses/%s): %w", status, name, err)
	}
	return nil
}
