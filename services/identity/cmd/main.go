// Command otgate-identity runs the identity service (package identityd). On the
// appliance the same code runs from the otgate multi-call binary,
// through the /bin/otgate-identity link.
package main

import "github.com/otgate/otgate/services/identity/identityd"

func main() { identityd.Main() }
