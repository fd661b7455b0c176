package tarball

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The listing (info/files) names every data/ entry in archive order, ahead
// of the data, as pacman's .MTREE and dpkg's control archive do: an
// installer can check a package's files against the disk and the receipts
// from the first kilobytes of the archive, and decompress it only once,
// while it writes the files. The reader holds the data to the listing
// entry by entry, so what is checked is what gets written.
//
// One line per entry after the header line; names are Go-quoted, so any
// byte a tar name may hold survives:
//
//	tpm-files 1
//	d 0755 0 "usr/bin"
//	f 0644 1234 "usr/bin/hello"
//	l 0777 0 "usr/bin/hi" "hello"
//	h 0644 0 "usr/bin/hey" "data/usr/bin/hello"
const (
	listingName   = "files"
	listingHeader = "tpm-files 1"
	// A listing line is at most two quoted names of PATH_MAX (every byte
	// escaped at worst) and a few fields.
	maxListingLine = 2*4*PathMax + 64
)

// ErrNoListing says that an archive does not list its files ahead of its
// data (packed by an older tpm, or by hand); only a full read tells what it
// holds.
var ErrNoListing = errors.New("the archive has no info/files ahead of its data")

// maxListingSize bounds info/files: 128 bytes a line for the entry limit,
// and never more than 64 MiB.
func maxListingSize(l Limits) int64 {
	return min(int64(l.MaxEntries)*128+int64(len(listingHeader))+1, 64<<20)
}

var listingTypes = map[byte]byte{'d': tar.TypeDir, 'f': tar.TypeReg, 'l': tar.TypeSymlink, 'h': tar.TypeLink}

// parseListing reads info/files and applies to every entry it names the
// rules the data/ entries themselves must pass (names, parents, links,
// limits), so a plan made from the listing alone is safe to act on.
func parseListing(raw []byte, limits Limits) ([]Entry, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 4096), maxListingLine)
	if !sc.Scan() || sc.Text() != listingHeader {
		return nil, refuse("info/"+listingName, "does not start with %q", listingHeader)
	}
	v := newReader(strings.NewReader(""), limits)
	v.seen = make(map[string]EntryType, bytes.Count(raw, []byte{'\n'}))
	var entries []Entry
	for n := 2; sc.Scan(); n++ {
		hdr, err := parseListingLine(sc.Text())
		if err != nil {
			return nil, refuse("info/"+listingName, "line %d: %v", n, err)
		}
		v.entries++
		if v.entries > limits.MaxEntries {
			return nil, refuse("info/"+listingName, "lists more than %d entries (the limit)", limits.MaxEntries)
		}
		entry, isData, err := v.check(hdr)
		if err != nil {
			return nil, fmt.Errorf("info/%s, line %d: %w", listingName, n, err)
		}
		if !isData {
			return nil, refuse("info/"+listingName, "line %d: %q is not a data/ entry", n, hdr.Name)
		}
		entries = append(entries, entry)
	}
	if err := sc.Err(); err != nil {
		return nil, refuse("info/"+listingName, "%v", err)
	}
	return entries, nil
}

func parseListingLine(line string) (*tar.Header, error) {
	var fields [4]string
	rest := line
	for k := 0; k < 3; k++ {
		var ok bool
		if fields[k], rest, ok = strings.Cut(rest, " "); !ok {
			return nil, errors.New("want TYPE MODE SIZE NAME")
		}
	}
	fields[3] = rest
	if len(fields[0]) != 1 {
		return nil, errors.New("want TYPE MODE SIZE NAME")
	}
	typ, ok := listingTypes[fields[0][0]]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", fields[0])
	}
	mode, err := strconv.ParseInt(fields[1], 8, 32)
	if err != nil || mode < 0 || mode > 0o7777 {
		return nil, fmt.Errorf("bad mode %q", fields[1])
	}
	size, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil || size < 0 || (size > 0 && typ != tar.TypeReg) {
		return nil, fmt.Errorf("bad size %q", fields[2])
	}
	name, rest, err := unquotePrefix(fields[3])
	if err != nil {
		return nil, fmt.Errorf("bad name: %v", err)
	}
	hdr := &tar.Header{Typeflag: typ, Name: "data/" + name, Mode: mode, Size: size}
	if typ == tar.TypeDir {
		hdr.Name += "/"
	}
	switch {
	case typ == tar.TypeSymlink || typ == tar.TypeLink:
		link, more, err := unquotePrefix(strings.TrimPrefix(rest, " "))
		if err != nil || !strings.HasPrefix(rest, " ") || more != "" {
			return nil, errors.New("a link needs its target after the name")
		}
		hdr.Linkname = link
	case rest != "":
		return nil, errors.New("unexpected text after the name")
	}
	return hdr, nil
}

// unquotePrefix reads one Go-quoted string from the start of s.
func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	u, err := strconv.Unquote(q)
	return u, s[len(q):], err
}

// listingLine is the line of info/files for the tar header of a data/ entry.
func listingLine(hdr *tar.Header) (string, error) {
	name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "data/"), "/")
	var typ string
	switch hdr.Typeflag {
	case tar.TypeDir:
		typ = "d"
	case tar.TypeReg:
		typ = "f"
	case tar.TypeSymlink:
		typ = "l"
	case tar.TypeLink:
		typ = "h"
	default:
		return "", fmt.Errorf("%s: no listing for entry type %q", hdr.Name, string(hdr.Typeflag))
	}
	line := fmt.Sprintf("%s %04o %d %s", typ, hdr.Mode&0o7777, hdr.Size, strconv.Quote(name))
	if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
		line += " " + strconv.Quote(hdr.Linkname)
	}
	return line, nil
}

// sameListed says whether a data/ entry is the one the listing named there.
// Modification times are not listed: they change nothing a plan checks.
func sameListed(listed, got Entry) bool {
	return listed.Path == got.Path && listed.Type == got.Type && listed.Mode == got.Mode &&
		listed.Size == got.Size && listed.Link == got.Link
}

// ReadHead reads an archive only as far as its first data/ entry and
// returns what a plan needs: the manifest, the info/ files and the data/
// entries as info/files lists them. It returns ErrNoListing for an archive
// without a listing ahead of its data; Inspect reads such a one whole.
// Nothing of the data is checked here beyond the listing's own rules: the
// reader that unpacks it later holds every entry to the listing.
func ReadHead(r io.Reader, limits Limits) (*Package, error) {
	tr, err := NewReader(r, limits)
	if err != nil {
		return nil, err
	}
	_, _, err = tr.Next()
	if err != nil && err != io.EOF {
		return nil, err
	}
	if tr.listing == nil {
		return nil, ErrNoListing
	}
	return tr.pkg()
}
