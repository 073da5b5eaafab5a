#!/bin/sh
# L2 side of the fio suite (tests/lab/scenarios/fio-suite.sh): reads "ID DISK FIO-ARGS"
# lines from the virtio-serial port rv.jobs, runs each fio job on DISK (the @DEV@ in its
# arguments), and writes its json+ output and a "#irqs ID N" line (the disks' interrupts
# during the job) between "#begin ID" and "#end ID" lines to the port rv.results; "exit"
# ends it. It runs in the lab's initramfs (rv.test=fio-suite) and in the Debian root image
# (rv.lab=fio-suite, tests/lab/debian/rv-lab.sh), whose own root disk is never a job's.
mkdir -p /dev/virtio-ports
for i in $(seq 1 80); do
  for port in /sys/class/virtio-ports/*; do
    name=$(cat "$port/name" 2>/dev/null)
    [ -n "$name" ] && [ -e "/dev/${port##*/}" ] && ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$name"
  done
  [ -e /dev/virtio-ports/rv.jobs ] && [ -e /dev/virtio-ports/rv.results ] && break
  sleep 0.25
done
# wait_disk DISK: the disks probe beside the ports; a job waits up to 20 s for its own.
wait_disk() {
  for i in $(seq 1 80); do
    [ -b "$1" ] && return 0
    sleep 0.25
  done
  return 1
}
# The interrupts of the disks' request queues (virtio-blk "virtioN-req.Q", virtio-scsi
# "virtioN-request"), summed over CPUs: a job's count goes with its output ("#irqs ID N").
disk_interrupts() {
  awk '/-req/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }' /proc/interrupts
}
exec 3</dev/virtio-ports/rv.jobs
exec 4>/dev/virtio-ports/rv.results
jobs=0
while read -r id disk args <&3; do
  [ "$id" = exit ] && break
  jobs=$((jobs + 1))
  echo "#begin $id" >&4
  before=$(disk_interrupts)
  if ! wait_disk "$disk"; then
    echo "fio-suite: no disk $disk in the guest" >&4
  elif grep -q "^$disk " /proc/mounts; then
    echo "fio-suite: $disk is mounted in the guest (its root?): no job writes it" >&4
  else
    # shellcheck disable=SC2086 # the arguments are words
    fio $(echo "$args" | sed "s#@DEV@#$disk#") >&4 2>&1
  fi
  printf '\n#irqs %s %s\n#end %s\n' "$id" $(($(disk_interrupts) - before)) "$id" >&4
done
echo "L2: fio-suite jobs=$jobs"
