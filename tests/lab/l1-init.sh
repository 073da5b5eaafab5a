#!/bin/sh
# /init of L1 (TCG-emulated EPYC with SVM+NPT): loads KVM to get a nested /dev/kvm, runs
# the per-run /scenario.sh (which starts a VMM on the L2 kernel in /l2), then powers off.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t devtmpfs devtmpfs /dev
# If the initramfs had no /dev/console, the kernel gave /init no stdio: take it now.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
read -r up _ </proc/uptime
# Leading newline: firmware output (SeaBIOS "Booting from ROM...") may end mid-line.
printf '\nL1: init uptime=%s\n' "$up"
mount -t sysfs sysfs /sys
# VMM backing files live here. Kernel 6.1 tmpfs has no O_DIRECT: use buffered I/O.
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t devpts devpts /dev/pts
ip link set lo up 2>/dev/null

while read -r path name; do
  insmod "$path" || echo "L1: insmod-failed $name"
done </etc/lab/modules
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
