package engine

import (
	"tpm/manifest"
	"tpm/tarball"
)

func packFile(src, outDir string) (string, *manifest.Manifest, error) {
	return tarball.PackFile(src, outDir, tarball.PackOptions{})
}
