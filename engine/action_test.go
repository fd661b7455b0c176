package engine

import (
	"strings"
	"testing"

	"tpm/manifest"
	"tpm/store"
)

func TestActionFor(t *testing.T) {
	installed := func(v string) *store.Receipt {
		return &store.Receipt{Manifest: manifest.Manifest{Name: "p", Version: v}}
	}
	cases := []struct {
		intent  Intent
		version string
		old     *store.Receipt
		want    Action
		skip    bool
		err     string
	}{
		{Intent{}, "1.0", nil, Install, false, ""},
		{Intent{UpgradeOnly: true}, "1.0", nil, "", false, "p is not installed, so it cannot be upgraded: use tpm install"},
		{Intent{}, "2.0", installed("1.0"), Upgrade, false, ""},
		{Intent{UpgradeOnly: true}, "2.0", installed("1.0"), Upgrade, false, ""},
		{Intent{}, "1.0", installed("1.0"), "", true, ""},
		{Intent{Reinstall: true}, "1.0", installed("1.0"), Reinstall, false, ""},
		{Intent{}, "1:0.5", installed("2.0"), Upgrade, false, ""}, // an epoch wins
		{Intent{}, "0.9", installed("1.0"), "", false, "p 1.0 is installed; p 0.9 would be a downgrade: add --allow-downgrade"},
		{Intent{AllowDowngrade: true}, "0.9", installed("1.0"), Downgrade, false, ""},
	}
	for _, c := range cases {
		a, skip, err := c.intent.ActionFor(&manifest.Manifest{Name: "p", Version: c.version}, c.old)
		if a != c.want || skip != c.skip || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%+v %s over %v: %q %v %v, want %q %v %q", c.intent, c.version, c.old, a, skip, err, c.want, c.skip, c.err)
		}
	}
}
