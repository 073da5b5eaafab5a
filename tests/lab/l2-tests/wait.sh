#!/bin/sh
# Waits for the host to end the machine (the knobs scenario sends ringvisor SIGTERM,
# which must shut it down in order).
echo "L2: waiting for the host"
sleep 120
echo "L2: the host never ended the machine"
exit 1
