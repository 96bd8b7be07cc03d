//go:build !unix

package client

import "io/fs"

// modesProtect is false where the mode bits mean nothing: on Windows the
// profile directory's protected DACL (restrictDir, at each login) is
// inherited by every file in it.
const modesProtect = false

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
