#!/bin/sh
# L1 scenario: the soak (bench/soak.sh). ringvisor, with the seccomp filters enforced, runs
# L2 with a virtio-blk and a virtio-scsi disk and a virtio-net NIC for SOAK_SECS while L2
# writes and verifies both disks and moves TCP both ways (l2-tests/soak.sh). L1 samples
# ringvisor's RSS every 30 s ("L1: soak rss t=S kb=N guest_kb=N vmm_kb=N").
SECS=$(sed -n 's/^SOAK_SECS=//p' /etc/lab/soak.env 2>/dev/null)
SECS=${SECS:-120}
MEMORY=384M
GUEST_KB=$((384 * 1024))
dd if=/dev/zero of=/tmp/soak-blk.img bs=1M count=0 seek=64 2>/dev/null
dd if=/dev/zero of=/tmp/soak-scsi.img bs=1M count=0 seek=64 2>/dev/null
(
  for i in $(seq 1 600); do [ -d /sys/class/net/rvtap0 ] && break; sleep 0.1; done
  ip addr add 169.254.100.1/24 dev rvtap0 && ip link set rvtap0 up
  iperf3 -s -D -B 169.254.100.1
) &
(
  for i in $(seq 1 600); do pid=$(pidof ringvisor) && [ -n "$pid" ] && break; sleep 0.1; done
  start=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    # Guest RAM is ringvisor's own anonymous memory, so the guest touching new pages
    # grows the RSS: vmm_kb leaves out the guest RAM mapping (the one of MEMORY's size)
    # and is what must stay flat.
    split=$(awk -v guest_kb="$GUEST_KB" '
      /^Size:/ { size = $2 }
      /^Rss:/ { total += $2; if (size != guest_kb) vmm += $2 }
      END { printf "kb=%d guest_kb=%d vmm_kb=%d", total, total - vmm, vmm }' /proc/"$pid"/smaps 2>/dev/null)
    echo "L1: soak rss t=$(($(date +%s) - start)) $split"
    sleep 30
  done
) &
rss_pid=$!
echo "L1: soak begin secs=$SECS"
ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus 2 --memory "$MEMORY" --disk path=/tmp/soak-blk.img \
  --scsi-disk path=/tmp/soak-scsi.img --net tap=rvtap0 \
  --cmdline "console=ttyS0 reboot=k panic=-1 quiet rv.test=soak rv.soak_secs=$SECS" </dev/null
status=$?
kill "$rss_pid" 2>/dev/null
pkill iperf3 2>/dev/null
echo "L1: soak vmm exit=$status"
exit "$status"
