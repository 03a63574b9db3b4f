//! The interface between the virtio-mmio transport and a device.

use std::any::Any;

use thiserror::Error;

use crate::memory::{GuestMemory, MemoryError};
use crate::queue::{Queue, QueueError};

/// Device id of a network card (virtio 1.2 §5).
pub const TYPE_NET: u32 = 1;
/// Device id of a block device.
pub const TYPE_BLOCK: u32 = 2;
/// Device id of a console.
pub const TYPE_CONSOLE: u32 = 3;
/// Device id of a 9P transport.
pub const TYPE_9P: u32 = 9;

/// Feature bit: indirect descriptors (`VIRTIO_F_RING_INDIRECT_DESC`).
pub const VIRTIO_F_RING_INDIRECT_DESC: u32 = 28;
/// Feature bit: used/available event indices (`VIRTIO_F_RING_EVENT_IDX`, not offered).
pub const VIRTIO_F_RING_EVENT_IDX: u32 = 29;
/// Feature bit: a modern (virtio 1.x) device (`VIRTIO_F_VERSION_1`), required by virtio-mmio v2.
pub const VIRTIO_F_VERSION_1: u32 = 32;

/// A fault that stops a device until the driver resets it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// A malformed virtqueue.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A buffer outside guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Anything else the device cannot go on from.
    #[error("{0}")]
    Other(String),
}

/// A saved state that does not fit the device it is restored into.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("saved state does not fit the device: {0}")]
pub struct StateError(pub String);

/// A virtio device behind a transport: the device-type specific part.
///
/// The transport owns the queues (their configuration and ring positions) and
/// hands them to the device on each call. A device adds used buffers with
/// [`Queue::add_used`]; the transport decides from the queues whether to raise
/// the interrupt. An `Err` from a device marks it as needing a reset.
pub trait VirtioDevice: Any + Send {
    /// The virtio device id (e.g. [`TYPE_BLOCK`]).
    fn device_type(&self) -> u32;

    /// The device-specific feature bits offered. The transport adds
    /// [`VIRTIO_F_VERSION_1`] and [`VIRTIO_F_RING_INDIRECT_DESC`].
    fn features(&self) -> u64;

    /// The maximum size of each of the device's queues; its length is the
    /// number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;

    /// Reads device configuration space at `offset` into `data` (bytes beyond
    /// the configuration read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// A driver write to configuration space; ignored unless the device has
    /// writable fields.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(
            offset,
            len = data.len(),
            "ignored write to read-only config space"
        );
    }

    /// The driver finished initialisation (DRIVER_OK) with these features.
    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        let _ = features;
        Ok(())
    }

    /// The driver reset the device: forget all per-session state (the
    /// transport resets the queues).
    fn reset(&mut self);

    /// The driver notified queue `queue` (new available buffers).
    fn queue_notify(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError>;

    /// Gives the device a chance to take host input (frames, console input)
    /// or finish pending work. Called by the emulator's main loop.
    fn poll(&mut self, queues: &mut [Queue], mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        let _ = (queues, mem);
        Ok(())
    }

    /// Whether the configuration changed since the last call (the transport
    /// then bumps the config generation and raises a config interrupt).
    fn take_config_changed(&mut self) -> bool {
        false
    }
}

/// Copies the part of `config` that `offset..offset+data.len()` covers into
/// `data`, zero elsewhere (a helper for [`VirtioDevice::read_config`]).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| config.get(o))
            .copied()
            .unwrap_or(0);
    }
}
