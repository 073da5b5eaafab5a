//! `struct virtio_input_config` (virtio 1.2, 5.8.4): the driver writes `select` and
//! `subsel`, then reads `size` and the union below them. The answers are fixed per device
//! kind, so the whole space is rebuilt when a selector changes, never on a read.

use super::evdev::{
    key::KEY_LAST_BELOW_BUTTONS, ABS_X, ABS_Y, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BUS_VIRTUAL,
    EV_ABS, EV_KEY, EV_LED, EV_REL, EV_REP, LED_CAPSL, LED_NUML, LED_SCROLLL, REL_WHEEL, REP_DELAY,
    REP_PERIOD,
};
use super::keymap::mapped_codes;
use super::InputKind;

/// `select` values.
pub const VIRTIO_INPUT_CFG_UNSET: u8 = 0x00;
pub const VIRTIO_INPUT_CFG_ID_NAME: u8 = 0x01;
pub const VIRTIO_INPUT_CFG_ID_SERIAL: u8 = 0x02;
pub const VIRTIO_INPUT_CFG_ID_DEVIDS: u8 = 0x03;
pub const VIRTIO_INPUT_CFG_PROP_BITS: u8 = 0x10;
pub const VIRTIO_INPUT_CFG_EV_BITS: u8 = 0x11;
pub const VIRTIO_INPUT_CFG_ABS_INFO: u8 = 0x12;

/// Bytes of `struct virtio_input_config`: select, subsel, size, reserved[5], then the
/// 128-byte union.
pub const CONFIG_LEN: usize = 136;
pub(crate) const OFFSET_SELECT: usize = 0;
pub(crate) const OFFSET_SUBSEL: usize = 1;
const OFFSET_SIZE: usize = 2;
pub(crate) const OFFSET_DATA: usize = 8;
const DATA_LEN: usize = CONFIG_LEN - OFFSET_DATA;

/// The largest absolute coordinate of the tablet: 0..=32767 spans any screen, the
/// range RFB pointer positions are scaled into (and the one QEMU's tablets use).
pub const ABS_MAX: u32 = 32767;

/// `struct input_id` of each kind. The IDs are QEMU's virtio keyboard and tablet (vendor
/// 0x0627, products 1 and 3): on BUS_VIRTUAL nobody allocates IDs, and guest software
/// that already knows QEMU's virtio-input devices (udev hwdb entries, libinput quirks)
/// then treats these exactly the same, which no new number would get.
const VENDOR: u16 = 0x0627;
const PRODUCT_KEYBOARD: u16 = 0x0001;
const PRODUCT_TABLET: u16 = 0x0003;
const VERSION: u16 = 0x0001;

/// A bitmap as the union holds it: bit n is bit n % 8 of byte n / 8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitmap([u8; DATA_LEN]);

impl Bitmap {
    fn new() -> Self {
        Self([0; DATA_LEN])
    }

    fn of(bits: impl IntoIterator<Item = u16>) -> Self {
        let mut map = Self::new();
        for bit in bits {
            map.set(bit);
        }
        map
    }

    fn set(&mut self, bit: u16) {
        // Every code this device advertises is below 1024: an out-of-range one is a bug
        // in the tables here, not guest input, and is left out rather than panic.
        if let Some(byte) = self.0.get_mut(usize::from(bit / 8)) {
            *byte |= 1 << (bit % 8);
        }
    }

    pub fn contains(&self, bit: u16) -> bool {
        self.0
            .get(usize::from(bit / 8))
            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
    }

    /// Bytes up to the last non-zero one: an empty bitmap has size 0, which is how the
    /// driver learns the device has none of that kind of event.
    fn size(&self) -> usize {
        self.0
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1)
    }
}

/// What one kind of device can report (and, for LEDs, be told).
#[derive(Debug, Clone)]
pub(crate) struct Capabilities {
    kind: InputKind,
    keys: Bitmap,
    rel: Bitmap,
    abs: Bitmap,
    leds: Bitmap,
    rep: Bitmap,
}

impl Capabilities {
    pub fn new(kind: InputKind) -> Self {
        match kind {
            InputKind::Keyboard => Self {
                kind,
                // The whole keyboard range, not only what the keymap reaches: other
                // sources (a raw scancode path, a later layout) need no new bitmap, and
                // udev calls a device a keyboard only when the first keys are all set.
                keys: Bitmap::of((1..=KEY_LAST_BELOW_BUTTONS).chain(mapped_codes())),
                rel: Bitmap::new(),
                abs: Bitmap::new(),
                leds: Bitmap::of([LED_NUML, LED_CAPSL, LED_SCROLLL]),
                // Advertising EV_REP makes the guest repeat held keys itself; RFB clients
                // send repeats as more presses, which the guest drops as no change.
                rep: Bitmap::of([REP_DELAY, REP_PERIOD]),
            },
            InputKind::Tablet => Self {
                kind,
                keys: Bitmap::of([BTN_LEFT, BTN_RIGHT, BTN_MIDDLE]),
                rel: Bitmap::of([REL_WHEEL]),
                abs: Bitmap::of([ABS_X, ABS_Y]),
                leds: Bitmap::new(),
                rep: Bitmap::new(),
            },
        }
    }

    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// The codes the device reports for event type `ev`, if it reports that type.
    pub fn bits(&self, ev: u16) -> Option<&Bitmap> {
        let map = match ev {
            EV_KEY => &self.keys,
            EV_REL => &self.rel,
            EV_ABS => &self.abs,
            EV_LED => &self.leds,
            EV_REP => &self.rep,
            _ => return None,
        };
        (map.size() > 0).then_some(map)
    }

    /// Whether the guest learns of code `code` of type `ev` (it drops what it did not).
    pub fn supports(&self, ev: u16, code: u16) -> bool {
        self.bits(ev).is_some_and(|map| map.contains(code))
    }

    fn name(&self) -> &'static str {
        match self.kind {
            InputKind::Keyboard => "ringvisor keyboard",
            InputKind::Tablet => "ringvisor tablet",
        }
    }

    fn serial(&self) -> &'static str {
        match self.kind {
            InputKind::Keyboard => "ringvisor-kbd-0",
            InputKind::Tablet => "ringvisor-tablet-0",
        }
    }

    /// The union's bytes and `size` for a selector pair; size 0 for anything unknown.
    fn answer(&self, select: u8, subsel: u8, data: &mut [u8; DATA_LEN]) -> usize {
        let mut put = |bytes: &[u8]| {
            let len = bytes.len().min(DATA_LEN);
            data[..len].copy_from_slice(&bytes[..len]);
            len
        };
        match (select, subsel) {
            // Strings are not NUL-terminated: `size` bounds them, and the bytes after it
            // are zero anyway.
            (VIRTIO_INPUT_CFG_ID_NAME, 0) => put(self.name().as_bytes()),
            (VIRTIO_INPUT_CFG_ID_SERIAL, 0) => put(self.serial().as_bytes()),
            (VIRTIO_INPUT_CFG_ID_DEVIDS, 0) => {
                let product = match self.kind {
                    InputKind::Keyboard => PRODUCT_KEYBOARD,
                    InputKind::Tablet => PRODUCT_TABLET,
                };
                let mut ids = [0u8; 8];
                for (i, value) in [BUS_VIRTUAL, VENDOR, product, VERSION]
                    .into_iter()
                    .enumerate()
                {
                    ids[2 * i..2 * i + 2].copy_from_slice(&value.to_le_bytes());
                }
                put(&ids)
            }
            // No properties: INPUT_PROP_DIRECT would make the guest treat the tablet as a
            // touchscreen (no cursor drawn); an absolute pointer with mouse buttons is
            // what guests expect of a VM's tablet.
            (VIRTIO_INPUT_CFG_PROP_BITS, 0) => 0,
            (VIRTIO_INPUT_CFG_EV_BITS, ev) => match self.bits(u16::from(ev)) {
                Some(map) => put(&map.0[..map.size()]),
                None => 0,
            },
            (VIRTIO_INPUT_CFG_ABS_INFO, abs) if self.abs.contains(u16::from(abs)) => {
                // min, max, fuzz, flat, res: exact positions (no fuzz, no flat zone),
                // resolution unknown.
                let mut info = [0u8; 20];
                info[4..8].copy_from_slice(&ABS_MAX.to_le_bytes());
                put(&info)
            }
            _ => 0,
        }
    }
}

/// The configuration space of one device: the selectors the driver wrote and the answer
/// they select.
pub(crate) struct ConfigSpace {
    caps: Capabilities,
    bytes: [u8; CONFIG_LEN],
}

impl ConfigSpace {
    pub fn new(caps: Capabilities) -> Self {
        let mut space = Self {
            caps,
            bytes: [0; CONFIG_LEN],
        };
        space.select(VIRTIO_INPUT_CFG_UNSET, 0);
        space
    }

    pub fn bytes(&self) -> &[u8; CONFIG_LEN] {
        &self.bytes
    }

    /// The driver wrote a selector; everything after them follows at once.
    pub fn select(&mut self, select: u8, subsel: u8) {
        let mut data = [0u8; DATA_LEN];
        let size = self.caps.answer(select, subsel, &mut data);
        self.bytes = [0; CONFIG_LEN];
        self.bytes[OFFSET_SELECT] = select;
        self.bytes[OFFSET_SUBSEL] = subsel;
        // size <= DATA_LEN (128) fits the byte.
        self.bytes[OFFSET_SIZE] = size as u8;
        self.bytes[OFFSET_DATA..].copy_from_slice(&data);
    }

    pub fn selectors(&self) -> (u8, u8) {
        (self.bytes[OFFSET_SELECT], self.bytes[OFFSET_SUBSEL])
    }
}

#[cfg(test)]
mod tests {
    //! The configuration space as Linux's `virtinput_probe` reads it.

    use super::*;
    use crate::virtio::input::evdev::EV_MSC;
    use crate::virtio::input::{keymap, InputDevice};
    use crate::virtio::VirtioDevice;

    /// What `virtinput_cfg_select` does: one-byte writes of select and subsel, then the
    /// size byte; returns the size and that many bytes of the union.
    fn select(dev: &mut InputDevice, select: u8, subsel: u8) -> Vec<u8> {
        dev.write_config(0, &[select]);
        dev.write_config(1, &[subsel]);
        let mut size = [0u8];
        dev.read_config(2, &mut size);
        let mut data = vec![0u8; usize::from(size[0])];
        dev.read_config(8, &mut data);
        data
    }

    fn bit(bitmap: &[u8], bit: u16) -> bool {
        bitmap
            .get(usize::from(bit / 8))
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }

    fn bits_set(bitmap: &[u8]) -> usize {
        bitmap.iter().map(|b| b.count_ones() as usize).sum()
    }

    #[test]
    fn keyboard_config_answers_every_select_linux_reads() {
        let mut dev = InputDevice::new(InputKind::Keyboard).unwrap();
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_ID_NAME, 0),
            b"ringvisor keyboard"
        );
        let serial = select(&mut dev, VIRTIO_INPUT_CFG_ID_SERIAL, 0);
        assert!(!serial.is_empty() && serial.len() < 64 && serial.is_ascii());
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_ID_DEVIDS, 0),
            [6, 0, 0x27, 0x06, 1, 0, 1, 0],
            "BUS_VIRTUAL, vendor 0x0627, product 1, version 1"
        );
        assert!(select(&mut dev, VIRTIO_INPUT_CFG_PROP_BITS, 0).is_empty());
        assert!(!select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_REP as u8).is_empty());
        let keys = select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY as u8);
        assert!((1..=KEY_LAST_BELOW_BUTTONS).all(|k| bit(&keys, k)));
        assert!(keymap::mapped_codes().all(|k| bit(&keys, k)));
        assert!(!bit(&keys, 0) && !bit(&keys, BTN_LEFT));
        assert_eq!(bits_set(&keys), usize::from(KEY_LAST_BELOW_BUTTONS));
        for ev in [
            EV_REL, EV_ABS, EV_MSC, 0x05, /* EV_SW */
            0x12, /* EV_SND */
        ] {
            assert!(
                select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, ev as u8).is_empty(),
                "{ev:#x}"
            );
        }
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_LED as u8),
            [0b111],
            "Num, Caps and Scroll Lock"
        );
        assert!(select(&mut dev, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X as u8).is_empty());
    }

    #[test]
    fn tablet_config_answers_every_select_linux_reads() {
        let mut dev = InputDevice::new(InputKind::Tablet).unwrap();
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_ID_NAME, 0),
            b"ringvisor tablet"
        );
        assert!(!select(&mut dev, VIRTIO_INPUT_CFG_ID_SERIAL, 0).is_empty());
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_ID_DEVIDS, 0),
            [6, 0, 0x27, 0x06, 3, 0, 1, 0]
        );
        assert!(
            select(&mut dev, VIRTIO_INPUT_CFG_PROP_BITS, 0).is_empty(),
            "a pointer, not a touchscreen"
        );
        assert!(select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_REP as u8).is_empty());
        let keys = select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY as u8);
        assert_eq!(keys.len(), usize::from(BTN_MIDDLE / 8 + 1));
        assert!(bit(&keys, BTN_LEFT) && bit(&keys, BTN_RIGHT) && bit(&keys, BTN_MIDDLE));
        assert_eq!(bits_set(&keys), 3);
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_REL as u8),
            [0, 1],
            "REL_WHEEL only"
        );
        assert_eq!(
            select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, EV_ABS as u8),
            [0b11],
            "ABS_X and ABS_Y"
        );
        for ev in [EV_LED, EV_MSC, 0x05, 0x12] {
            assert!(select(&mut dev, VIRTIO_INPUT_CFG_EV_BITS, ev as u8).is_empty());
        }
        for abs in [ABS_X, ABS_Y] {
            let info = select(&mut dev, VIRTIO_INPUT_CFG_ABS_INFO, abs as u8);
            let le32 = |i: usize| u32::from_le_bytes(info[4 * i..4 * i + 4].try_into().unwrap());
            assert_eq!(info.len(), 20);
            assert_eq!(
                (le32(0), le32(1), le32(2), le32(3), le32(4)),
                (0, 32767, 0, 0, 0),
                "min, max, fuzz, flat, res"
            );
        }
        assert!(select(&mut dev, VIRTIO_INPUT_CFG_ABS_INFO, 2 /* ABS_Z */).is_empty());
    }

    #[test]
    fn unknown_selects_answer_nothing_and_only_selectors_are_writable() {
        let mut dev = InputDevice::new(InputKind::Keyboard).unwrap();
        let mut space = [0xffu8; CONFIG_LEN];
        dev.read_config(0, &mut space);
        assert_eq!(space, [0; CONFIG_LEN], "UNSET");
        assert!(!select(&mut dev, VIRTIO_INPUT_CFG_ID_NAME, 0).is_empty());
        for (sel, sub) in [(0x7f, 0), (VIRTIO_INPUT_CFG_ID_NAME, 1), (0xff, 0xff)] {
            assert!(select(&mut dev, sel, sub).is_empty());
            dev.read_config(0, &mut space);
            assert_eq!(space[..2], [sel, sub]);
            assert!(space[2..].iter().all(|&b| b == 0), "no stale answer");
        }
        // One two-byte write sets both selectors; size and data are the device's.
        dev.write_config(0, &[VIRTIO_INPUT_CFG_EV_BITS, EV_LED as u8]);
        dev.write_config(2, &[99]);
        dev.write_config(8, &[0xaa; 16]);
        dev.write_config(u64::MAX, &[1, 2]);
        dev.read_config(0, &mut space);
        assert_eq!(space[..3], [VIRTIO_INPUT_CFG_EV_BITS, EV_LED as u8, 1]);
        assert_eq!(space[8..10], [0b111, 0]);
        // Reads past the end are zero.
        let mut tail = [0xffu8; 8];
        dev.read_config(CONFIG_LEN as u64 - 4, &mut tail);
        assert_eq!(tail, [0; 8]);
        dev.reset();
        dev.read_config(0, &mut space);
        assert_eq!(space, [0; CONFIG_LEN], "reset forgets the selectors");
    }
}
