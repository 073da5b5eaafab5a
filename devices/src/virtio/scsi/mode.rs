//! MODE SENSE data and MODE SELECT checking (SPC-4 7.5, SBC-3 6.5): the caching, control
//! and informational-exceptions pages. Nothing is changeable: MODE SELECT accepts a page
//! list that leaves every value as it is (what Linux sends back after a MODE SENSE).

use super::cdb::ModeSense;
use super::lun::{LogicalUnit, BLOCK_SIZE};
use super::sense::Sense;

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0a;
const INFORMATIONAL_EXCEPTIONS: u8 = 0x1c;
const ALL_PAGES: u8 = 0x3f;

/// The current value of a page (its header included).
fn page(code: u8) -> Option<Vec<u8>> {
    let page = match code {
        // WCE: writes are durable only after SYNCHRONIZE CACHE (fdatasync).
        CACHING => {
            let mut p = vec![0u8; 20];
            p[2] = 0x04;
            p
        }
        // Queue algorithm modifier 1 (unrestricted reordering), D_SENSE 0.
        CONTROL => {
            let mut p = vec![0u8; 12];
            p[3] = 0x10;
            p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout: unlimited
            p
        }
        // DEXCPT: no informational exceptions are reported.
        INFORMATIONAL_EXCEPTIONS => {
            let mut p = vec![0u8; 12];
            p[2] = 0x08;
            p
        }
        _ => return None,
    };
    let mut page = page;
    page[0] = code;
    page[1] = (page.len() - 2) as u8;
    Some(page)
}

/// The changeable mask of a page: nothing is.
fn changeable(code: u8) -> Option<Vec<u8>> {
    let mut mask = page(code)?;
    mask[2..].fill(0);
    Some(mask)
}

/// MODE SENSE(6)/(10) data.
pub fn sense(lu: &LogicalUnit, cmd: &ModeSense) -> Result<Vec<u8>, Sense> {
    if cmd.pc == 3 {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    // Subpage 0, or 0xff with "all pages" (every page and subpage, and there are none).
    if cmd.subpage != 0 && !(cmd.page == ALL_PAGES && cmd.subpage == 0xff) {
        return Err(Sense::invalid_cdb(3, None));
    }
    let codes: &[u8] = match cmd.page {
        ALL_PAGES => &[CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS],
        CACHING => &[CACHING],
        CONTROL => &[CONTROL],
        INFORMATIONAL_EXCEPTIONS => &[INFORMATIONAL_EXCEPTIONS],
        _ => return Err(Sense::invalid_cdb(2, Some(5))),
    };
    let mut pages = Vec::new();
    for &code in codes {
        let p = if cmd.pc == 1 {
            changeable(code)
        } else {
            page(code)
        };
        pages.extend(p.unwrap_or_default());
    }

    let descriptor = if cmd.dbd {
        Vec::new()
    } else {
        block_descriptor(lu, cmd.llbaa)
    };
    // Device-specific parameter: WP for a read-only unit; DPOFUA stays 0.
    let device_specific = if lu.read_only { 0x80 } else { 0 };
    let mut d = if cmd.ten {
        let mut h = vec![0u8; 8];
        h[3] = device_specific;
        h[4] = u8::from(cmd.llbaa && !cmd.dbd);
        h[6..8].copy_from_slice(&(descriptor.len() as u16).to_be_bytes());
        h
    } else {
        vec![0, 0, device_specific, descriptor.len() as u8]
    };
    d.extend(descriptor);
    d.extend(pages);
    // MODE DATA LENGTH excludes itself.
    if cmd.ten {
        let len = (d.len() - 2) as u16;
        d[0..2].copy_from_slice(&len.to_be_bytes());
    } else {
        d[0] = (d.len() - 1).min(255) as u8;
    }
    Ok(d)
}

fn block_descriptor(lu: &LogicalUnit, long: bool) -> Vec<u8> {
    if long {
        let mut d = vec![0u8; 16];
        d[0..8].copy_from_slice(&lu.blocks.to_be_bytes());
        d[12..16].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
        d
    } else {
        let mut d = vec![0u8; 8];
        let blocks = u32::try_from(lu.blocks).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&blocks.to_be_bytes());
        d[5..8].copy_from_slice(&BLOCK_SIZE.to_be_bytes()[1..]);
        d
    }
}

/// Checks a MODE SELECT parameter list: the header, at most one block descriptor that
/// keeps the block size, and pages equal to their current values.
pub fn select(ten: bool, save: bool, list: &[u8]) -> Result<(), Sense> {
    if save {
        // No saved pages: SP=1 cannot be honoured.
        return Err(Sense::invalid_cdb(1, Some(0)));
    }
    let header_len = if ten { 8 } else { 4 };
    if list.is_empty() {
        return Ok(());
    }
    if list.len() < header_len {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let (descriptors_len, long) = if ten {
        (
            usize::from(u16::from_be_bytes([list[6], list[7]])),
            list[4] & 1 != 0,
        )
    } else {
        (usize::from(list[3]), false)
    };
    let descriptor_len = if long { 16 } else { 8 };
    let pages_at = header_len + descriptors_len;
    if pages_at > list.len() {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let bd_field = if ten { 6 } else { 3 };
    match descriptors_len {
        0 => {}
        n if n == descriptor_len => {
            let bd = &list[header_len..pages_at];
            let size_at = if long { 12 } else { 4 };
            let size = u32::from_be_bytes([
                if long { bd[size_at] } else { 0 },
                bd[size_at + 1],
                bd[size_at + 2],
                bd[size_at + 3],
            ]);
            if size != 0 && size != BLOCK_SIZE {
                return Err(Sense::invalid_parameter(
                    (header_len + size_at + 1) as u16,
                    None,
                ));
            }
        }
        _ => return Err(Sense::invalid_parameter(bd_field, None)),
    }
    let mut at = pages_at;
    while at < list.len() {
        let (Some(&code), Some(&len)) = (list.get(at), list.get(at + 1)) else {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        };
        // PS is reserved in MODE SELECT (Linux clears it); SPF is refused below.
        let code = code & 0x3f;
        let Some(current) = page(code) else {
            return Err(Sense::invalid_parameter(at as u16, None));
        };
        let end = at + 2 + usize::from(len);
        let Some(given) = list.get(at..end) else {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        };
        if usize::from(len) + 2 != current.len() {
            return Err(Sense::invalid_parameter(at as u16 + 1, None));
        }
        if list[at] & 0x40 != 0 {
            return Err(Sense::invalid_parameter(at as u16, Some(6)));
        }
        if let Some(i) = (2..current.len()).find(|&i| given[i] != current[i]) {
            return Err(Sense::invalid_parameter((at + i) as u16, None));
        }
        at = end;
    }
    Ok(())
}
