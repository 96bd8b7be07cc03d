package main

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// inputEventSize is sizeof(struct input_event) on 64-bit kernels: a
// struct timeval (16 bytes), type, code (2 bytes each), value (4 bytes).
const inputEventSize = 24

// watchPowerButton reads every /dev/input/event* device and calls press on
// a KEY_POWER press (the ACPI power button, QEMU system_powerdown). Devices
// appear while drivers probe, so it looks again for a while.
func watchPowerButton(log *logger, inputDir string, press func()) {
	var mu sync.Mutex
	seen := map[string]bool{}
	scan := func() {
		paths, _ := filepath.Glob(filepath.Join(inputDir, "event*"))
		for _, p := range paths {
			mu.Lock()
			old := seen[p]
			seen[p] = true
			mu.Unlock()
			if old {
				continue
			}
			f, err := os.Open(p)
			if err != nil {
				log.Printf("power button: %s: %v", p, err)
				continue
			}
			go func() {
				defer f.Close()
				guard(log, "power button "+p, func() { readKeys(f, press) })
			}()
		}
	}
	go guard(log, "power button scan", func() {
		for i := 0; i < 30; i++ {
			scan()
			time.Sleep(time.Second)
		}
	})
}

// readKeys calls press for every KEY_POWER press event read from r.
func readKeys(r io.Reader, press func()) {
	buf := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		typ := binary.LittleEndian.Uint16(buf[16:])
		code := binary.LittleEndian.Uint16(buf[18:])
		value := int32(binary.LittleEndian.Uint32(buf[20:]))
		if typ == evKey && code == keyPower && value == 1 {
			press()
		}
	}
}
