#!/bin/sh
# L2 benchmark jobs on the guest's one disk, /dev/vda (virtio-blk) or /dev/sda
# (virtio-scsi) (used by bench/fio-compare.sh through the nested lab): one
# "L2: fio JOB iops=N p50_us=N p99_us=N p999_us=N" line per job. Direct I/O in the guest;
# the backing file's caching is the VMM's business (see the scenario).
RUNTIME=${FIO_RUNTIME:-8}
# SCSI units appear once the host adapter's scan is done.
for i in $(seq 1 40); do
  [ -b /dev/vda ] || [ -b /dev/sda ] && break
  sleep 0.25
done
if [ -b /dev/vda ]; then DISK=/dev/vda; elif [ -b /dev/sda ]; then DISK=/dev/sda; else
  echo "L2: fio no /dev/vda or /dev/sda"
  exit 1
fi
echo "L2: fio disk=$DISK"

# job: NAME RW BS IODEPTH
run_job() {
  out=$(fio --name="$1" --filename=$DISK --ioengine=libaio --direct=1 --rw="$2" \
    --bs="$3" --iodepth="$4" --runtime="$RUNTIME" --time_based --size=192M \
    --randrepeat=1 --norandommap --output-format=terse --terse-version=3 2>/dev/null) || {
    echo "L2: fio $1 failed"
    return 1
  }
  # terse v3: field 8 read IOPS, 49 write IOPS; completion-latency percentiles appear as
  # "P%=usec" fields, reads first (fields 18-37), then writes (59-78).
  echo "$out" | awk -F';' -v name="$1" -v rw="$2" '
    function pct(first, last, want,   i, kv) {
      for (i = first; i <= last; i++) {
        split($i, kv, "=")
        if (kv[1] == want) return kv[2]
      }
      return "?"
    }
    {
      if (rw ~ /write/) { iops = $49; lo = 59; hi = 78 } else { iops = $8; lo = 18; hi = 37 }
      printf "L2: fio %s iops=%s p50_us=%s p99_us=%s p999_us=%s\n", name, iops,
        pct(lo, hi, "50.000000%"), pct(lo, hi, "99.000000%"), pct(lo, hi, "99.900000%")
    }'
}

run_job randread-4k-qd1 randread 4k 1 &&
  run_job randread-4k-qd32 randread 4k 32 &&
  run_job randwrite-4k-qd32 randwrite 4k 32 &&
  run_job seqread-128k-qd8 read 128k 8
