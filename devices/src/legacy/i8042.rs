//! The reset line of the PC keyboard controller (i8042): rust-vmm's vm-superio device, which
//! models only that line. Linux reboots with `reboot=k` by writing the "pulse reset" command
//! 0xFE to port 0x64 after waiting for the input buffer to drain; every port reads 0, so it
//! never waits. An ACPI guest never probes the controller otherwise: its DSDT names no PS/2
//! device, and Linux says "i8042: PNP: No PS/2 controller found." (measured 2026-12-07 in the
//! lab, Debian's 6.1 kernel, with this device and with the earlier hand-written one whose
//! status read "output full": the same message, boots to init in 4.6-5.1 s with either).

use std::cell::Cell;
use std::convert::Infallible;

use vm_superio::{I8042Device, Trigger};

/// Ports decoded: 0x60 (data) through 0x64 (status/command).
pub const I8042_PORT_COUNT: u16 = 5;

/// Set by the device when the guest pulses the reset line; taken by the port bus.
#[derive(Debug, Default)]
struct ResetRequest(Cell<bool>);

impl Trigger for ResetRequest {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.set(true);
        Ok(())
    }
}

/// The i8042 reset line; reports whether the guest asked for a reset.
#[derive(Debug)]
pub struct I8042ResetLine {
    device: I8042Device<ResetRequest>,
}

impl Default for I8042ResetLine {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042ResetLine {
    pub fn new() -> Self {
        Self {
            device: I8042Device::new(ResetRequest::default()),
        }
    }

    pub fn read(&mut self, offset: u16) -> u8 {
        // The bus decodes offsets 0..I8042_PORT_COUNT only.
        u8::try_from(offset).map_or(0, |offset| self.device.read(offset))
    }

    /// Returns true when this write asked the machine to reset.
    pub fn write(&mut self, offset: u16, value: u8) -> bool {
        let Ok(offset) = u8::try_from(offset) else {
            return false;
        };
        let Ok(()) = self.device.write(offset, value);
        self.device.reset_evt().0.replace(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA_OFFSET: u16 = 0;
    const COMMAND_OFFSET: u16 = 4;
    const COMMAND_PULSE_RESET: u8 = 0xfe;

    #[test]
    fn pulse_reset_command_requests_reset() {
        let mut line = I8042ResetLine::new();
        assert!(!line.write(COMMAND_OFFSET, 0xaa));
        assert!(!line.write(DATA_OFFSET, COMMAND_PULSE_RESET));
        assert!(line.write(COMMAND_OFFSET, COMMAND_PULSE_RESET));
        assert!(
            !line.write(COMMAND_OFFSET, 0xaa),
            "a request is reported once"
        );
    }

    #[test]
    fn input_buffer_is_always_empty_so_reset_never_waits() {
        let mut line = I8042ResetLine::new();
        const STATUS_INPUT_FULL: u8 = 0x02;
        assert_eq!(line.read(COMMAND_OFFSET) & STATUS_INPUT_FULL, 0);
        assert_eq!(line.read(DATA_OFFSET), 0);
    }
}
