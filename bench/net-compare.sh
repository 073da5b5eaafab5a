#!/usr/bin/env bash
# Network in the guest, ringvisor vs QEMU-KVM's userspace virtio-net (no vhost), inside
# one nested-lab L1 (tests/lab): the same stock Debian L2 guest with one virtio-net NIC on
# an L1 TAP, iperf3 from Debian against a server in L1 (tests/lab/l2-tests/netbench.sh):
# TCP guest→L1 and L1→guest throughput, and the rate of 64-byte UDP datagrams the guest
# gets through.
#
#   bash bench/net-compare.sh [--runs N]      (root: the lab installs Debian packages)
#
# A ratio within one run is what this measures; the nested lab is far too slow and noisy
# for absolute figures. Writes target/bench/net-compare/{run-N.log,summary.md}.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup net-compare 2,11 "$@"
table=$OUT/summary.md
{
  echo "| run | vmm | TCP guest→L1 Mbit/s | TCP L1→guest Mbit/s | 64-byte UDP packets/s |"
  echo "|---|---|---|---|---|"
} >"$table"
failed=0
for run in $(seq 1 "$runs"); do
  log=$OUT/run-$run.log
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/net-compare.sh" \
    --vmm "$VMM" --timeout 590 >"$log" 2>&1 || failed=1
  awk -v run="$run" '
    function flush() { if (vmm != "") printf "| %s | %s | %s | %s | %s |\n", run, vmm, tx, rx, pps }
    /^L1: begin vmm=/ { flush(); split($3, a, "="); vmm = a[2]; tx = rx = pps = "-" }
    /^L2: netbench tcp-tx/ { split($4, a, "="); tx = a[2] }
    /^L2: netbench tcp-rx/ { split($4, a, "="); rx = a[2] }
    /^L2: netbench udp64-tx/ { split($4, a, "="); pps = a[2] }
    END { flush() }
  ' "$log" >>"$table"
done
cat "$table"
[ "$failed" -eq 0 ] || echo "net-compare: some lab runs failed; see $OUT/run-*.log" >&2
