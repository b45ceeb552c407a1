package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var dbSeq atomic.Int64

// Postgres returns the DSN of a fresh, empty database on a PostgreSQL server started once
// per test process (so tests never see each other's data).
func Postgres(t testing.TB) string {
	t.Helper()
	pgSvc.once.Do(func() {
		if dsn := os.Getenv("ECM_TEST_DATABASE_URL"); dsn != "" {
			pgSvc.endpoint = dsn
			return
		}
		pgSvc.err = startPostgres()
	})
	if pgSvc.err != nil {
		fail(t, "PostgreSQL", pgSvc.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgSvc.endpoint)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("ecm_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	cfg, err := pgx.ParseConfig(pgSvc.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + name,
		RawQuery: "sslmode=disable"}
	u.User = url.User(cfg.User)
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	}
	return u.String()
}

func pgBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found on PATH or under /usr/lib/postgresql (install PostgreSQL: make emulators)", name)
}

func startPostgres() error {
	initdb, err := pgBin("initdb")
	if err != nil {
		return err
	}
	postgres, err := pgBin("postgres")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ecm-pg-")
	if err != nil {
		return err
	}
	pgSvc.cleanup = func() { _ = os.RemoveAll(dir) }
	// PostgreSQL refuses to run as root: run it as the postgres system user, which must
	// own the data directory.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres system user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	init := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := start(&pgSvc, dir, cred, nil, postgres, "-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-k", dir, "-c", "max_connections=200", "-c", "fsync=on"); err != nil {
		return err
	}
	pgSvc.endpoint = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port)
	return waitReady(&pgSvc, "PostgreSQL", 60*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, pgSvc.endpoint)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			return errors.Join(err, errors.New("select 1 failed"))
		}
		return nil
	})
}
