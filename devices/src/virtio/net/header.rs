//! The virtio-net header in front of every frame (virtio 1.2, 5.1.6): checking what the
//! guest sends before the TAP sees it.

use super::tap::VNET_HEADER_LEN;

pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_ECN: u8 = 0x80;

/// Ethernet header, and the most a frame may add to the MTU (header plus a VLAN tag).
pub const ETH_HEADER_LEN: usize = 14;
const ETH_OVERHEAD: usize = 18;
/// Largest GSO frame the TAP accepts: 64 KiB of payload plus headers.
pub const MAX_GSO_FRAME: usize = 65_535 + ETH_OVERHEAD;

/// What the guest negotiated that decides which headers are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRules {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub ecn: bool,
    pub mtu: u16,
}

/// Why a transmitted frame is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("chain shorter than the virtio-net header plus an Ethernet header")]
    TooShort,
    #[error("frame of {0} bytes is larger than the negotiated size")]
    TooLong(usize),
    #[error("partial checksum asked for without VIRTIO_NET_F_CSUM")]
    ChecksumNotNegotiated,
    #[error("checksum at {start}+{offset} is outside the {len}-byte frame")]
    ChecksumOutOfFrame { start: u16, offset: u16, len: usize },
    #[error("GSO type {0:#x} not negotiated or unknown")]
    GsoType(u8),
    #[error("GSO frame with segment size 0 or headers longer than the frame")]
    GsoFields,
    #[error("header flags {0:#x} unknown")]
    Flags(u8),
}

/// Checks the header at the start of a transmitted chain of `len` bytes (header
/// included).
pub fn check_tx(
    header: &[u8; VNET_HEADER_LEN],
    len: usize,
    rules: &TxRules,
) -> Result<(), HeaderError> {
    let frame = len
        .checked_sub(VNET_HEADER_LEN)
        .filter(|&f| f >= ETH_HEADER_LEN)
        .ok_or(HeaderError::TooShort)?;
    let flags = header[0];
    let gso_type = header[1];
    let word = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let (hdr_len, gso_size, csum_start, csum_offset) = (word(2), word(4), word(6), word(8));
    if flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(HeaderError::Flags(flags));
    }
    if flags & F_NEEDS_CSUM != 0 {
        if !rules.csum {
            return Err(HeaderError::ChecksumNotNegotiated);
        }
        let end = usize::from(csum_start) + usize::from(csum_offset) + 2;
        if end > frame {
            return Err(HeaderError::ChecksumOutOfFrame {
                start: csum_start,
                offset: csum_offset,
                len: frame,
            });
        }
    }
    let ecn = gso_type & GSO_ECN != 0;
    let allowed = match gso_type & !GSO_ECN {
        GSO_NONE => !ecn,
        GSO_TCPV4 => rules.tso4 && (!ecn || rules.ecn),
        GSO_TCPV6 => rules.tso6 && (!ecn || rules.ecn),
        _ => false,
    };
    if !allowed {
        return Err(HeaderError::GsoType(gso_type));
    }
    let max = if gso_type == GSO_NONE {
        usize::from(rules.mtu) + ETH_OVERHEAD
    } else {
        // Segmentation needs the checksum offload and sane sizes.
        if flags & F_NEEDS_CSUM == 0 || gso_size == 0 || usize::from(hdr_len) > frame {
            return Err(HeaderError::GsoFields);
        }
        MAX_GSO_FRAME
    };
    if frame > max {
        return Err(HeaderError::TooLong(frame));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: TxRules = TxRules {
        csum: true,
        tso4: true,
        tso6: false,
        ecn: false,
        mtu: 1500,
    };

    fn header(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, start: u16, off: u16) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = flags;
        h[1] = gso;
        h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
        h
    }

    #[test]
    fn plain_and_offloaded_frames_pass() {
        assert_eq!(check_tx(&header(0, 0, 0, 0, 0, 0), 12 + 60, &RULES), Ok(()));
        assert_eq!(
            check_tx(&header(0, 0, 0, 0, 0, 0), 12 + 1518, &RULES),
            Ok(())
        );
        let csum = header(F_NEEDS_CSUM, 0, 0, 0, 34, 16);
        assert_eq!(check_tx(&csum, 12 + 100, &RULES), Ok(()));
        let tso = header(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16);
        assert_eq!(check_tx(&tso, 12 + 60_000, &RULES), Ok(()));
    }

    #[test]
    fn nonsense_headers_are_refused() {
        let plain = header(0, 0, 0, 0, 0, 0);
        assert_eq!(
            check_tx(&plain, 12 + 10, &RULES),
            Err(HeaderError::TooShort)
        );
        assert_eq!(check_tx(&plain, 5, &RULES), Err(HeaderError::TooShort));
        assert_eq!(
            check_tx(&plain, 12 + 1519, &RULES),
            Err(HeaderError::TooLong(1519))
        );
        assert_eq!(
            check_tx(&header(F_NEEDS_CSUM, 0, 0, 0, 90, 16), 12 + 100, &RULES),
            Err(HeaderError::ChecksumOutOfFrame {
                start: 90,
                offset: 16,
                len: 100
            })
        );
        let no_csum = TxRules {
            csum: false,
            ..RULES
        };
        assert_eq!(
            check_tx(&header(F_NEEDS_CSUM, 0, 0, 0, 34, 16), 112, &no_csum),
            Err(HeaderError::ChecksumNotNegotiated)
        );
        for gso in [GSO_TCPV6, GSO_UDP, 7, GSO_TCPV4 | GSO_ECN, GSO_ECN] {
            let h = header(F_NEEDS_CSUM, gso, 66, 1448, 34, 16);
            assert_eq!(
                check_tx(&h, 12 + 3000, &RULES),
                Err(HeaderError::GsoType(gso))
            );
        }
        let zero_mss = header(F_NEEDS_CSUM, GSO_TCPV4, 66, 0, 34, 16);
        assert_eq!(
            check_tx(&zero_mss, 12 + 3000, &RULES),
            Err(HeaderError::GsoFields)
        );
        let no_csum_gso = header(0, GSO_TCPV4, 66, 1448, 0, 0);
        assert_eq!(
            check_tx(&no_csum_gso, 12 + 3000, &RULES),
            Err(HeaderError::GsoFields)
        );
        let huge = header(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16);
        assert_eq!(
            check_tx(&huge, 12 + 70_000, &RULES),
            Err(HeaderError::TooLong(70_000))
        );
        assert_eq!(
            check_tx(&header(0x10, 0, 0, 0, 0, 0), 80, &RULES),
            Err(HeaderError::Flags(0x10))
        );
    }
}
