package tarball

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"tpm/manifest"
)

// PackOptions tune tpm pack.
type PackOptions struct {
	// Clamp, when set, caps every mtime (SOURCE_DATE_EPOCH), so the same tree
	// checked out at different times packs to the same bytes.
	Clamp *time.Time
	// Limits are the reader's (zero: DefaultLimits): a package that every
	// reader would refuse is refused when it is packed.
	Limits Limits
}

// PackDir validates the package folder dir (info/ and data/) and writes the
// archive to w: info/ first so the manifest is read without unpacking the
// rest, then data/ depth first in name order, owner root:root, and no gzip
// name or time, so packing the same folder twice gives the same bytes.
func PackDir(dir string, w io.Writer, opts PackOptions) (*manifest.Manifest, error) {
	m, err := packDir(dir, w, opts)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	return m, nil
}

func packDir(dir string, w io.Writer, opts PackOptions) (*manifest.Manifest, error) {
	m, scripts, err := checkPackDir(dir)
	if err != nil {
		return nil, err
	}
	gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	pk := &packer{dir: dir, opts: opts, scripts: scripts, tw: tar.NewWriter(gz), limits: opts.Limits, listing: []string{listingHeader}}
	if pk.limits == (Limits{}) {
		pk.limits = DefaultLimits()
	}
	// data/ is walked first, for the listing that goes into info/ ahead of it.
	if err := pk.walkData(); err != nil {
		return nil, err
	}
	if err := pk.writeInfo(); err != nil {
		return nil, err
	}
	if err := pk.writeListing(); err != nil {
		return nil, err
	}
	for _, it := range pk.data {
		if err := writeEntry(pk.tw, it.hdr, it.full); err != nil {
			return nil, err
		}
	}
	if err := pk.tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return m, nil
}

// packer is the state of one packDir: the archive being written and what
// it holds so far.
type packer struct {
	dir     string
	opts    PackOptions
	scripts map[string]bool // the scripts of info/
	tw      *tar.Writer
	limits  Limits
	entries int   // as the reader counts them
	size    int64 // the tar stream's bytes
	data    []packItem
	listing []string // the lines of info/files
}

// count counts an entry as the reader counts: every entry, and the tar
// stream's bytes (a 512-byte header, the content in 512-byte blocks). It
// refuses a package that the reader would refuse.
func (pk *packer) count(info fs.FileInfo) error {
	pk.entries++
	if info.Mode().IsRegular() {
		pk.size += 512 + (info.Size()+511)/512*512
	} else {
		pk.size += 512
	}
	switch {
	case pk.entries > pk.limits.MaxEntries:
		return fmt.Errorf("more than %d entries: tpm refuses to install such a package; split it", pk.limits.MaxEntries)
	case pk.size > pk.limits.MaxBytes:
		return fmt.Errorf("more than %d bytes unpacked: tpm refuses to install such a package; split it", pk.limits.MaxBytes)
	}
	return nil
}

// walkData takes the headers of data/ and the listing's lines.
func (pk *packer) walkData() error {
	return walkSorted(pk.dir, "data", pk.scripts, func(rel, full string, info fs.FileInfo) error {
		if err := pk.count(info); err != nil {
			return err
		}
		hdr, err := headerOf(rel, full, info, pk.opts)
		if err != nil {
			return err
		}
		pk.data = append(pk.data, packItem{hdr, full})
		if rel != "data" {
			line, err := listingLine(hdr)
			if err != nil {
				return err
			}
			pk.listing = append(pk.listing, line)
		}
		return nil
	})
}

// writeInfo writes info/: package.json and the scripts.
func (pk *packer) writeInfo() error {
	return walkSorted(pk.dir, "info", pk.scripts, func(rel, full string, info fs.FileInfo) error {
		if err := pk.count(info); err != nil {
			return err
		}
		hdr, err := headerOf(rel, full, info, pk.opts)
		if err != nil {
			return err
		}
		return writeEntry(pk.tw, hdr, full)
	})
}

// writeListing writes info/files, unless it is too large for any reader:
// without it the package still installs, through a full read before the
// plan.
func (pk *packer) writeListing() error {
	raw := []byte(strings.Join(pk.listing, "\n") + "\n")
	if int64(len(raw)) > maxListingSize(pk.limits) {
		return nil
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "info/" + listingName, Mode: 0o644, Size: int64(len(raw)), Uname: "root", Gname: "root", ModTime: listingTime(pk.data)}
	if err := pk.count(fileSize(len(raw))); err != nil {
		return err
	}
	if err := pk.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := pk.tw.Write(raw)
	return err
}

// checkPackDir refuses a folder tpm could not install, before anything is
// written: a bad manifest, stray or non-executable files in info/, and
// special files in data/.
func checkPackDir(dir string) (*manifest.Manifest, map[string]bool, error) {
	mst, err := os.Stat(filepath.Join(dir, "info", manifestName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, errors.New("info/package.json is missing")
		}
		return nil, nil, err
	}
	if mst.Size() > maxInfoFileSize {
		return nil, nil, fmt.Errorf("info/%s is larger than %d bytes, which no reader takes", manifestName, maxInfoFileSize)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "info", manifestName))
	if err != nil {
		return nil, nil, err
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	infos, err := os.ReadDir(filepath.Join(dir, "info"))
	if err != nil {
		return nil, nil, err
	}
	scripts := make(map[string]bool)
	for _, e := range infos {
		name := e.Name()
		if name == manifestName {
			continue
		}
		if !isScript(name) {
			return nil, nil, fmt.Errorf("info/%s: only package.json and the scripts %v may be in info/", name, Scripts)
		}
		st, err := os.Lstat(filepath.Join(dir, "info", name))
		if err != nil {
			return nil, nil, err
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return nil, nil, fmt.Errorf("info/%s: scripts must be executable regular files (chmod +x)", name)
		}
		if st.Size() > maxInfoFileSize {
			return nil, nil, fmt.Errorf("info/%s is larger than %d bytes, which no reader takes", name, maxInfoFileSize)
		}
		scripts[name] = true
	}
	st, err := os.Lstat(filepath.Join(dir, "data"))
	if err != nil || !st.IsDir() {
		return nil, nil, errors.New("data/ is missing; it holds the files to install")
	}
	if m.Type == manifest.TypeSource {
		if len(scripts) > 0 {
			return nil, nil, errors.New("a Source package runs no scripts; remove them from info/")
		}
		st, err := os.Stat(filepath.Join(dir, "data", "configure"))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return nil, nil, errors.New("a Source package needs an executable data/configure")
		}
	}
	return m, scripts, nil
}

// walkSorted visits dir/top depth first with entries in name order (the
// order of os.ReadDir), which puts every directory before its contents.
func walkSorted(dir, top string, scripts map[string]bool, add func(rel, full string, info fs.FileInfo) error) error {
	return filepath.WalkDir(filepath.Join(dir, top), func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, full)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if top == "info" && rel != "info" && rel != "info/"+manifestName && !scripts[filepath.Base(rel)] {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if len(rel) > PathMax {
			return fmt.Errorf("%s: name is longer than PATH_MAX", rel)
		}
		return add(rel, full, info)
	})
}

func headerOf(rel, full string, info fs.FileInfo, opts PackOptions) (*tar.Header, error) {
	mode := info.Mode()
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(mode.Perm()),
		ModTime: info.ModTime().Truncate(time.Second),
		Uname:   "root",
		Gname:   "root",
	}
	if mode&fs.ModeSetuid != 0 {
		hdr.Mode |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		hdr.Mode |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	if opts.Clamp != nil && hdr.ModTime.After(*opts.Clamp) {
		hdr.ModTime = *opts.Clamp
	}
	switch {
	case mode.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case mode.IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = info.Size()
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	default:
		return nil, fmt.Errorf("%s: only directories, regular files and symlinks can be packed (this is %v)", rel, mode.Type())
	}
	return hdr, nil
}

func writeEntry(tw *tar.Writer, hdr *tar.Header, full string) error {
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size+1))
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s: changed size while packing", hdr.Name)
	}
	return nil
}

// listingTime dates info/files like the newest entry it lists, so packing
// the same tree twice still gives the same bytes.
func listingTime(data []packItem) time.Time {
	var t time.Time
	for _, it := range data {
		if it.hdr.ModTime.After(t) {
			t = it.hdr.ModTime
		}
	}
	return t
}

// packItem is a data/ entry, walked before it is written.
type packItem struct {
	hdr  *tar.Header
	full string
}

// fileSize is a regular file's FileInfo for the pack's counting.
type fileSize int64

func (f fileSize) Name() string       { return listingName }
func (f fileSize) Size() int64        { return int64(f) }
func (f fileSize) Mode() fs.FileMode  { return 0o644 }
func (f fileSize) ModTime() time.Time { return time.Time{} }
func (f fileSize) IsDir() bool        { return false }
func (f fileSize) Sys() any           { return nil }

// PackFile packs dir into outDir/NAME-VERSION-ARCH.tpkg, replacing any file
// of that name only once the new one is complete.
func PackFile(dir, outDir string, opts PackOptions) (string, *manifest.Manifest, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(outDir, ".tpm-pack-*")
	if err != nil {
		return "", nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	buf := bufio.NewWriterSize(tmp, 1<<20)
	m, err := PackDir(dir, buf, opts)
	if err != nil {
		tmp.Close()
		return "", nil, err
	}
	err = buf.Flush()
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	out := filepath.Join(outDir, m.FileName())
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	return out, m, nil
}
