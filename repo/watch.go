package repo

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watch is a change journal of the package directory (inotify): the names
// changed since it was last asked, so that a rescan stats those alone
// instead of the 100,000 files a listing stats (160 ms of a 400 ms
// rescan). Like git's fsmonitor, it only makes the scan cheaper: it starts
// none, and it runs nothing between scans. The kernel queues the events
// (at most fs.inotify.max_queued_events, 16,384 by default) as the changes
// happen, so a scan that reads the queue sees every change made before it
// started. The watch cannot vouch for the directory when that queue
// overflowed, when more names changed than it takes, or when the directory
// itself went; then the next scan lists it whole.
type watch struct {
	fd int
}

// maxDirty is how many changed names a scan takes from a watch: past it,
// a listing is cheaper than statting them one by one, and a flood of
// uploads costs no more memory.
const maxDirty = 10_000

// maxWatchReads bounds the reading of the queue at one scan (64 KiB
// each): the kernel's 16,384 events take at most 70, while a process that
// keeps changing the same few files could keep a reader busy for ever.
// Past it, the scan lists the directory.
const maxWatchReads = 128

const watchEvents = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// localFilesystems are those whose every change goes through this kernel,
// so inotify sees it: on NFS, SMB, FUSE and the like another machine's
// writes are invisible to it, and a directory there is always listed.
var localFilesystems = map[int64]string{
	unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
	unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlay", unix.F2FS_SUPER_MAGIC: "f2fs",
	0x2fc12fc1: "zfs",
}

// startWatch watches dir, or says why it does not. It knows only what
// changed after it started: the caller lists the directory after it, and
// takes changes only from then on.
func startWatch(dir string) (*watch, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if _, ok := localFilesystems[int64(st.Type)]; !ok {
		return nil, fmt.Errorf("watch %s: filesystem type %#x may change without this kernel seeing it", dir, st.Type)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, watchEvents); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return &watch{fd: fd}, nil
}

// changes reads the queued events and returns the names changed since the
// last call (or the start), and whether they are all the changes since
// then (false whenever one may have been lost, or the queue held more than
// a scan takes). With the names incomplete the caller lists the directory,
// after this call.
func (w *watch) changes() (names []string, complete bool) {
	dirty := map[string]struct{}{}
	complete = w.fd >= 0
	buf := make([]byte, 64<<10)
	for reads := 0; w.fd >= 0; reads++ {
		if reads == maxWatchReads || len(dirty) > maxDirty {
			complete = false
			break
		}
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			complete = complete && errors.Is(err, unix.EAGAIN)
			break
		}
		if !events(buf[:n], dirty) {
			complete = false
		}
	}
	if !complete || len(dirty) > maxDirty {
		return nil, false
	}
	for name := range dirty {
		names = append(names, name)
	}
	return names, complete
}

// events adds the names of the events in b to dirty, and says whether
// they told of every change (no overflow, the directory still there).
func events(b []byte, dirty map[string]struct{}) bool {
	ok := true
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return false
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[end:]
		switch {
		case ev.Mask&(unix.IN_Q_OVERFLOW|unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0:
			ok = false
		case len(name) == 0: // the directory's own attributes
		case len(dirty) > maxDirty: // the caller lists the directory
		default:
			if _, seen := dirty[string(name)]; !seen {
				dirty[string(name)] = struct{}{}
			}
		}
	}
	return ok
}

// close stops the watch.
func (w *watch) close() error {
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	return err
}
