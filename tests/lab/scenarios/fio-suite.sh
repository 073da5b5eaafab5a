#!/bin/sh
# The fio suite's driver (`ringvisor bench run`): the jobs in $SUITE/jobs.txt ("ID DEVICE
# FIO-ARGS...", DEVICE blk or scsi, the disk written @DEV@) run in the stock L2 guest under
# ringvisor (one virtio-blk disk and one virtio-scsi unit, fio's json+ coming back over the
# virtio-serial port rv.results, each job's device-side histograms read through the API
# before and after it), then on this host against the same disks (the bare-metal
# reference), then, with QEMU=1 in $SUITE/env, in the same guest under QEMU 10 with KVM at
# its best (iothread-vq-mapping). A guest-written pattern is then read back on the host
# (the data check). "L1: suite ..." lines report progress.
# It runs in two places, told apart by $SUITE/env:
# - in L1 of the nested lab (the defaults below): the disks are files in L1's tmpfs, and
#   everything in $OUT is written after every job as a tar archive onto COLLECT_DEV
#   (lab.sh run --collect FILE);
# - directly on a host with hardware KVM: TARGET names the disk (a block device or a
#   file) that every VMM's disks and the bare-metal fio use, O_DIRECT; SUITE, OUT, WORK,
#   LAB_LIB, L2_KERNEL, L2_INITRAMFS and RINGVISOR point into the run's directory and at
#   the binary that runs the suite. GUEST_ROOT, when set, is a root file system image (the
#   lab's Debian image) that both VMMs give the guest as its first virtio-blk disk, read-
#   write: the guest boots it (rv.root=) and runs the jobs from its own systemd unit; the
#   suite's blk disk is then the guest's /dev/vdb.
SUITE=${SUITE:-/etc/suite}
. "$SUITE/env"
. "${LAB_LIB:-/lib/lab}/measure.sh"
costs_setup
VCPUS=${VCPUS:-2}
MEMORY=${MEMORY:-384M}
DISK_MB=${DISK_MB:-256}
OUT=${OUT:-/tmp/suite/raw}
WORK=${WORK:-/tmp}
L2_KERNEL=${L2_KERNEL:-/l2/vmlinuz}
L2_INITRAMFS=${L2_INITRAMFS:-/l2/initramfs.cpio.gz}
RINGVISOR=${RINGVISOR:-ringvisor}
BLK_DISK=${TARGET:-$WORK/blk.img}
SCSI_DISK=${TARGET:-$WORK/scsi.img}
mkdir -p "$OUT/ringvisor" "$OUT/bare" "$OUT/qemu"
cp "$SUITE/matrix.json" "$SUITE/meta.json" "$OUT/" 2>/dev/null
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=fio-suite quiet"
BLK_GUEST_DISK=/dev/vda
BOOT_WAIT=0
if [ -n "${GUEST_ROOT:-}" ]; then
  BOOT_WAIT=900
  CMDLINE="console=ttyS0 reboot=k panic=-1 rv.root=/dev/vda rv.lab=fio-suite quiet"
  BLK_GUEST_DISK=/dev/vdb
fi
# Polled jobs (fio --hipri) need a virtio-blk poll queue in the guest: one more queue on
# the blk disk, polled (virtio_blk.poll_queues=1), beside one per vCPU as before.
BLK_QUEUES=$VCPUS
if grep -q -- '--hipri' "$SUITE/jobs.txt"; then
  BLK_QUEUES=$((VCPUS + 1))
  CMDLINE="$CMDLINE virtio_blk.poll_queues=1"
fi
total=$(grep -c . "$SUITE/jobs.txt")

# Fresh zeroed files for each target in the lab; a named TARGET is used as it is (its
# size was checked before the run).
make_disks() {
  [ -n "${TARGET:-}" ] && return 0
  rm -f "$BLK_DISK" "$SCSI_DISK"
  dd if=/dev/zero of="$BLK_DISK" bs=1M count="$DISK_MB" 2>/dev/null
  dd if=/dev/zero of="$SCSI_DISK" bs=1M count="$DISK_MB" 2>/dev/null
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
guest_disk() { [ "$1" = blk ] && echo "$BLK_GUEST_DISK" || echo /dev/sda; }
# What is finished so far goes to the lab's collect disk after every job: a run stopped
# halfway (Ctrl-C on the host) keeps it. Only a COLLECT_DEV named in $SUITE/env is ever
# written: on a real host /dev/vda may be the root disk.
collect() {
  [ -n "${COLLECT_DEV:-}" ] && [ -b "$COLLECT_DEV" ] &&
    tar -cf "$COLLECT_DEV" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null && sync
}

# drive TARGET RESULTS-FILE: feeds the jobs to the guest through the FIFO behind rv.jobs.
drive() {
  target=$1
  results=$2
  n=0
  exec 5>"$WORK/jobs.in"
  while read -r id device args; do
    n=$((n + 1))
    runtime=$(echo "$args" | sed -n 's/.*--runtime=\([0-9]*\).*/\1/p')
    [ "$target" = ringvisor ] &&
      "$RINGVISOR" ctl --socket "$WORK/rv.sock" histograms >"$OUT/ringvisor/$id.hist-before.json" 2>&1
    costs_snapshot "$vmm_pid" >"$WORK/costs.before"
    echo "$id $(guest_disk "$device") $args" >&5
    # The first job also waits for the guest to boot (a distribution's systemd is slower).
    boot_wait=0
    [ "$n" = 1 ] && boot_wait=$BOOT_WAIT
    if wait_end "$results" "$id" $((${runtime:-10} + 120 + boot_wait)); then
      costs_snapshot "$vmm_pid" >"$WORK/costs.after"
      [ "$target" = ringvisor ] &&
        "$RINGVISOR" ctl --socket "$WORK/rv.sock" histograms >"$OUT/ringvisor/$id.hist-after.json" 2>&1
      extract "$results" "$id" >"$OUT/$target/$id.fio.json"
      echo "$(costs_diff "$WORK/costs.before" "$WORK/costs.after") guest_irqs=$(guest_irqs "$results" "$id")" \
        >"$OUT/$target/$id.costs"
      collect
      echo "L1: suite done target=$target job=$n/$total id=$id"
    else
      echo "L1: suite lost target=$target job=$n/$total id=$id"
      break
    fi
  done <"$SUITE/jobs.txt"
  # The data check's guest half: a pattern written through ringvisor's virtio-blk disk
  # and verified in the guest; the host reads it back once the VMM is gone.
  if [ "$target" = ringvisor ]; then
    echo "data-check $(guest_disk blk) $DATA_CHECK_JOB --filename=@DEV@ --ioengine=io_uring --direct=1 --do_verify=1 --output-format=json" >&5
    wait_end "$results" data-check 300 && extract "$results" data-check >"$OUT/ringvisor/data-check.fio.json"
  fi
  echo "exit" >&5
  exec 5>&-
}

# 16 MiB at the start of the blk disk, every 64 KiB block with its CRC32C.
DATA_CHECK_JOB="--name=data-check --rw=write --bs=64k --size=16M --offset=0 --verify=crc32c --verify_fatal=1"

# data_check: the host's half; writes the verdict to $OUT/data-check.
data_check() {
  guest_error=$(grep -o '"error" *: *[0-9]*' "$OUT/ringvisor/data-check.fio.json" 2>/dev/null | head -n 1 | grep -o '[0-9]*$')
  direct=0
  [ -n "${TARGET:-}" ] && direct=1
  # shellcheck disable=SC2086 # the job's arguments are words
  fio $DATA_CHECK_JOB --filename="$BLK_DISK" --ioengine=psync --direct="$direct" --verify_only \
    >"$WORK/data-check.host" 2>&1
  host_exit=$?
  if [ "$guest_error" = 0 ] && [ "$host_exit" = 0 ]; then
    echo "ok: 16 MiB written by the guest through ringvisor's virtio-blk with CRC32C per 64 KiB, verified in the guest and read back on the host" >"$OUT/data-check"
  else
    echo "FAILED: guest fio error=${guest_error:-none} host verify exit=$host_exit: $(tail -n 3 "$WORK/data-check.host" | tr '\n' ' ')" >"$OUT/data-check"
  fi
  echo "L1: suite data-check $(cat "$OUT/data-check")"
}

rm -f "$WORK/jobs.in" "$WORK/jobs.out"
mkfifo "$WORK/jobs.in" "$WORK/jobs.out"
: >"$WORK/results.bin"
make_disks
echo "L1: suite begin target=ringvisor jobs=$total"
"$RINGVISOR" run --no-reboot --kernel "$L2_KERNEL" --initramfs "$L2_INITRAMFS" \
  --cpus "$VCPUS" --memory "$MEMORY" ${GUEST_ROOT:+--disk "path=$GUEST_ROOT"} \
  --disk path="$BLK_DISK",queues="$BLK_QUEUES" \
  --scsi queues="$VCPUS" --scsi-disk path="$SCSI_DISK" \
  --virtio-console file="$WORK/hvc0.out" \
  --serial-port name=rv.jobs,pipe="$WORK/jobs" \
  --serial-port name=rv.results,file="$WORK/results.bin" \
  --api-socket "$WORK/rv.sock" --cmdline "$CMDLINE" </dev/null >"$WORK/rv.out" 2>&1 &
rv_pid=$!
vmm_pid=$rv_pid
# The first job's histogram snapshot needs the API: wait until it answers (a CI run took
# its snapshot before the socket existed).
for i in $(seq 1 600); do
  "$RINGVISOR" ctl --socket "$WORK/rv.sock" info >/dev/null 2>&1 && break
  kill -0 "$rv_pid" 2>/dev/null || break
  sleep 0.1
done
drive ringvisor "$WORK/results.bin"
wait "$rv_pid"
echo "L1: suite end target=ringvisor exit=$?"
data_check
collect

# The bare-metal reference: the same jobs on this host, on the same disks (polling
# stripped: a polled job runs there as its interrupt-driven self). In the lab the disks
# are in tmpfs, which has no O_DIRECT in 6.1: buffered there, as the VMM's own access.
echo "L1: suite begin target=bare jobs=$total"
make_disks
direct_off='s/--direct=1/--direct=0/'
[ -n "${TARGET:-}" ] && direct_off='s/^//'
n=0
while read -r id device args; do
  n=$((n + 1))
  file=$BLK_DISK
  [ "$device" = scsi ] && file=$SCSI_DISK
  # shellcheck disable=SC2086 # the arguments are words
  fio $(echo "$args" | sed -e "s#@DEV@#$file#" -e "$direct_off" -e 's/ --hipri//') \
    >"$OUT/bare/$id.fio.json" 2>&1
  collect
  echo "L1: suite done target=bare job=$n/$total id=$id"
done <"$SUITE/jobs.txt"

if [ "${QEMU:-0}" = 1 ]; then
  echo "L1: suite begin target=qemu jobs=$total"
  make_disks
  : >"$WORK/qresults.bin"
  # QEMU at its best (10.x): one iothread per core, each with its own io_uring carrying
  # kicks and disk I/O, the queues of both controllers spread over them (iothread-vq-mapping).
  # Devices given as JSON (the mapping is a list) must all be: a scsi-hd given in the
  # plain syntax does not find a JSON controller's bus. A named TARGET is opened O_DIRECT
  # (cache=none) like ringvisor's, once per controller (file.locking=off: both are QEMU's).
  qemu_iothreads
  drive_opts="format=raw,aio=io_uring,cache=writeback"
  [ -n "${TARGET:-}" ] && drive_opts="format=raw,aio=io_uring,cache=none,file.locking=off"
  qemu-system-x86_64 -enable-kvm -cpu host -smp "$VCPUS" -m "$MEMORY" \
    -nographic -nic none -no-reboot $QEMU_IOTHREAD_OBJECTS \
    ${GUEST_ROOT:+-drive "file=$GUEST_ROOT,if=none,id=root,format=raw" -device virtio-blk-pci,drive=root} \
    -drive "file=$BLK_DISK,if=none,id=d0,$drive_opts" \
    -device "{\"driver\":\"virtio-blk-pci\",\"drive\":\"d0\",\"num-queues\":$BLK_QUEUES,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
    -drive "file=$SCSI_DISK,if=none,id=d1,$drive_opts" \
    -device "{\"driver\":\"virtio-scsi-pci\",\"id\":\"scsi0\",\"num_queues\":$VCPUS,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
    -device '{"driver":"scsi-hd","drive":"d1","bus":"scsi0.0"}' \
    -device virtio-serial-pci \
    -chardev "pipe,id=jobs,path=$WORK/jobs" -device virtserialport,chardev=jobs,name=rv.jobs \
    -chardev "file,id=res,path=$WORK/qresults.bin" -device virtserialport,chardev=res,name=rv.results \
    -kernel "$L2_KERNEL" -initrd "$L2_INITRAMFS" -append "$CMDLINE" \
    </dev/null >"$WORK/qemu.out" 2>&1 &
  qemu_pid=$!
  vmm_pid=$qemu_pid
  drive qemu "$WORK/qresults.bin"
  wait "$qemu_pid"
  echo "L1: suite end target=qemu exit=$?"
fi

costs_teardown
/bin/date -u +%Y-%m-%dT%H:%M:%SZ >"$OUT/finished"
if collect; then echo "L1: suite collected"; else echo "L1: suite no collect disk"; fi
