//! virtio-mmio transport and the devices spin's emulators share.
//!
//! - [`memory`]: [`GuestMemory`], the view of guest RAM each emulator implements.
//! - [`queue`]: the split virtqueue, validated against a hostile driver.
//! - [`mmio`]: [`MmioTransport`], the virtio-mmio version 2 register window.
//! - [`device`]: [`VirtioDevice`], what a device implements behind the transport.
//! - Devices, each over a small host trait: [`block`] ([`block::BlockBackend`]),
//!   [`console`] ([`console::ConsoleBackend`]), [`net`] ([`net::NetBackend`]),
//!   [`p9`] ([`p9::FsBackend`]).
//!
//! The crate has no threads and no OS calls: it builds for `wasm32-wasip1`.
//!
//! Wiring a device into an emulator:
//!
//! ```
//! use spin_virtio::block::{BlockDevice, VecBlockBackend};
//! use spin_virtio::{MMIO_SIZE, MmioTransport, VecMemory};
//!
//! let disk = VecBlockBackend::new(vec![0; 1 << 20], true);
//! let mut dev = MmioTransport::new(Box::new(BlockDevice::new(Box::new(disk), "image")));
//! let mut ram = VecMemory::new(0x8000_0000, 1 << 20);
//! // Loads and stores in [base, base + MMIO_SIZE) go to the transport:
//! assert_eq!(dev.read(0, 4), 0x7472_6976); // "virt"
//! dev.write(0x70, 4, 1, &mut ram); // STATUS = ACKNOWLEDGE
//! // In the main loop: let the device take host input, then set the
//! // interrupt controller's line for this device from its level.
//! dev.poll(&mut ram);
//! let _irq_level = dev.interrupt_pending();
//! # let _ = MMIO_SIZE;
//! ```

#![warn(missing_docs)]

pub mod block;
pub mod console;
pub mod device;
pub mod guest;
pub mod host_abi;
pub mod memory;
pub mod mmio;
pub mod net;
pub mod p9;
pub mod queue;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod transport_tests;

pub use device::{DeviceError, StateError, VirtioDevice};
pub use memory::{GuestMemory, GuestMemoryExt, MemoryError, VecMemory};
pub use mmio::{MMIO_SIZE, MmioTransport};
pub use queue::{Queue, QueueError};
