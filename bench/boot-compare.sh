#!/usr/bin/env bash
# Boot time and memory, ringvisor vs QEMU 10, interleaved in ONE nested-lab L1 (tests/lab):
# the same stock Debian L2 guest (kernel, initramfs, vCPUs, memory) booted to its /init by
# each VMM in rounds A B A B ...; the guest's boot-to-init time, the VMM's wall time and
# peak RSS: medians, the ratio of medians with its 95 % bootstrap interval.
#
#   bash bench/boot-compare.sh [--pairs N] [--l1-cpus N]      (root)
#
# Writes target/bench/boot-compare/DATE/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup boot-compare 2,8 "$@"
lab_bench_run boot-compare.sh 1800
awk '
  /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2]; split($4, p, "="); pair = p[2] }
  /^L2: init uptime=/ && vmm != "" { split($3, a, "="); printf "%s %s boot_to_init_s %s\n", pair, vmm, a[2] }
  /^L1: vmm=[^ ]+ (wall_ms|rss_peak_kb)=/ && vmm != "" { split($3, kv, "="); printf "%s %s %s %s\n", pair, vmm, kv[1], kv[2] }
' "$OUT/run.log" >"$OUT/samples.txt"
lab_bench_compare boot_to_init_s,wall_ms,rss_peak_kb
