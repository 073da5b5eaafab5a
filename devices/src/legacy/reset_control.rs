//! The reset control register at port 0xCF9 (Intel's PIIX and ICH chipsets, which QEMU
//! models too): the FADT's reset register, and the port Linux falls back to when a
//! hardware-reduced platform has no EFI to reboot through (`reboot=efi` degrades to
//! `reboot=pci`). Writing it with RST_CPU set resets the machine; Linux first writes
//! SYS_RST alone, then SYS_RST | RST_CPU (| FULL_RST for a cold reset).
//!
//! The port sits inside the 0xCF8..0xCFF window of PCI configuration mechanism #1, whose
//! 32-bit accesses it leaves alone: only byte accesses at 0xCF9 are this register.

pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// What the FADT's `RESET_VALUE` writes: SYS_RST | RST_CPU, a hard reset.
pub const RESET_CONTROL_HARD_RESET: u8 = 0x06;

const RST_CPU: u8 = 1 << 2;
/// Bits that read back; RST_CPU is a command, not state.
const LATCHED: u8 = 0b1010;

/// The register; `write` says whether the machine must reset.
#[derive(Debug, Default)]
pub struct ResetControl {
    value: u8,
}

impl ResetControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn read(&self) -> u8 {
        self.value
    }

    /// True when this write resets the machine.
    pub fn write(&mut self, value: u8) -> bool {
        self.value = value & LATCHED;
        value & RST_CPU != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_pci_reboot_sequence_resets_on_rst_cpu() {
        let mut reg = ResetControl::new();
        // inb(0xcf9) & ~0x0e, then | 2: SYS_RST alone does nothing yet.
        assert!(!reg.write(reg.read() | 0x02));
        assert_eq!(reg.read(), 0x02);
        assert!(reg.write(0x0e), "SYS_RST | RST_CPU | FULL_RST");
        assert!(ResetControl::new().write(RESET_CONTROL_HARD_RESET));
        assert_eq!(reg.read() & RST_CPU, 0, "RST_CPU never reads back");
    }
}
