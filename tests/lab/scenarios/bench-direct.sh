#!/bin/sh
# L1 scenario: `ringvisor bench` in direct mode, with L1 as the user's host (run with
# lab.sh --nvme MIB --collect FILE). L1's /dev/kvm is a real KVM (nested SVM), so to the
# suite it is a host with hardware virtualization; the target is L1's emulated NVMe disk,
# /dev/nvme0n1, and QEMU 10 is installed, so its reference runs by default. First
# `lab.sh boot`'s direct branch (boot-direct.sh), then what a careless command gets
# (refusals, nothing written), then the run, then a run with the Debian root image as the
# guest (--guest-root, L1's /dev/vdb, the lab's --disk); the run directories go back as a
# tar archive on the collect disk (/dev/vda).
for i in $(seq 1 50); do
  [ -b /dev/nvme0n1 ] && break
  sleep 0.2
done
# `lab.sh boot`'s direct branch, as a user's host runs it: L1 has hardware KVM to it.
. /lib/lab/boot-direct.sh
if has_hardware_kvm; then
  (boot_direct ringvisor /l2/vmlinuz /l2/initramfs.cpio.gz /tmp/demo-disk.img \
    "console=ttyS0 reboot=k panic=-1 rv.test=smoke") </dev/null >/tmp/boot-direct.out 2>&1
  echo "L1: boot-direct exit=$? $(grep -E '^L2: test smoke exit=' /tmp/boot-direct.out | tr -d '\r')"
else
  echo "L1: boot-direct no hardware kvm"
fi
# A small matrix: 4k random reads at QD16 on virtio-blk, writes on virtio-scsi, 2 s each.
mkdir -p /tmp/bench-input
matrix() { # matrix FILE RW:DEVICE...: 4k QD16 jobs of 2 s on 16 MiB
  file=$1
  shift
  printf '[defaults]\nruntime = 2\nramp = 1\nsize = "16M"\nioengines = ["io_uring"]\n' >"$file"
  for job in "$@"; do
    printf '[[job]]\nrw = "%s"\nbs = "4k"\niodepth = 16\ndevices = "%s"\n' "${job%%:*}" "${job#*:}" >>"$file"
  done
}
matrix /tmp/bench-input/matrix.toml randread:blk randwrite:scsi
guest="--kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz"
# A marker the refusals must leave alone.
printf 'ringvisor-bench-marker' | dd of=/dev/nvme0n1 bs=512 seek=100000 conv=notrunc 2>/dev/null
sync
# shellcheck disable=SC2086 # $guest is words
ringvisor bench run --matrix /tmp/bench-input/matrix.toml --target /dev/nvme0n1 $guest \
  --out /tmp/refused >/dev/null 2>/tmp/refused.err
echo "L1: bench refused-without-destroy-data exit=$? said=$(tail -n 1 /tmp/refused.err)"
marker=$(dd if=/dev/nvme0n1 bs=512 skip=100000 count=1 2>/dev/null | head -c 22)
echo "L1: bench marker-after-refusal=$marker"

# shellcheck disable=SC2086 # $guest is words
ringvisor bench run --matrix /tmp/bench-input/matrix.toml --target /dev/nvme0n1 --destroy-data \
  $guest --out /tmp/bench >/tmp/bench.out 2>/tmp/bench.err
status=$?
echo "L1: bench exit=$status"
{
  grep -h '^ringvisor bench' /tmp/bench.err
  grep -h -E '^L1: suite (end|lost|data-check)' /tmp/bench/run.log
} 2>/dev/null | sed 's/^/L1: bench said: /'
[ "$status" -eq 0 ] || tail -n 30 /tmp/bench.err /tmp/bench/work/rv.out /tmp/bench/work/qemu.out 2>/dev/null

# The Debian root image (L1's /dev/vdb, the lab's --disk) as the guest: both VMMs boot it
# from their first virtio-blk disk, its systemd unit runs one job on the suite's disk,
# which the guest sees as /dev/vdb.
collected="bench/raw bench/summary.json bench/summary.md bench/run.log"
if [ -b /dev/vdb ]; then
  matrix /tmp/bench-input/debian.toml randread:blk
  # shellcheck disable=SC2086 # $guest is words
  ringvisor bench run --matrix /tmp/bench-input/debian.toml --target /dev/nvme0n1 --destroy-data \
    $guest --guest-root /dev/vdb --out /tmp/bench-debian >/tmp/bench-debian.out 2>/tmp/bench-debian.err
  debian_status=$?
  echo "L1: bench debian exit=$debian_status booted=$(cat /tmp/bench-debian/work/rv.out /tmp/bench-debian/work/qemu.out 2>/dev/null | grep -c 'L2: debian fio-suite os=debian-12 root=/dev/vda')"
  grep -h -E '^L1: suite (end|lost|data-check)' /tmp/bench-debian/run.log 2>/dev/null | sed 's/^/L1: bench debian said: /'
  [ "$debian_status" -eq 0 ] ||
    tail -n 30 /tmp/bench-debian.err /tmp/bench-debian/work/rv.out /tmp/bench-debian/work/qemu.out 2>/dev/null
  collected="$collected bench-debian/raw bench-debian/summary.json bench-debian/summary.md"
  [ "$status" -eq 0 ] && status=$debian_status
else
  echo "L1: bench debian no root disk"
fi
# shellcheck disable=SC2086 # $collected is words
tar -cf /dev/vda -C /tmp $collected && sync && echo "L1: bench collected"
exit "$status"
