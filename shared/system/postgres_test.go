package system_test

import (
	"net/http"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/system"
)

func TestAPIOnPostgres(t *testing.T) {
	sys := start(t, system.Config{EventStore: "postgres", DatabaseURL: emulator.Postgres(t), SnapshotEvery: 3})
	apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
}
