//go:build linux

package envelope

import (
	"os"
	"syscall"
)

// identity adds what os.FileInfo does not carry on Linux: the device and
// inode (a file renamed into place is a new inode even with the same size
// and mtime) and the inode change time (any write moves it).
func (s *fileState) identity(info os.FileInfo) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		s.dev = uint64(st.Dev)
		s.ino = uint64(st.Ino)
		s.ctime = int64(st.Ctim.Sec)*1e9 + int64(st.Ctim.Nsec)
	}
}
