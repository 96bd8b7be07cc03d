#!/bin/sh
# test-summary.sh: pass `go test -v` output through and keep its exit
# status meaningful in a pipe (the caller checks ours). A skipped test is
# a failure here: `make test` installs every prerequisite and runs as
# root, so a QEMU test that skipped itself did not test anything.
set -u
tmp=$(mktemp)
tee "$tmp"
fails=$(grep -c -- '^--- FAIL' "$tmp" || true)
passes=$(grep -c -- '^--- PASS' "$tmp" || true)
skips=$(grep -c -- '^ *--- SKIP' "$tmp" || true)
status=0
grep -q '^FAIL' "$tmp" && status=1
if [ "$skips" != 0 ]; then
	grep -A1 -- '^ *--- SKIP' "$tmp"
	status=1
fi
rm -f "$tmp"
echo "integration: $passes passed, $fails failed, $skips skipped"
exit $status
