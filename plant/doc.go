// Package plant is the demo plant: a tank simulated over time and a
// Modbus/TCP server (unit 1 by default) that exposes it.
//
// Register map (addresses are 0-based protocol addresses):
//
//	coils              0 pump on/off           1 auto mode (pump follows the setpoints)
//	discrete inputs    0 high-level alarm      1 low-level alarm      2 pump running
//	input registers    0 level (0.1 %, 0-1000) 1 inflow (0.1 %/s)    2 outflow (0.1 %/s)
//	holding registers  0 valve opening (%, 0-100)
//	                   1 high setpoint (0.1 %) 2 low setpoint (0.1 %) 3 high alarm level (0.1 %)
//	                   4-99 general purpose (recipe) registers, any value
//
// The tank fills at 2 %/s while the pump runs and drains through the valve
// at 0.03 %/s per % of opening. In auto mode the pump starts below the low
// setpoint and stops above the high one. Tables hold 16 coils, 16 discrete
// inputs, 16 input registers and 100 holding registers; other addresses
// answer exception 02, out-of-range values exception 03, other units
// exception 0B, unsupported functions exception 01.
package plant
