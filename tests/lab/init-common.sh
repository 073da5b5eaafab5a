# Sourced by both /init scripts (installed at /lib/lab/init-common.sh in both images).
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

# lab_early_init LEVEL: the mounts and console every level needs, then "LEVEL: init
# uptime=" (boot-to-init time, read first thing after /proc exists).
lab_early_init() {
  mount -t devtmpfs devtmpfs /dev
  # If the initramfs had no /dev/console, the kernel gave /init no stdio: take it now.
  # L1's kernel logs to its second serial port (lab.sh keeps that log apart as evidence
  # of lab faults); L1's /init and everything it runs talk on the first.
  if [ "$1" = L1 ]; then
    exec </dev/ttyS0 >/dev/ttyS0 2>&1
  else
    exec </dev/console >/dev/console 2>&1
  fi
  mount -t proc proc /proc
  read -r up _ </proc/uptime
  # Leading newline: firmware output (SeaBIOS "Booting from ROM...") may end mid-line.
  printf '\n%s: init uptime=%s\n' "$1" "$up"
  mount -t sysfs sysfs /sys
  # VMM backing files live here. Kernel 6.1 tmpfs has no O_DIRECT: use buffered I/O.
  mount -t tmpfs tmpfs /tmp
  mkdir -p /dev/shm /dev/pts
  mount -t tmpfs tmpfs /dev/shm
  mount -t devpts devpts /dev/pts
  ip link set lo up 2>/dev/null
}

# lab_load_modules LEVEL: busybox insmod resolves no dependencies, so /etc/lab/modules
# lists the closure of the wanted drivers with dependencies first. A failure is reported,
# not fatal, so one broken driver does not hide the facts about the others. Parameters
# for a module come from /etc/lab/module-params ("NAME param=value ..." lines) and, as
# modprobe would take them, from the kernel command line's NAME.param=value words
# (busybox insmod reads neither itself).
lab_load_modules() {
  read -r cmdline </proc/cmdline
  while read -r path name; do
    params=$(awk -v m="$name" '$1 == m { $1 = ""; print }' /etc/lab/module-params 2>/dev/null)
    # No process per word: every fork counts in a nested, emulated boot.
    for word in $cmdline; do
      case $word in "$name".*) params="$params ${word#"$name".}" ;; esac
    done
    # shellcheck disable=SC2086 # the parameters are words
    insmod "$path" $params || echo "$1: insmod-failed $name"
  done </etc/lab/modules
}
