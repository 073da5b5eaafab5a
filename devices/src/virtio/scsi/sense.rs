//! SCSI status and sense data (SPC-4 4.5): what a command reports when it does not
//! simply succeed. Sense data is returned in fixed format (response code 0x70; the
//! control mode page keeps D_SENSE at 0).

/// SCSI status codes (SAM-5 5.3).
pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const MISCOMPARE: u8 = 0xe;
}

/// Bytes of fixed-format sense data with the sense-key-specific field.
pub const FIXED_LEN: usize = 18;

/// Which part of the command a sense-key-specific field pointer points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Byte (and optionally bit) of the CDB.
    Cdb { byte: u16, bit: Option<u8> },
    /// Byte (and optionally bit) of the parameter list (data-out).
    Parameter { byte: u16, bit: Option<u8> },
}

/// A CHECK CONDITION's sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    pub field: Option<Field>,
}

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            field: None,
        }
    }

    /// INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: Self = Self::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Self = Self::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    /// LOGICAL UNIT NOT SUPPORTED.
    pub const LUN_NOT_SUPPORTED: Self = Self::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    /// PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH: Self = Self::new(key::ILLEGAL_REQUEST, 0x1a, 0x00);
    /// SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_NOT_SUPPORTED: Self = Self::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    /// WRITE PROTECTED.
    pub const WRITE_PROTECTED: Self = Self::new(key::DATA_PROTECT, 0x27, 0x00);
    /// SPACE ALLOCATION FAILED WRITE PROTECT (thin provisioning ran out of space).
    pub const SPACE_ALLOCATION_FAILED: Self = Self::new(key::DATA_PROTECT, 0x27, 0x07);
    /// UNRECOVERED READ ERROR.
    pub const READ_ERROR: Self = Self::new(key::MEDIUM_ERROR, 0x11, 0x00);
    /// WRITE ERROR.
    pub const WRITE_ERROR: Self = Self::new(key::MEDIUM_ERROR, 0x0c, 0x00);
    /// INTERNAL TARGET FAILURE.
    pub const INTERNAL_FAILURE: Self = Self::new(key::HARDWARE_ERROR, 0x44, 0x00);
    /// MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE: Self = Self::new(key::MISCOMPARE, 0x1d, 0x00);

    /// INVALID FIELD IN CDB, pointing at `byte` (and `bit`) of the CDB.
    pub const fn invalid_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self {
            key: key::ILLEGAL_REQUEST,
            asc: 0x24,
            ascq: 0x00,
            field: Some(Field::Cdb { byte, bit }),
        }
    }

    /// INVALID FIELD IN PARAMETER LIST, pointing at `byte` (and `bit`) of the list.
    pub const fn invalid_parameter(byte: u16, bit: Option<u8>) -> Self {
        Self {
            key: key::ILLEGAL_REQUEST,
            asc: 0x26,
            ascq: 0x00,
            field: Some(Field::Parameter { byte, bit }),
        }
    }

    /// Fixed-format sense data (SPC-4 4.5.3): current error, VALID clear (no
    /// INFORMATION), ADDITIONAL SENSE LENGTH 10.
    pub fn fixed(&self) -> [u8; FIXED_LEN] {
        let mut s = [0u8; FIXED_LEN];
        s[0] = 0x70;
        s[2] = self.key & 0x0f;
        s[7] = (FIXED_LEN - 8) as u8;
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(field) = self.field {
            // SKSV, C/D, BPV and the bit pointer, then the field pointer (SPC-4 4.5.2.4.2).
            let (cdb, byte, bit) = match field {
                Field::Cdb { byte, bit } => (true, byte, bit),
                Field::Parameter { byte, bit } => (false, byte, bit),
            };
            s[15] = 0x80 | if cdb { 0x40 } else { 0 };
            if let Some(bit) = bit {
                s[15] |= 0x08 | (bit & 0x07);
            }
            s[16..18].copy_from_slice(&byte.to_be_bytes());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sense_with_a_field_pointer() {
        let s = Sense::invalid_cdb(2, Some(1)).fixed();
        assert_eq!(
            s,
            [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xc9, 0, 2]
        );
        let p = Sense::invalid_parameter(0x104, None).fixed();
        assert_eq!(&p[15..], &[0x80, 0x01, 0x04]);
        let plain = Sense::LBA_OUT_OF_RANGE.fixed();
        assert_eq!(&plain[12..], &[0x21, 0, 0, 0, 0, 0]);
    }
}
