#!/bin/sh
# The last L2 test: asks L1 (through the rv.events port, see lowprio.sh) to shut the VMM
# down in order through the control API, and waits for that to end the machine.
echo "L2: shutdown waiting"
echo shutdown >/dev/virtio-ports/rv.events
sleep 120
echo "L2: shutdown did not come"
exit 1
