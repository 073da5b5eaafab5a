//! The SCSI target: what each command does to a logical unit (SPC-4 / SBC-3), as plain
//! data in and out. Commands that need the backing file return the ops to run; the queue
//! worker owns guest buffers and completion.

use std::collections::BTreeMap;
use std::sync::Arc;

use ringvisor_io::IoOp;

use super::cdb::{self, Command, ReportOpcodes, Supported};
use super::inquiry;
use super::lun::{
    LogicalUnit, BLOCK_SHIFT, BLOCK_SIZE, MAX_TRANSFER_BLOCKS, MAX_UNMAP_BLOCKS,
    MAX_UNMAP_DESCRIPTORS, MAX_VERIFY_BLOCKS, MAX_WRITE_SAME_BLOCKS, PHYSICAL_EXPONENT,
    WRITE_SAME_BLOCKS_PER_OP,
};
use super::mode;
use super::protocol::LunAddress;
use super::sense::{self, Sense};

/// Every logical unit of the controller, by target and LUN; fixed once the VM starts.
#[derive(Debug, Default)]
pub struct Luns {
    targets: BTreeMap<u16, BTreeMap<u32, Arc<LogicalUnit>>>,
}

/// What an address names.
pub enum Lookup<'a> {
    Unit(&'a Arc<LogicalUnit>),
    /// The target exists, the LUN does not: INQUIRY and REPORT LUNS still answer.
    NoLun(&'a BTreeMap<u32, Arc<LogicalUnit>>),
    NoTarget,
}

impl Luns {
    pub fn insert(&mut self, unit: LogicalUnit) -> bool {
        let address = unit.address;
        let luns = self.targets.entry(address.target).or_default();
        if luns.contains_key(&address.lun) {
            return false;
        }
        luns.insert(address.lun, Arc::new(unit));
        true
    }

    pub fn lookup(&self, address: LunAddress) -> Lookup<'_> {
        match self.targets.get(&address.target) {
            None => Lookup::NoTarget,
            Some(luns) => match luns.get(&address.lun) {
                Some(unit) => Lookup::Unit(unit),
                None => Lookup::NoLun(luns),
            },
        }
    }

    pub fn target(&self, target: u16) -> Option<&BTreeMap<u32, Arc<LogicalUnit>>> {
        self.targets.get(&target)
    }

    pub fn units(&self) -> impl Iterator<Item = &Arc<LogicalUnit>> {
        self.targets.values().flat_map(|luns| luns.values())
    }
}

/// The data-out bytes a command needs before it can run (parameter lists, WRITE SAME's
/// block, VERIFY's comparison data); the worker copies them out of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    DataOut(u32),
}

/// What a command does.
#[derive(Debug)]
pub enum Action {
    /// Finished: GOOD with this data-in (possibly empty), or CHECK CONDITION.
    Data(Vec<u8>),
    Check(Sense),
    /// Transfer between the data buffers and the file at `offset`.
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        len: u32,
    },
    /// Host ops that move no guest data (flush, fallocate, pattern writes from `bounce`).
    Ops {
        ops: Vec<IoOp>,
        kind: OpKind,
        bounce: Option<Bounce>,
    },
    /// Read `len` bytes at `offset` into a host buffer and compare with `expected`.
    Compare {
        offset: u64,
        expected: Vec<u8>,
    },
}

/// What a completed op's error means for the sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
}

/// A 512-byte-aligned host buffer (O_DIRECT) that ops read into or write from.
#[derive(Debug)]
pub struct Bounce {
    blocks: Vec<AlignedBlock>,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(512))]
struct AlignedBlock([u8; BLOCK_SIZE as usize]);

impl Bounce {
    pub fn zeroed(blocks: usize) -> Self {
        Self {
            blocks: vec![AlignedBlock([0; BLOCK_SIZE as usize]); blocks],
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: AlignedBlock is a plain byte array (repr(C), no padding beyond the
        // array itself since its size equals its alignment), so the Vec's storage is
        // blocks.len() * 512 initialised bytes.
        unsafe {
            std::slice::from_raw_parts(
                self.blocks.as_ptr().cast::<u8>(),
                self.blocks.len() * BLOCK_SIZE as usize,
            )
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.blocks.as_mut_ptr().cast()
    }

    pub fn len(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE as usize
    }
}

/// Which data-out bytes `command` needs (given the data-out length `available`).
pub fn needs(command: &Command) -> Needs {
    match *command {
        Command::ModeSelect { list_len, .. } | Command::Unmap { list_len } => {
            Needs::DataOut(list_len)
        }
        Command::WriteSame { ndob: false, .. } => Needs::DataOut(BLOCK_SIZE),
        Command::Verify {
            blocks, bytchk: 1, ..
        } if blocks <= MAX_VERIFY_BLOCKS => Needs::DataOut(blocks << BLOCK_SHIFT),
        Command::Verify { bytchk: 3, .. } => Needs::DataOut(BLOCK_SIZE),
        _ => Needs::Nothing,
    }
}

/// Runs `command` on `unit`; `data_out` holds what [`needs`] asked for (possibly
/// shorter, when the driver sent less).
pub fn execute(
    luns: &Luns,
    unit: &LogicalUnit,
    opcode: u8,
    command: &Command,
    data_out: &[u8],
) -> Action {
    match run(luns, unit, opcode, command, data_out) {
        Ok(action) => action,
        Err(sense) => Action::Check(sense),
    }
}

fn run(
    luns: &Luns,
    unit: &LogicalUnit,
    opcode: u8,
    command: &Command,
    data_out: &[u8],
) -> Result<Action, Sense> {
    let length_field = || Sense::invalid_cdb(cdb::length_field(opcode), None);
    let range = |lba: u64, blocks: u64| unit.range(lba, blocks).ok_or(Sense::LBA_OUT_OF_RANGE);
    let writable = || {
        if unit.read_only {
            Err(Sense::WRITE_PROTECTED)
        } else {
            Ok(())
        }
    };
    Ok(match *command {
        Command::TestUnitReady | Command::StartStopUnit | Command::PreventAllowMediumRemoval => {
            Action::Data(Vec::new())
        }
        Command::RequestSense { .. } => {
            Action::Data(Sense::new(sense::key::NO_SENSE, 0, 0).fixed().to_vec())
        }
        Command::Inquiry { evpd, page, .. } => Action::Data(inquiry::inquiry(unit, evpd, page)?),
        Command::ModeSense(ref cmd) => Action::Data(mode::sense(unit, cmd)?),
        Command::ModeSelect {
            ten,
            save,
            list_len,
        } => {
            let list = data_out
                .get(..list_len as usize)
                .ok_or(Sense::PARAMETER_LIST_LENGTH)?;
            mode::select(ten, save, list)?;
            Action::Data(Vec::new())
        }
        Command::ReadCapacity10 => {
            let last = u32::try_from(unit.blocks - 1).unwrap_or(u32::MAX);
            let mut d = last.to_be_bytes().to_vec();
            d.extend_from_slice(&BLOCK_SIZE.to_be_bytes());
            Action::Data(d)
        }
        Command::ReadCapacity16 { .. } => {
            let mut d = vec![0u8; 32];
            d[0..8].copy_from_slice(&(unit.blocks - 1).to_be_bytes());
            d[8..12].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
            d[13] = PHYSICAL_EXPONENT;
            if !unit.read_only {
                d[14] = 0x80 | 0x40; // LBPME, LBPRZ
            }
            Action::Data(d)
        }
        Command::Read { lba, blocks } | Command::Write { lba, blocks } => {
            if blocks > MAX_TRANSFER_BLOCKS {
                return Err(length_field());
            }
            let offset = range(lba, u64::from(blocks))?;
            let len = blocks << BLOCK_SHIFT;
            if matches!(command, Command::Read { .. }) {
                Action::Read { offset, len }
            } else {
                writable()?;
                Action::Write { offset, len }
            }
        }
        Command::WriteAndVerify {
            lba,
            blocks,
            bytchk,
        } => {
            // BYTCHK 0: verify medium, which a completed write already did.
            if bytchk != 0 {
                return Err(Sense::invalid_cdb(1, Some(1)));
            }
            if blocks > MAX_TRANSFER_BLOCKS {
                return Err(length_field());
            }
            let offset = range(lba, u64::from(blocks))?;
            writable()?;
            Action::Write {
                offset,
                len: blocks << BLOCK_SHIFT,
            }
        }
        Command::Verify {
            lba,
            blocks,
            bytchk,
        } => verify(unit, lba, blocks, bytchk, opcode, data_out)?,
        Command::SynchronizeCache { lba, blocks } => {
            // 0 blocks: from `lba` to the end.
            let count = if blocks == 0 {
                unit.blocks.saturating_sub(lba)
            } else {
                u64::from(blocks)
            };
            if lba > unit.blocks {
                return Err(Sense::LBA_OUT_OF_RANGE);
            }
            range(lba, count)?;
            if unit.read_only {
                Action::Data(Vec::new())
            } else {
                Action::Ops {
                    ops: vec![IoOp::Flush { fd: unit.fd() }],
                    kind: OpKind::Write,
                    bounce: None,
                }
            }
        }
        Command::WriteSame {
            lba,
            blocks,
            unmap,
            ndob,
        } => {
            if blocks == 0 || blocks > MAX_WRITE_SAME_BLOCKS {
                return Err(length_field());
            }
            let offset = range(lba, u64::from(blocks))?;
            writable()?;
            write_same(unit, offset, blocks, unmap, ndob, data_out)?
        }
        Command::Unmap { list_len } => {
            writable()?;
            unmap(unit, list_len, data_out)?
        }
        Command::ReportLuns { select, alloc } => {
            let luns = luns
                .target(unit.address.target)
                .into_iter()
                .flat_map(|m| m.keys().copied());
            report_luns(select, alloc, luns)?
        }
        Command::ReportOpcodes(ref cmd) => Action::Data(report_opcodes(cmd)?),
    })
}

fn verify(
    unit: &LogicalUnit,
    lba: u64,
    blocks: u32,
    bytchk: u8,
    opcode: u8,
    data_out: &[u8],
) -> Result<Action, Sense> {
    let offset = unit
        .range(lba, u64::from(blocks))
        .ok_or(Sense::LBA_OUT_OF_RANGE)?;
    let len = (blocks as usize) << BLOCK_SHIFT;
    let expected = match bytchk {
        // Verify medium: the file has no media to check beyond what a read reports, and
        // the blocks are in range.
        0 => return Ok(Action::Data(Vec::new())),
        1 => {
            if blocks > MAX_VERIFY_BLOCKS {
                return Err(Sense::invalid_cdb(cdb::length_field(opcode), None));
            }
            data_out
                .get(..len)
                .ok_or(Sense::PARAMETER_LIST_LENGTH)?
                .to_vec()
        }
        3 => {
            if blocks > MAX_VERIFY_BLOCKS {
                return Err(Sense::invalid_cdb(cdb::length_field(opcode), None));
            }
            let block = data_out
                .get(..BLOCK_SIZE as usize)
                .ok_or(Sense::PARAMETER_LIST_LENGTH)?;
            block.repeat(blocks as usize)
        }
        _ => return Err(Sense::invalid_cdb(1, Some(2))),
    };
    if blocks == 0 {
        return Ok(Action::Data(Vec::new()));
    }
    Ok(Action::Compare { offset, expected })
}

fn write_same(
    unit: &LogicalUnit,
    offset: u64,
    blocks: u32,
    unmap: bool,
    ndob: bool,
    data_out: &[u8],
) -> Result<Action, Sense> {
    let zeros = [0u8; BLOCK_SIZE as usize];
    let block = if ndob {
        &zeros[..]
    } else {
        data_out
            .get(..BLOCK_SIZE as usize)
            .ok_or(Sense::PARAMETER_LIST_LENGTH)?
    };
    let fd = unit.fd();
    let len = u64::from(blocks) << BLOCK_SHIFT;
    if block.iter().all(|&b| b == 0) {
        // A punched hole reads back as zeros (LBPRZ), so UNMAP may deallocate.
        let mode = if unmap {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        };
        return Ok(Action::Ops {
            ops: vec![IoOp::Fallocate {
                fd,
                mode,
                offset,
                len,
            }],
            kind: OpKind::Write,
            bounce: None,
        });
    }
    // A pattern: every iovec of every op points at the one block.
    let mut bounce = Bounce::zeroed(1);
    // SAFETY: the bounce buffer is BLOCK_SIZE bytes and `block` is BLOCK_SIZE bytes long.
    unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), bounce.as_mut_ptr(), block.len()) };
    let base = bounce.as_mut_ptr();
    let mut ops = Vec::new();
    let mut done = 0u32;
    while done < blocks {
        let n = (blocks - done).min(WRITE_SAME_BLOCKS_PER_OP);
        let iovecs = (0..n)
            .map(|_| libc::iovec {
                iov_base: base.cast(),
                iov_len: BLOCK_SIZE as usize,
            })
            .collect();
        ops.push(IoOp::Write {
            fd,
            offset: offset + (u64::from(done) << BLOCK_SHIFT),
            iovecs,
        });
        done += n;
    }
    Ok(Action::Ops {
        ops,
        kind: OpKind::Write,
        bounce: Some(bounce),
    })
}

fn unmap(unit: &LogicalUnit, list_len: u32, data_out: &[u8]) -> Result<Action, Sense> {
    if list_len == 0 {
        return Ok(Action::Data(Vec::new()));
    }
    let list = data_out
        .get(..list_len as usize)
        .ok_or(Sense::PARAMETER_LIST_LENGTH)?;
    if list.len() < 8 {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let descriptors_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    let descriptors = list
        .get(8..8 + descriptors_len)
        .ok_or(Sense::PARAMETER_LIST_LENGTH)?;
    if descriptors_len % 16 != 0 {
        return Err(Sense::invalid_parameter(2, None));
    }
    if descriptors_len / 16 > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_parameter(2, None));
    }
    let mut ops = Vec::new();
    let mut total = 0u64;
    for (i, d) in descriptors.chunks_exact(16).enumerate() {
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&d[0..8]);
        let lba = u64::from_be_bytes(lba);
        let blocks = u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
        total += blocks;
        if total > u64::from(MAX_UNMAP_BLOCKS) {
            return Err(Sense::invalid_parameter((8 + 16 * i + 8) as u16, None));
        }
        let offset = unit.range(lba, blocks).ok_or(Sense::LBA_OUT_OF_RANGE)?;
        if blocks > 0 {
            ops.push(IoOp::Fallocate {
                fd: unit.fd(),
                mode: libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len: blocks << BLOCK_SHIFT,
            });
        }
    }
    if ops.is_empty() {
        return Ok(Action::Data(Vec::new()));
    }
    Ok(Action::Ops {
        ops,
        kind: OpKind::Write,
        bounce: None,
    })
}

/// REPORT LUNS data for the LUNs of one target.
pub fn report_luns(
    select: u8,
    alloc: u32,
    luns: impl Iterator<Item = u32>,
) -> Result<Action, Sense> {
    if alloc < 16 {
        return Err(Sense::invalid_cdb(6, None));
    }
    let listed: Vec<u32> = match select {
        // All LUNs (no well-known LUNs exist), or only the well-known ones.
        0x00 | 0x02 => luns.collect(),
        0x01 | 0x10..=0x12 => Vec::new(),
        _ => return Err(Sense::invalid_cdb(2, None)),
    };
    let mut d = vec![0u8; 8];
    d[0..4].copy_from_slice(&((listed.len() * 8) as u32).to_be_bytes());
    for lun in listed {
        d.extend_from_slice(&LunAddress::report_lun(lun));
    }
    Ok(Action::Data(d))
}

fn timeouts_descriptor() -> [u8; 12] {
    // Length 0x0a; nominal and recommended timeouts 0: not specified.
    [0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

fn report_opcodes(cmd: &ReportOpcodes) -> Result<Vec<u8>, Sense> {
    match cmd.options {
        0 => {
            let mut body = Vec::new();
            for s in cdb::SUPPORTED {
                body.push(s.opcode);
                body.push(0);
                body.extend_from_slice(&s.service_action.unwrap_or(0).to_be_bytes());
                body.push(0);
                body.push(
                    u8::from(s.service_action.is_some()) | if cmd.timeouts { 0x02 } else { 0 },
                );
                body.extend_from_slice(&(s.cdb_len() as u16).to_be_bytes());
                if cmd.timeouts {
                    body.extend_from_slice(&timeouts_descriptor());
                }
            }
            let mut d = (body.len() as u32).to_be_bytes().to_vec();
            d.extend(body);
            Ok(d)
        }
        1..=3 => {
            let has_sa = cdb::SUPPORTED
                .iter()
                .any(|s| s.opcode == cmd.opcode && s.service_action.is_some());
            // Options 1: opcode without service actions; 2: opcode with them.
            match cmd.options {
                1 if has_sa => return Err(Sense::invalid_cdb(3, None)),
                2 if !has_sa && cdb::opcode_known(cmd.opcode) => {
                    return Err(Sense::invalid_cdb(3, None))
                }
                _ => {}
            }
            let entry: Option<&Supported> = cdb::supported(cmd.opcode, cmd.service_action);
            let mut d = vec![0u8; 4];
            match entry {
                Some(s) => {
                    d[1] = 0x03 | if cmd.timeouts { 0x80 } else { 0 };
                    d[2..4].copy_from_slice(&(s.cdb_len() as u16).to_be_bytes());
                    d.extend_from_slice(s.usage);
                    if cmd.timeouts {
                        d.extend_from_slice(&timeouts_descriptor());
                    }
                }
                None => d[1] = 0x01,
            }
            Ok(d)
        }
        _ => Err(Sense::invalid_cdb(2, Some(0))),
    }
}
