package proxyd

// The appliance has no /usr/share/zoneinfo: grants name IANA time zones
// (Europe/Berlin), so the proxy carries Go's copy of the database.
import _ "time/tzdata"
