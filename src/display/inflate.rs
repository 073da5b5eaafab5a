//! A small zlib/DEFLATE decoder (RFC 1950/1951) for reading PNGs back: stored, fixed and
//! dynamic Huffman blocks. Speed is secondary (codes are decoded bit by bit, as in zlib's
//! `puff`); bounding the output is not, so a hostile stream cannot grow memory.

use super::zlib::{adler32, fixed_literal_lengths, DIST_BASE, DIST_EXTRA, LEN_BASE, LEN_EXTRA};

/// Why a zlib stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("bad zlib header {0:#06x}")]
    BadHeader(u16),
    #[error("zlib preset dictionaries are not supported")]
    PresetDictionary,
    #[error("the stream ends early")]
    Truncated,
    #[error("reserved block type 3")]
    BadBlockType,
    #[error("stored block length {len:#06x} does not match its complement {nlen:#06x}")]
    StoredLength { len: u16, nlen: u16 },
    #[error("invalid Huffman code lengths")]
    BadCodeLengths,
    #[error("invalid Huffman code in the data")]
    BadCode,
    #[error("invalid length or distance symbol {0}")]
    BadSymbol(u16),
    #[error("distance {distance} reaches before the start of the output ({available} bytes)")]
    DistanceTooFar { distance: usize, available: usize },
    #[error("more than the expected {0} bytes of output")]
    TooLong(usize),
    #[error("Adler-32 mismatch: stream says {stored:#010x}, data gives {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    count: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            count: 0,
        }
    }

    /// `n` (at most 16) bits, least significant first.
    fn bits(&mut self, n: u32) -> Result<u32, InflateError> {
        while self.count < n {
            let byte = *self.data.get(self.pos).ok_or(InflateError::Truncated)?;
            self.pos += 1;
            self.acc |= u32::from(byte) << self.count;
            self.count += 8;
        }
        let value = self.acc & ((1u32 << n) - 1);
        self.acc >>= n;
        self.count -= n;
        Ok(value)
    }

    /// Drops the bits left in the current byte (stored blocks start byte-aligned).
    fn align(&mut self) {
        self.acc = 0;
        self.count = 0;
    }

    fn take_bytes(&mut self, n: usize) -> Result<&'a [u8], InflateError> {
        let end = self.pos.checked_add(n).ok_or(InflateError::Truncated)?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or(InflateError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }
}

const MAX_BITS: usize = 15;

/// A canonical Huffman code as counts per length and symbols in code order.
struct Huffman {
    count: [u16; MAX_BITS + 1],
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Self, InflateError> {
        let mut count = [0u16; MAX_BITS + 1];
        for &len in lengths {
            count[usize::from(len)] += 1;
        }
        // Over-subscribed codes are invalid; incomplete ones are allowed (a single
        // distance code is legal) and fail only if a missing code is met.
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(InflateError::BadCodeLengths);
            }
        }
        let mut offsets = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offsets[len + 1] = offsets[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let slot = &mut offsets[usize::from(len)];
                symbol[usize::from(*slot)] = sym as u16;
                *slot += 1;
            }
        }
        Ok(Self { count, symbol })
    }

    fn decode(&self, bits: &mut BitReader<'_>) -> Result<u16, InflateError> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - first < count {
                return self
                    .symbol
                    .get((index + code - first) as usize)
                    .copied()
                    .ok_or(InflateError::BadCode);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(InflateError::BadCode)
    }
}

struct Inflater<'a> {
    bits: BitReader<'a>,
    out: Vec<u8>,
    max_len: usize,
}

impl Inflater<'_> {
    fn push(&mut self, byte: u8) -> Result<(), InflateError> {
        if self.out.len() >= self.max_len {
            return Err(InflateError::TooLong(self.max_len));
        }
        self.out.push(byte);
        Ok(())
    }

    fn stored(&mut self) -> Result<(), InflateError> {
        self.bits.align();
        let header = self.bits.take_bytes(4)?;
        let len = u16::from_le_bytes([header[0], header[1]]);
        let nlen = u16::from_le_bytes([header[2], header[3]]);
        if len != !nlen {
            return Err(InflateError::StoredLength { len, nlen });
        }
        let data = self.bits.take_bytes(usize::from(len))?;
        if self.out.len() + data.len() > self.max_len {
            return Err(InflateError::TooLong(self.max_len));
        }
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn codes(&mut self, lit: &Huffman, dist: &Huffman) -> Result<(), InflateError> {
        loop {
            let symbol = lit.decode(&mut self.bits)?;
            match symbol {
                0..=255 => self.push(symbol as u8)?,
                256 => return Ok(()),
                257..=285 => {
                    let i = usize::from(symbol - 257);
                    let len = usize::from(LEN_BASE[i])
                        + self.bits.bits(u32::from(LEN_EXTRA[i]))? as usize;
                    let dsym = dist.decode(&mut self.bits)?;
                    let d = usize::from(dsym);
                    if d >= DIST_BASE.len() {
                        return Err(InflateError::BadSymbol(dsym));
                    }
                    let distance = usize::from(DIST_BASE[d])
                        + self.bits.bits(u32::from(DIST_EXTRA[d]))? as usize;
                    let available = self.out.len();
                    if distance > available {
                        return Err(InflateError::DistanceTooFar {
                            distance,
                            available,
                        });
                    }
                    // Byte by byte: a match may overlap the bytes it produces.
                    for _ in 0..len {
                        let byte = self.out[self.out.len() - distance];
                        self.push(byte)?;
                    }
                }
                _ => return Err(InflateError::BadSymbol(symbol)),
            }
        }
    }

    fn fixed(&mut self) -> Result<(), InflateError> {
        let lit = Huffman::new(&fixed_literal_lengths())?;
        let dist = Huffman::new(&[5u8; 30])?;
        self.codes(&lit, &dist)
    }

    fn dynamic(&mut self) -> Result<(), InflateError> {
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let nlen = self.bits.bits(5)? as usize + 257;
        let ndist = self.bits.bits(5)? as usize + 1;
        let ncode = self.bits.bits(4)? as usize + 4;
        if nlen > 286 || ndist > 30 {
            return Err(InflateError::BadCodeLengths);
        }
        let mut code_lengths = [0u8; 19];
        for &slot in &ORDER[..ncode] {
            code_lengths[slot] = self.bits.bits(3)? as u8;
        }
        let code_code = Huffman::new(&code_lengths)?;
        let mut lengths = vec![0u8; nlen + ndist];
        let mut i = 0;
        while i < lengths.len() {
            let symbol = code_code.decode(&mut self.bits)?;
            let (value, repeat) = match symbol {
                0..=15 => (symbol as u8, 1),
                16 => {
                    let prev = *i
                        .checked_sub(1)
                        .and_then(|p| lengths.get(p))
                        .ok_or(InflateError::BadCodeLengths)?;
                    (prev, 3 + self.bits.bits(2)? as usize)
                }
                17 => (0, 3 + self.bits.bits(3)? as usize),
                _ => (0, 11 + self.bits.bits(7)? as usize),
            };
            let run = lengths
                .get_mut(i..i + repeat)
                .ok_or(InflateError::BadCodeLengths)?;
            run.fill(value);
            i += repeat;
        }
        if lengths[256] == 0 {
            return Err(InflateError::BadCodeLengths);
        }
        let lit = Huffman::new(&lengths[..nlen])?;
        let dist = Huffman::new(&lengths[nlen..])?;
        self.codes(&lit, &dist)
    }
}

/// Decodes a zlib stream whose content is at most `max_len` bytes.
pub fn zlib_decompress(data: &[u8], max_len: usize) -> Result<Vec<u8>, InflateError> {
    let header = match data {
        [cmf, flg, ..] => u16::from_be_bytes([*cmf, *flg]),
        _ => return Err(InflateError::Truncated),
    };
    let (cmf, flg) = ((header >> 8) as u8, header as u8);
    if cmf & 0x0F != 8 || cmf >> 4 > 7 || header % 31 != 0 {
        return Err(InflateError::BadHeader(header));
    }
    if flg & 0x20 != 0 {
        return Err(InflateError::PresetDictionary);
    }
    let mut inflater = Inflater {
        bits: BitReader::new(&data[2..]),
        // Grows with the data: `max_len` comes from a header that may lie.
        out: Vec::with_capacity(max_len.min(1 << 20)),
        max_len,
    };
    loop {
        let last = inflater.bits.bits(1)? == 1;
        match inflater.bits.bits(2)? {
            0 => inflater.stored()?,
            1 => inflater.fixed()?,
            2 => inflater.dynamic()?,
            _ => return Err(InflateError::BadBlockType),
        }
        if last {
            break;
        }
    }
    inflater.bits.align();
    let trailer = inflater.bits.take_bytes(4)?;
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = adler32(&inflater.out);
    if stored != computed {
        return Err(InflateError::Checksum { stored, computed });
    }
    Ok(inflater.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_streams_made_by_zlib() {
        // From CPython's `zlib.compress(text, 9)`: another encoder's fixed and dynamic
        // Huffman blocks.
        let fixed = [
            0x78, 0xDA, 0xCB, 0x48, 0xCD, 0xC9, 0xC9, 0x57, 0xC8, 0x40, 0x27, 0x75, 0x14, 0xCA,
            0xF3, 0x8B, 0x72, 0x52, 0x14, 0x33, 0x28, 0x92, 0x06, 0x00, 0x42, 0x8A, 0x21, 0xD0,
        ];
        let text = b"hello hello hello hello, world!".repeat(3);
        assert_eq!(zlib_decompress(&fixed, 1000), Ok(text));
        let dynamic = [
            0x78, 0xDA, 0x15, 0x8C, 0xD9, 0x15, 0x83, 0x20, 0x10, 0x45, 0x5B, 0x79, 0xF9, 0xCF,
            0x49, 0x03, 0x96, 0x91, 0x34, 0x00, 0xCA, 0x32, 0x09, 0x32, 0x80, 0x2C, 0x4A, 0xF5,
            0x19, 0xBF, 0xEF, 0xF2, 0xF1, 0x06, 0xB9, 0xD1, 0xFA, 0x83, 0x2E, 0x3C, 0x22, 0x2C,
            0x9F, 0xF8, 0xB6, 0x3D, 0x1D, 0xE0, 0x6E, 0x0A, 0xAA, 0xE0, 0xA0, 0xE6, 0x85, 0x8D,
            0xDD, 0x82, 0xA4, 0xC4, 0xDB, 0x2F, 0x68, 0x91, 0x06, 0x55, 0x0F, 0x4B, 0xDD, 0x08,
            0x9A, 0x26, 0x22, 0x50, 0x6E, 0x5C, 0xA4, 0x75, 0xC7, 0x0B, 0xEF, 0xE4, 0x29, 0x9E,
            0x60, 0x0B, 0x1D, 0xEE, 0x26, 0x37, 0x55, 0xEA, 0x7C, 0x0A, 0xDD, 0x9C, 0xB9, 0x0F,
            0x9D, 0xC7, 0xE3, 0x0F, 0xCD, 0xA2, 0x2C, 0x5D,
        ];
        let pangrams: &[u8] = b"The quick brown fox jumps over the lazy dog; pack my box with \
            five dozen liquor jugs. Sphinx of black quartz, judge my vow!";
        assert_eq!(zlib_decompress(&dynamic, 1000).as_deref(), Ok(pangrams));
    }

    #[test]
    fn rejects_bad_streams_with_clear_errors() {
        assert_eq!(zlib_decompress(&[0x78], 10), Err(InflateError::Truncated));
        assert_eq!(
            zlib_decompress(&[0x78, 0x00, 0, 0], 10),
            Err(InflateError::BadHeader(0x7800))
        );
        // A stored block of 5 bytes with a wrong complement.
        let bad = [0x78, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00];
        assert!(matches!(
            zlib_decompress(&bad, 10),
            Err(InflateError::StoredLength { .. })
        ));
        // Block type 3.
        assert_eq!(
            zlib_decompress(&[0x78, 0x01, 0x07], 10),
            Err(InflateError::BadBlockType)
        );
        // More output than allowed.
        let packed = super::super::zlib::zlib_compress(&[7u8; 100]);
        assert_eq!(zlib_decompress(&packed, 99), Err(InflateError::TooLong(99)));
        let mut corrupt = packed.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            zlib_decompress(&corrupt, 100),
            Err(InflateError::Checksum { .. })
        ));
    }
}
