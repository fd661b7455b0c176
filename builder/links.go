package builder

import (
	"path"
	"path/filepath"
	"slices"
	"strings"

	"tpm/tarball"
)

// Link is one entry of the symlink farm.
type Link struct {
	Path   string // absolute: LINKDIR/P
	Target string // absolute final bucket path BUCKET/P; empty for a directory
	Dir    bool   // a real directory of the farm, which others may share
}

// Links plans the symlink farm of a bucket: every directory of the bucket
// becomes a real directory under linkDir, and every other entry (file or
// symlink) P a symlink linkDir/P pointing to bucket/P. bucket is the final
// (absolute) bucket path, BucketPath(prefix, name), not the staged one.
// linkDir itself is not listed; empty means DefaultLinkDir of the bucket's
// prefix. The plan is sorted by Path, so every directory comes before what
// it holds.
func Links(bucket string, files []File, linkDir string) []Link {
	if linkDir == "" {
		// bucket is PREFIX/opt/tpm/buckets/NAME.
		linkDir = DefaultLinkDir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(bucket)))))
	}
	dirs := make(map[string]bool)
	var plan []Link
	for _, f := range files {
		p := path.Clean(f.Path)
		if p == "." || !filepath.IsLocal(p) {
			continue // not an entry of the bucket; collect never lists one
		}
		if f.Type == tarball.TypeDir {
			dirs[p] = true
		} else {
			plan = append(plan, Link{Path: filepath.Join(linkDir, p), Target: filepath.Join(bucket, p)})
		}
		// Parents, in case the list lacks them.
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		plan = append(plan, Link{Path: filepath.Join(linkDir, d), Dir: true})
	}
	slices.SortFunc(plan, func(a, b Link) int { return strings.Compare(a.Path, b.Path) })
	return plan
}
