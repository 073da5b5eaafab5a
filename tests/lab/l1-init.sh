#!/bin/sh
# /init of L1 (TCG-emulated EPYC with SVM+NPT): loads KVM to get a nested /dev/kvm, runs
# the per-run /scenario.sh (which starts a VMM on the L2 kernel in /l2), then powers off.
. /lib/lab/init-common.sh
lab_early_init L1

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
