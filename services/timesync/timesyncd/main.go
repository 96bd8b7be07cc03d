// Package timesyncd is the main of otgate-timesync, the time service: it
// keeps the gate's clock (and hardware clock) in step with the NTS
// servers of the applied site policy's uplink.nts, else the NTP servers
// of its uplink.ntp or of the DHCP lease (package timesync).
// It tells init it is ready at once (the boot does not wait for a sync)
// and reports its state as its status note in init's table (`otgate
// status`). SIGHUP polls at once; SIGTERM stops.
package timesyncd

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/services/timesync"
	"github.com/otgate/otgate/site"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func Main() {
	var servers listFlag
	policy := flag.String("policy", filepath.Join(site.DefaultStateDir, site.AppliedFile), "applied site policy: its uplink.nts (NTS) or uplink.ntp names the servers (read at every poll)")
	netconfSocket := flag.String("netconf", netconf.DefaultSocket, "netconf service socket, asked for the DHCP lease's NTP servers when the site policy names none (empty: never)")
	flag.Var(&servers, "server", "development override: query this plain NTP server (host or host:port) instead of the site policy's NTS or NTP servers; repeatable")
	rtc := flag.String("rtc", timesync.DefaultRTC, "hardware clock device written after a sync (empty: none)")
	marker := flag.String("marker", timesync.DefaultMarker, "file (on a tmpfs) recording that the clock was synchronised this boot: after it, only slews")
	clockFile := flag.String("clock-file", timesync.DefaultClockFile, "file (on persistent storage) keeping the clock's floor, the last known-good time: a clock behind it at start is set to it, and before the first sync no server may set it back past it (empty: no floor)")
	approval := flag.String("step-approval", timesync.DefaultApproval, "file where otgate time step approves one step past the panic threshold (empty: never)")
	pollMin := flag.Duration("poll-min", timesync.DefaultPollMin, "shortest poll interval")
	pollMax := flag.Duration("poll-max", timesync.DefaultPollMax, "longest poll interval")
	retryMin := flag.Duration("retry-min", timesync.DefaultRetryMin, "first retry after a failed poll (doubles up to -retry-max)")
	retryMax := flag.Duration("retry-max", timesync.DefaultRetryMax, "longest wait between retries after failed polls")
	timeout := flag.Duration("timeout", timesync.DefaultTimeout, "how long a query waits for its server")
	step := flag.Duration("step-threshold", timesync.DefaultStepThreshold, "the first sync of a boot steps the clock when the offset is larger, else slews")
	panicAt := flag.Duration("panic-threshold", timesync.DefaultPanicThreshold, "after the first sync, an offset larger than this is refused (never stepped)")
	agree := flag.Duration("agreement", timesync.DefaultAgreement, "how far apart servers may be and still agree")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "otgate-timesync: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	// It runs as root for the clock, the RTC and its files, and reads
	// the network: it keeps CAP_SYS_TIME alone (internal/sandbox).
	if err := sandbox.LockDown(unix.CAP_SYS_TIME); err != nil {
		fmt.Fprintf(os.Stderr, "otgate-timesync: %v\n", err)
		os.Exit(1)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	svc := &timesync.Service{
		PolicyPath: *policy, Servers: servers, RTC: *rtc, Marker: *marker, Approval: *approval, ClockFile: *clockFile,
		PollMin: *pollMin, PollMax: *pollMax, RetryMin: *retryMin, RetryMax: *retryMax, Timeout: *timeout,
		StepThreshold: *step, PanicThreshold: *panicAt, Agreement: *agree,
		Logf:   logger.Printf,
		Status: func(note string) { _ = ready.Status(note) },
	}
	// It parses what the uplink's servers send (NTP, NTS's TLS): from
	// here it may open only its own files, the policy, the hardware clock
	// and /etc (timesync.Service.Confinement), not the TPM, another
	// service's state or a binary. The time zone is loaded first (the
	// log's timestamps; TZ may name a zone under /usr/share/zoneinfo).
	_, _ = time.Now().Zone()
	files, err := svc.Confinement()
	if err == nil {
		err = sandbox.RestrictFiles(files)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-timesync: %v: refusing to run unconfined\n", err)
		os.Exit(1)
	}
	logger.Printf("timesync: files confined: %s", files)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	now := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case now <- struct{}{}:
			default:
			}
		}
	}()

	if *netconfSocket != "" {
		svc.LeaseNTP = timesync.NetconfLease(*netconfSocket)
	}
	hw := "not read"
	if svc.RTC != "" {
		if t, err := timesync.ReadRTC(svc.RTC); err == nil {
			hw = t.Format(time.RFC3339)
		} else {
			hw = err.Error()
		}
	}
	logger.Printf("timesync: starting: clock %s, hardware clock %s", time.Now().UTC().Format(time.RFC3339), hw)
	// Ready at once: nothing waits for the clock (and the boot must not).
	if err := ready.Notify(); err != nil {
		logger.Printf("timesync: %v", err)
	}
	_ = svc.Run(ctx, now)
	svc.Stop()
	logger.Printf("timesync: stopped")
}
