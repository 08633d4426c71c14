#!/bin/sh
# Host packages the virtmesh tests need (HOST.md): dnsmasq, nftables and
# iproute2 for the network driver (and busybox, whose udhcpc plays the
# DHCP client in its tests), and QEMU 10.0.2 from bookworm-backports.
# bookworm's own qemu-system-x86 (7.2) conflicts with the backports
# qemu-utils the machines ship, so the suite is added and QEMU installed
# from it. Idempotent: safe to run on every CI run.
set -eu

SOURCES=/etc/apt/sources.list.d/backports.sources

if [ "$(id -u)" -ne 0 ]; then
    echo "install-host-deps.sh: must run as root (apt-get)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# The network driver's tools, from bookworm itself. Done first because the
# QEMU part below ends the script early when QEMU is already there.
if ! command -v dnsmasq >/dev/null 2>&1 \
    || ! command -v nft >/dev/null 2>&1 \
    || ! command -v ip >/dev/null 2>&1 \
    || ! command -v busybox >/dev/null 2>&1; then
    apt-get update
    apt-get install -y dnsmasq-base nftables iproute2 busybox
fi

if ! grep -qs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/* ; then
    cat > "$SOURCES" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# libvirt 11.3's RelaxNG schemas (Debian's libvirt-common, 1.2 MB, no
# daemon) and two validators for the schema tests of the XML we emit:
# jing (fast on every document) and xmllint.
if ! command -v xmllint >/dev/null 2>&1 \
    || ! command -v jing >/dev/null 2>&1 \
    || [ ! -f /usr/share/libvirt/schemas/domain.rng ]; then
    apt-get update
    apt-get install -y libxml2-utils
    apt-get install -y --no-install-recommends jing
    apt-get install -y -t bookworm-backports libvirt-common
fi

# UEFI firmware with QEMU's firmware descriptors (/usr/share/qemu/firmware):
# firmware autoselection (<os firmware='efi'>) and the UEFI guest test.
if [ ! -f /usr/share/qemu/firmware/60-edk2-x86_64.json ]; then
    apt-get update
    apt-get install -y ovmf
fi

# Skip the (slow) apt run when the right QEMU is already there.
if command -v qemu-system-x86_64 >/dev/null 2>&1 \
    && qemu-system-x86_64 --version | grep -q 'version 10\.'; then
    exit 0
fi

apt-get update
apt-get install -y -t bookworm-backports qemu-system-x86
