package resolve

import "tpm/manifest"

// Unneeded returns the installed packages that nothing left needs once
// removing goes: every package that is not reachable, through
// dependencies, from a root (a package kept whatever needs it: installed
// explicitly, or held) that stays. A dependency keeps every package that
// meets any of its alternatives, by name or by what it provides, so a
// choice the user made among providers is never undone behind their back;
// cycles of unneeded packages go together. By name.
func Unneeded(installed []*manifest.Manifest, roots map[string]bool, removing []string) []*manifest.Manifest {
	gone := make(map[string]bool, len(removing))
	for _, n := range removing {
		gone[n] = true
	}
	var left []*manifest.Manifest
	for _, m := range installed {
		if !gone[m.Name] {
			left = append(left, m)
		}
	}
	s := newSet(left)
	kept := make(map[string]bool, len(left))
	var queue []*manifest.Manifest
	for _, m := range sortedByName(s.byName) {
		if roots[m.Name] {
			kept[m.Name] = true
			queue = append(queue, m)
		}
	}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		for _, dep := range m.Dependencies {
			for _, alt := range dep {
				for _, n := range s.allMeeting(alt) {
					if !kept[n.Name] {
						kept[n.Name] = true
						queue = append(queue, n)
					}
				}
			}
		}
	}
	var out []*manifest.Manifest
	for _, m := range sortedByName(s.byName) {
		if !kept[m.Name] {
			out = append(out, m)
		}
	}
	return out
}
