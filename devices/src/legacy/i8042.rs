//! The reset line of the PC keyboard controller (i8042).
//!
//! Linux reboots with `reboot=k` by writing the "pulse reset" command 0xFE to port 0x64; that
//! is how a guest without ACPI asks its VMM to stop. We model only that line, not a keyboard:
//! the status register reports "output buffer full" with a data port that never drains, which
//! Linux's i8042 probe reads as "no controller" within a few reads instead of timing out for
//! seconds on self-test commands nobody answers. The input buffer always reads empty, so the
//! reset path never waits.

/// Ports decoded: 0x60 (data) through 0x64 (status/command).
pub const I8042_PORT_COUNT: u16 = 5;

const DATA_OFFSET: u16 = 0;
const COMMAND_OFFSET: u16 = 4;
const STATUS_OUTPUT_FULL: u8 = 0x01;
const COMMAND_PULSE_RESET: u8 = 0xfe;

/// The i8042 reset line; reports whether the guest asked for a reset.
#[derive(Debug, Default)]
pub struct I8042ResetLine {
    reset_requested: bool,
}

impl I8042ResetLine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            COMMAND_OFFSET => STATUS_OUTPUT_FULL,
            DATA_OFFSET => 0,
            _ => 0xff,
        }
    }

    /// Returns true when this write asked the machine to reset.
    pub fn write(&mut self, offset: u16, value: u8) -> bool {
        if offset == COMMAND_OFFSET && value == COMMAND_PULSE_RESET {
            self.reset_requested = true;
            return true;
        }
        false
    }

    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulse_reset_command_requests_reset() {
        let mut line = I8042ResetLine::new();
        assert!(!line.write(COMMAND_OFFSET, 0xaa));
        assert!(!line.write(DATA_OFFSET, COMMAND_PULSE_RESET));
        assert!(!line.reset_requested());
        assert!(line.write(COMMAND_OFFSET, COMMAND_PULSE_RESET));
        assert!(line.reset_requested());
    }

    #[test]
    fn input_buffer_is_always_empty_so_reset_never_waits() {
        let mut line = I8042ResetLine::new();
        const STATUS_INPUT_FULL: u8 = 0x02;
        assert_eq!(line.read(COMMAND_OFFSET) & STATUS_INPUT_FULL, 0);
        assert_eq!(line.read(DATA_OFFSET), 0);
    }
}
