#!/bin/sh
# /init of L1 (TCG-emulated EPYC with SVM+NPT): loads KVM to get a nested /dev/kvm, runs
# the per-run /scenario.sh (which starts a VMM on the L2 kernel in /l2), then powers off.
. /lib/lab/init-common.sh
lab_early_init L1
# The lab's heartbeat: a kernel message every 5 s. L1's kernel log goes to its second
# serial port, which the kernel writes by polling (no interrupt to lose), into a file
# lab.sh watches: when L1 stops as a whole (no process of it runs), the beats stop while
# QEMU runs on, the evidence that the lab, not the VMM, lost the run. The loop holds that
# port open for reading, so that a byte lab.sh sends in raises an interrupt in L1.
(
  exec 3</dev/ttyS1
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  while :; do
    echo "lab: heartbeat" >/dev/kmsg
    sleep 5
  done
) >/dev/null 2>&1 &

lab_load_modules L1
echo "L1: clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
if [ -e /dev/kvm ]; then
  echo "L1: kvm ready"
else
  echo "L1: no kvm"
  dmesg | tail -n 20
fi

if [ -f /scenario.sh ]; then
  sh /scenario.sh
  status=$?
else
  echo "L1: no /scenario.sh in the initramfs"
  status=127
fi
echo "L1: scenario exit=$status"
echo "L1: end"
# L1 has ACPI (QEMU -M pc): poweroff makes the outer QEMU exit.
poweroff -f
sleep 5
exit 1
