#!/usr/bin/env bash
# Set up this machine for the SystemImager appliance and run the lab demo.
#   ./setup.sh                   lab profile: everything, then run the lab demo (needs root)
#   ./setup.sh --install-only    lab profile, run nothing: what the tests need
#   ./setup.sh --appliance       appliance profile only: what `si up` and the si commands need at
#                                run time (a real install server, the Vagrantfile), no QEMU or peers
#   ./setup.sh --print-packages appliance|lab   list a profile's Debian packages and exit
# Idempotent: a second run only checks. Debian 12 (bookworm) or 13 (trixie).
# Which package provides each program the code runs: services/debian_packages.py
# (tests/test_debian_packages.py checks that these lists cover it).
set -euo pipefail
cd "$(dirname "$0")"

APPLIANCE_PACKAGES=(
  python3 python3-venv iproute2 curl util-linux mount kmod zstd
  gcc libc6-dev   # the TFTP lock-step loop in C (services/tftp/lockstep.c)
  rsync openssh-client
  # installing many machines at once: pack, swarm (tracker, seeder) and multicast
  mktorrent opentracker aria2 ctorrent udpcast
  # the boot image (si mkbootimage) and boot media (si mkautoinstallcd)
  busybox-static fdisk dosfstools e2fsprogs xfsprogs acl xorriso mtools
  # the boot root (si mkbootserver): loaders from Debian's packages
  pxelinux syslinux-common syslinux-efi ipxe grub-efi-amd64-bin grub-efi-amd64-signed shim-signed grub-pc-bin
  grub-common grub2-common
)
LAB_PACKAGES=(
  # QEMU machines with PXE firmware
  qemu-system-x86 qemu-utils ipxe-qemu ovmf procps
  # the lab's fuller Debian golden client (vm-tests/test_e2e_debian.py)
  debootstrap
  # peers and clients the tests and benchmarks measure against
  tftp-hpa atftp dnsmasq-base kea-dhcp4-server kea-admin isc-dhcp-server bind9-dnsutils
  libwrap0 chromium chromium-driver openssh-server
)

profile=lab run_demo=1
case "${1:-}" in
  --install-only) run_demo=0; shift ;;
  --appliance) profile=appliance run_demo=0; shift ;;
  --print-packages)
    case "${2:-}" in
      appliance) echo "${APPLIANCE_PACKAGES[@]}" ;;
      lab) echo "${APPLIANCE_PACKAGES[@]}" "${LAB_PACKAGES[@]}" ;;
      *) echo "setup.sh: --print-packages appliance|lab" >&2; exit 2 ;;
    esac
    exit 0 ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
packages=("${APPLIANCE_PACKAGES[@]}")
[ "$profile" = lab ] && packages+=("${LAB_PACKAGES[@]}")

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and the lab builds network namespaces)" >&2
  exit 2
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages ($profile profile): ${missing[*]}"
  # Packages such as isc-dhcp-server and kea would start daemons on this
  # machine's own network: forbid service starts while installing.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/tmp/si-setup-apt.log 2>&1; then
    tail -n 20 /tmp/si-setup-apt.log >&2
    echo "setup.sh: apt-get install failed (whole log: /tmp/si-setup-apt.log)" >&2
    exit 1
  fi
fi
# Installed daemons are only peers for tests and exports; never leave them serving.
for svc in isc-dhcp-server kea-dhcp4-server; do
  if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
done

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
extras=''
[ "$profile" = lab ] && extras='[test]'
echo "==> installing the appliance into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
# The TFTP transfer processes' per-block loop, compiled (without it they run the
# same loop in Python, slower). Rebuilt whenever its source is newer.
lockstep=services/tftp/_lockstep.so
if [ ! "$lockstep" -nt services/tftp/lockstep.c ]; then
  echo "==> building $lockstep"
  cc -O2 -Wall -Wextra -shared -fPIC -o "$lockstep" services/tftp/lockstep.c
fi

# Shell completion and the manual page, generated from the commands' parser.
if [ -d /etc/bash_completion.d ] || mkdir -p /etc/bash_completion.d 2>/dev/null; then
  .venv/bin/si completion bash > /etc/bash_completion.d/si
fi
.venv/bin/si manpage --output /usr/local/share/man/man1/si.1 >/dev/null

if [ "$run_demo" = 0 ]; then
  echo "==> installed ($profile profile): .venv/bin/si"
  exit 0
fi
echo "==> running the lab demo"
exec .venv/bin/si lab demo "$@"
