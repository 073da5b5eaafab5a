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
# for absolute figures. Writes target/bench/net-compare/{run-N.log,summary.md,costs.md}
# (costs: the NIC's interrupts in the guest per 1000 frames it sent and received).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup net-compare 2,12 "$@"
table=$OUT/summary.md
costs=$OUT/costs.md
{
  echo "| run | vmm | TCP guest→L1 Mbit/s | TCP L1→guest Mbit/s | 64-byte UDP packets/s |"
  echo "|---|---|---|---|---|"
} >"$table"
{
  echo "| run | vmm | NIC interrupts per 1000 frames: TCP guest→L1 | TCP L1→guest | 64-byte UDP |"
  echo "|---|---|---|---|---|"
} >"$costs"
failed=0
for run in $(seq 1 "$runs"); do
  log=$OUT/run-$run.log
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/net-compare.sh" \
    --vmm "$VMM" --timeout 590 >"$log" 2>&1 || failed=1
  awk -v run="$run" -v costs="$costs" '
    function flush() {
      if (vmm == "") return
      printf "| %s | %s | %s | %s | %s |\n", run, vmm, v["tcp-tx"], v["tcp-rx"], v["udp64-tx"]
      printf "| %s | %s | %s | %s | %s |\n", run, vmm, c["tcp-tx"], c["tcp-rx"], c["udp64-tx"] >>costs
    }
    /^L1: begin vmm=/ {
      flush(); split($3, a, "="); vmm = a[2]
      v["tcp-tx"] = v["tcp-rx"] = v["udp64-tx"] = c["tcp-tx"] = c["tcp-rx"] = c["udp64-tx"] = "-"
    }
    # "L2: netbench NAME mbps=N" or "pps=N"; "L2: netbench NAME irqs=N frames=M".
    /^L2: netbench [a-z0-9-]+ (mbps|pps)=/ { split($4, a, "="); v[$3] = a[2] }
    /^L2: netbench [a-z0-9-]+ irqs=/ {
      split($4, i, "="); split($5, f, "=")
      if (f[2] > 0) c[$3] = sprintf("%.0f", 1000 * i[2] / f[2])
    }
    END { flush() }
  ' "$log" >>"$table"
done
cat "$table"
echo
cat "$costs"
[ "$failed" -eq 0 ] || echo "net-compare: some lab runs failed; see $OUT/run-*.log" >&2
