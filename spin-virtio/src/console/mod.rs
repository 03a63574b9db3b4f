//! virtio-console (virtio 1.2 §5.3) with multiple named ports over a
//! [`ConsoleBackend`].
//!
//! The device offers VIRTIO_CONSOLE_F_MULTIPORT. With it, the driver says
//! DEVICE_READY on the control queue; the device announces every port with
//! DEVICE_ADD; for each port the driver answers PORT_READY and the device
//! sends CONSOLE_PORT (only for ports configured as consoles), PORT_NAME (the
//! name appears in `/sys/class/virtio-ports/vportNpM/name`) and PORT_OPEN
//! (the host side is connected, so the guest's reads block instead of
//! returning end of file). Input for a port is only taken from the backend
//! while the guest has the port open (Linux drops data that arrives on a
//! closed port).
//!
//! Queues: port 0 uses queues 0 (receive) and 1 (transmit), the control
//! queues are 2 (device to driver) and 3 (driver to device), and port `n >= 1`
//! uses `2n + 2` and `2n + 3`.

mod control;
mod device;
#[cfg(test)]
mod tests;

pub use control::ControlMessage;
pub use device::{
    ConsoleBackend, ConsoleDevice, ConsoleState, PendingOutput, PortConfig, PortState,
};

/// Feature bit: `cols` and `rows` are valid.
pub const VIRTIO_CONSOLE_F_SIZE: u32 = 0;
/// Feature bit: several ports and the control queues.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u32 = 1;

/// Control event: the driver is ready (driver to device).
pub const VIRTIO_CONSOLE_DEVICE_READY: u16 = 0;
/// Control event: a port exists (device to driver).
pub const VIRTIO_CONSOLE_DEVICE_ADD: u16 = 1;
/// Control event: a port is gone (device to driver).
pub const VIRTIO_CONSOLE_DEVICE_REMOVE: u16 = 2;
/// Control event: the driver set a port up (driver to device).
pub const VIRTIO_CONSOLE_PORT_READY: u16 = 3;
/// Control event: a port is a console (device to driver).
pub const VIRTIO_CONSOLE_CONSOLE_PORT: u16 = 4;
/// Control event: console size changed (device to driver).
pub const VIRTIO_CONSOLE_RESIZE: u16 = 5;
/// Control event: a side opened or closed a port (both ways).
pub const VIRTIO_CONSOLE_PORT_OPEN: u16 = 6;
/// Control event: a port's name follows (device to driver).
pub const VIRTIO_CONSOLE_PORT_NAME: u16 = 7;

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 128;

/// Receive queue (device to driver data) of `port`.
pub fn rx_queue(port: usize) -> usize {
    if port == 0 { 0 } else { 2 * port + 2 }
}

/// Transmit queue (driver to device data) of `port`.
pub fn tx_queue(port: usize) -> usize {
    rx_queue(port) + 1
}

/// The control receive queue (device to driver).
pub const CONTROL_RX_QUEUE: usize = 2;
/// The control transmit queue (driver to device).
pub const CONTROL_TX_QUEUE: usize = 3;
