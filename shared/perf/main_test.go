package perf

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/emulator"
)

func TestMain(m *testing.M) { emulator.Main(m) }
