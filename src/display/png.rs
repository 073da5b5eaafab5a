//! Screenshots as PNG (8-bit RGB, colour type 2) with no image crate: each row gets the
//! PNG filter that leaves the smallest residue, and the rows go through the hand-written
//! zlib encoder, so a mostly-flat text console compresses to a few tens of kilobytes.

use std::path::Path;

use super::inflate::{zlib_decompress, InflateError};
use super::zlib::{zlib_compress, Crc32};
use super::Frame;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
/// IDAT payloads are cut at this size; any size is valid, smaller ones just cost 12 bytes.
const IDAT_CHUNK: usize = 256 * 1024;
/// The largest image decoded (8192 x 8192): bounds memory for hostile headers.
const MAX_DECODED_PIXELS: u64 = 1 << 26;
const BYTES_PER_PIXEL: usize = 3;

/// Why bytes could not be read as a PNG this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PngError {
    #[error("not a PNG (bad signature)")]
    NotPng,
    #[error("the file ends inside a chunk")]
    Truncated,
    #[error("chunk {chunk} has a bad CRC")]
    BadCrc { chunk: String },
    #[error("the first chunk is {0}, not IHDR")]
    MissingHeader(String),
    #[error("no IEND chunk")]
    MissingEnd,
    #[error("unsupported PNG: {0}")]
    Unsupported(String),
    #[error("image of {width}x{height} is empty or too large")]
    BadSize { width: u32, height: u32 },
    #[error("unknown critical chunk {0}")]
    UnknownCriticalChunk(String),
    #[error("image data: {0}")]
    Zlib(#[from] InflateError),
    #[error("image data holds {got} bytes, {expected} expected")]
    DataLength { expected: usize, got: usize },
    #[error("row {row} has unknown filter type {filter}")]
    BadFilter { row: u32, filter: u8 },
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc32::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finish().to_be_bytes());
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The predictor of filter type `filter` from the left (`a`), up (`b`) and up-left (`c`)
/// bytes.
fn predict(filter: u8, a: u8, b: u8, c: u8) -> u8 {
    match filter {
        1 => a,
        2 => b,
        3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
        4 => paeth(a, b, c),
        _ => 0,
    }
}

/// Filters `row` against `prev` with each filter type and appends the one whose bytes,
/// read as signed, sum smallest: the PNG specification's suggested heuristic.
fn filter_row(row: &[u8], prev: &[u8], out: &mut Vec<u8>, scratch: &mut [Vec<u8>; 5]) {
    let mut best = (u64::MAX, 0u8);
    for (filter, buf) in scratch.iter_mut().enumerate() {
        let filter = filter as u8;
        buf.clear();
        let mut cost = 0u64;
        for i in 0..row.len() {
            let (a, c) = if i >= BYTES_PER_PIXEL {
                (row[i - BYTES_PER_PIXEL], prev[i - BYTES_PER_PIXEL])
            } else {
                (0, 0)
            };
            let value = row[i].wrapping_sub(predict(filter, a, prev[i], c));
            cost += u64::from((value as i8).unsigned_abs());
            buf.push(value);
        }
        if cost < best.0 {
            best = (cost, filter);
        }
    }
    out.push(best.1);
    out.extend_from_slice(&scratch[usize::from(best.1)]);
}

/// The frame as a PNG file. Missing pixels (a `pixels` shorter than width x height) are
/// black; a frame with a zero dimension yields a PNG that decoders refuse.
pub fn encode_png(frame: &Frame) -> Vec<u8> {
    let width = frame.width as usize;
    let row_bytes = width * BYTES_PER_PIXEL;
    let mut filtered = Vec::with_capacity((row_bytes + 1) * frame.height as usize);
    let mut prev = vec![0u8; row_bytes];
    let mut row = vec![0u8; row_bytes];
    let mut scratch: [Vec<u8>; 5] = Default::default();
    for y in 0..frame.height as usize {
        let start = (y * width).min(frame.pixels.len());
        let end = (start + width).min(frame.pixels.len());
        row.fill(0);
        for (rgb, &pixel) in row.chunks_exact_mut(3).zip(&frame.pixels[start..end]) {
            rgb.copy_from_slice(&pixel.to_be_bytes()[1..]);
        }
        filter_row(&row, &prev, &mut filtered, &mut scratch);
        std::mem::swap(&mut row, &mut prev);
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&frame.width.to_be_bytes());
    ihdr.extend_from_slice(&frame.height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let compressed = zlib_compress(&filtered);
    let mut out = Vec::with_capacity(compressed.len() + 64);
    out.extend_from_slice(&SIGNATURE);
    chunk(&mut out, b"IHDR", &ihdr);
    for part in compressed.chunks(IDAT_CHUNK) {
        chunk(&mut out, b"IDAT", part);
    }
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Writes the frame to `path` as a PNG, through a temporary file renamed into place so a
/// reader never sees half an image.
pub fn write_png(frame: &Frame, path: &Path) -> std::io::Result<()> {
    if frame.width == 0 || frame.height == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cannot write a {}x{} PNG", frame.width, frame.height),
        ));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, encode_png(frame))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Splits a PNG into chunks, checking each CRC.
fn chunks(bytes: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), PngError>> + '_ {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let result = (|| {
            let header = rest.get(..8).ok_or(PngError::Truncated)?;
            let len = be_u32(header) as usize;
            let kind = [header[4], header[5], header[6], header[7]];
            let data = rest.get(8..8 + len).ok_or(PngError::Truncated)?;
            let crc = rest.get(8 + len..12 + len).ok_or(PngError::Truncated)?;
            let mut check = Crc32::new();
            check.update(&kind);
            check.update(data);
            if check.finish() != be_u32(crc) {
                return Err(PngError::BadCrc {
                    chunk: String::from_utf8_lossy(&kind).into_owned(),
                });
            }
            rest = &rest[12 + len..];
            Ok((kind, data))
        })();
        if result.is_err() {
            rest = &[];
        }
        Some(result)
    })
}

/// Bytes per pixel of the colour types decoded: 8-bit RGB (2) and RGBA (6).
fn pixel_bytes(colour: u8) -> Option<usize> {
    match colour {
        2 => Some(3),
        6 => Some(4),
        _ => None,
    }
}

fn parse_header(data: &[u8]) -> Result<(u32, u32, usize), PngError> {
    if data.len() != 13 {
        return Err(PngError::Unsupported(format!(
            "IHDR of {} bytes",
            data.len()
        )));
    }
    let (width, height) = (be_u32(&data[0..4]), be_u32(&data[4..8]));
    let bpp = match (data[8], data[9], data[10], data[11], data[12]) {
        (8, colour, 0, 0, 0) if pixel_bytes(colour).is_some() => {
            pixel_bytes(colour).ok_or_else(|| PngError::Unsupported("colour type".into()))?
        }
        (depth, colour, 0, 0, 0) => {
            return Err(PngError::Unsupported(format!(
                "bit depth {depth} colour type {colour} (only 8-bit RGB and RGBA)"
            )))
        }
        (_, _, _, _, 0) => {
            return Err(PngError::Unsupported("compression or filter method".into()))
        }
        _ => return Err(PngError::Unsupported("interlaced".into())),
    };
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_DECODED_PIXELS {
        return Err(PngError::BadSize { width, height });
    }
    Ok((width, height, bpp))
}

/// Reverses the row filters in place: `data` is height rows of a filter byte and
/// `row_bytes` bytes; the result keeps the layout with the filter bytes left stale.
fn unfilter(data: &mut [u8], row_bytes: usize, bpp: usize) -> Result<(), PngError> {
    let stride = row_bytes + 1;
    // The row above the first one counts as zeros.
    let zeros = vec![0u8; row_bytes];
    for y in 0..data.len() / stride {
        let (before, current) = data.split_at_mut(y * stride);
        let prev = if y == 0 {
            &zeros[..]
        } else {
            &before[before.len() - row_bytes..]
        };
        let filter = current[0];
        if filter > 4 {
            return Err(PngError::BadFilter {
                row: y as u32,
                filter,
            });
        }
        let row = &mut current[1..stride];
        for i in 0..row_bytes {
            let (a, c) = if i >= bpp {
                (row[i - bpp], prev[i - bpp])
            } else {
                (0, 0)
            };
            row[i] = row[i].wrapping_add(predict(filter, a, prev[i], c));
        }
    }
    Ok(())
}

/// Decodes an 8-bit RGB or RGBA (alpha dropped), non-interlaced PNG (what
/// [`encode_png`] writes, or any other encoder's of that kind: browsers' screenshots)
/// into a frame.
pub fn decode_png_rgb(bytes: &[u8]) -> Result<Frame, PngError> {
    let body = bytes.strip_prefix(&SIGNATURE).ok_or(PngError::NotPng)?;
    let mut chunks = chunks(body);
    let (kind, data) = chunks.next().ok_or(PngError::Truncated)??;
    if &kind != b"IHDR" {
        return Err(PngError::MissingHeader(
            String::from_utf8_lossy(&kind).into_owned(),
        ));
    }
    let (width, height, bpp) = parse_header(data)?;
    let mut compressed = Vec::new();
    let mut ended = false;
    for chunk in chunks {
        let (kind, data) = chunk?;
        match &kind {
            b"IDAT" => compressed.extend_from_slice(data),
            b"IEND" => {
                ended = true;
                break;
            }
            // A suggested palette for true-colour images: only a hint.
            b"PLTE" => {}
            // Bit 5 of the first letter set: ancillary, safe to skip.
            _ if kind[0] & 0x20 != 0 => {}
            _ => {
                return Err(PngError::UnknownCriticalChunk(
                    String::from_utf8_lossy(&kind).into_owned(),
                ))
            }
        }
    }
    if !ended {
        return Err(PngError::MissingEnd);
    }
    let row_bytes = width as usize * bpp;
    let expected = (row_bytes + 1) * height as usize;
    let mut raw = zlib_decompress(&compressed, expected)?;
    if raw.len() != expected {
        return Err(PngError::DataLength {
            expected,
            got: raw.len(),
        });
    }
    unfilter(&mut raw, row_bytes, bpp)?;
    let pixels = raw
        .chunks_exact(row_bytes + 1)
        .flat_map(|row| row[1..].chunks_exact(bpp))
        .map(|rgb| u32::from_be_bytes([0, rgb[0], rgb[1], rgb[2]]))
        .collect();
    Ok(Frame {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_images_decode_with_alpha_dropped() {
        // 2x2 RGBA with Sub filtering on the second row, as browsers write them.
        let rows: [&[u8]; 2] = [
            &[0, 10, 20, 30, 255, 40, 50, 60, 128],
            &[1, 1, 2, 3, 255, 4, 4, 4, 0],
        ];
        let raw: Vec<u8> = rows.concat();
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&2u32.to_be_bytes());
        ihdr.extend_from_slice(&2u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(
            &mut png,
            b"IDAT",
            &crate::display::zlib::zlib_compress(&raw),
        );
        chunk(&mut png, b"IEND", &[]);
        let frame = decode_png_rgb(&png).unwrap();
        assert_eq!(
            frame.pixels,
            vec![0x0a141e, 0x28323c, 0x010203, 0x050607],
            "alpha dropped, Sub filter undone per 4-byte pixel"
        );
    }

    fn pattern(width: u32, height: u32) -> Frame {
        let pixels = (0..width * height)
            .map(|i| {
                let (x, y) = (i % width, i / width);
                (x * 37 + y * 11) << 16 | (x ^ y) << 8 | (x * y) & 0xFF
            })
            .map(|p| p & 0x00FF_FFFF)
            .collect();
        Frame {
            width,
            height,
            pixels,
        }
    }

    /// A 1024x768 console: dark background, light 8x16 "glyphs" in some cells.
    fn console() -> Frame {
        let mut frame = Frame::filled(1024, 768, 0x0000_0000);
        for row in 0..20u32 {
            for col in 0..(row * 7 % 80) {
                let glyph = (row * 31 + col * 17) % 50;
                for dy in 2..14 {
                    for dx in 1..7 {
                        if (glyph >> ((dx + dy) % 5)) & 1 == 1 || dy == 2 + glyph % 10 {
                            let (x, y) = (col * 8 + dx, row * 16 + dy);
                            frame.pixels[(y * 1024 + x) as usize] = 0x00AA_AAAA;
                        }
                    }
                }
            }
        }
        frame
    }

    #[test]
    fn round_trips_frames() {
        for frame in [pattern(1, 1), pattern(3, 2), pattern(97, 61), console()] {
            let png = encode_png(&frame);
            assert_eq!(decode_png_rgb(&png), Ok(frame));
        }
    }

    #[test]
    fn a_text_console_is_small() {
        let png = encode_png(&console());
        assert!(png.len() < 40_000, "{} bytes", png.len());
    }

    #[test]
    fn a_3x2_frame_starts_with_signature_and_ihdr() {
        let png = encode_png(&pattern(3, 2));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let ihdr = [
            0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0,
        ];
        assert_eq!(&png[8..29], &ihdr);
        // The CRC over "IHDR" and its data.
        assert_eq!(&png[29..33], &crc32_of(&png[12..29]).to_be_bytes());
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xAE\x42\x60\x82");
    }

    fn crc32_of(bytes: &[u8]) -> u32 {
        super::super::zlib::crc32(bytes)
    }

    #[test]
    fn decodes_stored_blocks_and_every_filter() {
        let (width, height) = (5u32, 5u32);
        let frame = pattern(width, height);
        let row_bytes = width as usize * 3;
        let mut raw = Vec::new();
        let mut prev = vec![0u8; row_bytes];
        for (y, row_pixels) in frame.pixels.chunks(width as usize).enumerate() {
            let row: Vec<u8> = row_pixels
                .iter()
                .flat_map(|p| p.to_be_bytes()[1..].to_vec())
                .collect();
            let filter = y as u8; // rows 0..4 use filters 0..4
            raw.push(filter);
            for i in 0..row_bytes {
                let a = if i >= 3 { row[i - 3] } else { 0 };
                let c = if i >= 3 { prev[i - 3] } else { 0 };
                raw.push(row[i].wrapping_sub(predict(filter, a, prev[i], c)));
            }
            prev = row;
        }
        let mut zlib = vec![0x78, 0x01, 0x01];
        zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
        zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
        zlib.extend_from_slice(&raw);
        zlib.extend_from_slice(&super::super::zlib::adler32(&raw).to_be_bytes());
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"tEXt", b"Comment\0ancillary");
        chunk(&mut png, b"IDAT", &zlib[..10]);
        chunk(&mut png, b"IDAT", &zlib[10..]);
        chunk(&mut png, b"IEND", &[]);
        assert_eq!(decode_png_rgb(&png), Ok(frame));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let good = encode_png(&pattern(4, 4));
        assert_eq!(decode_png_rgb(b"GIF89a"), Err(PngError::NotPng));
        assert_eq!(decode_png_rgb(&good[..40]), Err(PngError::Truncated));
        let mut bad_crc = good.clone();
        bad_crc[30] ^= 0xFF;
        assert!(matches!(
            decode_png_rgb(&bad_crc),
            Err(PngError::BadCrc { .. })
        ));
        // Grey with alpha (colour type 4) is not read.
        let mut grey = good.clone();
        grey[25] = 4;
        let crc = crc32_of(&grey[12..29]);
        grey[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_png_rgb(&grey),
            Err(PngError::Unsupported(_))
        ));
        let mut huge = SIGNATURE.to_vec();
        let mut ihdr = 100_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut huge, b"IHDR", &ihdr);
        assert!(matches!(
            decode_png_rgb(&huge),
            Err(PngError::BadSize { .. })
        ));
        let no_end = &good[..good.len() - 12];
        assert_eq!(decode_png_rgb(no_end), Err(PngError::MissingEnd));
    }

    #[test]
    fn write_png_writes_a_readable_file() {
        let path = std::env::temp_dir().join(format!("ringvisor-png-{}.png", std::process::id()));
        let frame = pattern(16, 9);
        write_png(&frame, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(decode_png_rgb(&bytes), Ok(frame));
        assert!(write_png(&Frame::filled(0, 5, 0), &path).is_err());
    }
}
