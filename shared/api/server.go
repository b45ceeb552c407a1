package api

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// ServerConfig bounds what one connection may cost the local server. Zero fields take
// the defaults of DefaultServerConfig.
type ServerConfig struct {
	// ReadHeaderTimeout: the request line and headers must arrive within it.
	ReadHeaderTimeout time.Duration
	// ReadTimeout: the whole request, body included, must arrive within it; a client
	// trickling its body is cut off (the handler answers 408 request_timeout when it can).
	ReadTimeout time.Duration
	// WriteTimeout: from the end of the headers to the end of the response. Generous:
	// a large page of events or a command waiting its turn on a hot stream may take long.
	WriteTimeout time.Duration
	// IdleTimeout: a keep-alive connection waiting for its next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes: net/http's own limit, answered with a plain-text 431 (not JSON).
	// It is above the handler's MaxHeaderBytes, so requests between the two get the JSON
	// 431 headers_too_large; only larger ones meet net/http's answer.
	MaxHeaderBytes int
}

// DefaultServerConfig is what the local server runs with unless HTTP_* variables say
// otherwise (ServerConfigFromEnv).
func DefaultServerConfig() ServerConfig {
	return ServerConfig{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 2 * MaxHeaderBytes}
}

func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.ReadHeaderTimeout, &d.ReadHeaderTimeout}, {&c.ReadTimeout, &d.ReadTimeout},
		{&c.WriteTimeout, &d.WriteTimeout}, {&c.IdleTimeout, &d.IdleTimeout},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return c
}

// ServerConfigFromEnv reads HTTP_READ_HEADER_TIMEOUT, HTTP_READ_TIMEOUT,
// HTTP_WRITE_TIMEOUT, HTTP_IDLE_TIMEOUT (Go durations such as 30s) and
// HTTP_MAX_HEADER_BYTES over the defaults.
func ServerConfigFromEnv() (ServerConfig, error) {
	c := DefaultServerConfig()
	for name, dst := range map[string]*time.Duration{
		"HTTP_READ_HEADER_TIMEOUT": &c.ReadHeaderTimeout, "HTTP_READ_TIMEOUT": &c.ReadTimeout,
		"HTTP_WRITE_TIMEOUT": &c.WriteTimeout, "HTTP_IDLE_TIMEOUT": &c.IdleTimeout,
	} {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, fmt.Errorf("%s must be a positive duration such as 30s, got %q", name, v)
			}
			*dst = d
		}
	}
	if v := os.Getenv("HTTP_MAX_HEADER_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= MaxHeaderBytes {
			return c, fmt.Errorf("HTTP_MAX_HEADER_BYTES must be an integer above %d, got %q", MaxHeaderBytes, v)
		}
		c.MaxHeaderBytes = n
	}
	return c, nil
}

// NewHTTPServer returns the server for h on addr with every timeout and the header limit
// set: without them a client that trickles its body, or never sends its next request,
// holds a connection and a goroutine forever.
func NewHTTPServer(addr string, h http.Handler, c ServerConfig) *http.Server {
	c = c.withDefaults()
	return &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout,
		WriteTimeout: c.WriteTimeout, IdleTimeout: c.IdleTimeout, MaxHeaderBytes: c.MaxHeaderBytes,
		// OPTIONS * goes to the handler (a JSON 400) rather than net/http's empty 200.
		DisableGeneralOptionsHandler: true}
}
