package api

import (
	"context"
	"net/http"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
)

// GatewayHandler serves an http.Handler to API Gateway HTTP API (payload v2) events. The
// adapter translates the event (base64 bodies, cookies, multi-value headers, the request
// context) to a net/http request and the response back.
func GatewayHandler(h http.Handler) func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return httpadapter.NewV2(h).ProxyWithContext
}

// JWTActor is the actor behind API Gateway's JWT authorizer: the token's subject. Client
// headers are never trusted for it; a route without an authorizer (/healthz) is anonymous.
func JWTActor(r *http.Request) string {
	rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || rc.Authorizer == nil || rc.Authorizer.JWT == nil {
		return "anonymous"
	}
	if sub := rc.Authorizer.JWT.Claims["sub"]; sub != "" {
		return sub
	}
	return "anonymous"
}
