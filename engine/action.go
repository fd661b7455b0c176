package engine

import (
	"fmt"

	"tpm/manifest"
	"tpm/store"
	"tpm/version"
)

// Intent is what the user asked of the packages a transaction installs; it
// decides, with the version already installed, what happens to each.
type Intent struct {
	UpgradeOnly    bool // refuse packages that are not installed (tpm upgrade)
	Reinstall      bool // install again a version that is installed
	AllowDowngrade bool // replace an installed version with an older one
}

// ActionFor is the one rule for what putting m onto a prefix where old is
// installed (nil: nothing of that name) does: Install, Upgrade, Reinstall or
// Downgrade; skip when the same version is there and no reinstall was asked
// for; an error that says what to add when the intent does not allow it.
// The offline engine and the daemon's planner both decide with it.
func (in Intent) ActionFor(m *manifest.Manifest, old *store.Receipt) (a Action, skip bool, err error) {
	if old == nil {
		if in.UpgradeOnly {
			return "", false, fmt.Errorf("%s is not installed, so it cannot be upgraded: use tpm install", m.Name)
		}
		return Install, false, nil
	}
	c := version.Compare(m.Version, old.Version)
	if old.Held && c != 0 {
		return "", false, &HeldError{Name: old.Name, Version: old.Version}
	}
	switch {
	case c > 0:
		return Upgrade, false, nil
	case c == 0 && in.Reinstall:
		return Reinstall, false, nil
	case c == 0:
		return "", true, nil
	case in.AllowDowngrade:
		return Downgrade, false, nil
	}
	return "", false, fmt.Errorf("%s is installed; %s would be a downgrade: add --allow-downgrade", old.Manifest.String(), m)
}

// HeldError refuses a change to a package that is held (tpm hold).
type HeldError struct{ Name, Version string }

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held at %s: run tpm unhold %s first to change it", e.Name, e.Version, e.Name)
}

// ReplacesHeld refuses an install of by that would take away r, which is
// held.
func ReplacesHeld(by *manifest.Manifest, r *store.Receipt) error {
	return fmt.Errorf("cannot install %s: it replaces %s, which is held: run tpm unhold %s first", by, r.Manifest.String(), r.Name)
}
