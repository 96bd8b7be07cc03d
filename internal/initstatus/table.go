package initstatus

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints s as people read it: a header block and one row per
// service. `otgate status` and the test service print exactly this.
func WriteTable(w io.Writer, s *Status) error {
	var b strings.Builder
	ready := "no"
	if s.Ready {
		ready = "yes"
	}
	fmt.Fprintf(&b, "host      %s (board %s, image %s)\n", s.Hostname, s.Board, short(s.ImageID))
	fmt.Fprintf(&b, "up        %s (since %s), ready: %s\n", round(s.Uptime), s.BootTime.UTC().Format(time.RFC3339), ready)
	if s.ConfigError != "" {
		fmt.Fprintf(&b, "CONFIG ERROR: %s\n", s.ConfigError)
	}
	if s.FirewallError != "" {
		fmt.Fprintf(&b, "FIREWALL ERROR: %s\n", s.FirewallError)
	}
	fmt.Fprintf(&b, "init      rss %.1f MiB\n", float64(s.InitRSS)/(1<<20))
	if s.Measurement != "" {
		fmt.Fprintf(&b, "measured  PCR 15 %s\n", short(s.Measurement))
	} else {
		b.WriteString("measured  no (no TPM)\n")
	}
	if s.Perm.Warning != "" {
		fmt.Fprintf(&b, "perm      %s, boot %d: WARNING: %s\n", s.Perm.FSType, s.Perm.Boots, s.Perm.Warning)
	} else {
		size := ""
		if s.Perm.Size > 0 {
			size = ", " + sizeText(s.Perm.Size)
		}
		fmt.Fprintf(&b, "perm      %s (%s%s), boot %d\n", s.Perm.Device, s.Perm.FSType, size, s.Perm.Boots)
		if s.Perm.Grown != "" {
			fmt.Fprintf(&b, "          %s this boot\n", s.Perm.Grown)
		}
		if s.Perm.PreviousRun != "" {
			fmt.Fprintf(&b, "          previous run: %s\n", s.Perm.PreviousRun)
		}
	}
	switch {
	case s.Watchdog.Device == "":
		b.WriteString("watchdog  none\n")
	default:
		pet := "petting"
		if !s.Watchdog.Petting {
			pet = "NOT petting"
		}
		timeout := s.Watchdog.Timeout.String()
		if s.Watchdog.Timeout <= 0 {
			timeout = "unknown" // the device reported none (init pets every 1/3 s)
		}
		fmt.Fprintf(&b, "watchdog  %s, timeout %s, %s", s.Watchdog.Device, timeout, pet)
		if s.Watchdog.Note != "" {
			fmt.Fprintf(&b, " (%s)", s.Watchdog.Note)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tLAST EXIT\tSINCE\tNOTE")
	for _, sv := range s.Services {
		name := sv.Name
		if sv.Critical {
			name += "*"
		}
		pid := "-"
		if sv.PID > 0 {
			pid = fmt.Sprint(sv.PID)
		}
		last := sv.LastExit
		if last == "" {
			last = "-"
		}
		since := "-"
		if !sv.Since.IsZero() {
			since = sv.Since.UTC().Format("15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", name, sv.State, pid, sv.Restarts, last, since, sv.Reason)
	}
	tw.Flush()
	b.WriteString("(* critical)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func short(id string) string {
	if id == "" {
		return "-"
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// sizeText is "256 MiB" or "31.2 GiB".
func sizeText(n int64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
