#!/usr/bin/env bash
# Boot time and memory, ringvisor vs QEMU 10, interleaved in ONE nested-lab L1 (tests/lab):
# the same stock Debian L2 guest (kernel, initramfs, vCPUs, memory) booted to its /init by
# each VMM in rounds A B A B ...; the guest's boot-to-init time, the VMM's wall time and
# peak RSS: medians, the ratio of medians with its 95 % bootstrap interval.
#
#   bash bench/boot-compare.sh [--pairs N] [--l1-cpus N] [--debian]      (root)
#
# --debian: the Debian root image (tests/lab/debian-root.sh) from a disk instead, booted
# to systemd's multi-user.target (multi_user_s, guest uptime) and powered off (wall_ms).
# Writes target/bench/boot-compare/DATE/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
debian=0
args=()
for arg in "$@"; do
  if [ "$arg" = --debian ]; then debian=1; else args+=("$arg"); fi
done
lab_bench_setup boot-compare 2,10 ${args[@]+"${args[@]}"}
LAB_RUN_ARGS=()
if [ "$debian" = 1 ]; then
  echo "DEBIAN=1" >>"$OUT/compare.env"
  # Both VMMs boot the same copy of the image, L1's /dev/vda, in turn.
  cp --sparse=always "$(bash "$REPO/tests/lab/lab.sh" debian-root)" "$OUT/debian.img"
  LAB_RUN_ARGS=(--disk "$OUT/debian.img")
fi
lab_bench_run boot-compare.sh 3000
rm -f "$OUT/debian.img"
awk '
  /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2]; split($4, p, "="); pair = p[2] }
  /^L2: init uptime=/ && vmm != "" { split($3, a, "="); printf "%s %s boot_to_init_s %s\n", pair, vmm, a[2] }
  /^L2: debian boot-time multi_user_s=/ && vmm != "" { split($4, a, "="); printf "%s %s multi_user_s %s\n", pair, vmm, a[2] }
  /^L1: vmm=[^ ]+ (wall_ms|rss_peak_kb)=/ && vmm != "" { split($3, kv, "="); printf "%s %s %s %s\n", pair, vmm, kv[1], kv[2] }
' "$OUT/run.log" >"$OUT/samples.txt"
lab_bench_compare boot_to_init_s,multi_user_s,wall_ms,rss_peak_kb
