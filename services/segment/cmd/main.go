// Command otgate-segment runs the segment service (package segmentd). On the
// appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-segment link.
package main

import "github.com/otgate/otgate/services/segment/segmentd"

func main() { segmentd.Main() }
