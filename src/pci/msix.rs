//! MSI-X for a PCI function: the capability, the vector table and the pending-bit array.
//!
//! Each vector owns an [`IrqEvent`] and an interrupt line (GSI). Whoever raises the vector
//! (a reactor thread, the config-change path) just writes the eventfd. While the vector can
//! be delivered, the eventfd is bound to its GSI (irqfd) and the GSI routed to the guest's
//! message, so the write becomes an interrupt inside the hypervisor. While it is masked the
//! eventfd is unbound: writes stay counted there, which is exactly the pending bit, and
//! binding it again delivers them.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use log::warn;
use ringvisor_io::{IrqEvent, IrqEventError};

use super::vm_events::{InterruptController, MsiMessage, VmEventError};

pub const MSIX_CAPABILITY_ID: u8 = 0x11;
/// Bytes of one table entry: address low, address high, data, vector control.
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// The capability's length in configuration space.
pub const MSIX_CAPABILITY_LEN: usize = 12;
/// Offset of the message control word within the capability.
pub const MSIX_CONTROL_OFFSET: usize = 2;
const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// The table size field is N-1 in 11 bits.
pub const MSIX_MAX_VECTORS: usize = 2048;
const VECTOR_CONTROL_MASKED: u32 = 1;
const ADDRESS_LO: usize = 0;
const ADDRESS_HI: usize = 1;
const DATA: usize = 2;
const VECTOR_CONTROL: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum MsixError {
    #[error("{0} MSI-X vectors do not fit a table (1..={MSIX_MAX_VECTORS})")]
    VectorCount(usize),
    #[error("cannot create a vector's interrupt eventfd: {0}")]
    Event(#[from] IrqEventError),
    #[error("cannot reserve an interrupt line for a vector: {0}")]
    Line(#[from] VmEventError),
}

struct Vector {
    /// address low, address high, data, vector control, as the guest wrote them.
    entry: [u32; 4],
    event: IrqEvent,
    gsi: u32,
    /// Whether `event` is bound to `gsi` (and `gsi` routed) right now.
    bound: bool,
}

impl Vector {
    fn message(&self) -> MsiMessage {
        MsiMessage {
            address_lo: self.entry[ADDRESS_LO],
            address_hi: self.entry[ADDRESS_HI],
            data: self.entry[DATA],
        }
    }

    fn masked(&self) -> bool {
        self.entry[VECTOR_CONTROL] & VECTOR_CONTROL_MASKED != 0
    }
}

/// The MSI-X vectors of one function.
pub struct MsixVectors {
    vectors: Vec<Vector>,
    enabled: bool,
    function_masked: bool,
    controller: Arc<dyn InterruptController>,
}

/// Where the table and the PBA live: a BAR index and an offset into it (8-byte aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
}

/// Whether `event` holds writes nobody consumed; does not consume them.
fn has_count(event: &IrqEvent) -> bool {
    let mut poll = libc::pollfd {
        fd: event.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd on an eventfd this function borrows; a zero timeout
    // never blocks, and poll only writes `revents`.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

impl MsixVectors {
    /// Creates `count` vectors, masked, each with its eventfd and a reserved GSI.
    pub fn new(count: usize, controller: Arc<dyn InterruptController>) -> Result<Self, MsixError> {
        if count == 0 || count > MSIX_MAX_VECTORS {
            return Err(MsixError::VectorCount(count));
        }
        let mut vectors = Vec::with_capacity(count);
        for _ in 0..count {
            vectors.push(Vector {
                entry: [0, 0, 0, VECTOR_CONTROL_MASKED],
                event: IrqEvent::new()?,
                gsi: controller.allocate_msi_gsi()?,
                bound: false,
            });
        }
        Ok(Self {
            vectors,
            enabled: false,
            function_masked: false,
            controller,
        })
    }

    /// The capability body (ID first) and its per-byte write mask, for
    /// `PciConfiguration::add_capability`.
    pub fn capability(
        &self,
        layout: MsixLayout,
    ) -> ([u8; MSIX_CAPABILITY_LEN], [u8; MSIX_CAPABILITY_LEN]) {
        let control = (self.vectors.len() - 1) as u16;
        let table = layout.table_offset | u32::from(layout.table_bar & 0x7);
        let pba = layout.pba_offset | u32::from(layout.pba_bar & 0x7);
        let mut body = [0u8; MSIX_CAPABILITY_LEN];
        body[0] = MSIX_CAPABILITY_ID;
        body[2..4].copy_from_slice(&control.to_le_bytes());
        body[4..8].copy_from_slice(&table.to_le_bytes());
        body[8..12].copy_from_slice(&pba.to_le_bytes());
        let mut writable = [0u8; MSIX_CAPABILITY_LEN];
        writable[3] = ((CONTROL_ENABLE | CONTROL_FUNCTION_MASK) >> 8) as u8;
        (body, writable)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The eventfd that raises `vector`, for whoever signals it.
    pub fn event(&self, vector: u16) -> Option<&IrqEvent> {
        self.vectors.get(usize::from(vector)).map(|v| &v.event)
    }

    /// The GSI that carries `vector`.
    pub fn gsi(&self, vector: u16) -> Option<u32> {
        self.vectors.get(usize::from(vector)).map(|v| v.gsi)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The guest wrote the message control word of the capability.
    pub fn set_control(&mut self, control: u16) {
        let enabled = control & CONTROL_ENABLE != 0;
        let function_masked = control & CONTROL_FUNCTION_MASK != 0;
        if (enabled, function_masked) == (self.enabled, self.function_masked) {
            return;
        }
        self.enabled = enabled;
        self.function_masked = function_masked;
        for index in 0..self.vectors.len() {
            self.sync(index, false);
        }
    }

    /// Back to power-on: every entry zeroed and masked, the function disabled (its route
    /// and irqfd released). The caller clears the capability's enable bit to match.
    pub fn reset(&mut self) {
        self.enabled = false;
        self.function_masked = false;
        for index in 0..self.vectors.len() {
            self.vectors[index].entry = [0, 0, 0, VECTOR_CONTROL_MASKED];
            self.sync(index, true);
        }
    }

    /// Reads the table; accesses of any width or alignment read what the bytes hold,
    /// bytes past the table read 0.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|at| {
                    let vector = self
                        .vectors
                        .get(usize::try_from(at / MSIX_TABLE_ENTRY_SIZE).ok()?)?;
                    let word = vector.entry[(at % MSIX_TABLE_ENTRY_SIZE / 4) as usize];
                    Some((word >> (at % 4 * 8)) as u8)
                })
                .unwrap_or(0);
        }
    }

    /// Writes the table. The spec only allows aligned dword and qword accesses; anything
    /// else is dropped.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        let Ok(index) = usize::try_from(offset / MSIX_TABLE_ENTRY_SIZE) else {
            return;
        };
        let Some(vector) = self.vectors.get_mut(index) else {
            return;
        };
        let first_word = (offset % MSIX_TABLE_ENTRY_SIZE / 4) as usize;
        let mut message_changed = false;
        for (i, chunk) in data.chunks_exact(4).enumerate() {
            let word = first_word + i;
            let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if word == VECTOR_CONTROL {
                // Only the mask bit is defined; the rest is reserved and reads 0.
                vector.entry[word] = value & VECTOR_CONTROL_MASKED;
            } else if vector.entry[word] != value {
                vector.entry[word] = value;
                message_changed = true;
            }
        }
        self.sync(index, message_changed);
    }

    /// Reads the pending-bit array: a vector is pending when it was raised while it could
    /// not be delivered.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let Some(first) = offset
                .checked_add(i as u64)
                .and_then(|at| at.checked_mul(8))
                .and_then(|bit| usize::try_from(bit).ok())
            else {
                *byte = 0;
                continue;
            };
            *byte = (0..8)
                .filter(|bit| self.is_pending(first + bit))
                .fold(0, |acc, bit| acc | 1 << bit);
        }
    }

    pub fn is_pending(&self, vector: usize) -> bool {
        self.vectors
            .get(vector)
            .is_some_and(|v| !v.bound && has_count(&v.event))
    }

    fn deliverable(&self, vector: &Vector) -> bool {
        self.enabled && !self.function_masked && !vector.masked()
    }

    /// Makes KVM's view of `index` match the table: routed and bound when deliverable,
    /// unbound otherwise. Failures are the hypervisor refusing a guest-chosen message;
    /// the vector then stays undeliverable (pending) rather than stopping the vCPU.
    fn sync(&mut self, index: usize, message_changed: bool) {
        let Some(vector) = self.vectors.get(index) else {
            return;
        };
        let deliverable = self.deliverable(vector);
        let controller = &self.controller;
        let vector = &mut self.vectors[index];
        if deliverable {
            if !vector.bound || message_changed {
                if let Err(err) = controller.set_msi_route(vector.gsi, Some(vector.message())) {
                    warn!("MSI-X vector {index}: cannot route it: {err}");
                    return;
                }
            }
            if !vector.bound {
                // Binding delivers whatever was signalled while the vector was masked.
                match controller.bind_irqfd(vector.event.eventfd(), vector.gsi) {
                    Ok(()) => vector.bound = true,
                    Err(err) => warn!("MSI-X vector {index}: cannot bind its irqfd: {err}"),
                }
            }
        } else if vector.bound {
            // Unbind before dropping the route, so no signal is consumed without one.
            if let Err(err) = controller.unbind_irqfd(vector.event.eventfd(), vector.gsi) {
                warn!("MSI-X vector {index}: cannot unbind its irqfd: {err}");
            }
            vector.bound = false;
            if let Err(err) = controller.set_msi_route(vector.gsi, None) {
                warn!("MSI-X vector {index}: cannot remove its route: {err}");
            }
        }
    }
}

impl Drop for MsixVectors {
    fn drop(&mut self) {
        for vector in self.vectors.iter().filter(|v| v.bound) {
            let _ = self
                .controller
                .unbind_irqfd(vector.event.eventfd(), vector.gsi);
            let _ = self.controller.set_msi_route(vector.gsi, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::test_utils::RecordingVm;

    const MESSAGE: MsiMessage = MsiMessage {
        address_lo: 0xfee0_1000,
        address_hi: 0,
        data: 0x4041,
    };

    fn vectors(count: usize) -> (MsixVectors, Arc<RecordingVm>) {
        let vm = Arc::new(RecordingVm::new(24));
        (MsixVectors::new(count, vm.clone()).unwrap(), vm)
    }

    fn program(msix: &mut MsixVectors, vector: u64, message: MsiMessage) {
        let base = vector * MSIX_TABLE_ENTRY_SIZE;
        msix.write_table(base, &message.address_lo.to_le_bytes());
        msix.write_table(base + 4, &message.address_hi.to_le_bytes());
        msix.write_table(base + 8, &message.data.to_le_bytes());
    }

    fn set_mask(msix: &mut MsixVectors, vector: u64, masked: bool) {
        let control = u32::from(masked);
        msix.write_table(vector * MSIX_TABLE_ENTRY_SIZE + 12, &control.to_le_bytes());
    }

    fn pba(msix: &MsixVectors) -> u64 {
        let mut data = [0u8; 8];
        msix.read_pba(0, &mut data);
        u64::from_le_bytes(data)
    }

    #[test]
    fn vectors_start_masked_with_their_own_lines() {
        let (msix, vm) = vectors(3);
        assert_eq!(
            (msix.gsi(0), msix.gsi(2), msix.gsi(3)),
            (Some(24), Some(26), None)
        );
        let mut entry = [0u8; 16];
        msix.read_table(16, &mut entry);
        assert_eq!(entry[12], 1, "vector control: masked");
        assert!(vm.state.lock().unwrap().routes.is_empty());
        assert!(MsixVectors::new(0, vm.clone()).is_err());
        assert!(MsixVectors::new(MSIX_MAX_VECTORS + 1, vm).is_err());
    }

    #[test]
    fn capability_advertises_table_size_and_locations() {
        let (msix, _vm) = vectors(5);
        let (body, writable) = msix.capability(MsixLayout {
            table_bar: 0,
            table_offset: 0x4000,
            pba_bar: 2,
            pba_offset: 0x800,
        });
        assert_eq!(body[0], MSIX_CAPABILITY_ID);
        assert_eq!(u16::from_le_bytes([body[2], body[3]]), 4);
        assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 0x4000);
        assert_eq!(u32::from_le_bytes(body[8..12].try_into().unwrap()), 0x802);
        assert_eq!(writable[3], 0xc0);
        assert_eq!(writable.iter().filter(|b| **b != 0).count(), 1);
    }

    #[test]
    fn a_vector_is_routed_and_bound_only_while_deliverable() {
        let (mut msix, vm) = vectors(2);
        program(&mut msix, 1, MESSAGE);
        set_mask(&mut msix, 1, false);
        assert_eq!(vm.route(25), None, "MSI-X still disabled");
        msix.set_control(CONTROL_ENABLE);
        assert_eq!(vm.route(25), Some(MESSAGE));
        assert!(vm.bound(msix.event(1).unwrap().eventfd(), 25));
        assert_eq!(vm.route(24), None, "vector 0 is still masked");

        // A new message while unmasked updates the live route.
        let moved = MsiMessage {
            data: 0x4051,
            ..MESSAGE
        };
        program(&mut msix, 1, moved);
        assert_eq!(vm.route(25), Some(moved));

        msix.set_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        assert!(!vm.bound(msix.event(1).unwrap().eventfd(), 25));
        assert_eq!(vm.route(25), None);
        msix.set_control(CONTROL_ENABLE);
        assert!(vm.bound(msix.event(1).unwrap().eventfd(), 25));
        msix.set_control(0);
        assert!(!vm.bound(msix.event(1).unwrap().eventfd(), 25));
    }

    #[test]
    fn signals_while_masked_are_pending_until_unmasked() {
        let (mut msix, vm) = vectors(2);
        msix.set_control(CONTROL_ENABLE);
        program(&mut msix, 1, MESSAGE);
        msix.event(1).unwrap().signal().unwrap();
        assert_eq!(pba(&msix), 0b10);
        assert!(msix.is_pending(1) && !msix.is_pending(0));
        set_mask(&mut msix, 1, false);
        // Bound now: the hypervisor delivers the count the eventfd still holds.
        assert!(vm.bound(msix.event(1).unwrap().eventfd(), 25));
        assert_eq!(pba(&msix), 0);
        assert_eq!(msix.event(1).unwrap().take_pending(), 1);
        set_mask(&mut msix, 1, true);
        assert!(!vm.bound(msix.event(1).unwrap().eventfd(), 25));
        assert_eq!(pba(&msix), 0);
    }

    #[test]
    fn table_accesses_of_odd_sizes_or_out_of_range_are_harmless() {
        let (mut msix, vm) = vectors(1);
        msix.write_table(2, &[1, 2, 3, 4]); // misaligned dword
        msix.write_table(0, &[1, 2]); // word
        msix.write_table(16, &[0; 4]); // past the table
        msix.write_table(u64::MAX - 3, &[0; 4]);
        let mut data = [0xaau8; 8];
        msix.read_table(0, &mut data);
        assert_eq!(data, [0; 8]);
        msix.read_table(u64::MAX - 1, &mut data);
        assert_eq!(data, [0; 8]);
        msix.read_pba(u64::MAX, &mut data);
        assert_eq!(data, [0; 8]);
        // A qword write covering data and vector control programs and unmasks at once.
        msix.set_control(CONTROL_ENABLE);
        let mut qword = [0u8; 8];
        qword[..4].copy_from_slice(&0x31u32.to_le_bytes());
        msix.write_table(8, &qword);
        assert_eq!(vm.route(24).map(|m| m.data), Some(0x31));
        msix.write_table(12, &0xffff_fffeu32.to_le_bytes());
        let mut control = [0u8; 4];
        msix.read_table(12, &mut control);
        assert_eq!(control, [0; 4], "reserved vector control bits read 0");
    }

    #[test]
    fn dropping_the_vectors_unbinds_them() {
        let (mut msix, vm) = vectors(1);
        msix.set_control(CONTROL_ENABLE);
        set_mask(&mut msix, 0, false);
        assert_eq!(vm.state.lock().unwrap().irqfds.len(), 1);
        drop(msix);
        assert!(vm.state.lock().unwrap().irqfds.is_empty());
        assert!(vm.state.lock().unwrap().routes.is_empty());
    }
}
