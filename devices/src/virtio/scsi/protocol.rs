//! virtio-scsi wire format (virtio 1.2, section 5.6): queue roles, configuration layout,
//! request and response headers, and the LUN address encoding. No bindings crate covers
//! virtio-scsi, so the constants live here.

/// The virtio device ID of a SCSI host.
pub const VIRTIO_ID_SCSI: u32 = 8;

/// Queue 0 carries task management and asynchronous-notification requests, queue 1 the
/// device's events; request queues follow.
pub const CONTROL_QUEUE: u16 = 0;
pub const EVENT_QUEUE: u16 = 1;
pub const FIRST_REQUEST_QUEUE: u16 = 2;

/// Defaults of the sizes the driver may rewrite in the configuration space.
pub const DEFAULT_CDB_SIZE: u32 = 32;
pub const DEFAULT_SENSE_SIZE: u32 = 96;
/// Largest values accepted for them: a CDB is at most 260 bytes (SPC-4 variable length),
/// sense data at most 252.
pub const MAX_CDB_SIZE: u32 = 260;
pub const MAX_SENSE_SIZE: u32 = 252;

/// `struct virtio_scsi_config` byte offsets.
pub mod config {
    pub const NUM_QUEUES: usize = 0;
    pub const SEG_MAX: usize = 4;
    pub const MAX_SECTORS: usize = 8;
    pub const CMD_PER_LUN: usize = 12;
    pub const EVENT_INFO_SIZE: usize = 16;
    pub const SENSE_SIZE: usize = 20;
    pub const CDB_SIZE: usize = 24;
    pub const MAX_CHANNEL: usize = 28;
    pub const MAX_TARGET: usize = 30;
    pub const MAX_LUN: usize = 32;
    pub const LEN: usize = 36;
}

/// Bytes of `virtio_scsi_req_cmd` before the CDB: lun[8], id, task_attr, prio, crn.
pub const CMD_HEADER_FIXED: u64 = 19;
/// Bytes of `virtio_scsi_resp_cmd` before the sense buffer: sense_len, resid,
/// status_qualifier, status, response.
pub const RESP_HEADER_FIXED: u64 = 12;
/// `virtio_scsi_event`: event, lun[8], reason.
pub const EVENT_INFO_SIZE: u32 = 16;

/// `response` values of a command or task-management request.
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
    pub const INCORRECT_LUN: u8 = 12;
}

/// Control request types.
pub const T_TMF: u32 = 0;
pub const T_AN_QUERY: u32 = 1;
pub const T_AN_SUBSCRIBE: u32 = 2;

/// Task management functions (subtype of [`T_TMF`]).
pub mod tmf {
    pub const ABORT_TASK: u32 = 0;
    pub const ABORT_TASK_SET: u32 = 1;
    pub const CLEAR_ACA: u32 = 2;
    pub const CLEAR_TASK_SET: u32 = 3;
    pub const I_T_NEXUS_RESET: u32 = 4;
    pub const LOGICAL_UNIT_RESET: u32 = 5;
    pub const QUERY_TASK: u32 = 6;
    pub const QUERY_TASK_SET: u32 = 7;
}

/// `virtio_scsi_ctrl_tmf_req`: type, subtype, lun[8], id.
pub const TMF_REQUEST_LEN: u64 = 24;
/// `virtio_scsi_ctrl_an_req`: type, lun[8], event_requested.
pub const AN_REQUEST_LEN: u64 = 16;
/// `virtio_scsi_ctrl_an_resp`: event_actual, response.
pub const AN_RESPONSE_LEN: u64 = 5;

/// Targets addressable in the single-level LUN format virtio-scsi uses.
pub const MAX_TARGET: u16 = 255;
/// LUNs addressable with flat-space addressing.
pub const MAX_LUN: u32 = 16383;

/// Where a request is addressed: `lun[0] == 1`, target in `lun[1]`, the LUN in bytes 2-3
/// (flat space, `0x40` in the high bits, or peripheral with 0), the rest zero. Anything
/// else names no logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LunAddress {
    pub target: u16,
    pub lun: u32,
}

impl LunAddress {
    pub fn decode(raw: &[u8; 8]) -> Option<Self> {
        if raw[0] != 1 || raw[4..] != [0; 4] {
            return None;
        }
        let method = raw[2] >> 6;
        if method > 1 {
            return None;
        }
        let lun = u32::from(u16::from_be_bytes([raw[2] & 0x3f, raw[3]]));
        // Peripheral addressing carries a bus number in byte 2, which must be 0.
        if method == 0 && raw[2] != 0 {
            return None;
        }
        Some(Self {
            target: u16::from(raw[1]),
            lun,
        })
    }

    /// The 8-byte LUN as REPORT LUNS lists it: peripheral addressing below 256, flat
    /// space above, as Linux and QEMU expect.
    pub fn report_lun(lun: u32) -> [u8; 8] {
        let mut out = [0u8; 8];
        if lun < 256 {
            out[1] = lun as u8;
        } else {
            out[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
            out[1] = lun as u8;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_addresses_decode_both_methods() {
        let linux = [1, 7, 0x40, 3, 0, 0, 0, 0];
        assert_eq!(
            LunAddress::decode(&linux),
            Some(LunAddress { target: 7, lun: 3 })
        );
        let peripheral = [1, 2, 0, 9, 0, 0, 0, 0];
        assert_eq!(
            LunAddress::decode(&peripheral),
            Some(LunAddress { target: 2, lun: 9 })
        );
        let high = [1, 0, 0x40 | 0x3f, 0xff, 0, 0, 0, 0];
        assert_eq!(LunAddress::decode(&high).unwrap().lun, MAX_LUN);
        assert_eq!(LunAddress::decode(&[0, 7, 0x40, 3, 0, 0, 0, 0]), None);
        assert_eq!(LunAddress::decode(&[1, 7, 0x40, 3, 0, 0, 0, 1]), None);
        assert_eq!(LunAddress::decode(&[1, 7, 0x80, 3, 0, 0, 0, 0]), None);
        assert_eq!(LunAddress::decode(&[1, 7, 0x01, 3, 0, 0, 0, 0]), None);
        assert_eq!(LunAddress::report_lun(5), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(LunAddress::report_lun(300), [0x41, 44, 0, 0, 0, 0, 0, 0]);
    }
}
