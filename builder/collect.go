package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tpm/tarball"
)

// File is one entry of a built bucket.
type File struct {
	Path   string            // slash-separated, relative to the bucket: "bin/hello"
	Type   tarball.EntryType // TypeDir, TypeFile or TypeSymlink
	Mode   fs.FileMode       // permission bits plus setuid, setgid and sticky, as make install left them
	Size   int64             // regular files
	SHA256 string            // hex, regular files
	Link   string            // symlink target, as written
}

// collect lists the bucket that make install wrote into destDir, after
// checking that it wrote nothing else there: a file outside the bucket would
// be silently lost, or would have been meant for a path the farm cannot
// provide.
func collect(destDir, bucket string) ([]File, error) {
	rel := strings.TrimPrefix(filepath.Clean(bucket), "/")
	staged := filepath.Join(destDir, rel)
	st, err := os.Lstat(staged)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("make install put nothing in %s (is DESTDIR honoured?)", bucket)
	}
	if err := checkOnlyBucket(destDir, rel, bucket); err != nil {
		return nil, err
	}
	var files []File
	err = filepath.WalkDir(staged, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == staged {
			return nil
		}
		r, err := filepath.Rel(staged, p)
		if err != nil {
			return err
		}
		f, err := fileOf(p, filepath.ToSlash(r), d, bucket)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// checkOnlyBucket refuses what make install wrote into destDir outside the
// bucket, rel inside destDir.
func checkOnlyBucket(destDir, rel, bucket string) error {
	return filepath.WalkDir(destDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(destDir, p)
		if err != nil {
			return err
		}
		switch {
		case r == rel:
			return fs.SkipDir
		case r == "." || (d.IsDir() && strings.HasPrefix(rel, r+"/")):
			return nil
		}
		return fmt.Errorf("make install wrote /%s, outside the bucket %s", r, bucket)
	})
}

// fileOf describes the entry p of the bucket, rel inside it.
func fileOf(p, rel string, d fs.DirEntry, bucket string) (File, error) {
	info, err := d.Info()
	if err != nil {
		return File{}, err
	}
	f := File{Path: rel, Mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
	switch mode := info.Mode(); {
	case mode.IsDir():
		f.Type = tarball.TypeDir
	case mode.IsRegular():
		f.Type = tarball.TypeFile
		f.Size = info.Size()
		if f.SHA256, err = hashFile(p); err != nil {
			return File{}, err
		}
	case mode&fs.ModeSymlink != 0:
		f.Type = tarball.TypeSymlink
		if f.Link, err = os.Readlink(p); err != nil {
			return File{}, err
		}
	default:
		return File{}, fmt.Errorf("make install made %s/%s, a %v; only directories, files and symlinks can be installed", bucket, f.Path, mode.Type())
	}
	return f, nil
}

func hashFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
