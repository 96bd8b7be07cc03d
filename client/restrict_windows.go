//go:build windows

package client

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// restrictDir gives the profile directory a protected DACL: full control
// for the current user and SYSTEM only, inherited by every file created in
// it (the key and the certificate). Windows ignores Unix permission bits,
// and a directory below %AppData% would otherwise inherit whatever its
// parent grants.
func restrictDir(dir string) error {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return fmt.Errorf("restrict %s: the current user's SID: %w", dir, err)
	}
	sd, err := windows.SecurityDescriptorFromString(fmt.Sprintf("D:P(A;OICI;FA;;;%s)(A;OICI;FA;;;SY)", u.User.Sid))
	if err != nil {
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("restrict %s to the current user: %w", dir, err)
	}
	return nil
}

// checkDir is restrictDir's check of an existing directory; on Windows
// restrictDir replaces its DACL whatever it was.
func checkDir(string) error { return nil }

// checkParents checks the directories above the profile directory on
// Unix; on Windows the profile directory's protected DACL is what
// protects it.
func checkParents(string) error { return nil }
