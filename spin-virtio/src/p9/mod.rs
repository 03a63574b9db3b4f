//! virtio-9p (the 9P transport of virtio, device id 9): each request chain
//! carries one 9P2000.L T-message in its readable part and receives the
//! R-message in its writable part. The 9P server is an [`FsBackend`].
//!
//! Queue 0 carries the requests. Configuration space: `tag_len` (u16) then the
//! mount tag, the name the guest mounts (`mount -t 9p -o trans=virtio TAG DIR`).

mod device;
#[cfg(test)]
mod tests;

pub use device::{FsBackend, P9Device, P9State};

/// Feature bit: the mount tag is in configuration space.
pub const VIRTIO_9P_MOUNT_TAG: u32 = 0;
/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 128;
/// The largest mount tag (bytes).
pub const MAX_TAG_LEN: usize = 64;
/// The largest T-message taken (Linux's msize is at most about 512 KiB with virtio).
pub const MAX_MESSAGE_LEN: u32 = 4 << 20;
/// 9P message type of Rlerror.
pub const RLERROR: u8 = 7;
/// The error Rlerror carries when a reply does not fit the driver's buffer (EMSGSIZE).
pub const EMSGSIZE: u32 = 90;
