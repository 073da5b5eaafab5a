//! Where each virtio-pci structure lives in BAR0, and the vendor-specific capabilities that
//! tell the driver so (virtio 1.2, 4.1.4).

use crate::pci::msix::{MsixLayout, MsixVectors, MSIX_TABLE_ENTRY_SIZE};
use crate::pci::{PciConfigError, PciConfiguration};

use super::common_config::COMMON_CONFIG_LEN;

/// BAR0: one 64 KiB non-prefetchable 64-bit memory BAR holding every structure, each on its
/// own page. Non-prefetchable because reading the ISR clears it.
pub const BAR0_SIZE: u64 = 0x1_0000;
pub const COMMON_CONFIG_OFFSET: u64 = 0x0000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_CONFIG_OFFSET: u64 = 0x2000;
pub const DEVICE_CONFIG_LEN: u64 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const NOTIFY_LEN: u64 = 0x1000;
/// Queue i's doorbell is at NOTIFY_OFFSET + NOTIFY_OFF_MULTIPLIER * i.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_TABLE_LEN: u64 = 0x8000;
pub const MSIX_PBA_OFFSET: u64 = 0xc000;
pub const MSIX_PBA_LEN: u64 = 0x1000;
/// The notify area fixes the queue limit: one 4-byte doorbell per queue.
pub const MAX_QUEUES: usize = (NOTIFY_LEN / NOTIFY_OFF_MULTIPLIER as u64) as usize;
const _: () = assert!((MAX_QUEUES as u64 + 1) * MSIX_TABLE_ENTRY_SIZE <= MSIX_TABLE_LEN);

pub const VIRTIO_PCI_CAP_VENDOR: u8 = 0x09;
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// `struct virtio_pci_cap` is 16 bytes; the notify and PCI-access ones add a dword.
const CAP_LEN: usize = 16;
const CAP_LEN_WITH_DWORD: usize = 20;

/// Byte offsets, within `struct virtio_pci_cfg_cap`, of what the driver programs.
pub const PCI_CFG_BAR: usize = 4;
pub const PCI_CFG_OFFSET: usize = 8;
pub const PCI_CFG_LENGTH: usize = 12;
pub const PCI_CFG_DATA: usize = 16;

/// Which structure a BAR0 offset falls in, and the offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar0Region {
    CommonConfig(u64),
    Isr(u64),
    DeviceConfig(u64),
    Notify(u64),
    MsixTable(u64),
    MsixPba(u64),
}

/// Decodes an access of `len` bytes at `offset`; an access that straddles two structures
/// or lies in a gap decodes nothing.
pub fn bar0_region(offset: u64, len: usize) -> Option<Bar0Region> {
    type Region = (u64, u64, fn(u64) -> Bar0Region);
    let regions: [Region; 6] = [
        (
            COMMON_CONFIG_OFFSET,
            COMMON_CONFIG_LEN,
            Bar0Region::CommonConfig,
        ),
        (ISR_OFFSET, 1, Bar0Region::Isr),
        (
            DEVICE_CONFIG_OFFSET,
            DEVICE_CONFIG_LEN,
            Bar0Region::DeviceConfig,
        ),
        (NOTIFY_OFFSET, NOTIFY_LEN, Bar0Region::Notify),
        (MSIX_TABLE_OFFSET, MSIX_TABLE_LEN, Bar0Region::MsixTable),
        (MSIX_PBA_OFFSET, MSIX_PBA_LEN, Bar0Region::MsixPba),
    ];
    let end = offset.checked_add(len as u64)?;
    regions
        .iter()
        .find(|(start, size, _)| offset >= *start && end <= start + size)
        .map(|(start, _, region)| region(offset - start))
}

fn virtio_cap(cfg_type: u8, offset: u64, length: u64, cap_len: usize) -> Vec<u8> {
    let mut cap = vec![0u8; cap_len];
    cap[0] = VIRTIO_PCI_CAP_VENDOR;
    cap[2] = cap_len as u8;
    cap[3] = cfg_type;
    cap[4] = 0; // BAR0
    cap[8..12].copy_from_slice(&(offset as u32).to_le_bytes());
    cap[12..16].copy_from_slice(&(length as u32).to_le_bytes());
    cap
}

/// Offsets in configuration space of the capabilities the transport must watch.
#[derive(Debug, Clone, Copy)]
pub struct CapabilityOffsets {
    pub pci_cfg: usize,
    pub msix: usize,
}

/// Adds the four structure capabilities, the PCI configuration access capability and the
/// MSI-X capability to `config`.
pub fn add_capabilities(
    config: &mut PciConfiguration,
    msix: &MsixVectors,
) -> Result<CapabilityOffsets, PciConfigError> {
    config.add_capability(
        &virtio_cap(
            VIRTIO_PCI_CAP_COMMON_CFG,
            COMMON_CONFIG_OFFSET,
            COMMON_CONFIG_LEN,
            CAP_LEN,
        ),
        &[],
    )?;
    let mut notify = virtio_cap(
        VIRTIO_PCI_CAP_NOTIFY_CFG,
        NOTIFY_OFFSET,
        NOTIFY_LEN,
        CAP_LEN_WITH_DWORD,
    );
    notify[16..20].copy_from_slice(&NOTIFY_OFF_MULTIPLIER.to_le_bytes());
    config.add_capability(&notify, &[])?;
    config.add_capability(
        &virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, 1, CAP_LEN),
        &[],
    )?;
    config.add_capability(
        &virtio_cap(
            VIRTIO_PCI_CAP_DEVICE_CFG,
            DEVICE_CONFIG_OFFSET,
            DEVICE_CONFIG_LEN,
            CAP_LEN,
        ),
        &[],
    )?;
    // The driver programs bar, offset and length, then moves data through pci_cfg_data.
    let mut pci_cfg_writable = [0u8; CAP_LEN_WITH_DWORD];
    pci_cfg_writable[PCI_CFG_BAR] = 0xff;
    pci_cfg_writable[PCI_CFG_OFFSET..PCI_CFG_DATA].fill(0xff);
    let pci_cfg = config.add_capability(
        &virtio_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, CAP_LEN_WITH_DWORD),
        &pci_cfg_writable,
    )?;
    let (body, writable) = msix.capability(MsixLayout {
        table_bar: 0,
        table_offset: MSIX_TABLE_OFFSET as u32,
        pba_bar: 0,
        pba_offset: MSIX_PBA_OFFSET as u32,
    });
    let msix = config.add_capability(&body, &writable)?;
    Ok(CapabilityOffsets { pci_cfg, msix })
}
