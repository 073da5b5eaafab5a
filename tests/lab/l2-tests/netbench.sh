#!/bin/sh
# L2 network benchmark (bench/net-compare.sh through the nested lab): eth0 at 169.254.100.2,
# iperf3 against the server L1 runs at 169.254.100.1. One line per measurement:
#   L2: netbench tcp-tx mbps=N        guest → L1, TCP
#   L2: netbench tcp-rx mbps=N        L1 → guest, TCP (iperf3 -R)
#   L2: netbench udp64-tx pps=N       guest → L1, 64-byte UDP payloads, as fast as it can
# and, for each, what it cost the guest in interrupts:
#   L2: netbench NAME irqs=N frames=M  the NIC's interrupts (all its vectors) and the
#                                      frames eth0 sent and received during the measurement
SECS=${NETBENCH_SECS:-5}
for i in $(seq 1 40); do [ -d /sys/class/net/eth0 ] && break; sleep 0.25; done
ip addr add 169.254.100.2/24 dev eth0 && ip link set eth0 up || { echo "L2: netbench no eth0"; exit 1; }
for i in $(seq 1 40); do ping -c 1 -W 1 169.254.100.1 >/dev/null 2>&1 && break; done

# The NIC is the guest's only virtio device: the sum over every CPU of its vectors.
nic_irqs() {
  awk '/virtio/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }' /proc/interrupts
}
nic_frames() { awk '/eth0:/ { sub(/.*eth0:/, ""); print $2 + $10 }' /proc/net/dev; }
# cost NAME COMMAND...: runs COMMAND (its output in $out) and prints NAME's cost line.
cost() {
  name=$1
  shift
  irqs=$(nic_irqs)
  frames=$(nic_frames)
  out=$("$@" 2>&1)
  echo "L2: netbench $name irqs=$(($(nic_irqs) - irqs)) frames=$(($(nic_frames) - frames))"
}

# The receiver's summary line: "... sec  N MBytes  R Mbits/sec ... receiver".
mbps() { awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }'; }
cost tcp-tx iperf3 -c 169.254.100.1 -t "$SECS" -f m
echo "L2: netbench tcp-tx mbps=$(echo "$out" | mbps)"
cost tcp-rx iperf3 -c 169.254.100.1 -t "$SECS" -f m -R
echo "L2: netbench tcp-rx mbps=$(echo "$out" | mbps)"
# UDP receiver line: "... lost/total (pct)  receiver": packets that arrived per second.
cost udp64-tx iperf3 -c 169.254.100.1 -t "$SECS" -u -l 64 -b 0
echo "$out" | awk -v secs="$SECS" '/receiver/ {
  for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) { split($i, lt, "/"); got = lt[2] - lt[1] }
  printf "L2: netbench udp64-tx pps=%d\n", got / secs
}'
