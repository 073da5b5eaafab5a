//! The 16550A UART behind the guest's `ttyS0`.
//!
//! The register model is vm-superio's; this type binds it to an interrupt line and an output
//! sink and gives the VMM a port-I/O shaped interface.

use std::io::Write;

use log::warn;
use ringvisor_io::{IrqEvent, IrqEventError};
use vm_superio::{serial::NoEvents, Serial, Trigger};

/// Number of consecutive I/O ports a 16550 decodes.
pub const SERIAL_PORT_COUNT: u16 = 8;

/// Adapts an [`IrqEvent`] to vm-superio's interrupt trigger.
struct SerialIrq(IrqEvent);

impl Trigger for SerialIrq {
    type E = IrqEventError;

    fn trigger(&self) -> Result<(), IrqEventError> {
        self.0.signal()
    }
}

/// A 16550A UART whose transmitted bytes go to `W` and whose interrupt is an [`IrqEvent`].
pub struct SerialPort<W: Write> {
    uart: Serial<SerialIrq, NoEvents, W>,
}

impl<W: Write> SerialPort<W> {
    pub fn new(irq: IrqEvent, out: W) -> Self {
        Self {
            uart: Serial::new(SerialIrq(irq), out),
        }
    }

    /// Guest read of register `offset` (0..8).
    pub fn read(&mut self, offset: u16) -> u8 {
        match u8::try_from(offset) {
            Ok(offset) if offset < SERIAL_PORT_COUNT as u8 => self.uart.read(offset),
            _ => 0xff,
        }
    }

    /// Guest write of register `offset` (0..8). A failing host sink loses output but never
    /// stops the guest: the UART keeps accepting bytes, like a cable that was pulled.
    pub fn write(&mut self, offset: u16, value: u8) {
        let Ok(offset) = u8::try_from(offset) else {
            return;
        };
        if offset >= SERIAL_PORT_COUNT as u8 {
            return;
        }
        if let Err(err) = self.uart.write(offset, value) {
            warn!("serial: {err}");
        }
    }

    /// Queues host input for the guest; returns how many bytes the receive FIFO took (0 when
    /// it is full: the caller keeps the rest and retries, so no keystroke is lost).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(taken) => taken,
            Err(vm_superio::serial::Error::FullFifo) => 0,
            Err(err) => {
                warn!("serial input: {err}");
                0
            }
        }
    }

    /// The output sink (tests read what the guest transmitted).
    pub fn output(&self) -> &W {
        self.uart.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: u16 = 0;
    const IER: u16 = 1;
    const LSR: u16 = 5;
    const LSR_DATA_READY: u8 = 0x01;
    const IER_RX_DATA: u8 = 0x01;

    fn port() -> (SerialPort<Vec<u8>>, IrqEvent) {
        let irq = IrqEvent::new().unwrap();
        let probe = irq.try_clone().unwrap();
        (SerialPort::new(irq, Vec::new()), probe)
    }

    #[test]
    fn transmitted_bytes_reach_the_sink() {
        let (mut serial, _irq) = port();
        for byte in b"hello" {
            serial.write(DATA, *byte);
        }
        assert_eq!(serial.output(), b"hello");
    }

    #[test]
    fn input_raises_the_irq_and_is_read_in_order() {
        let (mut serial, irq) = port();
        serial.write(IER, IER_RX_DATA);
        assert_eq!(serial.enqueue_input(b"ab"), 2);
        assert!(irq.take_pending() > 0);
        assert_ne!(serial.read(LSR) & LSR_DATA_READY, 0);
        assert_eq!(serial.read(DATA), b'a');
        assert_eq!(serial.read(DATA), b'b');
        assert_eq!(serial.read(LSR) & LSR_DATA_READY, 0);
    }

    #[test]
    fn a_full_fifo_takes_nothing_and_loses_nothing() {
        let (mut serial, _irq) = port();
        let burst = [b'x'; 200];
        let taken = serial.enqueue_input(&burst);
        assert!(taken > 0 && taken < burst.len());
        assert_eq!(serial.enqueue_input(&burst[taken..]), 0);
        for _ in 0..taken {
            assert_eq!(serial.read(DATA), b'x');
        }
        assert!(serial.enqueue_input(&burst[taken..]) > 0);
    }

    #[test]
    fn out_of_range_offsets_are_ignored() {
        let (mut serial, _irq) = port();
        serial.write(9, b'z');
        assert_eq!(serial.read(9), 0xff);
        assert!(serial.output().is_empty());
    }
}
