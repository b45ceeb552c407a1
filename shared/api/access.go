package api

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Principal is who a request acts for: the subject recorded as the events' actor, and
// whether it may run operations and act on any owner's resources.
type Principal struct {
	Subject string
	Admin   bool
}

// Policy decides who may act on an owned resource (an account, a user context).
type Policy string

const (
	// PolicyOwner: the principal that created the resource, or an admin.
	PolicyOwner Policy = "owner"
	// PolicyOpen: any authenticated principal (the behaviour before owners were checked).
	// Operations routes still need an admin.
	PolicyOpen Policy = "open"
)

// ParsePolicy reads an ACCESS_POLICY value; empty is PolicyOwner.
func ParsePolicy(v string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(v))); p {
	case "":
		return PolicyOwner, nil
	case PolicyOwner, PolicyOpen:
		return p, nil
	}
	return "", fmt.Errorf("ACCESS_POLICY must be %s or %s, got %q", PolicyOwner, PolicyOpen, v)
}

// Access is the handler's authorization: how a request's principal is found and which
// policy guards owned resources. The zero value is the loopback trust of the local
// server: the subject is Deps.Actor's, and every principal is an admin.
type Access struct {
	Principal func(*http.Request) Principal
	Policy    Policy
}

// ForbiddenError refuses a principal an operation its identity does not allow (403
// forbidden). The message says what is needed, never who owns the resource.
type ForbiddenError struct{ Reason string }

func (e *ForbiddenError) Error() string { return "forbidden: " + e.Reason }

// ErrForbidden matches every ForbiddenError with errors.Is.
var ErrForbidden = errors.New("forbidden")

func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// opsPrefixes are the operations routes: every path equal to one of them or below it
// needs an admin. They are matched on the path, before routing, so a route added later
// under these prefixes (by any module) is guarded without further wiring. The ops page
// (/ops) is not among them: its files hold no data (a browser cannot attach the operator's
// JWT to a page load), and every call the page makes goes to a guarded route with the
// token the operator gives it.
var opsPrefixes = []string{"/projections", "/dead-letters", "/metrics", "/metrics.json", "/events"}

// IsOpsPath reports whether a path is an operations route. GET /events is one: any filter
// on it spans every owner's streams; an owner reads its own through /<things>/{id}/events.
func IsOpsPath(p string) bool {
	for _, pre := range opsPrefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// Principal returns the request's principal.
func (s *Server) Principal(r *http.Request) Principal { return s.Access.Principal(r) }

// RequireAdmin guards a route that is not under an operations prefix but shows every
// owner's data (GET /accounts): under the owner policy only an admin may use it.
func (s *Server) RequireAdmin(h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.Access.Policy == PolicyOwner && !s.Principal(r).Admin {
			return &ForbiddenError{Reason: "listing every owner's resources needs an admin"}
		}
		return h(w, r)
	}
}

// AllowOwner refuses r unless the policy is open, the principal is an admin or it is the
// owner. An empty owner (a resource created before owners were recorded, without an
// actor) is an admin's only.
func (s *Server) AllowOwner(r *http.Request, owner string) error {
	if s.Access.Policy != PolicyOwner {
		return nil
	}
	p := s.Principal(r)
	if p.Admin || (owner != "" && p.Subject == owner) {
		return nil
	}
	return &ForbiddenError{Reason: "only the owner or an admin may act on this resource"}
}

// Owned wraps a command so it runs only for the owner of the state it is given: the
// check uses the state the repository loads for the command, so it costs no extra read.
// A stream that does not exist yet has no owner to protect (its creator becomes it).
func Owned[S any](s *Server, r *http.Request, cmd aggregate.Command[S], owner func(S) string) aggregate.Command[S] {
	return func(st S, v int64) ([]event.Event, error) {
		if v > 0 {
			if err := s.AllowOwner(r, owner(st)); err != nil {
				return nil, err
			}
		}
		return cmd(st, v)
	}
}

// CreatorOf is the owner an event stream records: the actor of its first event.
func CreatorOf(first event.Event) string { return first.Metadata.Actor }

func (s *Server) checkOps(r *http.Request) error {
	if IsOpsPath(r.URL.Path) && !s.Principal(r).Admin {
		return &ForbiddenError{Reason: "operations routes need an admin"}
	}
	return nil
}

// AdminClaims says which JWT claims make a principal an admin on AWS.
type AdminClaims struct {
	// Scope is matched against the authorizer's scopes and the space-separated `scope`
	// (Cognito, most issuers) and `scp` (Okta, Entra) claims.
	Scope string
	// Group is matched against `cognito:groups`.
	Group string
}

// Default admin claims (ADMIN_SCOPE, ADMIN_GROUP).
const (
	DefaultAdminScope = "ecm/admin"
	DefaultAdminGroup = "admin"
)

// JWTPrincipal reads the principal API Gateway's JWT authorizer established: the subject
// from `sub`, admin from the scopes or groups. Client headers are never consulted.
func JWTPrincipal(c AdminClaims) func(*http.Request) Principal {
	return func(r *http.Request) Principal {
		rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
		if !ok || rc.Authorizer == nil || rc.Authorizer.JWT == nil {
			return Principal{Subject: "anonymous"}
		}
		jwt := rc.Authorizer.JWT
		p := Principal{Subject: jwt.Claims["sub"]}
		if p.Subject == "" {
			p.Subject = "anonymous"
		}
		p.Admin = (c.Scope != "" && slices.Contains(scopes(jwt), c.Scope)) ||
			(c.Group != "" && slices.Contains(listClaim(jwt.Claims["cognito:groups"]), c.Group))
		return p
	}
}

func scopes(jwt *events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription) []string {
	out := append([]string(nil), jwt.Scopes...)
	for _, k := range []string{"scope", "scp"} {
		out = append(out, listClaim(jwt.Claims[k])...)
	}
	return out
}

// listClaim splits a list claim as API Gateway flattens it to a string: "a b",
// "[a b]" (an array claim such as cognito:groups) or `["a","b"]`.
func listClaim(v string) []string {
	v = strings.TrimSpace(v)
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == ',' || r == '"' || r == '\t'
	})
}

// GatewayAccessFromEnv is the Lambda's access: the JWT principal with ADMIN_SCOPE
// (default ecm/admin) and ADMIN_GROUP (default admin; either may be set to "-" to turn
// it off), under ACCESS_POLICY (default owner).
func GatewayAccessFromEnv() (Access, error) {
	pol, err := ParsePolicy(os.Getenv("ACCESS_POLICY"))
	if err != nil {
		return Access{}, err
	}
	c := AdminClaims{Scope: envOr("ADMIN_SCOPE", DefaultAdminScope), Group: envOr("ADMIN_GROUP", DefaultAdminGroup)}
	if c.Scope == "-" {
		c.Scope = ""
	}
	if c.Group == "-" {
		c.Group = ""
	}
	if c.Scope == "" && c.Group == "" {
		return Access{}, errors.New("ADMIN_SCOPE and ADMIN_GROUP are both off: no principal could run operations")
	}
	return Access{Principal: JWTPrincipal(c), Policy: pol}, nil
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

// ErrExposed is returned by LocalAccess for an address beyond loopback without an admin
// token.
var ErrExposed = errors.New("refusing to serve beyond loopback without ADMIN_TOKEN")

// LocalAccess is the local server's access for addr. On loopback without a token every
// caller is trusted (an admin, acting as its X-Actor): whoever can reach 127.0.0.1 already
// runs code on this machine. Beyond loopback it needs an admin token: operations routes
// then require `Authorization: Bearer <token>`, and owned resources follow policy with
// the X-Actor header as the subject (which the client asserts: see README).
func LocalAccess(addr, token string, policy Policy) (Access, error) {
	if token == "" {
		if !loopback(addr) {
			return Access{}, fmt.Errorf("%w: ADDR %q is reachable from other machines; set ADMIN_TOKEN (operations routes then need Authorization: Bearer <token>) or bind 127.0.0.1", ErrExposed, addr)
		}
		return Access{}, nil
	}
	want := []byte("Bearer " + token)
	return Access{Policy: policy, Principal: func(r *http.Request) Principal {
		got := []byte(r.Header.Get("Authorization"))
		return Principal{Subject: HeaderActor(r), Admin: subtle.ConstantTimeCompare(got, want) == 1}
	}}, nil
}

// LocalAccessFromEnv reads ADMIN_TOKEN and ACCESS_POLICY for the local server on addr.
func LocalAccessFromEnv(addr string) (Access, error) {
	pol, err := ParsePolicy(os.Getenv("ACCESS_POLICY"))
	if err != nil {
		return Access{}, err
	}
	return LocalAccess(addr, os.Getenv("ADMIN_TOKEN"), pol)
}

// loopback reports whether addr (host:port) only accepts connections from this machine.
// An empty host listens on every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// OwnedStreamEvents is StreamEvents for an owned aggregate type: under the owner policy
// only the stream's creator or an admin reads it (one extra read of its first event).
func (s *Server) OwnedStreamEvents(w http.ResponseWriter, r *http.Request, aggregateType string) error {
	if s.Access.Policy == PolicyOwner {
		id, err := PathID(r, "id")
		if err != nil {
			return err
		}
		first, err := s.Store.Load(r.Context(), eventstore.Stream{Type: aggregateType, ID: id}, eventstore.Range{To: 1})
		if err != nil {
			return err
		}
		if len(first) > 0 {
			if err := s.AllowOwner(r, CreatorOf(first[0])); err != nil {
				return err
			}
		}
	}
	return s.StreamEvents(w, r, aggregateType)
}
