// Command otgate-overlay runs the overlay service (package overlayd). On the
// appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-overlay link.
package main

import "github.com/otgate/otgate/services/overlay/overlayd"

func main() { overlayd.Main() }
