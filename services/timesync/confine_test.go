package timesync

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/site"
)

// confinedEnv, set, makes TestConfinedServiceChild the confined child of
// TestConfinement: the JSON of a confinedTree.
const confinedEnv = "OTGATE_TIMESYNC_CONFINED"

// confinedTree mirrors the device's files under Root. The service's own
// paths are relative to Root, the child's working directory, as a
// relative flag would be (Confinement makes them absolute).
type confinedTree struct {
	Root                                   string
	Policy, RTC, Marker, Approval, Clock   string // the flags, relative
	OtherState, TPM, OtherRun, OtherPolicy string // absolute: not the service's
}

func buildConfinedTree(t *testing.T) confinedTree {
	t.Helper()
	root := t.TempDir()
	tr := confinedTree{
		Root:        root,
		Policy:      "perm/policy/" + site.AppliedFile,
		RTC:         "dev/rtc0",
		Marker:      "run/otgate/timesync.synced",
		Approval:    "run/otgate/timesync.step-approved",
		Clock:       "perm/timesync/clock", // its directory is not there yet
		OtherState:  filepath.Join(root, "perm/identity"),
		TPM:         filepath.Join(root, "dev/tpmrm0"),
		OtherRun:    filepath.Join(root, "run/other"),
		OtherPolicy: filepath.Join(root, "perm/policy.next"),
	}
	applySite(t, filepath.Join(root, "perm/policy"), "uplink:\n  mode: dhcp\n  ntp: [192.0.2.2]\n")
	for _, d := range []string{filepath.Join(root, "run/otgate"), filepath.Join(root, "dev"), tr.OtherState, tr.OtherRun, tr.OtherPolicy} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, tr.RTC), tr.TPM, filepath.Join(tr.OtherState, "key")} {
		if err := os.WriteFile(f, []byte("stand-in"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// refusals are what the confined service must not do: write another
// service's state, open the TPM (read or write), read another service's
// state, write or replace the policy, write beside it, list /perm.
func (tr confinedTree) refusals() []struct {
	what string
	do   func() error
} {
	policy := filepath.Join(tr.Root, tr.Policy)
	return []struct {
		what string
		do   func() error
	}{
		{"create in another service's state", func() error {
			return os.WriteFile(filepath.Join(tr.OtherState, "planted"), []byte("x"), 0o600)
		}},
		{"read another service's state", func() error { _, err := os.ReadFile(filepath.Join(tr.OtherState, "key")); return err }},
		{"open the TPM for reading", func() error { return openClose(tr.TPM, os.O_RDONLY) }},
		{"open the TPM for writing", func() error { return openClose(tr.TPM, os.O_RDWR) }},
		{"create in another run directory", func() error {
			return os.WriteFile(filepath.Join(tr.OtherRun, "planted"), []byte("x"), 0o600)
		}},
		{"write the policy", func() error { return openClose(policy, os.O_WRONLY) }},
		{"create beside the policy", func() error {
			return os.WriteFile(filepath.Join(filepath.Dir(policy), "planted"), []byte("x"), 0o600)
		}},
		{"remove the policy", func() error { return os.Rename(policy, policy+".moved") }},
		{"list /perm", func() error { _, err := os.ReadDir(filepath.Join(tr.Root, "perm")); return err }},
	}
}

func openClose(p string, flag int) error {
	f, err := os.OpenFile(p, flag, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// TestConfinement confines a child to the service's Confinement, built
// from flags pointing into a tree that mirrors the device, and runs the
// service's file operations there (TestConfinedServiceChild): the floor
// saved and loaded, the marker written and read, the approval taken,
// the policy read, the hardware clock opened. What is not the service's
// (another service's state, a TPM beside the RTC, the policy's
// contents) is refused, though root, unconfined, does all of it.
func TestConfinement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probes show that not even root gets past the ruleset")
	}
	tr := buildConfinedTree(t)
	for _, r := range tr.refusals() {
		if err := r.do(); err != nil {
			t.Fatalf("unconfined: %s: %v (the probe shows nothing)", r.what, err)
		}
	}
	// Undo what the unconfined probes did.
	policy := filepath.Join(tr.Root, tr.Policy)
	if err := os.Rename(policy+".moved", policy); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(tr.OtherState, "planted"), filepath.Join(tr.OtherRun, "planted"), filepath.Join(filepath.Dir(policy), "planted")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// An approval left by `otgate time step` before the child starts.
	if err := WriteStepApproval(filepath.Join(tr.Root, tr.Approval), "root (test)"); err != nil {
		t.Fatal(err)
	}

	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestConfinedServiceChild$", "-test.v")
	cmd.Dir = tr.Root
	cmd.Env = append(os.Environ(), confinedEnv+"="+string(b))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestConfinedServiceChild") {
		t.Fatalf("confined child: %v\n%s", err, out)
	}
	// What the confined service wrote is there.
	if _, _, err := ReadClockFile(filepath.Join(tr.Root, tr.Clock)); err != nil {
		t.Errorf("clock file after the child: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Root, tr.Marker)); err != nil {
		t.Errorf("marker after the child: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Root, tr.Approval)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the approval was not removed: %v", err)
	}
}

// TestConfinedServiceChild is TestConfinement's confined child (skipped
// otherwise).
func TestConfinedServiceChild(t *testing.T) {
	env := os.Getenv(confinedEnv)
	if env == "" {
		t.Skip("the confined child of TestConfinement")
	}
	var tr confinedTree
	if err := json.Unmarshal([]byte(env), &tr); err != nil {
		t.Fatal(err)
	}
	lg := newLogs(t)
	c := &testClock{}
	svc := &Service{
		PolicyPath: tr.Policy, RTC: tr.RTC, Marker: tr.Marker, Approval: tr.Approval, ClockFile: tr.Clock,
		Clock: c, Logf: lg.logf, Status: lg.note,
	}
	_, _ = time.Now().Zone()
	files, err := svc.Confinement()
	if err != nil {
		t.Fatalf("Confinement: %v", err)
	}
	if err := sandbox.RestrictFiles(files); err != nil {
		t.Fatalf("RestrictFiles(%s): %v", files, err)
	}
	t.Logf("confined: %s", files)

	// The first start: no marker, no clock file yet (its directory was
	// made by Confinement): the floor is the build floor.
	if svc.Synced() {
		t.Fatal("synced before any sync")
	}
	if lg.count("no clock file") != 1 {
		t.Error("loadFloor did not find the clock file missing")
	}
	// The policy, read at every poll.
	servers, nts, _ := svc.servers(context.Background())
	if !slices.Equal(servers, []string{"192.0.2.2"}) || nts != nil {
		t.Errorf("servers from the policy: %q (nts %v); want 192.0.2.2", servers, nts)
	}
	// The first sync: the marker and the floor written.
	svc.synced = true
	svc.mark(Result{Action: ActionStepped, Used: []string{"192.0.2.2"}})
	if !svc.saveFloor(true, "nts 192.0.2.2:4460") {
		t.Error("saveFloor: the clock file was not written")
	}
	// The hardware clock: opened (the stand-in is no RTC: the ioctl,
	// not the open, fails).
	for _, err := range []error{WriteRTC(svc.RTC, time.Now()), func() error { _, err := ReadRTC(svc.RTC); return err }()} {
		if !errors.Is(err, unix.ENOTTY) {
			t.Errorf("hardware clock: %v, want the ioctl refused (ENOTTY), not the open", err)
		}
	}
	// A refused jump, approved: the approval is read and removed.
	if by, ok := svc.takeApproval(); !ok || by != "root (test)" {
		t.Errorf("takeApproval: %q, %v", by, ok)
	}
	// The next start of the service in this boot: the marker read; the
	// floor of a start without one: the file read, a write's leftovers
	// removed.
	if !(&Service{Marker: svc.Marker, ClockFile: svc.ClockFile, Clock: c}).Synced() {
		t.Error("the marker was not read back")
	}
	leftover := filepath.Join(filepath.Dir(svc.ClockFile), ".tmp-clock-1")
	if err := os.WriteFile(leftover, []byte("half"), 0o644); err != nil {
		t.Fatalf("a temporary file beside the clock file: %v", err)
	}
	next := &Service{ClockFile: svc.ClockFile, Clock: c, Logf: lg.logf}
	next.loadFloor()
	if !strings.Contains(next.floorFrom, "the last known time") {
		t.Errorf("floor after a restart: %s, want the clock file's", next.floorFrom)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover was not removed: %v", err)
	}
	for _, l := range lg.lines {
		if strings.Contains(l, "permission denied") {
			t.Errorf("refused: %s", l)
		}
	}

	for _, r := range tr.refusals() {
		if err := r.do(); !errors.Is(err, os.ErrPermission) {
			t.Errorf("confined: %s: %v, want permission denied", r.what, err)
		}
	}
}

// Confinement makes the flags' paths absolute, leaves the empty ones
// out, creates the clock file's, the marker's and the approval's
// directories (apart here, unlike on the device), and
// names the directories, not the files, that are written by a rename.
func TestConfinementList(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	if err := os.MkdirAll("perm/policy", 0o755); err != nil {
		t.Fatal(err)
	}
	svc := &Service{PolicyPath: "perm/policy/applied.cbor", RTC: "/dev/rtc0", Marker: "run/m", Approval: "run/approve/a", ClockFile: "perm/timesync/clock"}
	f, err := svc.Confinement()
	if err != nil {
		t.Fatal(err)
	}
	want := sandbox.Files{
		Read:         []string{filepath.Join(root, "perm/policy"), "/etc"},
		ReadIfExists: []string{"/dev/rtc0"},
		Write:        []string{filepath.Join(root, "perm/timesync"), filepath.Join(root, "run"), filepath.Join(root, "run/approve")},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Confinement:\n got %+v\nwant %+v", f, want)
	}
	if svc.ClockFile != filepath.Join(root, "perm/timesync/clock") || svc.Marker != filepath.Join(root, "run/m") {
		t.Errorf("paths not made absolute: %q %q", svc.ClockFile, svc.Marker)
	}
	if st, err := os.Stat(filepath.Join(root, "perm/timesync")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("clock file's directory: %v, %v; want it made 0700", st, err)
	}

	f, err = (&Service{}).Confinement()
	if err != nil || !reflect.DeepEqual(f, sandbox.Files{Read: []string{"/etc"}}) {
		t.Errorf("no paths: %+v, %v; want /etc only", f, err)
	}
}
