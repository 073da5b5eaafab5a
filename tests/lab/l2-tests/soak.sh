#!/bin/sh
# L2 side of the soak (tests/lab/scenarios/soak.sh): for rv.soak_secs= seconds at once,
# fio writes with CRC32C verification on virtio-blk (/dev/vda) and virtio-scsi (/dev/sda),
# each written block read back and checked while the run goes on (verify_backlog), and
# TCP traffic both ways to L1 (iperf3 --bidir) with a ping every second. Then one line
# each: "L2: soak fio DEV exit=N error=N kib=N", "L2: soak net exit=N mbps=N",
# "L2: soak ping sent=N received=N".
SECS=60
read -r cmdline </proc/cmdline
for word in $cmdline; do
  case $word in rv.soak_secs=*) SECS=${word#rv.soak_secs=} ;; esac
done
for i in $(seq 1 40); do [ -d /sys/class/net/eth0 ] && [ -b /dev/sda ] && break; sleep 0.25; done
ip addr add 169.254.100.2/24 dev eth0 && ip link set eth0 up || { echo "L2: soak no eth0"; exit 1; }
for i in $(seq 1 40); do ping -c 1 -W 1 169.254.100.1 >/dev/null 2>&1 && break; done
echo "L2: soak begin secs=$SECS"

soak_fio() { # soak_fio NAME DEV
  fio --name="$1" --filename="$2" --ioengine=libaio --direct=1 --rw=randwrite \
    --bsrange=4k-64k --iodepth=8 --size=48M --time_based --runtime="$SECS" \
    --verify=crc32c --verify_backlog=256 --verify_fatal=1 --do_verify=1 \
    --output-format=terse --terse-version=3 >"/tmp/$1.out" 2>"/tmp/$1.err"
  echo $? >"/tmp/$1.rc"
  # Each job says when it ends, so that a run that never finishes shows which one hangs.
  echo "L2: soak $1 done rc=$(cat "/tmp/$1.rc")"
}
soak_fio blk /dev/vda &
soak_fio scsi /dev/sda &
(
  # iperf3's end-of-test exchange can wait forever on a lost control message.
  timeout $((SECS + 120)) iperf3 -c 169.254.100.1 --bidir -t "$SECS" -f m >/tmp/net.out 2>&1
  echo $? >/tmp/net.rc
  echo "L2: soak net done rc=$(cat /tmp/net.rc)"
) &
(
  ping -c "$SECS" -W 2 169.254.100.1 >/tmp/ping.out 2>&1
  echo "L2: soak ping done"
) &
wait

for name in blk scsi; do
  # Terse v3: field 5 is the job's error code, 6 and 47 the KiB read and written.
  line=$(grep '^3;' "/tmp/$name.out" | head -n 1)
  error=$(echo "$line" | awk -F';' '{ print $5 }')
  kib=$(echo "$line" | awk -F';' '{ print $6 + $47 }')
  echo "L2: soak fio $name exit=$(cat /tmp/$name.rc) error=${error:-none} kib=${kib:-0}"
  [ -s "/tmp/$name.err" ] && head -c 400 "/tmp/$name.err" | tr '\n' '|' | sed 's/^/L2: soak fio stderr /' && echo
done
mbps=$(awk '/SUM.*receiver|receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") s = s " " $(i - 1) } END { print s }' /tmp/net.out)
echo "L2: soak net exit=$(cat /tmp/net.rc 2>/dev/null) mbps=$mbps"
sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
echo "L2: soak ping sent=${sent:-0} received=${received:-0}"
