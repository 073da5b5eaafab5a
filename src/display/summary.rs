//! What a frame shows, in a few numbers: enough to tell two frames apart and a screen
//! with text on it from a blank one, without looking at the picture.

use std::collections::HashMap;

use super::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSummary {
    pub width: u32,
    pub height: u32,
    /// CRC-32 of the pixels (0x00RRGGBB, little endian, row by row).
    pub crc32: u32,
    pub distinct_colors: usize,
    /// Pixels that differ from the most common colour (the background).
    pub foreground_pixels: usize,
}

pub fn summarize(frame: &Frame) -> FrameSummary {
    let mut crc = crc32fast::Hasher::new();
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for pixel in &frame.pixels {
        crc.update(&(pixel & 0x00ff_ffff).to_le_bytes());
        *counts.entry(pixel & 0x00ff_ffff).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap_or(0);
    FrameSummary {
        width: frame.width,
        height: frame.height,
        crc32: crc.finalize(),
        distinct_colors: counts.len(),
        foreground_pixels: frame.pixels.len() - background,
    }
}

impl std::fmt::Display for FrameSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} crc32={:08x} colors={} foreground={}",
            self.width, self.height, self.crc32, self.distinct_colors, self.foreground_pixels
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_background_and_what_differs() {
        let mut frame = Frame::filled(4, 2, 0x102030);
        assert_eq!(summarize(&frame).foreground_pixels, 0);
        frame.pixels[1] = 0xffffff;
        frame.pixels[6] = 0xff0000;
        let summary = summarize(&frame);
        assert_eq!((summary.distinct_colors, summary.foreground_pixels), (3, 2));
        assert_ne!(
            summary.crc32,
            summarize(&Frame::filled(4, 2, 0x102030)).crc32
        );
        assert_eq!(summary.to_string()[..3], *"4x2");
    }
}
