// Package tarball holds the .tpkg format: a gzip-compressed tar with data/ (the
// file tree, relative to the install prefix) and info/ (package.json and the
// maintainer scripts). It reads and validates archives as hostile input and
// packs folders reproducibly. It writes nothing to disk on reading: placing
// files is the install engine's job.
package tarball

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"tpm/manifest"
)

// Linux limits: a name longer than these can never be created, and an archive
// that carries one is malformed or hostile.
const (
	PathMax = 4096
	NameMax = 255
)

// Scripts are the maintainer scripts an info/ folder may carry.
var Scripts = []string{"preinstall", "postinstall", "preupgrade", "postupgrade", "preremove", "postremove"}

const (
	manifestName    = "package.json"
	maxInfoFileSize = 1 << 20
)

// Limits bound what one archive may unpack to, so that a small hostile file
// cannot exhaust the disk or the inode table.
type Limits struct {
	MaxEntries int   // tar entries, info/ included
	MaxBytes   int64 // decompressed bytes of the whole tar stream
}

// DefaultLimits are generous for real packages (a large toolchain has about
// 100,000 files and a few GiB) and still stop a decompression bomb.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 500_000, MaxBytes: 16 << 30}
}

// EntryType is the kind of a data/ entry; anything else is refused.
type EntryType uint8

const (
	TypeDir EntryType = iota + 1
	TypeFile
	TypeSymlink
	TypeHardlink
)

func (t EntryType) String() string {
	switch t {
	case TypeDir:
		return "dir"
	case TypeFile:
		return "file"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Entry is one entry of data/, named relative to the install prefix.
type Entry struct {
	Path    string // "usr/bin/hello"
	Type    EntryType
	Mode    fs.FileMode // permission bits plus setuid, setgid and sticky
	Size    int64       // regular files only
	Link    string      // symlink target, or the Path of the file a hard link repeats
	ModTime time.Time
}

// RuleError is a refusal of an archive: which entry broke which rule.
type RuleError struct {
	Entry string
	Rule  string
}

func (e *RuleError) Error() string {
	if e.Entry == "" {
		return e.Rule
	}
	return fmt.Sprintf("entry %q: %s", e.Entry, e.Rule)
}

func refuse(entry, format string, args ...any) error {
	return &RuleError{Entry: entry, Rule: fmt.Sprintf(format, args...)}
}

// countingReader stops the stream once more bytes than allowed come out of
// the decompressor.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, &RuleError{Rule: fmt.Sprintf("decompresses to more than %d bytes (the limit)", c.limit)}
	}
	return n, err
}

// Reader walks an archive entry by entry and refuses, before handing an entry
// out, everything the hostile-input rules forbid. Both the inspection pass and
// the installer's staging pass read through it, so they cannot disagree.
type Reader struct {
	counter *countingReader
	tr      *tar.Reader
	limits  Limits
	entries int
	content int64                // sum of declared file sizes, bounded like the stream
	seen    map[string]EntryType // every data/ path so far, for symlink, parent and hard-link rules
	info    map[string][]byte
	done    bool
	// listing is info/files when the archive has one; every data/ entry
	// must then be the next one it names (data counts them).
	listing []Entry
	data    int
	// ignoreListing: the caller holds every entry to the listing it planned
	// from (read by ReadHead), so this reader need not parse it again.
	ignoreListing bool
	listed        bool // info/files was seen
}

// IgnoreListing tells the reader not to parse info/files: the caller checks
// every data/ entry against the listing it already read, in its own way.
func (r *Reader) IgnoreListing() { r.ignoreListing = true }

// NewReader starts reading a .tpkg stream.
func NewReader(r io.Reader, limits Limits) (*Reader, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, gzipError(err)
	}
	return newReader(gz, limits), nil
}

// NewTarReader reads an archive's tar stream that was already decompressed
// (and its gzip trailer checked), as kept by InspectKeep.
func NewTarReader(r io.Reader, limits Limits) *Reader {
	return newReader(r, limits)
}

func newReader(decompressed io.Reader, limits Limits) *Reader {
	counter := &countingReader{r: decompressed, limit: limits.MaxBytes}
	return &Reader{
		counter: counter,
		tr:      tar.NewReader(counter),
		limits:  limits,
		seen:    make(map[string]EntryType),
		info:    make(map[string][]byte),
	}
}

func gzipError(err error) error {
	var rule *RuleError
	if errors.As(err, &rule) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &RuleError{Rule: "archive is truncated"}
	}
	return &RuleError{Rule: fmt.Sprintf("archive is not valid gzip/tar: %v", err)}
}

// Info returns the info/ files read so far, by base name.
func (r *Reader) Info() map[string][]byte { return r.info }

// Next returns the next data/ entry and a reader of its content (empty for
// anything but regular files). info/ entries are collected, not returned. At
// the end it returns io.EOF, after checking the gzip trailer, and only if
// info/package.json was present.
func (r *Reader) Next() (Entry, io.Reader, error) {
	for {
		if r.done {
			return Entry{}, nil, io.EOF
		}
		hdr, err := r.tr.Next()
		if err == io.EOF {
			// The gzip checksum is only checked once the stream is read to its end.
			if _, err := io.Copy(io.Discard, r.counter); err != nil {
				return Entry{}, nil, gzipError(err)
			}
			if _, ok := r.info[manifestName]; !ok {
				return Entry{}, nil, &RuleError{Rule: "info/package.json is missing"}
			}
			if r.listing != nil && r.data != len(r.listing) {
				return Entry{}, nil, refuse("info/"+listingName, "lists %d entries but data/ has %d", len(r.listing), r.data)
			}
			r.done = true
			return Entry{}, nil, io.EOF
		}
		if err != nil {
			return Entry{}, nil, gzipError(err)
		}
		r.entries++
		if r.entries > r.limits.MaxEntries {
			return Entry{}, nil, refuse(hdr.Name, "more than %d entries (the limit)", r.limits.MaxEntries)
		}
		entry, isData, err := r.check(hdr)
		if err != nil {
			return Entry{}, nil, err
		}
		if !isData {
			continue
		}
		if r.listing != nil {
			if r.data >= len(r.listing) || !sameListed(r.listing[r.data], entry) {
				return Entry{}, nil, refuse(hdr.Name, "is not what info/files lists as entry %d", r.data+1)
			}
		}
		r.data++
		if entry.Type == TypeFile {
			return entry, r.tr, nil
		}
		return entry, strings.NewReader(""), nil
	}
}

// check applies every per-entry rule. It returns isData=false for the
// top-level folders and for info/ files, which it reads into r.info.
func (r *Reader) check(hdr *tar.Header) (Entry, bool, error) {
	if err := r.checkSize(hdr); err != nil {
		return Entry{}, false, err
	}
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkName(hdr.Name, name); err != nil {
		return Entry{}, false, err
	}
	top, rest, _ := strings.Cut(name, "/")
	switch top {
	case "data", "info":
	default:
		return Entry{}, false, refuse(hdr.Name, "is outside data/ and info/")
	}
	if rest == "" {
		if hdr.Typeflag != tar.TypeDir {
			return Entry{}, false, refuse(hdr.Name, "%s/ must be a directory", top)
		}
		return Entry{}, false, nil
	}
	if top == "info" {
		return Entry{}, false, r.readInfo(hdr, rest)
	}

	entry := Entry{Path: rest, Mode: entryMode(hdr.Mode), ModTime: hdr.ModTime}
	if err := r.setType(hdr, &entry); err != nil {
		return Entry{}, false, err
	}
	if err := r.checkPlace(hdr.Name, rest, entry.Type); err != nil {
		return Entry{}, false, err
	}
	r.seen[rest] = entry.Type
	return entry, true, nil
}

// checkSize refuses sparse files, and files that add up to more than the
// stream may hold.
func (r *Reader) checkSize(hdr *tar.Header) error {
	for k := range hdr.PAXRecords {
		// archive/tar expands sparse holes itself: a few bytes of input
		// could become any amount of output.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return refuse(hdr.Name, "sparse files are not supported")
		}
	}
	if hdr.Size > 0 {
		r.content += hdr.Size
		if r.content > r.limits.MaxBytes {
			return refuse(hdr.Name, "files add up to more than %d bytes (the limit)", r.limits.MaxBytes)
		}
	}
	return nil
}

// entryMode is the permission bits of a tar mode, with setuid, setgid and
// sticky.
func entryMode(mode int64) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// setType sets the entry's type from the header, and its size or link
// target, refusing the types a package may not hold.
func (r *Reader) setType(hdr *tar.Header, entry *Entry) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		entry.Type = TypeDir
	case tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
		entry.Type = TypeFile
		entry.Size = hdr.Size
	case tar.TypeSymlink:
		entry.Type = TypeSymlink
		if err := checkSymlinkTarget(hdr); err != nil {
			return err
		}
		entry.Link = hdr.Linkname
	case tar.TypeLink:
		entry.Type = TypeHardlink
		target, err := r.hardlinkTarget(hdr)
		if err != nil {
			return err
		}
		entry.Link = target
	case tar.TypeChar, tar.TypeBlock:
		return refuse(hdr.Name, "device nodes are not allowed")
	case tar.TypeFifo:
		return refuse(hdr.Name, "FIFOs are not allowed")
	default:
		return refuse(hdr.Name, "entry type %q is not supported (only directories, regular files, symlinks and hard links)", string(hdr.Typeflag))
	}
	return nil
}

func checkSymlinkTarget(hdr *tar.Header) error {
	switch {
	case hdr.Linkname == "":
		return refuse(hdr.Name, "symlink has an empty target")
	case len(hdr.Linkname) > PathMax:
		return refuse(hdr.Name, "link target is longer than PATH_MAX (%d bytes)", PathMax)
	case strings.IndexByte(hdr.Linkname, 0) >= 0:
		return refuse(hdr.Name, "link target contains a NUL byte")
	}
	return nil
}

// checkPlace refuses a data/ entry at rest, of type typ, that comes twice
// or under something other than a directory.
func (r *Reader) checkPlace(name, rest string, typ EntryType) error {
	if prev, dup := r.seen[rest]; dup {
		// A second entry could turn a checked directory into a symlink.
		if !(prev == TypeDir && typ == TypeDir) {
			return refuse(name, "appears twice in the archive")
		}
	}
	for parent := path.Dir(rest); parent != "."; parent = path.Dir(parent) {
		switch r.seen[parent] {
		case TypeSymlink:
			return refuse(name, "passes through the symlink data/%s", parent)
		case TypeFile, TypeHardlink:
			return refuse(name, "its parent data/%s is not a directory", parent)
		}
	}
	return nil
}

func (r *Reader) hardlinkTarget(hdr *tar.Header) (string, error) {
	link := hdr.Linkname
	if len(link) > PathMax {
		return "", refuse(hdr.Name, "link target is longer than PATH_MAX (%d bytes)", PathMax)
	}
	if err := checkName(link, link); err != nil {
		return "", refuse(hdr.Name, "hard link target %q is not a safe name", link)
	}
	target, ok := strings.CutPrefix(link, "data/")
	if !ok {
		return "", refuse(hdr.Name, "hard link points outside data/ (%q)", link)
	}
	if r.seen[target] != TypeFile {
		return "", refuse(hdr.Name, "hard link must point to an earlier regular file of the package, not %q", link)
	}
	return target, nil
}

func (r *Reader) readInfo(hdr *tar.Header, rest string) error {
	if rest == listingName {
		return r.readListing(hdr)
	}
	if rest != manifestName && !isScript(rest) {
		return refuse(hdr.Name, "is not package.json or a known script (%s)", strings.Join(Scripts, ", "))
	}
	if r.listed && r.data > 0 {
		// An installer plans from what comes ahead of the data.
		return refuse(hdr.Name, "comes after data/ in an archive with info/files (info/ goes first)")
	}
	if hdr.Typeflag != tar.TypeReg {
		return refuse(hdr.Name, "must be a regular file")
	}
	if isScript(rest) && hdr.Mode&0o111 == 0 {
		return refuse(hdr.Name, "script is not executable")
	}
	if hdr.Size > maxInfoFileSize {
		return refuse(hdr.Name, "is larger than %d bytes", maxInfoFileSize)
	}
	if _, dup := r.info[rest]; dup {
		return refuse(hdr.Name, "appears twice in the archive")
	}
	content, err := io.ReadAll(r.tr)
	if err != nil {
		return gzipError(err)
	}
	r.info[rest] = content
	return nil
}

// readListing takes info/files, which is only of use ahead of the data.
func (r *Reader) readListing(hdr *tar.Header) error {
	switch {
	case hdr.Typeflag != tar.TypeReg:
		return refuse(hdr.Name, "must be a regular file")
	case r.listed:
		return refuse(hdr.Name, "appears twice in the archive")
	case r.data > 0 || len(r.seen) > 0:
		return refuse(hdr.Name, "must come before every data/ entry")
	case hdr.Size > maxListingSize(r.limits):
		return refuse(hdr.Name, "is larger than %d bytes", maxListingSize(r.limits))
	}
	r.listed = true
	if r.ignoreListing {
		if _, err := io.Copy(io.Discard, r.tr); err != nil {
			return gzipError(err)
		}
		return nil
	}
	raw, err := io.ReadAll(r.tr)
	if err != nil {
		return gzipError(err)
	}
	listing, err := parseListing(raw, r.limits)
	if err != nil {
		return err
	}
	r.listing = make([]Entry, 0, len(listing)) // not nil: an empty listing is a listing
	r.listing = append(r.listing, listing...)
	return nil
}

func isScript(name string) bool {
	for _, s := range Scripts {
		if name == s {
			return true
		}
	}
	return false
}

// checkName refuses names that could land outside the prefix or that the
// kernel would refuse anyway.
func checkName(raw, name string) error {
	switch {
	case name == "":
		return refuse(raw, "has an empty name")
	case len(raw) > PathMax:
		return refuse(raw[:64]+"…", "name is longer than PATH_MAX (%d bytes)", PathMax)
	case strings.HasPrefix(name, "/"):
		return refuse(raw, "absolute names are not allowed")
	case strings.IndexByte(name, 0) >= 0:
		return refuse(raw, "name contains a NUL byte")
	}
	for rest := name; rest != ""; {
		part, after, _ := strings.Cut(rest, "/")
		if after == "" && len(part) < len(rest) {
			return refuse(raw, "name is not canonical (empty or \".\" component)") // a trailing slash
		}
		rest = after
		switch {
		case part == "..":
			return refuse(raw, "name contains a \"..\" component")
		case part == "." || part == "":
			return refuse(raw, "name is not canonical (empty or \".\" component)")
		case len(part) > NameMax:
			return refuse(raw, "a name component is longer than NAME_MAX (%d bytes)", NameMax)
		}
	}
	return nil
}

// Package is everything an archive says about itself, read without writing.
type Package struct {
	Manifest *manifest.Manifest
	Info     map[string][]byte // info/ files by base name, package.json included
	Entries  []Entry           // data/ entries in archive order
	Bytes    int64             // sum of regular file sizes
	Listed   bool              // the archive lists its files in info/files, ahead of the data
}

// pkg is the package as far as the reader has read: the listing's entries.
func (r *Reader) pkg() (*Package, error) {
	data, ok := r.info[manifestName]
	if !ok {
		return nil, ErrNoListing // package.json comes after the data: read it whole
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, err
	}
	p := &Package{Manifest: m, Info: r.info, Entries: r.listing, Listed: true}
	for _, e := range r.listing {
		p.Bytes += e.Size
	}
	return p, nil
}

// Inspect reads a whole archive, applying every rule, and returns its
// manifest, info/ files and data/ listing.
func Inspect(r io.Reader, limits Limits) (*Package, error) {
	pkg, _, err := InspectKeep(r, limits, 0)
	return pkg, err
}

// InspectKeep is Inspect that also returns the decompressed tar stream when
// it is at most keep bytes, so that the installer's second pass (after the
// conflict checks) need not decompress again. The stream is nil otherwise.
func InspectKeep(r io.Reader, limits Limits, keep int64) (*Package, []byte, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, nil, gzipError(err)
	}
	var kept *cappedBuffer
	src := io.Reader(gz)
	if keep > 0 {
		kept = &cappedBuffer{limit: keep}
		src = io.TeeReader(gz, kept)
	}
	tr := newReader(src, limits)
	pkg := &Package{}
	for {
		entry, content, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if entry.Type == TypeFile {
			n, err := io.Copy(io.Discard, content)
			if err != nil {
				return nil, nil, gzipError(err)
			}
			pkg.Bytes += n
		}
		pkg.Entries = append(pkg.Entries, entry)
	}
	pkg.Info = tr.Info()
	pkg.Manifest, err = manifest.Parse(pkg.Info[manifestName])
	if err != nil {
		return nil, nil, err
	}
	pkg.Listed = tr.listing != nil
	if kept == nil || kept.over {
		return pkg, nil, nil
	}
	return pkg, kept.buf.Bytes(), nil
}

// cappedBuffer keeps what is written to it until it would pass limit, then
// gives up (and keeps nothing more) without failing the writer.
type cappedBuffer struct {
	buf   bytes.Buffer
	limit int64
	over  bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if !c.over && int64(c.buf.Len()+len(p)) <= c.limit {
		c.buf.Write(p)
	} else if !c.over {
		c.over = true
		c.buf = bytes.Buffer{}
	}
	return len(p), nil
}

// ReadManifest returns the package's manifest, reading only as far as
// info/package.json (the first entries of anything tpm pack wrote).
func ReadManifest(r io.Reader) (*manifest.Manifest, error) {
	tr, err := NewReader(r, DefaultLimits())
	if err != nil {
		return nil, err
	}
	for {
		if data, ok := tr.Info()[manifestName]; ok {
			return manifest.Parse(data)
		}
		_, content, err := tr.Next()
		if err == io.EOF {
			continue // Next only ends after package.json was seen
		}
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, content); err != nil {
			return nil, gzipError(err)
		}
	}
}
