#!/bin/sh
# test-summary.sh: pass `go test -v` output through and keep its exit
# status meaningful in a pipe (the caller checks ours).
set -u
tmp=$(mktemp)
tee "$tmp"
fails=$(grep -c -- '^--- FAIL' "$tmp" || true)
passes=$(grep -c -- '^--- PASS' "$tmp" || true)
status=0
grep -q '^FAIL' "$tmp" && status=1
rm -f "$tmp"
echo "integration: $passes passed, $fails failed"
exit $status
