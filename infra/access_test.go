package infra_test

import (
	"fmt"
	"testing"
)

// The API function gets its access control from the stack's parameters, whose defaults
// are the owner policy and the default admin claims (README, "Access control").
func TestTemplateAccessControl(t *testing.T) {
	s, _ := load(t)
	for k, want := range map[string]struct{ param, def string }{
		"ACCESS_POLICY": {"AccessPolicy", "owner"}, "ADMIN_SCOPE": {"AdminScope", "ecm/admin"}, "ADMIN_GROUP": {"AdminGroup", "admin"},
	} {
		if got := fmt.Sprint(dig(s.res["ApiFunction"], "Properties", "Environment", "Variables", k)); got != "Ref:"+want.param {
			t.Errorf("ApiFunction %s = %s, want Ref:%s", k, got, want.param)
		}
		p, ok := s.typed.Parameters[want.param]
		if !ok || fmt.Sprint(p.Default) != want.def {
			t.Errorf("parameter %s: default %v, want %s", want.param, p.Default, want.def)
		}
	}
}
