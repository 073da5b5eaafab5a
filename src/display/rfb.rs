//! RFB (RFC 6143) wire pieces shared by the VNC server and the RFB client: version
//! strings, message numbers and pixel formats with their conversion from and to the
//! screen's 0x00RRGGBB pixels.

/// What the server offers; clients answer with theirs.
pub const VERSION_3_8: &[u8; 12] = b"RFB 003.008\n";

pub const SECURITY_NONE: u8 = 1;
pub const SECURITY_RESULT_OK: u32 = 0;
pub const SECURITY_RESULT_FAILED: u32 = 1;

// Client to server messages.
pub const MSG_SET_PIXEL_FORMAT: u8 = 0;
pub const MSG_SET_ENCODINGS: u8 = 2;
pub const MSG_FRAMEBUFFER_UPDATE_REQUEST: u8 = 3;
pub const MSG_KEY_EVENT: u8 = 4;
pub const MSG_POINTER_EVENT: u8 = 5;
pub const MSG_CLIENT_CUT_TEXT: u8 = 6;

// Server to client messages.
pub const MSG_FRAMEBUFFER_UPDATE: u8 = 0;
pub const MSG_SET_COLOUR_MAP_ENTRIES: u8 = 1;
pub const MSG_BELL: u8 = 2;
pub const MSG_SERVER_CUT_TEXT: u8 = 3;

pub const ENCODING_RAW: i32 = 0;
/// A pseudo-rectangle whose width and height are the new framebuffer size.
pub const ENCODING_DESKTOP_SIZE: i32 = -223;

/// The protocol versions a connection can settle on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3_3,
    V3_7,
    V3_8,
}

/// Reads a client's "RFB xxx.yyy\n". RFC 6143 says unknown 3.x versions behave as 3.3
/// (they lack the 3.7 handshake); a newer major speaks our 3.8. None if malformed.
pub fn parse_version(text: &[u8; 12]) -> Option<Version> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if &text[..4] != b"RFB " || text[7] != b'.' || text[11] != b'\n' {
        return None;
    }
    match (digits(4..7)?, digits(8..11)?) {
        (3, minor) if minor >= 8 => Some(Version::V3_8),
        (3, 7) => Some(Version::V3_7),
        (3, _) => Some(Version::V3_3),
        (major, _) if major > 3 => Some(Version::V3_8),
        _ => None,
    }
}

/// Why a client's pixel format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelFormatError {
    #[error("colour-map (palette) formats are not supported")]
    ColourMap,
    #[error("{0} bits per pixel is not supported (8, 16 or 32)")]
    BitsPerPixel(u8),
    #[error("a colour channel has max 0 or does not fit in {bits_per_pixel} bits")]
    Channel { bits_per_pixel: u8 },
}

/// An RFB PIXEL_FORMAT (RFC 6143 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// The server's own format: 0x00RRGGBB as a little-endian 32-bit word.
    pub const RGB888_LE: Self = Self {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// 16-bit 5-6-5, little endian.
    pub const RGB565_LE: Self = Self {
        bits_per_pixel: 16,
        depth: 16,
        big_endian: false,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    };

    pub fn to_bytes(&self) -> [u8; 16] {
        let [rh, rl] = self.red_max.to_be_bytes();
        let [gh, gl] = self.green_max.to_be_bytes();
        let [bh, bl] = self.blue_max.to_be_bytes();
        [
            self.bits_per_pixel,
            self.depth,
            u8::from(self.big_endian),
            u8::from(self.true_colour),
            rh,
            rl,
            gh,
            gl,
            bh,
            bl,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
            0,
            0,
            0,
        ]
    }

    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// Checks that pixels can be converted to this format: true colour, 8/16/32 bits,
    /// every channel non-empty and inside the pixel.
    pub fn validate(&self) -> Result<(), PixelFormatError> {
        if !self.true_colour {
            return Err(PixelFormatError::ColourMap);
        }
        let bits = self.bits_per_pixel;
        if !matches!(bits, 8 | 16 | 32) {
            return Err(PixelFormatError::BitsPerPixel(bits));
        }
        let fits = |max: u16, shift: u8| {
            max != 0 && shift < bits && (u64::from(max) << shift) < (1u64 << bits)
        };
        if fits(self.red_max, self.red_shift)
            && fits(self.green_max, self.green_shift)
            && fits(self.blue_max, self.blue_shift)
        {
            Ok(())
        } else {
            Err(PixelFormatError::Channel {
                bits_per_pixel: bits,
            })
        }
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Reads one pixel of this (validated) format as 0x00RRGGBB, channels scaled to 8 bits.
    pub fn decode(&self, bytes: &[u8]) -> u32 {
        if let (true, [b, g, r, _, ..]) = (*self == Self::RGB888_LE, bytes) {
            return u32::from_be_bytes([0, *r, *g, *b]);
        }
        let mut word = [0u8; 4];
        let n = self.bytes_per_pixel().min(bytes.len());
        let value = if self.big_endian {
            word[4 - n..].copy_from_slice(&bytes[..n]);
            u32::from_be_bytes(word)
        } else {
            word[..n].copy_from_slice(&bytes[..n]);
            u32::from_le_bytes(word)
        };
        let channel = |max: u16, shift: u8| {
            let max = u32::from(max.max(1));
            let raw = value.checked_shr(u32::from(shift)).unwrap_or(0) & max;
            (raw * 255 + max / 2) / max
        };
        channel(self.red_max, self.red_shift) << 16
            | channel(self.green_max, self.green_shift) << 8
            | channel(self.blue_max, self.blue_shift)
    }
}

/// Converts 0x00RRGGBB pixels to a (validated) client format through per-channel tables,
/// so a 16-bit client costs three lookups a pixel rather than three divisions.
pub struct PixelEncoder {
    format: PixelFormat,
    red: [u32; 256],
    green: [u32; 256],
    blue: [u32; 256],
}

impl PixelEncoder {
    pub fn new(format: PixelFormat) -> Self {
        let table = |max: u16, shift: u8| {
            let mut t = [0u32; 256];
            for (c, slot) in t.iter_mut().enumerate() {
                // Rounded, so full intensity maps to max and half to about max / 2.
                let scaled = (c as u32 * u32::from(max) + 127) / 255;
                *slot = scaled.checked_shl(u32::from(shift)).unwrap_or(0);
            }
            t
        };
        Self {
            format,
            red: table(format.red_max, format.red_shift),
            green: table(format.green_max, format.green_shift),
            blue: table(format.blue_max, format.blue_shift),
        }
    }

    pub fn format(&self) -> &PixelFormat {
        &self.format
    }

    /// Appends `pixels` in the client's format.
    pub fn encode(&self, pixels: &[u32], out: &mut Vec<u8>) {
        let f = &self.format;
        if *f == PixelFormat::RGB888_LE {
            // The common case needs no conversion beyond the byte order.
            out.extend(pixels.iter().flat_map(|p| (p & 0x00FF_FFFF).to_le_bytes()));
            return;
        }
        let n = f.bytes_per_pixel();
        out.reserve(pixels.len() * n);
        for &p in pixels {
            let value = self.red[(p >> 16 & 0xFF) as usize]
                | self.green[(p >> 8 & 0xFF) as usize]
                | self.blue[(p & 0xFF) as usize];
            if f.big_endian {
                out.extend_from_slice(&value.to_be_bytes()[4 - n..]);
            } else {
                out.extend_from_slice(&value.to_le_bytes()[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"RFB 003.008\n"), Some(Version::V3_8));
        assert_eq!(parse_version(b"RFB 003.007\n"), Some(Version::V3_7));
        assert_eq!(parse_version(b"RFB 003.003\n"), Some(Version::V3_3));
        assert_eq!(parse_version(b"RFB 003.889\n"), Some(Version::V3_8));
        assert_eq!(parse_version(b"RFB 003.005\n"), Some(Version::V3_3));
        assert_eq!(parse_version(b"RFB 002.000\n"), None);
        assert_eq!(parse_version(b"RFB 003.00x\n"), None);
        assert_eq!(parse_version(b"GET / HTTP/1"), None);
    }

    #[test]
    fn formats_round_trip_and_validate() {
        for f in [PixelFormat::RGB888_LE, PixelFormat::RGB565_LE] {
            assert_eq!(PixelFormat::from_bytes(&f.to_bytes()), f);
            assert_eq!(f.validate(), Ok(()));
        }
        let palette = PixelFormat {
            true_colour: false,
            bits_per_pixel: 8,
            ..PixelFormat::RGB888_LE
        };
        assert_eq!(palette.validate(), Err(PixelFormatError::ColourMap));
        let odd = PixelFormat {
            bits_per_pixel: 24,
            ..PixelFormat::RGB888_LE
        };
        assert_eq!(odd.validate(), Err(PixelFormatError::BitsPerPixel(24)));
        let overflow = PixelFormat {
            red_shift: 12,
            ..PixelFormat::RGB565_LE
        };
        assert!(overflow.validate().is_err());
    }

    #[test]
    fn conversions() {
        let mut out = Vec::new();
        PixelEncoder::new(PixelFormat::RGB888_LE).encode(&[0x0012_3456], &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12, 0]);
        out.clear();
        PixelEncoder::new(PixelFormat::RGB565_LE).encode(&[0x00FF_0000, 0x0000_FF00], &mut out);
        assert_eq!(out, [0x00, 0xF8, 0xE0, 0x07]);
        let bgr233_be = PixelFormat {
            bits_per_pixel: 8,
            depth: 8,
            big_endian: true,
            true_colour: true,
            red_max: 7,
            green_max: 7,
            blue_max: 3,
            red_shift: 0,
            green_shift: 3,
            blue_shift: 6,
        };
        out.clear();
        PixelEncoder::new(bgr233_be).encode(&[0x00FF_FFFF, 0x0000_00FF], &mut out);
        assert_eq!(out, [0xFF, 0xC0]);
        for f in [PixelFormat::RGB888_LE, PixelFormat::RGB565_LE, bgr233_be] {
            let mut bytes = Vec::new();
            PixelEncoder::new(f).encode(&[0x00FF_FFFF, 0], &mut bytes);
            let n = f.bytes_per_pixel();
            assert_eq!(f.decode(&bytes[..n]), 0x00FF_FFFF);
            assert_eq!(f.decode(&bytes[n..]), 0);
        }
    }
}
