// Command otgate-proxy runs the proxy service (package proxyd). On the
// appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-proxy link.
package main

import "github.com/otgate/otgate/services/proxy/proxyd"

func main() { proxyd.Main() }
