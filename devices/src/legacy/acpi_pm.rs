//! The sleep registers of a hardware-reduced ACPI platform: sleep control and sleep
//! status, one byte each at consecutive ports. The FADT points the guest at them
//! (`SLEEP_CONTROL_REG`, `SLEEP_STATUS_REG`; its `RESET_REG` is the chipset's reset
//! control register, [`super::reset_control`]); the DSDT's `\_S5_` names the sleep type
//! that means "power off".
//!
//! ACPI 6.5, 4.8.3.7 and 4.8.3.8: the guest writes `SLP_TYPx << 2 | SLP_EN` to the sleep
//! control register, having cleared `WAK_STS` in the status register, then polls the
//! status register for `WAK_STS` until it wakes, which an S5 never does.

/// Ports decoded from the base: control, status.
pub const PM_REGISTER_COUNT: u16 = 2;
pub const SLEEP_CONTROL_OFFSET: u16 = 0;
pub const SLEEP_STATUS_OFFSET: u16 = 1;
/// The sleep type of S5 (soft off), as `\_S5_` declares it.
pub const S5_SLEEP_TYPE: u8 = 5;

const SLEEP_ENABLE: u8 = 1 << 5;
const SLEEP_TYPE_SHIFT: u8 = 2;
const SLEEP_TYPE_MASK: u8 = 0b111;

/// The two registers. They hold no state: status reads 0 (never woke), control acts on
/// the write.
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

    /// True when the write powers the machine off.
    pub fn write(&mut self, offset: u16, value: u8) -> bool {
        if offset != SLEEP_CONTROL_OFFSET || value & SLEEP_ENABLE == 0 {
            return false;
        }
        if (value >> SLEEP_TYPE_SHIFT) & SLEEP_TYPE_MASK == S5_SLEEP_TYPE {
            return true;
        }
        self.ignored_sleep_requests += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_sleep_enable_powers_off() {
        let mut pm = AcpiPmRegisters::new();
        // What Linux writes: WAK_STS to the status register, then SLP_TYP=5 | SLP_EN.
        assert!(!pm.write(SLEEP_STATUS_OFFSET, 0x80));
        assert!(!pm.write(SLEEP_CONTROL_OFFSET, 5 << 2), "no SLP_EN");
        assert!(pm.write(SLEEP_CONTROL_OFFSET, 0x34));
        assert_eq!(pm.read(SLEEP_STATUS_OFFSET), 0);
    }

    #[test]
    fn other_sleep_states_are_counted_not_acted_on() {
        let mut pm = AcpiPmRegisters::new();
        assert!(!pm.write(SLEEP_CONTROL_OFFSET, 3 << 2 | SLEEP_ENABLE));
        assert_eq!(pm.ignored_sleep_requests, 1);
    }
}
