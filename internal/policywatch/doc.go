// Package policywatch is the clock of a service's reconcile loop from the
// applied policy file (segment, overlay, netconf): it says when to read
// the file again. That is when the file changed (noticed by polling its
// size, modification time and inode: site.Store replaces it by rename),
// when a reload is asked for (SIGHUP), and, for services that repair
// drift, every repair interval.
//
// The service marks the file's version just before it reads it
// (File.Mark), so a change made while it reads is noticed at the next
// poll; Loop.Run never reads the file itself and calls the service's sync
// on its own goroutine, one call at a time.
package policywatch
