#!/bin/sh
# L2 test for the knobs scenario: writes 64 KiB blocks to /dev/vda, each with its own
# pattern, each made durable (fsync: a FLUSH to the disk) before "L2: durable flushed=N" says
# so, until the host ends the machine with SIGTERM mid-stream. The scenario then checks
# that every block reported flushed is in the disk file: nothing acknowledged is lost.
pattern() { # pattern N: 64 KiB of "rv-block N" lines
  yes "rv-block $1" | head -c 65536
}
i=0
while [ "$i" -lt 256 ]; do
  pattern "$i" | dd of=/dev/vda bs=65536 seek="$i" count=1 iflag=fullblock conv=fsync 2>/dev/null || {
    echo "L2: durable write $i failed"
    exit 1
  }
  echo "L2: durable flushed=$i"
  i=$((i + 1))
done
echo "L2: durable wrote every block; waiting for the host"
sleep 120
