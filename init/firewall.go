package main

// installBaseline installs the baseline deny-all nftables ruleset. init
// calls it once, after the kernel modules are loaded and before any service
// starts (so before any interface is brought up). It is nil until the
// segmentation code provides it from a file of this package:
//
//	func init() { installBaseline = segment.InstallBaseline }
//
// If it fails, init logs it loudly and goes on: nothing has opened the
// network, so everything stays denied.
var installBaseline func() error
