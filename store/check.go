package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrDamaged is a database file that bbolt would crash on (a truncated file
// makes it read past the end of its memory map: SIGBUS; a damaged page
// fails one of its assertions: a panic) or silently take for a new, empty
// database (a file of 0 bytes).
var ErrDamaged = errors.New("damaged database file")

// The parts of bbolt's file format (v1.5, version 2) that CheckFile reads:
// two meta pages at the start, each a 16-byte page header and then magic,
// version, page size, flags, root bucket (16 bytes), freelist page, page
// count (the file must hold that many pages), txid and an FNV-64a checksum
// of everything before it. A page header is the page's id, its flags (its
// kind), a count of elements and how many pages more it spans.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes of meta the checksum covers

	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltNoFreelist   = ^uint64(0) // the freelist is not kept in the file
)

// CheckFile says whether the bbolt file at path is whole enough to open:
// not empty, with a valid meta page, at least as long as the pages that
// meta says it has, with the root page it names and a freelist page that
// lists only pages of the file, once each (bbolt reads the freelist when it
// opens a file, and panics on one that is not; a freelist naming pages in
// use would have them overwritten). A file that does not exist is fine (it
// will be made). Pages further in are checked by the state database's
// open after an unclean stop (Tx.Check), and by every read.
// The error wraps ErrDamaged and says what is wrong in a few words.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	if size == 0 {
		return fmt.Errorf("%w: %s is empty (0 bytes)", ErrDamaged, path)
	}
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	head = head[:n]
	var best *boltMeta
	first := readMeta(head, 0)
	if first != nil {
		best = first
		if second := readMeta(head, int(first.pageSize)); second != nil && second.txid > best.txid {
			best = second
		}
	} else {
		// The first meta page may be the damaged one: try the second at
		// the usual page sizes.
		for _, ps := range []int{4096, 8192, 16384, 32768} {
			if m := readMeta(head, ps); m != nil && int(m.pageSize) == ps {
				best = m
				break
			}
		}
	}
	if best == nil {
		return fmt.Errorf("%w: %s has no valid header", ErrDamaged, path)
	}
	if want := int64(best.pgid) * int64(best.pageSize); size < want {
		return fmt.Errorf("%w: %s is truncated (%d bytes of %d)", ErrDamaged, path, size, want)
	}
	if what := checkRootAndFreelist(f, best); what != "" {
		return fmt.Errorf("%w: %s has a damaged %s", ErrDamaged, path, what)
	}
	return nil
}

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func decodePageHeader(b []byte) pageHeader {
	le := binary.LittleEndian
	return pageHeader{id: le.Uint64(b), flags: le.Uint16(b[8:]), count: le.Uint16(b[10:]), overflow: le.Uint32(b[12:])}
}

// checkRootAndFreelist reads the root page's header and the whole freelist
// that meta names, and says what is wrong with them, or "". The file is at
// least meta.pgid pages long.
func checkRootAndFreelist(f *os.File, meta *boltMeta) string {
	ps := int64(meta.pageSize)
	head := make([]byte, boltPageHeader)
	if meta.root < 2 || meta.root >= meta.pgid {
		return fmt.Sprintf("root page (page %d of %d)", meta.root, meta.pgid)
	}
	if _, err := f.ReadAt(head, int64(meta.root)*ps); err != nil {
		return fmt.Sprintf("root page (page %d: %v)", meta.root, err)
	}
	if h := decodePageHeader(head); h.id != meta.root || (h.flags != boltBranchPage && h.flags != boltLeafPage) {
		return fmt.Sprintf("root page (page %d reads as page %d of kind %#x)", meta.root, h.id, h.flags)
	}
	if meta.freelist == boltNoFreelist {
		return ""
	}
	if meta.freelist < 2 || meta.freelist >= meta.pgid {
		return fmt.Sprintf("freelist (page %d of %d)", meta.freelist, meta.pgid)
	}
	if _, err := f.ReadAt(head, int64(meta.freelist)*ps); err != nil {
		return fmt.Sprintf("freelist (page %d: %v)", meta.freelist, err)
	}
	h := decodePageHeader(head)
	if h.id != meta.freelist || h.flags != boltFreelistPage || meta.freelist+uint64(h.overflow) >= meta.pgid {
		return fmt.Sprintf("freelist (page %d reads as page %d of kind %#x)", meta.freelist, h.id, h.flags)
	}
	body := make([]byte, (int64(h.overflow)+1)*ps-boltPageHeader)
	if _, err := f.ReadAt(body, int64(meta.freelist)*ps+boltPageHeader); err != nil {
		return fmt.Sprintf("freelist (page %d: %v)", meta.freelist, err)
	}
	n, ids := uint64(h.count), body
	if h.count == 0xFFFF { // the count is the first id's place
		n, ids = binary.LittleEndian.Uint64(body), body[8:]
	}
	if n > uint64(len(ids)/8) {
		return fmt.Sprintf("freelist (page %d lists %d pages)", meta.freelist, n)
	}
	seen := make(map[uint64]bool, n)
	for i := range n {
		id := binary.LittleEndian.Uint64(ids[8*i:])
		if id < 2 || id >= meta.pgid || seen[id] {
			return fmt.Sprintf("freelist (page %d lists page %d)", meta.freelist, id)
		}
		seen[id] = true
	}
	return ""
}

// readMeta decodes the meta page at offset off of head, or nil when it is
// not there or not valid.
func readMeta(head []byte, off int) *boltMeta {
	m := off + boltPageHeader
	if off < 0 || m+boltMetaSum+8 > len(head) {
		return nil
	}
	b := head[m : m+boltMetaSum+8]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return nil
	}
	h := fnv.New64a()
	h.Write(b[:boltMetaSum])
	if h.Sum64() != le.Uint64(b[boltMetaSum:]) {
		return nil
	}
	meta := &boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
		pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if meta.pageSize < 512 || meta.pgid < 4 {
		return nil
	}
	return meta
}
