//! The common configuration structure (virtio 1.2, 4.1.4.3): feature negotiation, device
//! status and per-queue setup registers, as plain state the transport drives.

use std::sync::atomic::Ordering;

use ringvisor_devices::virtio::VIRTIO_F_VERSION_1;

use super::signals::DeviceSignals;

/// Device status bits (virtio 1.2, 2.1).
pub const STATUS_ACKNOWLEDGE: u8 = 0x01;
pub const STATUS_DRIVER: u8 = 0x02;
pub const STATUS_DRIVER_OK: u8 = 0x04;
pub const STATUS_FEATURES_OK: u8 = 0x08;
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
pub const STATUS_FAILED: u8 = 0x80;

/// An MSI-X vector register that names no vector.
pub const NO_VECTOR: u16 = 0xffff;

/// `struct virtio_pci_common_cfg` without the 1.2 notification-data and queue-reset fields,
/// whose features ringvisor does not offer.
pub const COMMON_CONFIG_LEN: u64 = 0x38;

/// One field of the structure, as an access of a given width at a given offset names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DeviceFeatureSelect,
    DeviceFeature,
    DriverFeatureSelect,
    DriverFeature,
    MsixConfig,
    NumQueues,
    DeviceStatus,
    ConfigGeneration,
    QueueSelect,
    QueueSize,
    QueueMsixVector,
    QueueEnable,
    QueueNotifyOff,
    /// A 64-bit queue address: which one, and which part (low, high, or both).
    QueueAddress(QueueRing, Part),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRing {
    Desc,
    Driver,
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Low,
    High,
    Whole,
}

/// Decodes an access. Fields must be accessed at their own width (64-bit ones also as two
/// 32-bit halves); anything else decodes nothing.
fn field(offset: u64, len: usize) -> Option<Field> {
    let ring = |base: u64| match (offset - base, len) {
        (0, 4) => Some(Part::Low),
        (4, 4) => Some(Part::High),
        (0, 8) => Some(Part::Whole),
        _ => None,
    };
    Some(match (offset, len) {
        (0x00, 4) => Field::DeviceFeatureSelect,
        (0x04, 4) => Field::DeviceFeature,
        (0x08, 4) => Field::DriverFeatureSelect,
        (0x0c, 4) => Field::DriverFeature,
        (0x10, 2) => Field::MsixConfig,
        (0x12, 2) => Field::NumQueues,
        (0x14, 1) => Field::DeviceStatus,
        (0x15, 1) => Field::ConfigGeneration,
        (0x16, 2) => Field::QueueSelect,
        (0x18, 2) => Field::QueueSize,
        (0x1a, 2) => Field::QueueMsixVector,
        (0x1c, 2) => Field::QueueEnable,
        (0x1e, 2) => Field::QueueNotifyOff,
        (0x20..=0x27, _) => Field::QueueAddress(QueueRing::Desc, ring(0x20)?),
        (0x28..=0x2f, _) => Field::QueueAddress(QueueRing::Driver, ring(0x28)?),
        (0x30..=0x37, _) => Field::QueueAddress(QueueRing::Device, ring(0x30)?),
        _ => return None,
    })
}

/// What the driver set up for one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRegisters {
    pub max_size: u16,
    pub size: u16,
    pub msix_vector: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueRegisters {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            msix_vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }

    fn ring_mut(&mut self, ring: QueueRing) -> &mut u64 {
        match ring {
            QueueRing::Desc => &mut self.desc,
            QueueRing::Driver => &mut self.driver,
            QueueRing::Device => &mut self.device,
        }
    }
}

/// What a write asks of the transport beyond updating registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonConfigAction {
    None,
    /// The driver wrote 0 to device_status.
    Reset,
    /// The driver set DRIVER_OK after a successful feature negotiation.
    Activate,
}

/// Register state of the common configuration structure. Device status, the config
/// vector and the ISR live in [`DeviceSignals`], which reactor threads also touch.
pub struct CommonConfig {
    offered_features: u64,
    vector_count: u16,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    queues: Vec<QueueRegisters>,
    config_generation: u8,
}

fn replace_half(value: u64, select: u32, half: u32) -> Option<u64> {
    match select {
        0 => Some((value & !0xffff_ffff) | u64::from(half)),
        1 => Some((value & 0xffff_ffff) | u64::from(half) << 32),
        _ => None,
    }
}

fn half(value: u64, select: u32) -> u32 {
    match select {
        0 => value as u32,
        1 => (value >> 32) as u32,
        _ => 0,
    }
}

impl CommonConfig {
    /// `offered_features` must include VIRTIO_F_VERSION_1; `vector_count` is the MSI-X
    /// table size.
    pub fn new(offered_features: u64, queue_max_sizes: &[u16], vector_count: u16) -> Self {
        Self {
            offered_features,
            vector_count,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queues: queue_max_sizes
                .iter()
                .map(|max| QueueRegisters::new(*max))
                .collect(),
            config_generation: 0,
        }
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn queues(&self) -> &[QueueRegisters] {
        &self.queues
    }

    /// The device's configuration changed in a way the driver must re-read.
    pub fn bump_generation(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    /// Back to the power-on values (the generation keeps counting: a driver re-reading the
    /// configuration across a reset must still see a change).
    pub fn reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for queue in &mut self.queues {
            *queue = QueueRegisters::new(queue.max_size);
        }
    }

    fn selected(&self) -> Option<&QueueRegisters> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn vector_or_none(&self, vector: u16) -> u16 {
        if vector < self.vector_count {
            vector
        } else {
            NO_VECTOR
        }
    }

    /// Reads the structure; undecoded accesses read 0.
    pub fn read(&self, offset: u64, data: &mut [u8], signals: &DeviceSignals) {
        data.fill(0);
        let Some(field) = field(offset, data.len()) else {
            return;
        };
        let queue = self.selected();
        let value: u64 = match field {
            Field::DeviceFeatureSelect => self.device_feature_select.into(),
            Field::DeviceFeature => half(self.offered_features, self.device_feature_select).into(),
            Field::DriverFeatureSelect => self.driver_feature_select.into(),
            Field::DriverFeature => half(self.driver_features, self.driver_feature_select).into(),
            Field::MsixConfig => signals.config_vector.load(Ordering::Acquire).into(),
            Field::NumQueues => self.queues.len() as u64,
            Field::DeviceStatus => signals.status.load(Ordering::Acquire).into(),
            Field::ConfigGeneration => self.config_generation.into(),
            Field::QueueSelect => self.queue_select.into(),
            // An absent queue reads size 0: that is how the driver learns it is absent.
            Field::QueueSize => queue.map_or(0, |q| q.size).into(),
            Field::QueueMsixVector => queue.map_or(NO_VECTOR, |q| q.msix_vector).into(),
            Field::QueueEnable => queue.is_some_and(|q| q.enabled).into(),
            // Queue i notifies at notify offset 4 * i: queue_notify_off is the index.
            Field::QueueNotifyOff => queue.map_or(0, |_| self.queue_select).into(),
            Field::QueueAddress(ring, part) => {
                let address = queue.map_or(0, |q| match ring {
                    QueueRing::Desc => q.desc,
                    QueueRing::Driver => q.driver,
                    QueueRing::Device => q.device,
                });
                match part {
                    Part::Low | Part::Whole => address & (u64::MAX >> (64 - 8 * data.len())),
                    Part::High => address >> 32,
                }
            }
        };
        let bytes = value.to_le_bytes();
        data.copy_from_slice(&bytes[..data.len()]);
    }

    /// Writes the structure; writes to read-only or undecoded fields are dropped.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        signals: &DeviceSignals,
    ) -> CommonConfigAction {
        let Some(field) = field(offset, data.len()) else {
            return CommonConfigAction::None;
        };
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        let status = signals.status.load(Ordering::Acquire);
        match field {
            Field::DeviceFeatureSelect => self.device_feature_select = value as u32,
            Field::DriverFeatureSelect => self.driver_feature_select = value as u32,
            Field::DriverFeature => {
                // After FEATURES_OK the negotiated set is final.
                if status & STATUS_FEATURES_OK == 0 {
                    if let Some(features) = replace_half(
                        self.driver_features,
                        self.driver_feature_select,
                        value as u32,
                    ) {
                        self.driver_features = features;
                    }
                }
            }
            Field::MsixConfig => {
                let vector = self.vector_or_none(value as u16);
                signals.config_vector.store(vector, Ordering::Release);
            }
            Field::DeviceStatus => return self.write_status(value as u8, signals),
            Field::QueueSelect => self.queue_select = value as u16,
            Field::QueueMsixVector => {
                let vector = self.vector_or_none(value as u16);
                if let Some(queue) = self.queues.get_mut(usize::from(self.queue_select)) {
                    queue.msix_vector = vector;
                }
            }
            Field::QueueSize | Field::QueueEnable | Field::QueueAddress(..) => {
                self.write_queue(field, value);
            }
            Field::DeviceFeature
            | Field::NumQueues
            | Field::ConfigGeneration
            | Field::QueueNotifyOff => {}
        }
        CommonConfigAction::None
    }

    /// Queue layout registers: frozen once the queue is enabled, since the device may be
    /// using the rings.
    fn write_queue(&mut self, field: Field, value: u64) {
        let Some(queue) = self.queues.get_mut(usize::from(self.queue_select)) else {
            return;
        };
        if queue.enabled {
            return;
        }
        match field {
            Field::QueueSize => {
                let size = value as u16;
                if size.is_power_of_two() && size <= queue.max_size {
                    queue.size = size;
                }
            }
            // Writing 0 is not allowed (only queue_reset can disable a queue).
            Field::QueueEnable => queue.enabled = value as u16 == 1,
            Field::QueueAddress(ring, part) => {
                let address = queue.ring_mut(ring);
                *address = match part {
                    Part::Low => (*address & !0xffff_ffff) | (value & 0xffff_ffff),
                    Part::High => (*address & 0xffff_ffff) | (value << 32),
                    Part::Whole => value,
                };
            }
            _ => {}
        }
    }

    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.offered_features == 0
            && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }

    /// The driver may only add status bits (0 resets). FEATURES_OK sticks only when the
    /// negotiation is acceptable, DRIVER_OK only after FEATURES_OK.
    fn write_status(&mut self, value: u8, signals: &DeviceSignals) -> CommonConfigAction {
        if value == 0 {
            return CommonConfigAction::Reset;
        }
        let old = signals.status.load(Ordering::Acquire);
        let mut added = value & !old & !STATUS_DEVICE_NEEDS_RESET;
        if added & STATUS_FEATURES_OK != 0 && !self.features_acceptable() {
            added &= !STATUS_FEATURES_OK;
        }
        let features_ok = (old | added) & STATUS_FEATURES_OK != 0;
        let broken = old & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED) != 0;
        if added & STATUS_DRIVER_OK != 0 && (!features_ok || broken) {
            added &= !STATUS_DRIVER_OK;
        }
        // fetch_or: a reactor may set DEVICE_NEEDS_RESET concurrently; never lose it.
        signals.status.fetch_or(added, Ordering::AcqRel);
        if added & STATUS_DRIVER_OK != 0 {
            CommonConfigAction::Activate
        } else {
            CommonConfigAction::None
        }
    }
}
