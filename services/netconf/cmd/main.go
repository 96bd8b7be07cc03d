// Command otgate-netconf runs the netconf service (package netconfd). On the
// appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-netconf link.
package main

import "github.com/otgate/otgate/services/netconf/netconfd"

func main() { netconfd.Main() }
