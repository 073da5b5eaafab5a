//! Finding what changed between the frame a client holds and the frame now, in 64x64
//! tiles. Tiles make the comparison row slices (memcmp speed) and keep the rectangle
//! count small; changed tiles next to each other in a tile row are sent as one rectangle.

use super::Frame;

/// The side of a comparison tile, in pixels.
pub const TILE: u32 = 64;

/// A rectangle of pixels; empty when either side is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// The whole of a `width` x `height` screen.
    pub fn screen(width: u32, height: u32) -> Self {
        Self::new(0, 0, width, height)
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    fn right(&self) -> u64 {
        u64::from(self.x) + u64::from(self.width)
    }

    fn bottom(&self) -> u64 {
        u64::from(self.y) + u64::from(self.height)
    }

    /// The overlap of two rectangles (empty if none).
    pub fn intersect(&self, other: &Rect) -> Rect {
        let (x, y) = (self.x.max(other.x), self.y.max(other.y));
        let right = self.right().min(other.right());
        let bottom = self.bottom().min(other.bottom());
        if right <= u64::from(x) || bottom <= u64::from(y) {
            return Rect::default();
        }
        Rect::new(
            x,
            y,
            (right - u64::from(x)) as u32,
            (bottom - u64::from(y)) as u32,
        )
    }

    /// The smallest rectangle holding both (an empty one adds nothing).
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        let right = self.right().max(other.right());
        let bottom = self.bottom().max(other.bottom());
        Rect::new(
            x,
            y,
            (right - u64::from(x)).min(u64::from(u32::MAX)) as u32,
            (bottom - u64::from(y)).min(u64::from(u32::MAX)) as u32,
        )
    }
}

/// Whether the part of `rect` on rows of both frames differs. Both frames must have the
/// same size, consistent pixel vectors, and `rect` must lie inside them.
fn differs(old: &Frame, new: &Frame, rect: &Rect) -> bool {
    let width = new.width as usize;
    let (x0, x1) = (rect.x as usize, (rect.x + rect.width) as usize);
    (rect.y..rect.y + rect.height).any(|y| {
        let start = y as usize * width;
        old.pixels[start + x0..start + x1] != new.pixels[start + x0..start + x1]
    })
}

/// The parts of `area` where `new` differs from `old`, as rectangles of whole tiles
/// (clipped to `area`), one per run of changed tiles in a tile row, top to bottom.
/// Frames of different sizes (or inconsistent ones) differ everywhere.
pub fn changed_rects(old: &Frame, new: &Frame, area: Rect) -> Vec<Rect> {
    let area = area.intersect(&Rect::screen(new.width, new.height));
    if area.is_empty() {
        return Vec::new();
    }
    if (old.width, old.height) != (new.width, new.height)
        || !old.is_consistent()
        || !new.is_consistent()
    {
        return vec![area];
    }
    let mut rects = Vec::new();
    let first_row = area.y / TILE;
    let last_row = (area.y + area.height - 1) / TILE;
    let first_col = area.x / TILE;
    let last_col = (area.x + area.width - 1) / TILE;
    for tile_row in first_row..=last_row {
        let mut run: Option<Rect> = None;
        for tile_col in first_col..=last_col {
            let tile = Rect::new(tile_col * TILE, tile_row * TILE, TILE, TILE).intersect(&area);
            if differs(old, new, &tile) {
                run = Some(run.map_or(tile, |r| r.union(&tile)));
            } else if let Some(r) = run.take() {
                rects.push(r);
            }
        }
        rects.extend(run);
    }
    rects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(frame: &mut Frame, x: u32, y: u32, pixel: u32) {
        frame.pixels[(y * frame.width + x) as usize] = pixel;
    }

    #[test]
    fn a_changed_pixel_yields_exactly_its_tile() {
        let old = Frame::filled(300, 200, 0x0010_2030);
        let mut new = old.clone();
        set(&mut new, 130, 70, 0x00FF_FFFF);
        let all = Rect::screen(300, 200);
        assert_eq!(changed_rects(&old, &new, all), [Rect::new(128, 64, 64, 64)]);
        // Edge tiles are clipped to the screen.
        let mut edge = old.clone();
        set(&mut edge, 299, 199, 1);
        assert_eq!(
            changed_rects(&old, &edge, all),
            [Rect::new(256, 192, 44, 8)]
        );
        assert_eq!(changed_rects(&old, &old, all), []);
    }

    #[test]
    fn neighbouring_tiles_merge_per_tile_row() {
        let old = Frame::filled(256, 256, 0);
        let mut new = old.clone();
        set(&mut new, 10, 10, 1); // tile (0,0)
        set(&mut new, 70, 10, 1); // tile (1,0): merges with (0,0)
        set(&mut new, 200, 10, 1); // tile (3,0): separate run
        set(&mut new, 70, 100, 1); // tile (1,1)
        let rects = changed_rects(&old, &new, Rect::screen(256, 256));
        assert_eq!(
            rects,
            [
                Rect::new(0, 0, 128, 64),
                Rect::new(192, 0, 64, 64),
                Rect::new(64, 64, 64, 64),
            ]
        );
    }

    #[test]
    fn only_the_requested_area_counts() {
        let old = Frame::filled(128, 128, 0);
        let mut new = old.clone();
        set(&mut new, 5, 5, 1);
        set(&mut new, 100, 100, 1);
        let area = Rect::new(0, 0, 30, 20);
        assert_eq!(changed_rects(&old, &new, area), [Rect::new(0, 0, 30, 20)]);
        assert_eq!(changed_rects(&old, &new, Rect::new(90, 0, 38, 64)), []);
        let resized = Frame::filled(64, 64, 0);
        assert_eq!(
            changed_rects(&old, &resized, Rect::screen(128, 128)),
            [Rect::screen(64, 64)]
        );
    }

    #[test]
    fn rect_arithmetic() {
        let a = Rect::new(10, 10, 20, 20);
        assert_eq!(
            a.intersect(&Rect::new(25, 0, 100, 15)),
            Rect::new(25, 10, 5, 5)
        );
        assert!(a.intersect(&Rect::new(30, 10, 5, 5)).is_empty());
        assert_eq!(a.union(&Rect::new(0, 40, 1, 1)), Rect::new(0, 10, 30, 31));
        assert_eq!(Rect::default().union(&a), a);
        let far = Rect::new(u32::MAX - 1, 0, 10, 10);
        assert_eq!(far.intersect(&Rect::screen(100, 100)), Rect::default());
    }
}
