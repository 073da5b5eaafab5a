#!/bin/sh
# L2 test for the low-priority devices (the scenario gives the guest a virtio console on
# a file, named ports rv.out (file), rv.events (file) and rv.in (L1's FIFO pair), and a
# balloon). L1 answers each event written to rv.events with one line on rv.in. Prints
# "L2: ports ..." and "L2: balloon ..." facts. It runs right after boot, while half of
# the guest's memory is still free to go into the balloon.
fail=0
check() { # check NAME CONDITION-STATUS
  if [ "$2" -eq 0 ]; then echo "L2: lowprio $1 ok"; else echo "L2: lowprio $1 FAILED"; fail=1; fi
}
memtotal() { awk '/^MemTotal:/ { print $2 }' /proc/meminfo; }
# What udev does: /dev/virtio-ports/NAME links to the port's node, named in sysfs.
mkdir -p /dev/virtio-ports
for i in $(seq 1 40); do
  for port in /sys/class/virtio-ports/*; do
    name=$(cat "$port/name" 2>/dev/null)
    [ -n "$name" ] && [ -e "/dev/${port##*/}" ] && ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$name"
  done
  [ -e /dev/virtio-ports/rv.in ] && [ -e /dev/virtio-ports/rv.out ] && [ -e /dev/virtio-ports/rv.events ] && break
  sleep 0.25
done
echo "L2: ports names=$(ls /dev/virtio-ports | tr '\n' ' ')"
echo "L2: ports hvc0=$(ls /sys/class/tty | grep -c '^hvc0$')"
echo "hvc0 says hello" >/dev/hvc0
check hvc0-write $?

# 1 MiB out through a named port, in 64 KiB writes.
dd if=/dev/urandom of=/tmp/port-blob bs=64k count=16 2>/dev/null
echo "L2: ports sent-md5=$(md5sum </tmp/port-blob | cut -d' ' -f1)"
dd if=/tmp/port-blob of=/dev/virtio-ports/rv.out bs=64k 2>/dev/null
check port-write $?

# rv.in stays open: lines L1 sends are never dropped by a close in between.
exec 3</dev/virtio-ports/rv.in
event() { # event WORD: tell L1, wait for its one-line answer
  echo "$1" >/dev/virtio-ports/rv.events
  read -r answer <&3
  echo "$answer"
}
echo "L2: ports received=$(event hello)"

# The balloon: fill 96 MiB of RAM (resident in the VMM), free it, let L1 inflate the
# balloon to half the guest, then deflate it.
sync
echo 3 >/proc/sys/vm/drop_caches
echo "L2: balloon available_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
mem0=$(memtotal)
dd if=/dev/zero of=/dev/shm/fill bs=1M count=96 2>/dev/null
check fill $?
event filled >/dev/null
rm -f /dev/shm/fill
event freed >/dev/null
mem1=$(memtotal)
event inflated-seen >/dev/null
mem2=$(memtotal)
echo "L2: balloon memtotal_kb=$mem0 inflated_kb=$mem1 deflated_kb=$mem2"
echo "L2: lowprio dmesg_balloon_errors=$(dmesg | grep -i balloon | grep -c -i -E 'error|fail')"
exec 3<&-
echo "L2: lowprio fail=$fail"
exit $fail
