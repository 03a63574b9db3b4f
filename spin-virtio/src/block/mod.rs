//! virtio-blk (virtio 1.2 §5.2) over a [`BlockBackend`].

mod device;
mod file;
mod request;
#[cfg(test)]
mod tests;

pub use device::{BlockBackend, BlockDevice, BlockState, VecBlockBackend};
pub use file::FileBackend;
pub use request::{RequestHeader, RequestType};

/// Feature bit: maximum number of segments in a request is in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// Feature bit: the device is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// Feature bit: the device takes flush requests.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error (also: out of range, write to a read-only device).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: request type not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Sector size of virtio-blk addressing.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the id string GET_ID returns.
pub const ID_LEN: usize = 20;
/// Size of the device's queue.
pub const QUEUE_SIZE: u16 = 256;
