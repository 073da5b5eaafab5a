#!/bin/sh
# L2 test of the reboot in place: the first boot leaves a mark on /dev/vda (the only state
# a reboot keeps: RAM is cleared) and reboots through the ACPI reset register; the second
# boot finds the mark, says so, and lets /init power the guest off.
mark=$(dd if=/dev/vda bs=16 count=1 2>/dev/null | tr -d '\000')
if [ "$mark" = "rv-reboot 1" ]; then
  echo "L2: reboot boot=2 mark=found"
  # L1 asks ringvisor's API about the rebooted machine now (ringvisor-reboot.sh): the
  # poweroff that follows this test must not race it.
  sleep 10
  exit 0
fi
echo "L2: reboot boot=1"
printf 'rv-reboot 1' | dd of=/dev/vda bs=16 count=1 conv=sync,fsync 2>/dev/null || exit 1
reboot -f
sleep 60
echo "L2: reboot did not happen"
exit 1
