#!/bin/bash
# The lab's checks inside the Debian root image (tests/lab/debian-root.sh), run by
# rv-lab.service on every boot once systemd has finished starting. It prints "L2: debian
# ..." facts on the console and then does what this boot of the sequence is for; the boot
# count lives on the disk, so the sequence survives reboots and VMM restarts
# (rv.lab=boot-time and rv.lab=fio-suite on the command line do other things, see below):
#   1  systemctl reboot (ringvisor must boot the same disk again in the same process)
#   2  writes /root/unsynced without sync and waits: L1 presses the power button
#      (`ringvisor ctl shutdown`), and systemd must shut down cleanly
#   3  checks that the file survived and that the last shutdown came from the power
#      button, then systemctl poweroff (ringvisor must exit 0)
# The leading newline: a login prompt (serial-getty on ttyS0) may have left a line open.
say() { printf '\nL2: debian %s\n' "$*" >/dev/console; }

# rv.lab=boot-time (bench/boot-compare.sh --debian): how long systemd took to finish
# starting, then power off; the boot sequence below is left alone.
if grep -qw 'rv.lab=boot-time' /proc/cmdline; then
  systemctl is-system-running --wait >/dev/null
  read -r up _ </proc/uptime
  say "boot-time multi_user_s=$up state=$(systemctl is-system-running)"
  printf '\nL2: done\n' >/dev/console
  systemctl poweroff
  exit 0
fi

# rv.lab=fio-suite (`ringvisor bench run --guest-root`): this image is the suite's guest;
# its jobs come over the port rv.jobs (/usr/local/sbin/rv-fio-suite, which is
# tests/lab/l2-tests/fio-suite.sh), then power off.
if grep -qw 'rv.lab=fio-suite' /proc/cmdline; then
  say "fio-suite os=$(. /etc/os-release && echo "$ID-$VERSION_ID") root=$(findmnt -n -o SOURCE /)"
  /usr/local/sbin/rv-fio-suite >/dev/console 2>&1
  systemctl poweroff
  exit 0
fi

mkdir -p /var/lib/rv-lab
boot=$(($(cat /var/lib/rv-lab/boots 2>/dev/null || echo 0) + 1))
echo "$boot" >/var/lib/rv-lab/boots
sync

state=$(systemctl is-system-running --wait)
read -r up _ </proc/uptime
say "boot=$boot state=$state multi_user=$(systemctl is-active multi-user.target) uptime=$up"
[ "$state" = running ] ||
  say "failed units: $(systemctl --failed --plain --no-legend | awk '{ print $1 }' | tr '\n' ' ')"
say "root=$(findmnt -n -o SOURCE,FSTYPE /) init=$(readlink /proc/1/exe)"
say "clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
say "ports=$(ls /dev/virtio-ports 2>/dev/null | tr '\n' ' ')"
say "balloon=$(ls -d /sys/bus/virtio/drivers/virtio_balloon/virtio* 2>/dev/null | wc -l)"
/lib/systemd/systemd-networkd-wait-online --any --timeout=60 >/dev/null 2>&1
say "net addr=$(ip -4 -o addr show | awk '$2 != "lo" { print $2 "=" $4 }' | tr '\n' ' ')" \
  "ping=$(ping -c 1 -W 10 169.254.100.1 >/dev/null 2>&1 && echo ok || echo fail)"

case $boot in
  1)
    say "rebooting"
    systemctl reboot
    ;;
  2)
    echo "written at boot 2, never synced" >/root/unsynced
    say "unsynced written"
    ;;
  *)
    say "unsynced=$(cat /root/unsynced 2>/dev/null || echo missing)"
    say "last shutdown power_key=$(journalctl -b -1 -o cat 2>/dev/null | grep -c 'Power key pressed')" \
      "powering_off=$(journalctl -b -1 -o cat 2>/dev/null | grep -c 'System is powering down')"
    say "poweroff"
    systemctl poweroff
    ;;
esac
