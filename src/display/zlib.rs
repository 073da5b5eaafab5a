//! The zlib stream for PNG, written by hand so the crate needs no compression dependency:
//! CRC-32 (PNG chunks), Adler-32 (zlib trailer) and a DEFLATE compressor that uses the
//! fixed Huffman code with LZ77 matches found through hash chains.
//!
//! Fixed Huffman is enough for screens: they are dominated by runs and repeated rows,
//! which matches capture; a dynamic code would gain a few percent for a lot more code.

/// The reflected CRC-32 polynomial of PNG, zlib and Ethernet.
const CRC_POLY: u32 = 0xEDB8_8320;

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                CRC_POLY ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// A running CRC-32, for data that arrives in pieces (a chunk's type, then its data).
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    pub fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &byte in data {
            c = CRC_TABLE[((c ^ u32::from(byte)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(data);
    crc.finish()
}

/// The Adler-32 checksum of `data`.
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // 5552 is the most bytes whose sums cannot overflow u32 before the modulo.
    const BLOCK: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for block in data.chunks(BLOCK) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Base match length of the length symbols 257..=285.
pub(crate) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub(crate) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distance of the distance symbols 0..=29.
pub(crate) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub(crate) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The code lengths of the fixed literal/length code (RFC 1951 3.2.6).
pub(crate) fn fixed_literal_lengths() -> [u8; 288] {
    let mut lengths = [0u8; 288];
    for (symbol, len) in lengths.iter_mut().enumerate() {
        *len = match symbol {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
    }
    lengths
}

/// A fixed-code symbol as (code, bit count), the code already bit-reversed because
/// DEFLATE packs Huffman codes starting from their most significant bit.
fn fixed_literal_code(symbol: u16) -> (u32, u32) {
    let (code, len) = match symbol {
        0..=143 => (0x30 + u32::from(symbol), 8),
        144..=255 => (0x190 + u32::from(symbol) - 144, 9),
        256..=279 => (u32::from(symbol) - 256, 7),
        _ => (0xC0 + u32::from(symbol) - 280, 8),
    };
    (reverse_bits(code, len), len)
}

fn reverse_bits(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// DEFLATE's bit order: least significant bit first, bytes filled from bit 0.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            count: 0,
        }
    }

    fn put(&mut self, bits: u32, count: u32) {
        self.acc |= u64::from(bits) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const WINDOW: usize = 32 * 1024;
const HASH_BITS: u32 = 15;
/// How many earlier positions one search tries: enough for the repeated glyph rows of
/// a text console, short enough that noisy pictures do not make encoding slow.
const MAX_CHAIN: usize = 48;
const NO_POS: u32 = u32::MAX;

/// LZ77 over a 32 KiB window, emitting fixed-Huffman symbols as it goes.
struct Matcher<'a> {
    data: &'a [u8],
    head: Vec<u32>,
    prev: Vec<u32>,
}

impl<'a> Matcher<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            head: vec![NO_POS; 1 << HASH_BITS],
            prev: vec![NO_POS; WINDOW],
        }
    }

    fn hash(&self, pos: usize) -> usize {
        let d = self.data;
        let v = u32::from(d[pos]) | u32::from(d[pos + 1]) << 8 | u32::from(d[pos + 2]) << 16;
        (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
    }

    fn insert(&mut self, pos: usize) {
        if pos + MIN_MATCH <= self.data.len() {
            let h = self.hash(pos);
            self.prev[pos % WINDOW] = self.head[h];
            self.head[h] = pos as u32;
        }
    }

    /// The longest earlier match for `pos` as (length, distance), before `pos` is inserted.
    fn longest(&self, pos: usize) -> Option<(usize, usize)> {
        if pos + MIN_MATCH > self.data.len() {
            return None;
        }
        let max_len = (self.data.len() - pos).min(MAX_MATCH);
        let target = &self.data[pos..pos + max_len];
        let mut best: Option<(usize, usize)> = None;
        let mut candidate = self.head[self.hash(pos)];
        for _ in 0..MAX_CHAIN {
            if candidate == NO_POS {
                break;
            }
            let cand = candidate as usize;
            // A chain entry may be stale (its slot reused by a newer position): chains
            // only go backwards, within the window.
            if cand >= pos || pos - cand > WINDOW {
                break;
            }
            let len = self.data[cand..]
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            if len >= MIN_MATCH && best.is_none_or(|(best_len, _)| len > best_len) {
                best = Some((len, pos - cand));
                if len == max_len {
                    break;
                }
            }
            candidate = self.prev[cand % WINDOW];
        }
        best
    }
}

fn put_match(out: &mut BitWriter, len: usize, dist: usize) {
    let len_index = if len == MAX_MATCH {
        28
    } else {
        LEN_BASE.partition_point(|&base| usize::from(base) <= len) - 1
    };
    let (code, bits) = fixed_literal_code(257 + len_index as u16);
    out.put(code, bits);
    let extra = u32::from(LEN_EXTRA[len_index]);
    if extra > 0 {
        out.put((len - usize::from(LEN_BASE[len_index])) as u32, extra);
    }
    let dist_index = DIST_BASE.partition_point(|&base| usize::from(base) <= dist) - 1;
    out.put(reverse_bits(dist_index as u32, 5), 5);
    let extra = u32::from(DIST_EXTRA[dist_index]);
    if extra > 0 {
        out.put((dist - usize::from(DIST_BASE[dist_index])) as u32, extra);
    }
}

/// One final fixed-Huffman block holding all of `data`, appended to `out`.
fn deflate_fixed(data: &[u8], out: Vec<u8>) -> Vec<u8> {
    let mut bits = BitWriter::new(out);
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE 01: fixed Huffman
    let mut matcher = Matcher::new(data);
    let mut pos = 0;
    while pos < data.len() {
        match matcher.longest(pos) {
            Some((len, dist)) => {
                put_match(&mut bits, len, dist);
                for p in pos..pos + len {
                    matcher.insert(p);
                }
                pos += len;
            }
            None => {
                let (code, n) = fixed_literal_code(u16::from(data[pos]));
                bits.put(code, n);
                matcher.insert(pos);
                pos += 1;
            }
        }
    }
    let (code, n) = fixed_literal_code(256);
    bits.put(code, n);
    bits.finish()
}

/// Stored (uncompressed) blocks: the fallback when matching does not pay, e.g. noise.
fn deflate_stored(data: &[u8], mut out: Vec<u8>) -> Vec<u8> {
    const MAX_STORED: usize = 0xFFFF;
    let mut blocks = data.chunks(MAX_STORED).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
        return out;
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(u8::from(last)); // BFINAL, BTYPE 00, padded to the byte
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// Size of a stored encoding of `len` bytes: 5 header bytes per 64 KiB block.
fn stored_size(len: usize) -> usize {
    len + 5 * len.div_ceil(0xFFFF).max(1)
}

/// `data` as a zlib stream (RFC 1950): header, DEFLATE data, Adler-32.
pub fn zlib_compress(data: &[u8]) -> Vec<u8> {
    // CM 8 (deflate), CINFO 7 (32 KiB window), FLEVEL 1; 0x785E is a multiple of 31.
    const HEADER: [u8; 2] = [0x78, 0x5E];
    let mut out = deflate_fixed(data, HEADER.to_vec());
    if out.len() - HEADER.len() > stored_size(data.len()) {
        out = deflate_stored(data, HEADER.to_vec());
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::inflate::zlib_decompress;

    #[test]
    fn crc32_matches_the_known_vectors() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        // PNG's IEND chunk: the CRC of its type alone.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        let mut split = Crc32::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.finish(), 0xCBF4_3926);
    }

    #[test]
    fn adler32_matches_the_known_vectors() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b"123456789"), 0x091E_01DE);
        // Long enough to need the deferred modulo more than once.
        let ones = vec![0xFFu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &ones {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&ones), ((b << 16) | a) as u32);
    }

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let packed = zlib_compress(data);
        assert_eq!(
            zlib_decompress(&packed, data.len()).unwrap(),
            data,
            "round trip"
        );
        packed
    }

    #[test]
    fn compression_round_trips_and_shrinks_runs() {
        round_trip(b"");
        round_trip(b"a");
        round_trip(b"abcabcabcabcabcabcabcabd");
        let zeros = round_trip(&[0u8; 100_000]);
        assert!(zeros.len() < 1_000, "{} bytes for zeros", zeros.len());
        // Every length and a far distance.
        let mut varied = Vec::new();
        for len in 1..300usize {
            varied.extend((0..len).map(|i| (i * 7 + len) as u8));
            varied.extend(std::iter::repeat_n(len as u8, len));
        }
        varied.extend_from_within(..20_000);
        round_trip(&varied);
    }

    #[test]
    fn noise_falls_back_to_stored_blocks() {
        // A xorshift sequence: incompressible, longer than one stored block.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..150_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let packed = round_trip(&noise);
        assert_eq!(packed.len(), 2 + stored_size(noise.len()) + 4);
    }
}
