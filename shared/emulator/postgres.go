package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var dbSeq atomic.Int64

// Postgres returns the DSN of a fresh, empty database, dropped when the test ends, on a
// PostgreSQL server started once per test process (so tests never see each other's
// data); ECM_TEST_DATABASE_URL names an existing server to create the databases on
// instead (its role needs CREATEDB).
func Postgres(t testing.TB) string {
	t.Helper()
	base := pgSvc.get(t, startPostgres)
	name := fmt.Sprintf("ecm_test_%d_%d_%s", os.Getpid(), dbSeq.Add(1), randomHex(3))
	if err := adminExec(base, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("PostgreSQL at %s: create database %s: %v", redact(base), name, err)
	}
	t.Cleanup(func() {
		// FORCE ends connections a test left open (a pool closed later, a leak).
		if err := adminExec(base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

func adminExec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return adminExecCtx(ctx, dsn, sql)
}

// withDatabase points a DSN (URL or keyword/value form) at another database, keeping
// every other setting of the original.
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path, u.RawPath = "/"+name, ""
			return u.String()
		}
	}
	return dsn + " dbname=" + name // a later keyword wins
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pgBinDir finds the directory of initdb and postgres: the one initdb on PATH resolves to
// (so both come from the same version), else the newest /usr/lib/postgresql/N/bin.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(real), "postgres")); err == nil {
				return filepath.Dir(real), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found on PATH or under /usr/lib/postgresql/*/bin (`make emulators` installs the postgresql package)")
}

// serverUser is who runs PostgreSQL: this process's user, or the postgres system user
// when this process is root, because postgres refuses to run as root. The user is
// created when missing, as the postgresql package would.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		out, addErr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "postgres").CombinedOutput()
		// Another test process may have created it meanwhile: look again before failing.
		if u, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as; useradd failed: %v %s", addErr, out)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tempBase is where the server's directory goes: the usual temporary directory, unless
// the postgres user could not reach it (a TMPDIR under /root, say).
func tempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	if cred == nil {
		return base
	}
	for dir := base; ; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if dir == filepath.Dir(dir) {
			return base
		}
	}
}

// removeStale deletes server directories left by test processes that were killed before
// they could clean up (the server itself died with them).
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, "ecm-pg-*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "ecm-pg-"), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

func startPostgres(s *service) error {
	bin, err := pgBinDir()
	if err != nil {
		return err
	}
	cred, err := serverUser()
	if err != nil {
		return err
	}
	base := tempBase(cred)
	removeStale(base)
	dir, err := os.MkdirTemp(base, fmt.Sprintf("ecm-pg-%d-", os.Getpid()))
	if err != nil {
		return err
	}
	s.onStop(func() { _ = os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// The port is chosen here and could be taken before postgres binds it: try again
	// with another one then.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		// SIGQUIT is PostgreSQL's immediate shutdown: unlike SIGKILL it still removes the
		// server's System V shared-memory segment, which would otherwise leak per run.
		c, err := launch(s.name, dir, nil, cred, syscall.SIGQUIT, filepath.Join(bin, "postgres"),
			"-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir, "-c", "max_connections=200")
		if err != nil {
			return err
		}
		s.register(c)
		s.endpoint = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		err = c.waitFor("connect", listenTimeout, func(ctx context.Context) error {
			return adminExecCtx(ctx, s.endpoint, "SELECT 1")
		})
		if err == nil {
			return nil
		}
		if attempt == 3 || !c.exited() || !strings.Contains(c.out.String(), "could not bind") {
			return err
		}
		c.stop()
	}
}

func adminExecCtx(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
