#!/bin/sh
# L1 scenario of `lab.sh boot`: the default guest under ringvisor, its console on L1's
# console (and from there on the user's terminal). /etc/lab/boot.env sets CMDLINE.
. /etc/lab/boot.env
echo "L1: booting the L2 guest under ringvisor (2 vCPUs, 1 GiB, a 256 MiB disk as /dev/vda)"
truncate -s 256M /tmp/disk.img
ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus 2 --memory 1G --disk path=/tmp/disk.img,queues=2 --cmdline "$CMDLINE"
status=$?
echo "L1: ringvisor exit=$status"
exit "$status"
