#!/bin/sh
# L1 scenario of `lab.sh boot`: the default guest under ringvisor, its console on L1's
# console (and from there on the user's terminal). /etc/lab/boot.env sets CMDLINE.
. /etc/lab/boot.env
echo "L1: booting the L2 guest under ringvisor (2 vCPUs, 1 GiB)"
ringvisor run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus 2 --memory 1G --cmdline "$CMDLINE"
status=$?
echo "L1: ringvisor exit=$status"
exit "$status"
