package site

import (
	"sort"
	"strings"
)

// Protocols maps each known protocol name to its well-known TCP port
// (0: none, a port must be given).
var Protocols = map[string]uint16{
	"modbus": 502,
	"s7":     102,
	"enip":   44818,
	"dnp3":   20000,
	"opcua":  4840,
	"iec104": 2404,
	"mqtt":   1883,
	"http":   80,
	"https":  443,
	"ssh":    22,
	"telnet": 23,
	"vnc":    5900,
	"rdp":    3389,
	"tcp":    0,
}

func knownProtocols() string {
	names := make([]string, 0, len(Protocols))
	for p := range Protocols {
		names = append(names, p)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
