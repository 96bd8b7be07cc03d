package plant

import (
	"sync"
	"time"
)

// Table sizes of the plant's device.
const (
	NumCoils          = 16
	NumDiscreteInputs = 16
	NumInputRegisters = 16
	NumHolding        = 100
)

// Addresses of the register map (see the package doc).
const (
	CoilPump        = 0
	CoilAuto        = 1
	InputHighAlarm  = 0
	InputLowAlarm   = 1
	InputPumpOn     = 2
	RegLevel        = 0
	RegInflow       = 1
	RegOutflow      = 2
	HoldValve       = 0
	HoldHighSet     = 1
	HoldLowSet      = 2
	HoldAlarmLevel  = 3
	lowAlarmLevel   = 50 // 5 %, in 0.1 %
	pumpRate        = 2.0
	valveRatePerPct = 0.03
	maxStep         = 100 * time.Millisecond
)

// Tank is the simulated process. Its methods are safe for concurrent use.
type Tank struct {
	mu    sync.Mutex
	now   func() time.Time
	last  time.Time
	level float64 // percent
	coils [NumCoils]bool
	hold  [NumHolding]uint16
}

// NewTank returns a tank at 50 % with the pump off, the valve 20 % open,
// setpoints 80 % / 20 % and the high alarm at 95 %. now is the clock
// (time.Now if nil).
func NewTank(now func() time.Time) *Tank {
	if now == nil {
		now = time.Now
	}
	t := &Tank{now: now, level: 50}
	t.last = now()
	t.hold[HoldValve] = 20
	t.hold[HoldHighSet] = 800
	t.hold[HoldLowSet] = 200
	t.hold[HoldAlarmLevel] = 950
	return t
}

// advance integrates the process up to now; t.mu is held.
func (t *Tank) advance() {
	now := t.now()
	for t.last.Before(now) {
		dt := min(now.Sub(t.last), maxStep)
		t.last = t.last.Add(dt)
		if t.coils[CoilAuto] {
			lvl := t.level * 10
			switch {
			case lvl < float64(t.hold[HoldLowSet]):
				t.coils[CoilPump] = true
			case lvl > float64(t.hold[HoldHighSet]):
				t.coils[CoilPump] = false
			}
		}
		t.level += (t.inflow() - t.outflow()) * dt.Seconds()
		t.level = min(max(t.level, 0), 100)
	}
}

func (t *Tank) inflow() float64 {
	if t.coils[CoilPump] {
		return pumpRate
	}
	return 0
}

func (t *Tank) outflow() float64 {
	if t.level <= 0 {
		return 0
	}
	return float64(t.hold[HoldValve]) * valveRatePerPct
}

// Level returns the level in percent.
func (t *Tank) Level() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance()
	return t.level
}

// readBits fills out with count bits of table coils (true) or discrete
// inputs from addr; t.mu is held.
func (t *Tank) bit(coils bool, addr int) bool {
	if coils {
		return t.coils[addr]
	}
	lvl := uint16(t.level*10 + 0.5)
	switch addr {
	case InputHighAlarm:
		return lvl >= t.hold[HoldAlarmLevel]
	case InputLowAlarm:
		return lvl <= lowAlarmLevel
	case InputPumpOn:
		return t.coils[CoilPump]
	}
	return false
}

// inputRegister returns input register addr; t.mu is held.
func (t *Tank) inputRegister(addr int) uint16 {
	switch addr {
	case RegLevel:
		return uint16(t.level*10 + 0.5)
	case RegInflow:
		return uint16(t.inflow()*10 + 0.5)
	case RegOutflow:
		return uint16(t.outflow()*10 + 0.5)
	}
	return 0
}

// checkHolding says whether v may be written to holding register addr.
func checkHolding(addr int, v uint16) bool {
	switch addr {
	case HoldValve:
		return v <= 100
	case HoldHighSet, HoldLowSet, HoldAlarmLevel:
		return v <= 1000
	}
	return true
}
