#!/bin/sh
# install-deps.sh: everything `make run` and `make test` need on a fresh
# Debian 12 machine, as root. Idempotent: installs only what is missing.
set -eu

PKGS="qemu-system-x86 qemu-system-arm qemu-utils swtpm swtpm-tools nftables ovmf
qemu-efi-aarch64 systemd-boot-efi iproute2 e2fsprogs dnsmasq oathtool mbpoll tshark
python3-pymodbus python3-serial python3-serial-asyncio socat haproxy rsyslog rsyslog-gnutls openssl curl xz-utils kmod
util-linux kea-dhcp4-server dosfstools chrony gdisk gcc libc6-dev"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to install:$missing" >&2
		exit 1
	fi
	echo "install-deps: apt-get install$missing"
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture; answer no.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# Go modules (pinned in go.mod/go.sum) and the linter.
go mod download
if ! command -v staticcheck >/dev/null 2>&1; then
	d=$(mktemp -d)
	(cd "$d" && printf 'module sc\ngo 1.26.0\n' > go.mod &&
		go get honnef.co/go/tools/cmd/staticcheck@v0.8.2 >/dev/null 2>&1 &&
		go build -mod=mod -o /usr/local/bin/staticcheck honnef.co/go/tools/cmd/staticcheck)
	rm -rf "$d"
fi
echo "install-deps: ok"
