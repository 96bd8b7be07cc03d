package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTornTailAtEveryOffset cuts the newest file at every byte of its last
// record (and damages it in the other ways a power cut can): Verify keeps
// every earlier record, Open truncates, records the recovery and carries on.
func TestTornTailAtEveryOffset(t *testing.T) {
	src := t.TempDir()
	key := newKey(t)
	w := openLog(t, src, key)
	writeSession(t, w, "s", 2)
	if _, err := w.Append(context.Background(), Event{Type: "refusal", User: "bob", Reason: "outside the time window"}); err != nil {
		t.Fatal(err)
	}
	// Close first: checkpoints run in the background (one is kicked by the
	// session end), so the last record is whatever the closed file ends
	// with, read back from the file itself.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	full := mustRead(t, fileOf(t, src, 0))
	es := entries(t, src)
	le := es[len(es)-1]
	last := Position{File: le.File, Offset: le.Offset, Seq: le.Record.Seq}
	full = full[:len(full):len(full)]
	if int64(len(full)) <= last.Offset {
		t.Fatal("bad layout")
	}
	check := func(t *testing.T, content []byte, wantTorn bool) {
		dir := copyDir(t, src)
		mustWrite(t, fileOf(t, dir, 0), content)
		rep, err := Verify(dir, Trust{ChainOnly: true})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.LastSeq != last.Seq-1 || (rep.Torn != nil) != wantTorn {
			t.Fatalf("want records through seq %d, torn %v; got %+v torn %v", last.Seq-1, wantTorn, rep, rep.Torn)
		}
		w, err := Open(dir, key, WithLogID("test-log"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if (w.Recovered() != nil) != wantTorn {
			t.Fatalf("Recovered = %v, want torn %v", w.Recovered(), wantTorn)
		}
		// Torn or not, the log did not end sealed: the reopen says so.
		if !strings.HasPrefix(w.Recovery(), "recovered after unclean shutdown: ") ||
			wantTorn != strings.Contains(w.Recovery(), fmt.Sprintf("truncated %d bytes at offset %d", int64(len(content))-last.Offset, last.Offset)) {
			t.Fatalf("Recovery() = %q (torn %v)", w.Recovery(), wantTorn)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err = Verify(dir, Trust{PublicKey: &key.PublicKey, RequireSealed: true})
		if err != nil || rep.Torn != nil || rep.End != EndSealed || len(rep.Recoveries) != 1 {
			t.Fatalf("after recovery: %+v %v", rep, err)
		}
		es := entries(t, dir)
		ev, ok := es[last.Seq].Body.(Event)
		if !ok || ev.Type != EventLogRecovered || ev.Reason != w.Recovery() {
			t.Fatalf("record %d after recovery is %+v, want the log-recovered event", last.Seq, es[last.Seq].Body)
		}
	}
	for cut := last.Offset; cut < int64(len(full)); cut++ {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) { check(t, full[:cut], cut > last.Offset) })
	}
	t.Run("last record fails CRC", func(t *testing.T) {
		b := append([]byte(nil), full...)
		b[len(b)-2] ^= 0xff
		check(t, b, true)
	})
	t.Run("zero-filled tail", func(t *testing.T) {
		b := append(append([]byte(nil), full[:last.Offset]...), make([]byte, 300)...)
		check(t, b, true)
	})
	t.Run("bad CRC before the last record is corruption", func(t *testing.T) {
		es := entries(t, src)
		prev := es[last.Seq-1]
		b := append([]byte(nil), full...)
		b[prev.Offset+prev.Size-1] ^= 0xff
		dir := copyDir(t, src)
		mustWrite(t, fileOf(t, dir, 0), b)
		_, err := Verify(dir, Trust{ChainOnly: true})
		wantProblem(t, err, ErrCRC, FileName(0), -1)
		if _, err := Open(dir, key, WithLogID("test-log")); !errors.Is(err, ErrCRC) {
			t.Fatalf("Open = %v, want ErrCRC", err)
		}
	})
}

const crashChildEnv = "OTGATE_AUDIT_CRASH_CHILD"

// TestCrashChild is the child of TestKillWhileAppending: it appends in a
// loop and prints each acknowledged seq.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestKillWhileAppending")
	}
	keyPEM := mustRead(t, dir+".key")
	key := parseTestKey(t, keyPEM)
	w, err := Open(dir, key, WithLogID("test-log"), WithMaxFileSize(8<<10), WithCheckpointEvery(20))
	if err != nil {
		fmt.Println("open-error", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		var b Body = Payload{SessionID: "crash", Direction: ToAsset, Bytes: 4, Raw: []byte{1, 2, 3, 4}}
		if i%5 == 0 {
			b = SessionStart{SessionID: fmt.Sprint("c", i), User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r"}
		}
		pos, err := w.Append(context.Background(), b)
		if err != nil {
			fmt.Println("append-error", err)
			os.Exit(4)
		}
		fmt.Fprintln(out, pos.Seq)
		out.Flush()
	}
}

// TestKillWhileAppending kills a process appending durably at random
// moments; every time, the log opens and verifies, and holds every record
// the child saw acknowledged.
func TestKillWhileAppending(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop in -short mode")
	}
	dir := t.TempDir() + "/log"
	key := newKey(t)
	mustWrite(t, dir+".key", marshalTestKey(t, key))
	acked := int64(-1)
	for round := 0; round < 12; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it append a random while after its first ack.
		kill := time.After(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		first := true
	loop:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break loop
				}
				n, err := strconv.ParseInt(l, 10, 64)
				if err != nil {
					t.Fatalf("child: %s", l)
				}
				if n > acked {
					acked = n
				}
				if first {
					first = false
				}
			case <-kill:
				if !first {
					cmd.Process.Kill()
					kill = nil
				} else {
					kill = time.After(5 * time.Millisecond)
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatal("child made no progress in 60 s")
			}
		}
		cmd.Wait()
		rep, err := Verify(dir, Trust{PublicKey: &key.PublicKey, LogID: "test-log"})
		if err != nil {
			t.Fatalf("round %d: Verify after kill: %v", round, err)
		}
		if int64(rep.LastSeq) < acked {
			t.Fatalf("round %d: log ends at seq %d but seq %d was acknowledged", round, rep.LastSeq, acked)
		}
		t.Logf("round %d: %d records in %d files, acked through %d, unsigned tail %d, torn %v", round, rep.Records, rep.Files, acked, rep.Unsigned, rep.Torn)
	}
}
