#!/bin/sh
# L2 test for --display qxl (the knobs scenario): the stock qxl DRM driver binds, fbcon
# draws on it, and keys typed through L1's VNC client reach the console through the
# virtio keyboard. Prints "L2: display ..." facts; L1 takes a screenshot and a VNC frame
# once it sees "L2: display drawn", then types "rv-typed" and Return.
fail=0
for i in $(seq 1 100); do [ -e /sys/class/graphics/fb0 ] && break; sleep 0.1; done
card=$(ls -d /sys/class/drm/card[0-9] 2>/dev/null | head -n 1)
driver=$(basename "$(readlink "$card/device/driver" 2>/dev/null)" 2>/dev/null)
echo "L2: display driver=$driver fb=$(cat /sys/class/graphics/fb0/name 2>/dev/null) size=$(cat /sys/class/graphics/fb0/virtual_size 2>/dev/null)"
[ "$driver" = qxl ] || fail=1
echo "L2: display input=$(grep -c '^N: Name="ringvisor' /proc/bus/input/devices)"
# A still screen: no blinking cursor between L1's two grabs.
echo 0 >/sys/class/graphics/fbcon/cursor_blink 2>/dev/null
printf '\033[2J\033[H' >/dev/tty1
for i in 1 2 3 4 5 6; do
  echo "ringvisor QXL console line $i: the quick brown fox jumps over the lazy dog" >/dev/tty1
done
sleep 2
echo "L2: display drawn"
# What L1 types over VNC arrives on tty1 (the active console) as a line.
typed=
read -t 120 -r typed </dev/tty1
echo "L2: display typed=$typed"
[ "$typed" = rv-typed ] || fail=1
# The qxl driver's own messages: a kernel warning's "Modules linked in:" line names qxl
# among the modules (and net_failover matches "fail") whatever the warning is about.
qxl_errors=$(dmesg | grep -i qxl | grep -v 'Modules linked in:' | grep -i -E 'error|bug|fail|timeout')
echo "L2: display dmesg_errors=$(printf '%s' "$qxl_errors" | grep -c .)"
[ -z "$qxl_errors" ] || printf '%s\n' "$qxl_errors" | sed 's/^/L2: display dmesg: /'
exit $fail
