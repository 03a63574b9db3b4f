//! virtio-net (virtio 1.2 §5.1) over a [`NetBackend`]: Ethernet frames both
//! ways, each behind the 12-byte `virtio_net_hdr` of VIRTIO_F_VERSION_1
//! (no offloads, no mergeable buffers, no control queue).
//!
//! Queues: 0 receive (device to driver), 1 transmit (driver to device).

mod device;
#[cfg(test)]
mod tests;

pub use device::{NetBackend, NetDevice, NetState};

/// Feature bit: the device has a MAC address in config space.
pub const VIRTIO_NET_F_MAC: u32 = 5;
/// Feature bit: link status in config space.
pub const VIRTIO_NET_F_STATUS: u32 = 16;

/// Link status bit of the `status` config field.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// Length of `virtio_net_hdr` with VIRTIO_F_VERSION_1.
pub const NET_HDR_LEN: usize = 12;
/// The largest frame taken either way (1500-byte MTU, Ethernet header and a
/// VLAN tag; Linux's receive buffers hold exactly this): longer ones are dropped.
pub const MAX_FRAME_LEN: usize = 1518;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Receive queue index.
pub const RX_QUEUE: usize = 0;
/// Transmit queue index.
pub const TX_QUEUE: usize = 1;
