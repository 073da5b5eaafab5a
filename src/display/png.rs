//! Screenshots as PNG (8-bit RGB), through the `png` crate: adaptive row filters and
//! zlib, so a mostly-flat text console compresses to a few tens of kilobytes. Decoding
//! (RGB or RGBA, alpha dropped) is for the checks that compare a screenshot with a frame.

use std::io::Cursor;
use std::path::Path;

use super::Frame;

/// The largest image decoded (8192 x 8192 RGBA): bounds memory for hostile headers.
const MAX_DECODED_BYTES: usize = 4 << 26;

/// Why bytes could not be read as an 8-bit RGB or RGBA PNG.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("not a readable PNG: {0}")]
    Decode(#[from] png::DecodingError),
    #[error("unsupported PNG: {0}")]
    Unsupported(String),
}

/// The frame as a PNG file. Missing pixels (a `pixels` shorter than width x height) are
/// black. A frame with a zero dimension has no PNG: the result is empty.
pub fn encode_png(frame: &Frame) -> Vec<u8> {
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut rgb = vec![0u8; width * height * 3];
    for (out, &pixel) in rgb.chunks_exact_mut(3).zip(&frame.pixels) {
        out.copy_from_slice(&pixel.to_be_bytes()[1..]);
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, frame.width, frame.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    // Screenshots are rare and small files matter more than the milliseconds.
    encoder.set_compression(png::Compression::Best);
    // Writing into memory fails only for a zero dimension, which has no PNG.
    let written = encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&rgb));
    match written {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
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

/// Decodes an 8-bit RGB or RGBA PNG (alpha dropped; what [`encode_png`] writes, or a
/// browser's screenshot) into a frame.
pub fn decode_png_rgb(bytes: &[u8]) -> Result<Frame, PngError> {
    let limits = png::Limits {
        bytes: MAX_DECODED_BYTES,
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer)?;
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => return Err(PngError::Unsupported(format!("colour type {other:?}"))),
    };
    let pixels = buffer[..info.buffer_size()]
        .chunks_exact(info.line_size)
        .flat_map(|line| line.chunks_exact(step).take(info.width as usize))
        .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]]))
        .collect();
    Ok(Frame {
        width: info.width,
        height: info.height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// What another encoder (the png crate's, in RGBA) makes of `rgba`.
    fn rgba_png(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(rgba).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn round_trips_frames() {
        for frame in [pattern(1, 1), pattern(3, 2), pattern(97, 61), console()] {
            let png = encode_png(&frame);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(decode_png_rgb(&png).unwrap(), frame);
        }
    }

    #[test]
    fn rgba_images_decode_with_alpha_dropped() {
        let rgba = [10, 20, 30, 255, 40, 50, 60, 128, 1, 2, 3, 255, 5, 6, 7, 0];
        let frame = decode_png_rgb(&rgba_png(2, 2, &rgba)).unwrap();
        assert_eq!(frame.pixels, vec![0x0a141e, 0x28323c, 0x010203, 0x050607]);
    }

    #[test]
    fn a_text_console_is_small() {
        let png = encode_png(&console());
        assert!(png.len() < 40_000, "{} bytes", png.len());
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(matches!(
            decode_png_rgb(b"GIF89a"),
            Err(PngError::Decode(_))
        ));
        let png = encode_png(&pattern(8, 8));
        assert!(decode_png_rgb(&png[..png.len() / 2]).is_err(), "truncated");
        let mut corrupt = png.clone();
        let last_data = corrupt.len() - 20;
        corrupt[last_data] ^= 0xff;
        assert!(decode_png_rgb(&corrupt).is_err(), "bad CRC");
        let mut gray = Vec::new();
        let mut encoder = png::Encoder::new(&mut gray, 1, 1);
        encoder.set_color(png::ColorType::Grayscale);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&[7])
            .unwrap();
        assert!(matches!(
            decode_png_rgb(&gray),
            Err(PngError::Unsupported(_))
        ));
        assert!(encode_png(&Frame::filled(0, 4, 0)).is_empty());
    }

    #[test]
    fn write_png_writes_a_readable_file() {
        let path = std::env::temp_dir().join(format!("ringvisor-png-{}.png", std::process::id()));
        let frame = pattern(16, 9);
        write_png(&frame, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(decode_png_rgb(&bytes).unwrap(), frame);
        assert!(write_png(&Frame::filled(0, 5, 0), &path).is_err());
    }
}
