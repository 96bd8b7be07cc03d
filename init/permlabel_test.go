package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two partitions with the /perm label (a USB stick with the image left
// in the gate): init does not guess, the first in name order could be
// the stick's blank one, formatted and used as /perm.
func TestResolvePermDeviceRefusesDuplicateLabel(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"sda2": "DEVNAME=sda2\nDEVTYPE=partition\nPARTNAME=otgate-perm\n",
		"sdb2": "DEVNAME=sdb2\nDEVTYPE=partition\nPARTNAME=otgate-perm\n",
	} {
		os.MkdirAll(filepath.Join(sys, "class/block", dev), 0o755)
		os.WriteFile(filepath.Join(sys, "class/block", dev, "uevent"), []byte(uevent), 0o644)
	}
	got, err := resolvePermDevice("PARTLABEL=otgate-perm", sys, "/dev")
	if err == nil || !strings.Contains(err.Error(), "/dev/sda2, /dev/sdb2") {
		t.Fatalf("%q, %v; want an error naming both partitions", got, err)
	}
}
