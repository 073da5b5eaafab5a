//! The registers of a hardware-reduced ACPI platform: sleep control, sleep status and reset,
//! one byte each at consecutive ports. The FADT points the guest at them
//! (`SLEEP_CONTROL_REG`, `SLEEP_STATUS_REG`, `RESET_REG`); the DSDT's `\_S5_` names the
//! sleep type that means "power off".
//!
//! ACPI 6.5, 4.8.3.7 and 4.8.3.8: the guest writes `SLP_TYPx << 2 | SLP_EN` to the sleep
//! control register, having cleared `WAK_STS` in the status register, then polls the
//! status register for `WAK_STS` until it wakes, which an S5 never does.

/// Ports decoded from the base: control, status, reset.
pub const PM_REGISTER_COUNT: u16 = 3;
pub const SLEEP_CONTROL_OFFSET: u16 = 0;
pub const SLEEP_STATUS_OFFSET: u16 = 1;
pub const RESET_OFFSET: u16 = 2;
/// What the guest writes to the reset register (FADT `RESET_VALUE`).
pub const RESET_VALUE: u8 = 0x01;
/// The sleep type of S5 (soft off), as `\_S5_` declares it.
pub const S5_SLEEP_TYPE: u8 = 5;

const SLEEP_ENABLE: u8 = 1 << 5;
const SLEEP_TYPE_SHIFT: u8 = 2;
const SLEEP_TYPE_MASK: u8 = 0b111;

/// What the platform must do after a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformRequest {
    Poweroff,
    Reset,
}

/// The three registers. They hold no state: status reads 0 (never woke), control and
/// reset act on the write.
#[derive(Debug, Default)]
pub struct AcpiPmRegisters {
    /// Sleep types other than S5 the guest asked for (S1-S4 are not offered; a write of
    /// one is a guest bug worth counting, not an action).
    pub ignored_sleep_requests: u64,
}

impl AcpiPmRegisters {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn read(&self, _offset: u16) -> u8 {
        0
    }

    /// Returns what the write asks of the platform, if anything.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<PlatformRequest> {
        match offset {
            SLEEP_CONTROL_OFFSET if value & SLEEP_ENABLE != 0 => {
                if (value >> SLEEP_TYPE_SHIFT) & SLEEP_TYPE_MASK == S5_SLEEP_TYPE {
                    Some(PlatformRequest::Poweroff)
                } else {
                    self.ignored_sleep_requests += 1;
                    None
                }
            }
            RESET_OFFSET if value == RESET_VALUE => Some(PlatformRequest::Reset),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_sleep_enable_powers_off() {
        let mut pm = AcpiPmRegisters::new();
        // What Linux writes: WAK_STS to the status register, then SLP_TYP=5 | SLP_EN.
        assert_eq!(pm.write(SLEEP_STATUS_OFFSET, 0x80), None);
        assert_eq!(pm.write(SLEEP_CONTROL_OFFSET, 5 << 2), None, "no SLP_EN");
        assert_eq!(
            pm.write(SLEEP_CONTROL_OFFSET, 0x34),
            Some(PlatformRequest::Poweroff)
        );
        assert_eq!(pm.read(SLEEP_STATUS_OFFSET), 0);
    }

    #[test]
    fn other_sleep_states_are_counted_not_acted_on() {
        let mut pm = AcpiPmRegisters::new();
        assert_eq!(pm.write(SLEEP_CONTROL_OFFSET, 3 << 2 | SLEEP_ENABLE), None);
        assert_eq!(pm.ignored_sleep_requests, 1);
    }

    #[test]
    fn reset_register_resets_on_its_value_only() {
        let mut pm = AcpiPmRegisters::new();
        assert_eq!(pm.write(RESET_OFFSET, 0x06), None);
        assert_eq!(
            pm.write(RESET_OFFSET, RESET_VALUE),
            Some(PlatformRequest::Reset)
        );
        assert_eq!(pm.write(3, RESET_VALUE), None);
    }
}
