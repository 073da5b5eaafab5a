#!/bin/sh
# L1 scenario: a Debian root disk (tests/lab/debian-root.sh, L1's /dev/vda) under
# ringvisor. tests/lab/debian/rv-lab.sh inside the guest drives the sequence and prints
# "L2: debian ..." facts. First ringvisor process: boot 1 reaches multi-user.target and
# runs `systemctl reboot`, which ringvisor serves in place; boot 2 writes a file without
# sync, and L1 presses the power button (`ringvisor ctl shutdown`): systemd shuts down and
# ringvisor exits 0. Second process: boot 3 finds the file and the power-button shutdown
# in the previous boot's journal, and runs `systemctl poweroff`. e2fsck -fn checks the
# file system after each process.
DISK=/dev/vda
[ -b "$DISK" ] || { echo "L1: no Debian disk at $DISK"; exit 1; }

# The NIC's L1 side: ringvisor creates TAP rvtap0; once it exists, L1 takes 169.254.100.1.
tap_up() {
  for i in $(seq 1 600); do [ -d /sys/class/net/rvtap0 ] && break; sleep 0.1; done
  ip addr add 169.254.100.1/24 dev rvtap0 2>/dev/null
  ip link set rvtap0 up
}

# run_debian NAME: one ringvisor process on the disk, its exit status as the function's;
# the guest's console goes to /tmp/console-NAME.log and, as it comes, to stdout.
run_debian() {
  : >/tmp/console-$1.log
  tail -f /tmp/console-$1.log &
  mirror=$!
  ringvisor --log-level info run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
    --cpus 2 --memory 512M --disk "path=$DISK" \
    --net tap=rvtap0,mac=52:54:00:12:34:57 \
    --virtio-console file=/tmp/hvc-$1.log --serial-port name=org.ringvisor.lab,file=/tmp/port-$1.log \
    --balloon size=0,stats-interval=2 --api-socket /tmp/deb.sock \
    --cmdline "console=ttyS0 panic=-1 rv.root=$DISK" </dev/null >/tmp/console-$1.log 2>/tmp/vmm-$1.err
  status=$?
  sleep 0.5
  kill "$mirror"
  # The console's last line may lack its newline.
  echo
  return $status
}

# The power button, once boot 2 has written its file.
(
  for i in $(seq 1 6000); do grep -q '^L2: debian unsynced written' /tmp/console-1.log 2>/dev/null && break; sleep 0.1; done
  ringvisor ctl --socket /tmp/deb.sock balloon >/tmp/balloon.json 2>&1
  echo "L1: debian balloon-api exit=$? $(tr -d ' \n' </tmp/balloon.json | head -c 600)" >>/tmp/facts
  ringvisor ctl --socket /tmp/deb.sock shutdown >>/tmp/facts 2>&1
  echo "L1: debian ctl-shutdown exit=$?" >>/tmp/facts
) &
tap_up &
run_debian 1
echo "L1: debian first exit=$? reboots=$(grep -c 'rebooted in place' /tmp/vmm-1.err)"
cat /tmp/facts
grep -h 'made a forbidden system call' /tmp/vmm-1.err
e2fsck -fn "$DISK" >/tmp/fsck-1.out 2>&1
echo "L1: debian fsck after-shutdown exit=$?"

tap_up &
run_debian 2
echo "L1: debian second exit=$?"
grep -h 'made a forbidden system call' /tmp/vmm-2.err
e2fsck -fn "$DISK" >/tmp/fsck-2.out 2>&1
echo "L1: debian fsck after-poweroff exit=$?"
tail -n 5 /tmp/vmm-1.err /tmp/vmm-2.err
