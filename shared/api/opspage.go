package api

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// The ops page is static files compiled into the binary: no build step, nothing fetched
// from elsewhere (the operator's machine may be offline). The page calls this API's JSON
// routes from the browser, with the operator's token when one is given.
//
//go:embed opspage
var opsFiles embed.FS

var opsTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

func (s *Server) opsPageRoutes() {
	s.Handle("GET /ops", func(w http.ResponseWriter, r *http.Request) error { return serveOpsFile(w, "index.html") })
	s.Handle("GET /ops/{asset}", func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("asset")
		if name == "index.html" || opsTypes[path.Ext(name)] == "" {
			return errNotFound("no ops page file %q", name)
		}
		return serveOpsFile(w, name)
	})
}

func serveOpsFile(w http.ResponseWriter, name string) error {
	b, err := fs.ReadFile(opsFiles, "opspage/"+name)
	if err != nil {
		return errNotFound("no ops page file %q", name)
	}
	h := w.Header()
	h.Set("Content-Type", opsTypes[path.Ext(name)])
	// Same-origin scripts and styles only: the page runs no inline or foreign code.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}
