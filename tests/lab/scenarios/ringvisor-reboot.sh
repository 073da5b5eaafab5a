#!/bin/sh
# L1 scenario: many vCPUs and the reboot in place, in an L1 of its own (a second
# many-vCPU guest in one L1 has frozen or triple-faulted that L1 under TCG's nested SVM,
# whatever ran the guest). Prints "L1: cpus8 ..." and "L1: reboot ..." facts;
# tests/lab_boot.rs checks them.
# Eight vCPUs on the one-core L1: Linux brings them all up from the MADT. The guest
# reboots once (l2-tests/reboot.sh, through the ACPI reset register): ringvisor reboots it
# in place, the same process answering on the same API socket, and all eight vCPUs come
# up again; its own poweroff at the end of the second boot ends ringvisor with 0.
# The QXL display is there to be reset with the machine (its BARs cleared, its surfaces
# gone): the second boot's driver must bind it again and set a mode without an error.
# Guest RAM is prefaulted, so the disk's reactor holds it as registered buffers: the reboot
# must have the reactor let go before the RAM is cleared and register it again after, or
# the second boot's read of the mark lands in pages the guest no longer has.
. /lib/lab/measure.sh
dd if=/dev/zero of=/tmp/reboot.img bs=1M count=0 seek=1 2>/dev/null
(
  for i in $(seq 1 3000); do grep -q '^L2: reboot boot=1' /tmp/cpus8.out && break; sleep 0.1; done
  pid1=$(pidof ringvisor)
  for i in $(seq 1 3000); do grep -q '^L2: reboot boot=2' /tmp/cpus8.out && break; sleep 0.1; done
  ringvisor ctl --socket /tmp/reboot.sock info >/tmp/reboot-info.json 2>&1
  echo "L1: reboot api exit=$? same_pid=$([ "$(pidof ringvisor)" = "$pid1" ] && echo yes || echo no)"
  echo "L1: reboot registered $(registered_ram /tmp/reboot.sock)"
  grep -q '"cpus"' /tmp/reboot-info.json || echo "L1: reboot api said: $(head -c 300 /tmp/reboot-info.json | tr '\n' ' ')"
  # fbcon sets the mode a moment after the driver binds.
  for i in $(seq 1 300); do
    status=$(ringvisor ctl --socket /tmp/reboot.sock display 2>/dev/null | tr -d ' \n')
    case $status in *'"mode":{'*) break ;; esac
    sleep 0.1
  done
  echo "L1: reboot qxl $(echo "$status" | sed -n 's/.*"mode":{"height":\([0-9]*\),"width":\([0-9]*\)}.*/mode=\2x\1/p') $(echo "$status" | grep -o '"guest_errors":[0-9]*' | tr -d '"' | tr : =)"
) >/tmp/reboot.facts 2>&1 &
# A watchdog: should this guest hang, say where each of ringvisor's threads waits and what
# the guest printed last, before the lab's timeout ends L1 with no trace of it.
(
  sleep 150
  pid=$(pidof ringvisor) || exit 0
  for t in /proc/"$pid"/task/*; do
    echo "L1: cpus8 stuck: $(cat "$t/comm") state=$(awk '/^State/ { print $2 }' "$t/status") wchan=$(cat "$t/wchan") syscall=$(cut -d' ' -f1 "$t/syscall")"
  done
  tail -n 15 /tmp/cpus8.out /tmp/cpus8.err | sed 's/^/L1: cpus8 stuck: /'
) &
watchdog=$!
ringvisor --log-level info run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz --cpus 8 \
  --memory 384M,prefault=on --disk path=/tmp/reboot.img --api-socket /tmp/reboot.sock --display qxl,vnc=off \
  --cmdline "console=ttyS0 panic=-1 rv.test=smoke,reboot" </dev/null >/tmp/cpus8.out 2>/tmp/cpus8.err
cpus8=$?
kill "$watchdog" 2>/dev/null
sleep 0.5
cat /tmp/reboot.facts
echo "L1: reboot devices-reset=$(sed -n 's/.*rebooted in place in [0-9]* ms (\([0-9]*\) device.*/\1/p' /tmp/cpus8.err)"
echo "L1: cpus8 exit=$cpus8 boots=$(grep -c '^L2: init uptime=' /tmp/cpus8.out) rebooted=$(grep -c 'rebooted in place' /tmp/cpus8.err) $(grep -E '^L2: (cpus_online|acpi complaints|reboot boot)=' /tmp/cpus8.out | tr -d '\r' | tr '\n' ' ')"
[ $cpus8 -eq 0 ] || tail -n 30 /tmp/cpus8.out /tmp/cpus8.err

exit "$cpus8"
