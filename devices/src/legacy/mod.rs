//! Legacy PC devices reached through port I/O.

pub mod acpi_pm;
mod i8042;
pub mod reset_control;
mod rtc;
mod serial;

pub use acpi_pm::AcpiPmRegisters;
pub use i8042::{I8042ResetLine, I8042_PORT_COUNT};
pub use reset_control::ResetControl;
pub use rtc::{CmosRtc, RTC_PORT_COUNT};
pub use serial::{SerialPort, SERIAL_PORT_COUNT};
