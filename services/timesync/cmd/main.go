// Command otgate-timesync runs the time service (package timesyncd). On
// the appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-timesync link.
package main

import "github.com/otgate/otgate/services/timesync/timesyncd"

func main() { timesyncd.Main() }
