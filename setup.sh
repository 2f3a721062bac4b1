#!/usr/bin/env bash
# Set up this machine for the SystemImager appliance and run the lab demo.
#   ./setup.sh                 install everything, then run the lab demo (needs root)
#   ./setup.sh --install-only  install everything, run nothing
# Idempotent: a second run only checks. Debian 12 (bookworm) or newer.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(
  # the appliance and its tools
  python3 python3-venv iproute2 curl util-linux kmod
  gcc libc6-dev   # the TFTP lock-step loop in C (services/tftp/lockstep.c)
  rsync busybox-static fdisk dosfstools e2fsprogs xfsprogs acl xorriso mtools
  pxelinux syslinux-common syslinux-efi ipxe grub-efi-amd64-bin grub-pc-bin grub-common
  # the lab: QEMU machines with PXE firmware
  qemu-system-x86 qemu-utils ipxe-qemu ovmf
  # the lab's fuller Debian golden client (vm-tests/test_e2e_debian.py)
  debootstrap zstd
  # peers and clients the tests and benchmarks measure against
  tftp-hpa atftp dnsmasq-base kea-dhcp4-server kea-admin isc-dhcp-server bind9-dnsutils
  libwrap0 chromium openssh-server openssh-client
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and the lab builds network namespaces)" >&2
  exit 2
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  # Packages such as isc-dhcp-server and kea would start daemons on this
  # machine's own network: forbid service starts while installing.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Installed daemons are only peers for tests and exports; never leave them serving.
for svc in isc-dhcp-server kea-dhcp4-server; do
  if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
done

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> installing the appliance into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# The TFTP transfer processes' per-block loop, compiled (without it they run the
# same loop in Python, slower). Rebuilt whenever its source is newer.
lockstep=services/tftp/_lockstep.so
if [ ! "$lockstep" -nt services/tftp/lockstep.c ]; then
  echo "==> building $lockstep"
  cc -O2 -Wall -Wextra -shared -fPIC -o "$lockstep" services/tftp/lockstep.c
fi

if [ "${1:-}" = "--install-only" ]; then
  echo "==> installed: .venv/bin/si"
  exit 0
fi
echo "==> running the lab demo"
exec .venv/bin/si lab demo "$@"
