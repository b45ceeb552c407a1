package system

import (
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/tasks"
	"github.com/ecmstore/ecmstore/shared/usercontext"
)

// Domains builds the standard product over env: the seeds' four domains, in the order of
// their projections and routes. Bank comes first and its repository is shared: the
// orders saga takes payments through it.
func Domains(env api.Env) []api.Module {
	accounts := bank.NewRepository(env)
	return []api.Module{
		bank.Module(env, accounts),
		orders.Module(env, accounts),
		tasks.Module(env),
		usercontext.Module(env),
	}
}
