#!/bin/sh
# /init of the L2 guest (stock Debian generic kernel under the VMM being tested in L1).
# Prints "L2: ..." facts on the serial console for the scenario to check, runs the test
# named by rv.test= on the kernel command line, then resets the machine.
. /lib/lab/init-common.sh
lab_early_init L2

lab_load_modules L2

# rv.root=DEVICE: a distribution's root file system (tests/lab/debian-root.sh). The stock
# drivers are loaded: mount it read-only (its systemd checks and remounts it, as after a
# distribution's own initramfs) and hand PID 1 over to its init.
for word in $(cat /proc/cmdline); do
  case $word in rv.root=*) root=${word#rv.root=} ;; esac
done
if [ -n "${root:-}" ]; then
  for i in $(seq 1 100); do [ -b "$root" ] && break; sleep 0.1; done
  mkdir -p /newroot
  if mount -o ro "$root" /newroot; then
    echo "L2: switching to the root file system on $root"
    umount /tmp /dev/shm /dev/pts /sys /proc
    mount --move /dev /newroot/dev
    exec switch_root /newroot /sbin/init
  fi
  echo "L2: cannot mount the root file system on $root"
fi

# "0-1,3" -> 3; falls back to nproc when sysfs has no online mask.
cpus_online() {
  list=$(cat /sys/devices/system/cpu/online 2>/dev/null) || list=
  if [ -z "$list" ]; then
    nproc
    return
  fi
  n=0
  old_ifs=$IFS
  IFS=,
  for r in $list; do
    case $r in
      *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;;
      *) n=$((n + 1)) ;;
    esac
  done
  IFS=$old_ifs
  echo "$n"
}

pci_list() {
  out=
  for d in /sys/bus/pci/devices/*; do
    [ -r "$d/vendor" ] || continue
    read -r v <"$d/vendor"
    read -r dev <"$d/device"
    out="$out ${d##*/}:${v#0x}:${dev#0x}"
  done
  echo "${out# }"
}

echo "L2: cpus_online=$(cpus_online)"
echo "L2: memtotal_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
echo "L2: clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
echo "L2: kvmclock_msrs=$(dmesg | grep -c "kvm-clock: Using msrs 4b564d01 and 4b564d00")"
echo "L2: pci=$(pci_list)"
echo "L2: cmdline=$(cat /proc/cmdline)"
# ACPI as the guest sees it: the tables it found, and every ACPI error or warning the
# kernel logged (a VMM's tables should cause none).
echo "L2: acpi tables=$(ls /sys/firmware/acpi/tables 2>/dev/null | grep -v '^dynamic$\|^data$' | tr '\n' ' ')"
acpi_complaints=$(dmesg | grep -iE 'ACPI.*(error|warning)|ACPI BIOS' )
echo "L2: acpi complaints=$(printf '%s' "$acpi_complaints" | grep -c .)"
[ -n "$acpi_complaints" ] && printf '%s\n' "$acpi_complaints" | sed 's/^/L2: acpi complaint: /'
echo "L2: acpi power_button=$(grep -l 'Power Button' /sys/class/input/*/name 2>/dev/null | wc -l) ecam=$(dmesg | grep -c 'MMCONFIG.*reserved')"
# The power button: busybox acpid runs /etc/acpi/PWRF/00000080 (a poweroff) on a press.
acpid -c /etc/acpi -l /tmp/acpid.log

# rv.test=NAME[,NAME] selects /l2-tests/NAME.sh (tests/lab/l2-tests/ in the repository).
test_name=
shell=
read -r cmdline </proc/cmdline
for word in $cmdline; do
  case $word in
    rv.test=*) test_name=${word#rv.test=} ;;
    rv.shell=1) shell=1 ;;
  esac
done
# rv.test=a,b runs /l2-tests/a.sh then /l2-tests/b.sh.
for name in $(echo "$test_name" | tr ',' ' '); do
  if [ -f "/l2-tests/$name.sh" ]; then
    sh "/l2-tests/$name.sh"
    status=$?
  else
    echo "L2: no such test /l2-tests/$name.sh"
    status=127
  fi
  echo "L2: test $name exit=$status"
done

# rv.shell=1 (lab.sh boot --shell): a shell on the console; leaving it powers off.
if [ -n "$shell" ]; then
  echo "L2: shell on the console; 'exit' powers the guest off"
  setsid cttyhack sh
fi

echo "L2: done uptime=$(cut -d" " -f1 /proc/uptime)"
# ACPI S5: ringvisor and QEMU exit once the guest has powered off.
poweroff -f
# Not reached unless the poweroff failed; exiting /init then panics (panic=-1 resets).
sleep 5
exit 1
