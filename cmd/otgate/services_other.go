//go:build !linux

package main

// serviceMains is empty off Linux: the gate's services run only on the
// appliance (and on Linux development hosts).
var serviceMains = map[string]func(){}
