//! The virtio-blk device logic.

use std::io;

use serde::{Deserialize, Serialize};

use super::request::{RequestHeader, RequestType, status_addr};
use super::*;
use crate::device::{DeviceError, TYPE_BLOCK, VirtioDevice, read_config_bytes};
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue};

/// Largest piece copied between guest memory and the backend at once.
const CHUNK: usize = 64 * 1024;

/// The disk behind a block device (a file, an import of the host, RAM).
pub trait BlockBackend: Send {
    /// Fills `buf` from the disk at byte `offset` (entirely, or an error).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at byte `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> io::Result<()>;
    /// Size of the disk in bytes (a partial last sector is not visible to the guest).
    fn len(&self) -> u64;
    /// Whether the disk has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the guest may only read.
    fn read_only(&self) -> bool;
}

/// A disk in RAM.
#[derive(Debug, Clone, Default)]
pub struct VecBlockBackend {
    /// The disk's bytes.
    pub data: Vec<u8>,
    /// Whether writes are refused.
    pub read_only: bool,
}

impl VecBlockBackend {
    /// A disk holding `data`.
    pub fn new(data: Vec<u8>, read_only: bool) -> Self {
        Self { data, read_only }
    }

    fn range(&self, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start.checked_add(len).filter(|&e| e <= self.data.len());
        end.map(|e| start..e)
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

impl BlockBackend for VecBlockBackend {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let r = self.range(offset, data.len())?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// A block device's state as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    /// The features the driver accepted.
    pub acked_features: u64,
    /// Requests completed (all kinds).
    pub requests: u64,
    /// Requests answered with an error status.
    pub errors: u64,
}

/// virtio-blk over a [`BlockBackend`].
pub struct BlockDevice {
    backend: Box<dyn BlockBackend>,
    id: [u8; ID_LEN],
    config: Vec<u8>,
    state: BlockState,
    bounce: Vec<u8>,
}

impl BlockDevice {
    /// A disk over `backend`; `id` is what GET_ID returns (the guest's
    /// `/sys/block/vda/serial`), cut to 20 bytes.
    pub fn new(backend: Box<dyn BlockBackend>, id: &str) -> Self {
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        let mut config = vec![0u8; 24];
        config[0..8].copy_from_slice(&(backend.len() / SECTOR_SIZE).to_le_bytes());
        config[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        Self {
            backend,
            id: idb,
            config,
            state: BlockState::default(),
            bounce: vec![0; CHUNK],
        }
    }

    /// The device's state.
    pub fn state(&self) -> &BlockState {
        &self.state
    }

    /// Restores a saved state.
    pub fn set_state(&mut self, state: BlockState) {
        self.state = state;
    }

    /// The backend.
    pub fn backend(&self) -> &dyn BlockBackend {
        self.backend.as_ref()
    }

    /// The disk's size in bytes as the guest sees it (whole sectors).
    pub fn capacity_bytes(&self) -> u64 {
        self.backend.len() / SECTOR_SIZE * SECTOR_SIZE
    }

    /// Byte offset of a `len`-byte access at `sector`, if it is within the disk.
    fn disk_range(&self, sector: u64, len: u64) -> Option<u64> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        (len.is_multiple_of(SECTOR_SIZE) && end <= self.capacity_bytes()).then_some(start)
    }

    /// Runs one request; returns the used length. Errors are guest memory faults.
    fn execute(
        &mut self,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
    ) -> Result<u32, DeviceError> {
        let mut reader = chain.reader();
        let header = RequestHeader::parse(&mut reader, mem)?;
        let Some(status_at) = status_addr(chain) else {
            tracing::warn!(
                head = chain.head,
                "virtio-blk request without a status byte"
            );
            return Ok(0);
        };
        let Some(header) = header else {
            tracing::warn!(
                head = chain.head,
                "virtio-blk request shorter than its header"
            );
            mem.write(status_at, &[VIRTIO_BLK_S_IOERR])?;
            return Ok(1);
        };
        // Data space in the writable part, before the status byte.
        let data_space = chain.writable_len() - 1;
        let mut written = 0u64;
        let status = match header.kind {
            RequestType::In => match self.disk_range(header.sector, data_space) {
                None => VIRTIO_BLK_S_IOERR,
                Some(start) => {
                    let mut writer = chain.writer();
                    let mut status = VIRTIO_BLK_S_OK;
                    while written < data_space {
                        let n = (data_space - written).min(CHUNK as u64) as usize;
                        if let Err(e) = self.backend.read_at(start + written, &mut self.bounce[..n])
                        {
                            tracing::warn!(error = %e, "virtio-blk backend read failed");
                            status = VIRTIO_BLK_S_IOERR;
                            break;
                        }
                        writer.write(mem, &self.bounce[..n])?;
                        written += n as u64;
                    }
                    status
                }
            },
            RequestType::Out => {
                let len = reader.remaining();
                match self.disk_range(header.sector, len) {
                    _ if self.backend.read_only() => VIRTIO_BLK_S_IOERR,
                    None => VIRTIO_BLK_S_IOERR,
                    Some(start) => {
                        let mut done = 0u64;
                        let mut status = VIRTIO_BLK_S_OK;
                        while done < len {
                            let n = (len - done).min(CHUNK as u64) as usize;
                            reader.read(mem, &mut self.bounce[..n])?;
                            if let Err(e) = self.backend.write_at(start + done, &self.bounce[..n]) {
                                tracing::warn!(error = %e, "virtio-blk backend write failed");
                                status = VIRTIO_BLK_S_IOERR;
                                break;
                            }
                            done += n as u64;
                        }
                        status
                    }
                }
            }
            RequestType::Flush => match self.backend.flush() {
                Ok(()) => VIRTIO_BLK_S_OK,
                Err(e) => {
                    tracing::warn!(error = %e, "virtio-blk backend flush failed");
                    VIRTIO_BLK_S_IOERR
                }
            },
            RequestType::GetId => {
                let n = (ID_LEN as u64).min(data_space) as usize;
                written = chain.writer().write(mem, &self.id[..n])? as u64;
                VIRTIO_BLK_S_OK
            }
            RequestType::Unsupported(t) => {
                tracing::debug!(kind = t, "unsupported virtio-blk request");
                VIRTIO_BLK_S_UNSUPP
            }
        };
        if status != VIRTIO_BLK_S_OK {
            self.state.errors += 1;
        }
        mem.write(status_at, &[status])?;
        // Both fit in u32: data_space is at most the chain's writable length minus one.
        Ok(u32::try_from(written + 1).unwrap_or(u32::MAX))
    }
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_FLUSH;
        if self.backend.read_only() {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        self.state.acked_features = features;
        Ok(())
    }

    fn reset(&mut self) {
        self.state.acked_features = 0;
    }

    fn queue_notify(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let q = queues
            .get_mut(queue)
            .ok_or_else(|| DeviceError::Other(format!("no queue {queue}")))?;
        // At most one pass over the ring per notification.
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let len = self.execute(&chain, mem)?;
            self.state.requests += 1;
            q.add_used(mem, chain.head, len)?;
        }
        Ok(())
    }
}
