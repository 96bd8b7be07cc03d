//go:build linux

package main

import (
	"github.com/otgate/otgate/services/identity/identityd"
	"github.com/otgate/otgate/services/netconf/netconfd"
	"github.com/otgate/otgate/services/overlay/overlayd"
	"github.com/otgate/otgate/services/proxy/proxyd"
	"github.com/otgate/otgate/services/segment/segmentd"
	"github.com/otgate/otgate/services/timesync/timesyncd"
)

// serviceMains are the gate's services built into this binary. The
// appliance image ships one Go binary, /bin/otgate, and links each
// service's name to it (/bin/otgate-segment -> otgate, ...): main runs
// the service its name says. One binary instead of six keeps the
// initramfs small and lets every service share one copy of the Go
// runtime and libraries in memory (and, on an emulated CPU, one
// translation of their code), which is most of a boot's CPU time.
var serviceMains = map[string]func(){
	"otgate-identity": identityd.Main,
	"otgate-netconf":  netconfd.Main,
	"otgate-overlay":  overlayd.Main,
	"otgate-proxy":    proxyd.Main,
	"otgate-segment":  segmentd.Main,
	"otgate-timesync": timesyncd.Main,
}
