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
// makes it read past the end of its memory map: SIGBUS) or silently take
// for a new, empty database (a file of 0 bytes).
var ErrDamaged = errors.New("damaged database file")

// The parts of bbolt's file format (v1.5, version 2) that CheckFile reads:
// two meta pages at the start, each a 16-byte page header and then magic,
// version, page size, flags, root bucket (16 bytes), freelist page, page
// count (the file must hold that many pages), txid and an FNV-64a checksum
// of everything before it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes of meta the checksum covers
)

// CheckFile says whether the bbolt file at path is whole enough to open:
// not empty, with a valid meta page, and at least as long as the pages that
// meta says it has. A file that does not exist is fine (it will be made).
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
	return nil
}

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
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
	meta := &boltMeta{pageSize: le.Uint32(b[8:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if meta.pageSize < 512 || meta.pgid < 4 {
		return nil
	}
	return meta
}
