//! The QXL device's primary surface as a [`DisplaySource`] for the outputs.

use std::time::Duration;

use ringvisor_devices::qxl::QxlHandle;

use super::{DisplaySource, Frame};

pub struct QxlScreen(pub QxlHandle);

impl DisplaySource for QxlScreen {
    fn snapshot(&self) -> Option<(u64, Frame)> {
        let screen = self.0.screen()?;
        Some((
            screen.version,
            Frame {
                width: screen.width,
                height: screen.height,
                // ARGB surfaces keep alpha in the top byte; outputs show colour only.
                pixels: screen.pixels.into_iter().map(|p| p & 0x00ff_ffff).collect(),
            },
        ))
    }

    fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        self.0.wait_for_change(seen, timeout)
    }
}
