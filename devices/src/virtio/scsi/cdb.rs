//! Decoding a CDB into the command it asks for (SPC-4 / SBC-3 layouts). Every byte comes
//! from the guest: a field the target does not support is reported as INVALID FIELD IN
//! CDB with a pointer to it, an unknown opcode as INVALID COMMAND OPERATION CODE.

use super::sense::Sense;

pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2e;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8e;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
}

/// Service actions this target implements.
pub const SA_READ_CAPACITY_16: u16 = 0x10;
pub const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0c;

/// One supported command: opcode, service action (when the opcode has several), CDB
/// length and the CDB usage data REPORT SUPPORTED OPERATION CODES returns (a set bit is a
/// bit the target looks at; the opcode byte first).
pub struct Supported {
    pub opcode: u8,
    pub service_action: Option<u16>,
    pub usage: &'static [u8],
}

impl Supported {
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

use opcode::*;

const fn sup(opcode: u8, service_action: Option<u16>, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action,
        usage,
    }
}

/// Every command the target implements, in opcode order.
pub static SUPPORTED: &[Supported] = &[
    sup(TEST_UNIT_READY, None, &[0x00, 0, 0, 0, 0, 0]),
    sup(REQUEST_SENSE, None, &[0x03, 0x01, 0, 0, 0xff, 0]),
    sup(READ_6, None, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    sup(WRITE_6, None, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    sup(INQUIRY, None, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    sup(MODE_SELECT_6, None, &[0x15, 0x11, 0, 0, 0xff, 0]),
    sup(MODE_SENSE_6, None, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    sup(START_STOP_UNIT, None, &[0x1b, 0x01, 0, 0, 0xf3, 0]),
    sup(
        PREVENT_ALLOW_MEDIUM_REMOVAL,
        None,
        &[0x1e, 0, 0, 0, 0x03, 0],
    ),
    sup(
        READ_CAPACITY_10,
        None,
        &[0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0],
    ),
    sup(
        READ_10,
        None,
        &[0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(
        WRITE_10,
        None,
        &[0x2a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(
        WRITE_AND_VERIFY_10,
        None,
        &[0x2e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(
        VERIFY_10,
        None,
        &[0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(
        SYNCHRONIZE_CACHE_10,
        None,
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(
        WRITE_SAME_10,
        None,
        &[0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    sup(UNMAP, None, &[0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    sup(
        MODE_SELECT_10,
        None,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    sup(
        MODE_SENSE_10,
        None,
        &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
    ),
    sup(
        READ_16,
        None,
        &[
            0x88, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        WRITE_16,
        None,
        &[
            0x8a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        WRITE_AND_VERIFY_16,
        None,
        &[
            0x8e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        VERIFY_16,
        None,
        &[
            0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        SYNCHRONIZE_CACHE_16,
        None,
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        WRITE_SAME_16,
        None,
        &[
            0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    sup(
        SERVICE_ACTION_IN_16,
        Some(SA_READ_CAPACITY_16),
        &[
            0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    sup(
        REPORT_LUNS,
        None,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    sup(
        MAINTENANCE_IN,
        Some(SA_REPORT_SUPPORTED_OPCODES),
        &[
            0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    sup(
        READ_12,
        None,
        &[
            0xa8, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    sup(
        WRITE_12,
        None,
        &[
            0xaa, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
];

/// The entry for `opcode` with `service_action` (ignored for opcodes without one).
pub fn supported(opcode: u8, service_action: u16) -> Option<&'static Supported> {
    SUPPORTED
        .iter()
        .find(|s| s.opcode == opcode && s.service_action.is_none_or(|sa| sa == service_action))
}

/// Whether some supported entry has `opcode` (with any service action).
pub fn opcode_known(opcode: u8) -> bool {
    SUPPORTED.iter().any(|s| s.opcode == opcode)
}

/// A decoded command. Lengths are in logical blocks unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ModeSense(ModeSense),
    ModeSelect {
        ten: bool,
        save: bool,
        list_len: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc: u32,
    },
    Read {
        lba: u64,
        blocks: u32,
    },
    Write {
        lba: u64,
        blocks: u32,
    },
    WriteAndVerify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
    },
    Verify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
    },
    SynchronizeCache {
        lba: u64,
        blocks: u32,
    },
    WriteSame {
        lba: u64,
        blocks: u32,
        unmap: bool,
        ndob: bool,
    },
    Unmap {
        list_len: u32,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ReportOpcodes(ReportOpcodes),
    StartStopUnit,
    PreventAllowMediumRemoval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSense {
    pub ten: bool,
    pub dbd: bool,
    pub llbaa: bool,
    /// Page control: 0 current, 1 changeable, 2 default, 3 saved.
    pub pc: u8,
    pub page: u8,
    pub subpage: u8,
    pub alloc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOpcodes {
    pub timeouts: bool,
    pub options: u8,
    pub opcode: u8,
    pub service_action: u16,
    pub alloc: u32,
}

fn be16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Rejects a set bit outside `allowed` in byte `at`.
fn only(cdb: &[u8], at: usize, allowed: u8) -> Result<(), Sense> {
    let stray = cdb[at] & !allowed;
    if stray == 0 {
        return Ok(());
    }
    let bit = 7 - stray.leading_zeros() as u8;
    Err(Sense::invalid_cdb(at as u16, Some(bit)))
}

/// Decodes `cdb` (the CDB area of the request; the command may be shorter).
pub fn decode(cdb: &[u8]) -> Result<Command, Sense> {
    let Some(&op) = cdb.first() else {
        return Err(Sense::INVALID_OPCODE);
    };
    let service_action = match op {
        SERVICE_ACTION_IN_16 | MAINTENANCE_IN => cdb.get(1).map_or(0, |b| u16::from(b & 0x1f)),
        _ => 0,
    };
    let Some(entry) = supported(op, service_action) else {
        if opcode_known(op) {
            return Err(Sense::invalid_cdb(1, Some(4)));
        }
        return Err(Sense::INVALID_OPCODE);
    };
    let len = entry.cdb_len();
    let Some(cdb) = cdb.get(..len) else {
        // The driver's CDB area cannot hold this command.
        return Err(Sense::INVALID_OPCODE);
    };
    // NACA is not supported (INQUIRY reports NORMACA 0); LINK is obsolete.
    only(cdb, len - 1, 0xf8)?;
    // No protection information: every RDPROTECT/WRPROTECT/VRPROTECT must be 0.
    let lba10 = || u64::from(be32(cdb, 2));
    let command = match op {
        TEST_UNIT_READY => Command::TestUnitReady,
        REQUEST_SENSE => {
            // DESC=1 asks for descriptor format, which this target does not produce.
            only(cdb, 1, 0)?;
            Command::RequestSense {
                alloc: u32::from(cdb[4]),
            }
        }
        READ_6 | WRITE_6 => {
            let lba = u64::from(be32(cdb, 0) & 0x001f_ffff);
            // A transfer length of 0 means 256 blocks in the 6-byte commands.
            let blocks = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
            if op == READ_6 {
                Command::Read { lba, blocks }
            } else {
                Command::Write { lba, blocks }
            }
        }
        READ_10 | WRITE_10 | READ_12 | WRITE_12 | READ_16 | WRITE_16 => {
            // DPO and FUA are accepted: writes reach the file without a volatile cache
            // of ours, and FUA is not advertised (DPOFUA 0).
            only(cdb, 1, 0x18)?;
            let (lba, blocks) = match op {
                READ_10 | WRITE_10 => (lba10(), be16(cdb, 7)),
                READ_12 | WRITE_12 => (lba10(), be32(cdb, 6)),
                _ => (be64(cdb, 2), be32(cdb, 10)),
            };
            if matches!(op, READ_10 | READ_12 | READ_16) {
                Command::Read { lba, blocks }
            } else {
                Command::Write { lba, blocks }
            }
        }
        WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_16 | VERIFY_10 | VERIFY_16 => {
            only(cdb, 1, 0x16)?;
            let bytchk = (cdb[1] >> 1) & 0x03;
            let (lba, blocks) = if matches!(op, VERIFY_10 | WRITE_AND_VERIFY_10) {
                (lba10(), be16(cdb, 7))
            } else {
                (be64(cdb, 2), be32(cdb, 10))
            };
            if matches!(op, VERIFY_10 | VERIFY_16) {
                Command::Verify {
                    lba,
                    blocks,
                    bytchk,
                }
            } else {
                Command::WriteAndVerify {
                    lba,
                    blocks,
                    bytchk,
                }
            }
        }
        SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => {
            // IMMED is accepted: the answer comes once the data is durable anyway.
            only(cdb, 1, 0x02)?;
            let (lba, blocks) = if op == SYNCHRONIZE_CACHE_10 {
                (lba10(), be16(cdb, 7))
            } else {
                (be64(cdb, 2), be32(cdb, 10))
            };
            Command::SynchronizeCache { lba, blocks }
        }
        WRITE_SAME_10 | WRITE_SAME_16 => {
            // ANCHOR needs ANC_SUP, which the provisioning page leaves clear.
            let ten = op == WRITE_SAME_10;
            only(cdb, 1, if ten { 0x08 } else { 0x09 })?;
            let (lba, blocks) = if ten {
                (lba10(), be16(cdb, 7))
            } else {
                (be64(cdb, 2), be32(cdb, 10))
            };
            Command::WriteSame {
                lba,
                blocks,
                unmap: cdb[1] & 0x08 != 0,
                ndob: !ten && cdb[1] & 0x01 != 0,
            }
        }
        UNMAP => {
            only(cdb, 1, 0)?;
            Command::Unmap {
                list_len: be16(cdb, 7),
            }
        }
        INQUIRY => {
            only(cdb, 1, 0x01)?;
            let evpd = cdb[1] & 1 != 0;
            if !evpd && cdb[2] != 0 {
                return Err(Sense::invalid_cdb(2, None));
            }
            Command::Inquiry {
                evpd,
                page: cdb[2],
                alloc: be16(cdb, 3),
            }
        }
        MODE_SENSE_6 | MODE_SENSE_10 => {
            let ten = op == MODE_SENSE_10;
            only(cdb, 1, if ten { 0x18 } else { 0x08 })?;
            Command::ModeSense(ModeSense {
                ten,
                dbd: cdb[1] & 0x08 != 0,
                llbaa: ten && cdb[1] & 0x10 != 0,
                pc: cdb[2] >> 6,
                page: cdb[2] & 0x3f,
                subpage: cdb[3],
                alloc: if ten { be16(cdb, 7) } else { u32::from(cdb[4]) },
            })
        }
        MODE_SELECT_6 | MODE_SELECT_10 => {
            only(cdb, 1, 0x11)?;
            if cdb[1] & 0x10 == 0 {
                // Only the page format (PF=1) is defined for a direct-access device.
                return Err(Sense::invalid_cdb(1, Some(4)));
            }
            let ten = op == MODE_SELECT_10;
            Command::ModeSelect {
                ten,
                save: cdb[1] & 0x01 != 0,
                list_len: if ten { be16(cdb, 7) } else { u32::from(cdb[4]) },
            }
        }
        READ_CAPACITY_10 => {
            // PMI is obsolete; the LBA field must then be 0.
            if be32(cdb, 2) != 0 || cdb[8] & 1 != 0 {
                return Err(Sense::invalid_cdb(2, None));
            }
            Command::ReadCapacity10
        }
        SERVICE_ACTION_IN_16 => Command::ReadCapacity16 {
            alloc: be32(cdb, 10),
        },
        REPORT_LUNS => Command::ReportLuns {
            select: cdb[2],
            alloc: be32(cdb, 6),
        },
        MAINTENANCE_IN => {
            only(cdb, 2, 0x87)?;
            Command::ReportOpcodes(ReportOpcodes {
                timeouts: cdb[2] & 0x80 != 0,
                options: cdb[2] & 0x07,
                opcode: cdb[3],
                service_action: be16(cdb, 4) as u16,
                alloc: be32(cdb, 6),
            })
        }
        START_STOP_UNIT => {
            // Power conditions and eject mean nothing to a file; START/STOP are accepted.
            only(cdb, 1, 0x01)?;
            only(cdb, 4, 0xf3)?;
            Command::StartStopUnit
        }
        PREVENT_ALLOW_MEDIUM_REMOVAL => {
            only(cdb, 4, 0x03)?;
            Command::PreventAllowMediumRemoval
        }
        // Every SUPPORTED entry is decoded above.
        _ => return Err(Sense::INVALID_OPCODE),
    };
    // Protection fields checked by `only` above; reserved bits elsewhere are ignored as
    // SPC allows a device server to.
    Ok(command)
}

/// The CDB byte where a READ/WRITE/VERIFY/WRITE SAME transfer length starts, for the
/// field pointer of an INVALID FIELD IN CDB about it.
pub fn length_field(opcode: u8) -> u16 {
    match opcode {
        READ_6 | WRITE_6 => 4,
        READ_12 | WRITE_12 => 6,
        READ_16 | WRITE_16 | VERIFY_16 | WRITE_AND_VERIFY_16 | WRITE_SAME_16
        | SYNCHRONIZE_CACHE_16 => 10,
        _ => 7,
    }
}

impl Command {
    /// The ALLOCATION LENGTH of a command that returns parameter data: data-in beyond it
    /// is not sent.
    pub fn allocation_length(&self) -> Option<u32> {
        match *self {
            Command::RequestSense { alloc }
            | Command::Inquiry { alloc, .. }
            | Command::ReadCapacity16 { alloc }
            | Command::ReportLuns { alloc, .. } => Some(alloc),
            Command::ModeSense(ModeSense { alloc, .. })
            | Command::ReportOpcodes(ReportOpcodes { alloc, .. }) => Some(alloc),
            _ => None,
        }
    }
}
