#!/usr/bin/env bash
# Network in the guest, ringvisor vs QEMU 10 (userspace virtio-net, and vhost-net: the
# kernel's fast path), interleaved in ONE nested-lab L1 (tests/lab): the same stock Debian
# L2 guest with one virtio-net NIC on an L1 TAP, iperf3 against a server in L1
# (tests/lab/l2-tests/netbench.sh): TCP guest→L1 and L1→guest throughput, the rate of
# 64-byte UDP datagrams the guest gets through, and the NIC's interrupts per 1000 frames.
# Rounds A B C A B C ...; per measurement the medians, the ratio of medians with its 95 %
# bootstrap interval, and ahead/level/behind.
#
#   bash bench/net-compare.sh [--pairs N] [--l1-cpus N] [--vmms "ringvisor qemu qemu-vhost"]     (root)
#
# --vmms may add ringvisor-1reactor. A ratio inside one run is what this measures; the
# nested lab is far too slow for absolute figures. Writes target/bench/net-compare/DATE/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup net-compare 2,14 "$@"
lab_bench_run net-compare.sh 3000
# "L2: netbench NAME mbps=N" or "pps=N"; "L2: netbench NAME irqs=N frames=M".
awk '
  /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2]; split($4, p, "="); pair = p[2] }
  vmm == "" { next }
  /^L2: netbench [a-z0-9-]+ (mbps|pps)=[0-9.]+$/ { split($4, a, "="); printf "%s %s %s/%s %s\n", pair, vmm, $3, a[1], a[2] }
  /^L2: netbench [a-z0-9-]+ irqs=/ {
    split($4, i, "="); split($5, f, "=")
    if (f[2] > 0) printf "%s %s %s/irqs_per_1000_frames %.1f\n", pair, vmm, $3, 1000 * i[2] / f[2]
  }' "$OUT/run.log" >"$OUT/samples.txt"
lab_bench_compare irqs_per_1000_frames
