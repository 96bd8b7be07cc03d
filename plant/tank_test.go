package plant

import (
	"math"
	"sync"
	"testing"
	"time"
)

// fakeClock is advanced by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func near(a, b float64) bool { return math.Abs(a-b) < 0.01 }

func TestTankProcess(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tank := NewTank(clk.now)
	if l := tank.Level(); l != 50 {
		t.Fatalf("initial level %v, want 50", l)
	}
	// Valve 20 % drains 0.6 %/s.
	clk.add(10 * time.Second)
	if l := tank.Level(); !near(l, 44) {
		t.Fatalf("after 10 s draining level %v, want 44", l)
	}
	// Pump on, valve closed: +2 %/s.
	tank.mu.Lock()
	tank.coils[CoilPump] = true
	tank.hold[HoldValve] = 0
	tank.mu.Unlock()
	clk.add(5 * time.Second)
	if l := tank.Level(); !near(l, 54) {
		t.Fatalf("after 5 s pumping level %v, want 54", l)
	}
	// Overfill clamps at 100 % and raises the high alarm.
	clk.add(60 * time.Second)
	tank.mu.Lock()
	tank.advance()
	lvl, high, low, pumpOn := tank.inputRegister(RegLevel), tank.bit(false, InputHighAlarm), tank.bit(false, InputLowAlarm), tank.bit(false, InputPumpOn)
	tank.mu.Unlock()
	if lvl != 1000 || !high || low || !pumpOn {
		t.Fatalf("full tank: level %d high %t low %t pump %t", lvl, high, low, pumpOn)
	}
	// Auto mode with the valve 30 % open: the pump cycles between the
	// setpoints (20 % .. 80 %), never leaving that band by more than a step.
	tank.mu.Lock()
	tank.coils[CoilAuto] = true
	tank.hold[HoldValve] = 30 // 0.9 %/s out, pump nets +1.1 %/s
	tank.mu.Unlock()
	clk.add(30 * time.Second) // drain from 100 % into the band
	minL, maxL := 100.0, 0.0
	for i := 0; i < 600; i++ {
		clk.add(time.Second)
		l := tank.Level()
		minL, maxL = min(minL, l), max(maxL, l)
	}
	if minL < 19 || maxL > 81 || maxL-minL < 50 {
		t.Fatalf("auto mode kept level in %.1f..%.1f, want about 20..80", minL, maxL)
	}
	// Empty: the low alarm.
	tank.mu.Lock()
	tank.coils[CoilAuto], tank.coils[CoilPump] = false, false
	tank.mu.Unlock()
	clk.add(200 * time.Second)
	tank.mu.Lock()
	tank.advance()
	defer tank.mu.Unlock()
	if tank.level != 0 || !tank.bit(false, InputLowAlarm) || tank.outflow() != 0 {
		t.Fatalf("empty tank: level %v low alarm %t outflow %v", tank.level, tank.bit(false, InputLowAlarm), tank.outflow())
	}
}
