//! The virtio-net side of the rig: transmit chains (header + frame) and receive buffers.

use ringvisor_devices::virtio::net::{NetConfig, NetDevice, VNET_HEADER_LEN};
use vm_memory::{Bytes, GuestAddress};

use super::{GuestQueue, Result, Rig};
use crate::virtq_driver::Buffer;

/// A virtio-net device on the reactors.
pub type NetRig = Rig<NetDevice>;

impl GuestQueue {
    /// Adds a transmit chain: `header` (12 bytes) and `frame`, from scratch memory.
    pub fn post_frame(&mut self, header: &[u8; VNET_HEADER_LEN], frame: &[u8]) -> Result<u16> {
        let at = self.alloc((VNET_HEADER_LEN + frame.len()) as u64)?;
        self.mem.write_slice(header, at)?;
        self.mem
            .write_slice(frame, GuestAddress(at.0 + VNET_HEADER_LEN as u64))?;
        self.post_chain(&[
            Buffer::readable(at, VNET_HEADER_LEN as u32),
            Buffer::readable(
                GuestAddress(at.0 + VNET_HEADER_LEN as u64),
                frame.len() as u32,
            ),
        ])
    }

    /// Adds a receive buffer of `len` bytes; returns its head and address.
    pub fn post_rx_buffer(&mut self, len: u32) -> Result<(u16, GuestAddress)> {
        let at = self.alloc(u64::from(len))?;
        Ok((self.post_chain(&[Buffer::writable(at, len)])?, at))
    }
}

impl Rig<NetDevice> {
    /// Attaches the TAP and serves the device's queues on one reactor per entry of
    /// `reactor_cores`.
    pub fn net(
        config: NetConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
    ) -> Result<Self> {
        let device = NetDevice::new(config)?;
        Rig::with_device(device, "net", reactor_cores, queue_size, None)
    }
}
