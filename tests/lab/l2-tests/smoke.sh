#!/bin/sh
# Minimal L2 test: proves /init found and ran a test selected by rv.test=smoke, and that
# the dynamically linked fio (with its copied libraries) starts in the guest.
fio --version >/dev/null || exit 1
echo "L2: smoke ok"
