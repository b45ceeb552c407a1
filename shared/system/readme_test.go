package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/system"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite the answers of README.md's examples (make readme-examples)")

// TestREADMEExamples runs every README block marked <!-- example: name --> against a fresh
// system on the memory backend and compares each command's answer with the "# " lines
// under it: the README's examples are what the server answers, not what someone once
// typed. Ids and times are shown as "…". Projections are caught up after every command,
// so a read-model answer is the settled one (on a live server it trails by the lag).
// With -update-readme the answers are rewritten instead.
func TestREADMEExamples(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	blocks := exampleBlocks(t, doc)
	if len(blocks) < 4 {
		t.Fatalf("README.md has %d marked examples, want the bank, contexts, orders and tasks ones at least", len(blocks))
	}
	var out strings.Builder
	at := 0
	for _, b := range blocks {
		got := runExample(t, b)
		out.WriteString(doc[at:b.start])
		out.WriteString(got)
		at = b.end
		if got != doc[b.start:b.end] && !*updateREADME {
			t.Errorf("README example %q drifted from what the server answers (make readme-examples rewrites it):\n--- README\n%s--- server\n%s",
				b.name, doc[b.start:b.end], got)
		}
	}
	out.WriteString(doc[at:])
	if *updateREADME && out.String() != doc {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("README.md examples rewritten")
	}
}

type example struct {
	name       string
	start, end int // the block's body, between its ``` lines
	body       string
}

var exampleMark = regexp.MustCompile("(?m)^<!-- example: ([a-z0-9-]+) -->\n```sh\n")

func exampleBlocks(t *testing.T, doc string) []example {
	var bs []example
	for _, m := range exampleMark.FindAllStringSubmatchIndex(doc, -1) {
		start := m[1]
		n := strings.Index(doc[start:], "```\n")
		if n < 0 {
			t.Fatalf("README example %q has no closing ```", doc[m[2]:m[3]])
		}
		bs = append(bs, example{name: doc[m[2]:m[3]], start: start, end: start + n, body: doc[start : start+n]})
	}
	return bs
}

// runExample runs a block's commands and returns the block with their answers.
func runExample(t *testing.T, b example) string {
	sys, err := system.Open(context.Background(), system.Config{EventStore: "memory", SnapshotEvery: 50}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	var out strings.Builder
	lines := strings.Split(strings.TrimSuffix(b.body, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "# ") {
			continue // a previous answer: regenerated below its command
		}
		cmd := line
		out.WriteString(line + "\n")
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			out.WriteString(lines[i] + "\n")
			cmd = strings.TrimSuffix(cmd, `\`) + " " + lines[i]
		}
		words, err := shellWords(cmd, vars)
		if err != nil {
			t.Fatalf("example %q: %q: %v", b.name, cmd, err)
		}
		switch {
		case len(words) == 0:
		case len(words) == 1 && strings.Contains(words[0], "="):
			// NAME=$(date …): the instant, as the shell would have it.
			k, v, _ := strings.Cut(words[0], "=")
			vars[k] = v
		case words[0] == "curl":
			out.WriteString(answer(t, sys, b.name, words[1:]))
		default:
			t.Fatalf("example %q: only curl commands and NAME=$(date …) run here, not %q", b.name, cmd)
		}
	}
	return out.String()
}

// answer sends one curl command to the handler, lets the projections catch up, and
// renders the response as "# <status> <body>".
func answer(t *testing.T, sys *system.System, name string, args []string) string {
	method, url, body := "", "", ""
	var headers [][2]string
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 >= len(args) {
				t.Fatalf("example %q: %s needs a value", name, a)
			}
			i++
			return args[i]
		}
		switch {
		case a == "-s":
		case strings.HasPrefix(a, "-X") && len(a) > 2:
			method = a[2:]
		case a == "-X":
			method = next()
		case a == "-H":
			k, v, ok := strings.Cut(next(), ":")
			if !ok {
				t.Fatalf("example %q: header %q", name, args[i])
			}
			headers = append(headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		case a == "-d":
			body = next()
		case strings.HasPrefix(a, "-"):
			t.Fatalf("example %q: curl option %s is not supported here", name, a)
		default:
			url = a
		}
	}
	if method == "" {
		method = "GET"
		if body != "" {
			method = "POST"
		}
	}
	path, ok := strings.CutPrefix(url, "localhost:8080")
	if !ok {
		t.Fatalf("example %q: %q is not on localhost:8080", name, url)
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	rec := httptest.NewRecorder()
	sys.Handler.ServeHTTP(rec, req)
	settle(t, sys)
	return render(rec.Code, rec.Body.Bytes())
}

// settle runs the projections (and the saga, whose commands feed them again) until
// nothing is left to do.
func settle(t *testing.T, sys *system.System) {
	for range 1000 {
		progressed, err := sys.Runner.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !progressed {
			return
		}
	}
	t.Fatal("projections still progressing after 1000 steps")
}

var volatile = regexp.MustCompile(`"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))"`)

// render is the answer as README shows it: status, then the compact JSON body with ids
// and times as "…"; a long body breaks its top-level lists one element a line.
func render(status int, raw []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		buf.Reset()
		buf.Write(bytes.TrimSpace(raw))
	}
	s := volatile.ReplaceAllString(buf.String(), `"…"`)
	line := fmt.Sprintf("# %d %s", status, s)
	if len(line) <= 120 {
		return line + "\n"
	}
	// A body that ends in a list (events, history, accounts, orders) shows one element a
	// line: break before each element of the array that closes just before the final }.
	open := lastListStart(s)
	if open < 0 {
		return line + "\n"
	}
	var b strings.Builder
	b.WriteString(fmt.Sprintf("# %d %s", status, s[:open+1]))
	depth, inString, escaped := 0, false, false
	for i := open + 1; i < len(s); i++ {
		c := s[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			b.WriteByte(c)
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth == 0 {
				b.WriteString("\n#   ")
			}
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 0 {
				b.WriteByte(c)
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String() + "\n"
}

// lastListStart is the index of the [ whose list of objects closes just before the body's
// final }, or -1.
func lastListStart(s string) int {
	if !strings.HasSuffix(s, "}]}") {
		return -1
	}
	depth, inString, escaped := 0, false, false
	for i := len(s) - 2; i >= 0; i-- { // scanning back from the list's ]
		c := s[i]
		if inString {
			// Going backwards a quote ends the string unless an odd run of \ precedes it.
			if c == '"' && !escaped {
				n := 0
				for k := i - 1; k >= 0 && s[k] == '\\'; k-- {
					n++
				}
				inString = n%2 == 1
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ']', '}':
			depth++
		case '[', '{':
			depth--
			if depth == 0 {
				if c == '[' {
					return i
				}
				return -1
			}
		}
	}
	return -1
}

// shellWords splits a command line as sh would for the quoting README uses: single and
// double quotes, $NAME and $(date -u +%Y-%m-%dT%H:%M:%S.%NZ) (the current instant) inside
// double quotes or bare, and a # comment at the start of a word.
func shellWords(line string, vars map[string]string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	expand := func(s string, i int) (string, int, error) { // s[i] == '$'
		if rest := s[i:]; strings.HasPrefix(rest, "$(") {
			end := strings.Index(rest, ")")
			if end < 0 {
				return "", 0, fmt.Errorf("unclosed $(")
			}
			if inner := rest[2:end]; inner != "date -u +%Y-%m-%dT%H:%M:%S.%NZ" {
				return "", 0, fmt.Errorf("only $(date -u +%%Y-%%m-%%dT%%H:%%M:%%S.%%NZ) runs here, not $(%s)", inner)
			}
			return time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z"), i + end + 1, nil
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		v, ok := vars[s[i+1:j]]
		if !ok {
			return "", 0, fmt.Errorf("$%s is not set", s[i+1:j])
		}
		return v, j, nil
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
			i++
		case c == '#' && !inWord:
			flush()
			return words, nil
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			cur.WriteString(line[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			inWord = true
			i++
			for i < len(line) && line[i] != '"' {
				switch {
				case line[i] == '\\' && i+1 < len(line):
					cur.WriteByte(line[i+1])
					i += 2
				case line[i] == '$':
					v, j, err := expand(line, i)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					i = j
				default:
					cur.WriteByte(line[i])
					i++
				}
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unclosed \"")
			}
			i++
		case c == '$':
			v, j, err := expand(line, i)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			inWord, i = true, j
		default:
			cur.WriteByte(c)
			inWord = true
			i++
		}
	}
	flush()
	return words, nil
}
