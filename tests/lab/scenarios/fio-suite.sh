#!/bin/sh
# L1 scenario for the fio suite (bench: `fio-suite run`): the jobs in /etc/suite/jobs.txt
# ("ID DEVICE FIO-ARGS...", DEVICE blk or scsi, the disk written @DEV@) run in the stock
# L2 guest under ringvisor (one virtio-blk disk and one virtio-scsi unit, fio's json+
# coming back over the virtio-serial port rv.results, each job's device-side histograms
# read through the API before and after it), then on L1 itself against the same backing
# files (the bare-metal reference), then, with QEMU=1 in /etc/suite/env, in the same
# guest under QEMU 10 with KVM at its best (iothread-vq-mapping). Everything lands in /tmp/suite/raw, written at the end as a tar
# archive onto L1's /dev/vda (lab.sh run --collect FILE); "L1: suite ..." lines on the
# console report progress.
. /etc/suite/env
. /lib/lab/measure.sh
costs_setup
VCPUS=${VCPUS:-2}
MEMORY=${MEMORY:-384M}
DISK_MB=${DISK_MB:-256}
OUT=/tmp/suite/raw
mkdir -p "$OUT/ringvisor" "$OUT/bare" "$OUT/qemu"
cp /etc/suite/matrix.json /etc/suite/meta.json "$OUT/" 2>/dev/null
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=fio-suite quiet"
# Polled jobs (fio --hipri) need a virtio-blk poll queue in the guest: one more queue on
# the blk disk, polled (virtio_blk.poll_queues=1), beside one per vCPU as before.
BLK_QUEUES=$VCPUS
if grep -q -- '--hipri' /etc/suite/jobs.txt; then
  BLK_QUEUES=$((VCPUS + 1))
  CMDLINE="$CMDLINE virtio_blk.poll_queues=1"
fi
total=$(grep -c . /etc/suite/jobs.txt)

make_disks() {
  rm -f /tmp/blk.img /tmp/scsi.img
  dd if=/dev/zero of=/tmp/blk.img bs=1M count="$DISK_MB" 2>/dev/null
  dd if=/dev/zero of=/tmp/scsi.img bs=1M count="$DISK_MB" 2>/dev/null
}

# The results port's file grows by one "#begin ID" ... "#end ID" block per job.
wait_end() { # wait_end FILE ID SECONDS
  for i in $(seq 1 $(($3 * 10))); do
    grep -q "^#end $2\$" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
extract() { # extract FILE ID: the job's output, between its markers
  awk -v id="$2" '$0 == "#end " id { on = 0 } on && !/^#irqs / { print } $0 == "#begin " id { on = 1 }' "$1"
}
guest_irqs() { # guest_irqs FILE ID: the guest's disk interrupts during the job
  awk -v id="$2" '$1 == "#irqs" && $2 == id { print $3 }' "$1" | tail -n 1
}
guest_disk() { [ "$1" = blk ] && echo /dev/vda || echo /dev/sda; }
# What is finished so far goes to the collect disk after every job: a run stopped
# halfway (Ctrl-C on the host) keeps it.
collect() {
  [ -b /dev/vda ] && tar -cf /dev/vda -C /tmp/suite raw 2>/dev/null && sync
}

# drive TARGET RESULTS-FILE: feeds the jobs to the guest through the FIFO behind rv.jobs.
drive() {
  target=$1
  results=$2
  n=0
  exec 5>/tmp/jobs.in
  while read -r id device args; do
    n=$((n + 1))
    runtime=$(echo "$args" | sed -n 's/.*--runtime=\([0-9]*\).*/\1/p')
    [ "$target" = ringvisor ] &&
      ringvisor ctl --socket /tmp/rv.sock histograms >"$OUT/ringvisor/$id.hist-before.json" 2>&1
    costs_snapshot "$vmm_pid" >/tmp/costs.before
    echo "$id $(guest_disk "$device") $args" >&5
    if wait_end "$results" "$id" $((${runtime:-10} + 120)); then
      costs_snapshot "$vmm_pid" >/tmp/costs.after
      [ "$target" = ringvisor ] &&
        ringvisor ctl --socket /tmp/rv.sock histograms >"$OUT/ringvisor/$id.hist-after.json" 2>&1
      extract "$results" "$id" >"$OUT/$target/$id.fio.json"
      echo "$(costs_diff /tmp/costs.before /tmp/costs.after) guest_irqs=$(guest_irqs "$results" "$id")" \
        >"$OUT/$target/$id.costs"
      collect
      echo "L1: suite done target=$target job=$n/$total id=$id"
    else
      echo "L1: suite lost target=$target job=$n/$total id=$id"
      break
    fi
  done </etc/suite/jobs.txt
  echo "exit" >&5
  exec 5>&-
}

rm -f /tmp/jobs.in /tmp/jobs.out
mkfifo /tmp/jobs.in /tmp/jobs.out
: >/tmp/results.bin
make_disks
echo "L1: suite begin target=ringvisor jobs=$total"
ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus "$VCPUS" --memory "$MEMORY" \
  --disk path=/tmp/blk.img,queues="$BLK_QUEUES" \
  --scsi queues="$VCPUS" --scsi-disk path=/tmp/scsi.img \
  --virtio-console file=/tmp/hvc0.out \
  --serial-port name=rv.jobs,pipe=/tmp/jobs \
  --serial-port name=rv.results,file=/tmp/results.bin \
  --api-socket /tmp/rv.sock --cmdline "$CMDLINE" </dev/null >/tmp/rv.out 2>&1 &
rv_pid=$!
vmm_pid=$rv_pid
# The first job's histogram snapshot needs the API: wait until it answers (a CI run took
# its snapshot before the socket existed).
for i in $(seq 1 600); do
  ringvisor ctl --socket /tmp/rv.sock info >/dev/null 2>&1 && break
  kill -0 "$rv_pid" 2>/dev/null || break
  sleep 0.1
done
drive ringvisor /tmp/results.bin
wait "$rv_pid"
echo "L1: suite end target=ringvisor exit=$?"

# The bare-metal reference: the same jobs on L1, on the same files (tmpfs: no O_DIRECT
# in 6.1, so buffered, as the VMM's own access to them; nor polling: a polled job runs
# there as its interrupt-driven self).
echo "L1: suite begin target=bare jobs=$total"
make_disks
n=0
while read -r id device args; do
  n=$((n + 1))
  file=/tmp/$device.img
  # shellcheck disable=SC2086 # the arguments are words
  fio $(echo "$args" | sed -e "s#@DEV@#$file#" -e 's/--direct=1/--direct=0/' -e 's/ --hipri//') \
    >"$OUT/bare/$id.fio.json" 2>&1
  collect
  echo "L1: suite done target=bare job=$n/$total id=$id"
done </etc/suite/jobs.txt

if [ "${QEMU:-0}" = 1 ]; then
  echo "L1: suite begin target=qemu jobs=$total"
  make_disks
  : >/tmp/qresults.bin
  # QEMU at its best (10.x): one iothread per L1 core, each with its own io_uring carrying
  # kicks and disk I/O, the queues of both controllers spread over them (iothread-vq-mapping).
  # Devices given as JSON (the mapping is a list) must all be: a scsi-hd given in the
  # plain syntax does not find a JSON controller's bus.
  qemu_iothreads
  qemu-system-x86_64 -enable-kvm -cpu host -smp "$VCPUS" -m "$MEMORY" \
    -nographic -nic none -no-reboot $QEMU_IOTHREAD_OBJECTS \
    -drive file=/tmp/blk.img,if=none,id=d0,format=raw,aio=io_uring,cache=writeback \
    -device "{\"driver\":\"virtio-blk-pci\",\"drive\":\"d0\",\"num-queues\":$BLK_QUEUES,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
    -drive file=/tmp/scsi.img,if=none,id=d1,format=raw,aio=io_uring,cache=writeback \
    -device "{\"driver\":\"virtio-scsi-pci\",\"id\":\"scsi0\",\"num_queues\":$VCPUS,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
    -device '{"driver":"scsi-hd","drive":"d1","bus":"scsi0.0"}' \
    -device virtio-serial-pci \
    -chardev pipe,id=jobs,path=/tmp/jobs -device virtserialport,chardev=jobs,name=rv.jobs \
    -chardev file,id=res,path=/tmp/qresults.bin -device virtserialport,chardev=res,name=rv.results \
    -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE" \
    </dev/null >/tmp/qemu.out 2>&1 &
  qemu_pid=$!
  vmm_pid=$qemu_pid
  drive qemu /tmp/qresults.bin
  wait "$qemu_pid"
  echo "L1: suite end target=qemu exit=$?"
fi

/bin/date -u +%Y-%m-%dT%H:%M:%SZ >"$OUT/finished"
if collect; then echo "L1: suite collected"; else echo "L1: suite no collect disk"; fi
