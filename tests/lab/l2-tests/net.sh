#!/bin/sh
# L2 test for virtio-net (the scenario gives the guest one NIC on L1's TAP rvtap0, L1 at
# 169.254.100.1: nc on port 5000 takes what L2 sends, httpd on port 8080 serves L2 a file). Prints "L2: net ..." facts; tests/lab_boot.rs compares the checksums with L1's.
fail=0
check() { # check NAME CONDITION-STATUS
  if [ "$2" -eq 0 ]; then echo "L2: net $1 ok"; else echo "L2: net $1 FAILED"; fail=1; fi
}
# The guest's monotonic clock, sampled every 0.2 s while this test runs: L1 pauses the
# guest for 5 s meanwhile, and the clock must not jump by the pause.
(while :; do cut -d' ' -f1 /proc/uptime; sleep 0.2; done) >/tmp/uptimes &
sampler=$!
for i in $(seq 1 40); do [ -d /sys/class/net/eth0 ] && break; sleep 0.25; done
[ -d /sys/class/net/eth0 ] || { echo "L2: net no eth0"; exit 1; }
echo "L2: net driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)") mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu)"
ip addr add 169.254.100.2/24 dev eth0 && ip link set eth0 up
check configure $?
for i in $(seq 1 20); do [ "$(cat /sys/class/net/eth0/operstate)" = up ] && break; sleep 0.25; done
echo "L2: net operstate=$(cat /sys/class/net/eth0/operstate)"
ping -c 3 -W 5 169.254.100.1 >/tmp/ping.out 2>&1
status=$?
[ $status -eq 0 ] || cat /tmp/ping.out
check ping $status

dd if=/dev/urandom of=/tmp/blob bs=1M count=4 2>/dev/null
echo "L2: net sent-md5=$(md5sum </tmp/blob | cut -d' ' -f1)"
timeout 120 nc 169.254.100.1 5000 </tmp/blob >/dev/null
check tcp-send $?
timeout 120 wget -q -O /tmp/got http://169.254.100.1:8080/to-l2
check tcp-receive $?
echo "L2: net received-md5=$(md5sum </tmp/got | cut -d' ' -f1) bytes=$(wc -c </tmp/got)"
# L1 pauses this guest for 5 s meanwhile and then serves /paused-ms: wait for it. The
# pause must leave no soft-lockup or RCU-stall report behind.
for i in $(seq 1 600); do
  wget -q -O /tmp/paused-ms http://169.254.100.1:8080/paused-ms 2>/dev/null &&
    [ -s /tmp/paused-ms ] && break
  sleep 0.2
done
kill $sampler
gap=$(awk 'NR > 1 { d = $1 - prev; if (d > max) max = d } { prev = $1 } END { printf "%.2f", max }' /tmp/uptimes)
echo "L2: net paused_ms=$(cat /tmp/paused-ms 2>/dev/null) soft_lockups=$(dmesg | grep -c -i 'soft lockup') rcu_stalls=$(dmesg | grep -c -i 'rcu.*stall') max_clock_step=$gap"
# After the pause the guest's wall clock trails the host's by the pause: the guest puts
# it back from the RTC, which reads the host's clock (hwclock -s, the mechanism this lab
# documents; ptp_kvm with chrony would do the same continuously).
lag() { echo $(($(wget -q -O - http://169.254.100.1:8080/cgi-bin/now) - $(date +%s))); }
before=$(lag)
hwclock -s -u
echo "L2: net clock lag_before=$before lag_after=$(lag)"
echo "L2: net rx_packets=$(cat /sys/class/net/eth0/statistics/rx_packets) tx_packets=$(cat /sys/class/net/eth0/statistics/tx_packets)"
exit $fail
