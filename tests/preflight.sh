#!/usr/bin/env bash
# Checks what the README's two commands need before either installs anything, and fails
# fast with one line per missing piece (exit status 2):
#
#   bash tests/preflight.sh tests    what tests/run.sh needs (called by it)
#   bash tests/preflight.sh boot     what `tests/lab/lab.sh boot` needs (called by it)
#
# Both need Debian's apt-get and dpkg, the Rust toolchain (cargo, rustc 1.85 or later) and
# io_uring. Installing the lab's tools needs root. The tests need /dev/kvm in CI (outside
# CI the KVM tests say SKIPPED); a direct boot (a CPU with vmx/svm) needs read-write access
# to /dev/kvm (root or the kvm group); without it the boot goes through the nested lab.
# A boot needs root only while the lab is not set up (RINGVISOR_LAB_READY=1 from lab.sh).
set -uo pipefail

MIN_RUST=1.85
mode=${1:-}
case $mode in tests | boot) ;; *) echo "usage: bash tests/preflight.sh tests|boot" >&2; exit 2 ;; esac

missing=()
need() { missing+=("$*"); }

# Under sudo, root's secure_path hides a per-user rustup.
under_sudo_hint() {
  [ -n "${SUDO_USER:-}" ] || return 0
  printf ' (under sudo a per-user rustup is not on root'"'"'s PATH: sudo env "PATH=$PATH" bash ...)'
}

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  need "Debian's apt-get and dpkg: the set-up takes its tools, kernels and QEMU from Debian 12 or 13"
fi

if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  need "the Rust toolchain (cargo and rustc $MIN_RUST or later, e.g. from rustup.rs)$(under_sudo_hint)"
else
  version=$(rustc --version 2>/dev/null | awk '{ print $2 }')
  oldest=$(printf '%s\n%s\n' "$MIN_RUST" "${version%%-*}" | sort -V | head -n 1)
  if [ -z "$version" ] || [ "$oldest" != "$MIN_RUST" ]; then
    need "rustc $MIN_RUST or later (found ${version:-none}: rustup update stable)"
  fi
fi

# Linux 6.6+: 2 refuses io_uring to everyone, 1 to all but root and kernel.io_uring_group.
disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)
if [ "$disabled" = 2 ]; then
  need "io_uring, which kernel.io_uring_disabled=2 turns off: sysctl kernel.io_uring_disabled=0"
elif [ "$disabled" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  group=$(cat /proc/sys/kernel/io_uring_group 2>/dev/null || echo -1)
  if [ "$group" = -1 ] || ! id -G | tr ' ' '\n' | grep -qx "$group"; then
    need "io_uring, which kernel.io_uring_disabled=1 allows only to root and group $group: run as root or sysctl kernel.io_uring_disabled=0"
  fi
fi

if [ "$(id -u)" -ne 0 ]; then
  case $mode in
    # lab.sh says whether its packages and unpacked roots are all in place already.
    boot) [ "${RINGVISOR_LAB_READY:-}" = 1 ] ||
      need "root: the first boot installs Debian packages and unpacks kernels and QEMU (sudo bash tests/lab/lab.sh boot; later boots run as a user in the kvm group)" ;;
    tests) [ -z "${CI:-}" ] || need "root: CI runs every test, and the lab and the TAP, FUSE and loop-device tests need root" ;;
  esac
fi

if [ "$mode" = tests ] && [ -n "${CI:-}" ] && { [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; }; then
  need "read-write /dev/kvm: CI runs the KVM tests (root, or a user in the kvm group)"
fi
if [ "$mode" = boot ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo 2>/dev/null &&
  { [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; }; then
  need "read-write /dev/kvm for a direct boot on this CPU's hardware virtualization (root, or a user in the kvm group)"
fi

[ ${#missing[@]} -eq 0 ] && exit 0
for m in "${missing[@]}"; do
  echo "preflight: missing: $m" >&2
done
echo "preflight: nothing was installed" >&2
exit 2
