#!/bin/sh
# The L2 guest's power-button handler: busybox acpid runs it (as /etc/acpi/PWRF/00000080)
# when the VMM presses the ACPI power button. It powers the guest off as a distribution
# would, so the VMM sees an ACPI S5 and ends in order.
echo "L2: power button pressed" >/dev/console
sync
poweroff -f
