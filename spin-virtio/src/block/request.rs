//! Parsing a virtio-blk request from a descriptor chain.

use crate::memory::GuestMemory;
use crate::queue::{ChainReader, DescriptorChain};

use super::{VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into the writable buffers.
    In,
    /// Write sectors from the readable buffers.
    Out,
    /// Flush the backend.
    Flush,
    /// Return the device id string.
    GetId,
    /// Any other type (answered with UNSUPP).
    Unsupported(u32),
}

/// The 16-byte header at the start of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// The request type.
    pub kind: RequestType,
    /// First sector (512-byte units) for reads and writes.
    pub sector: u64,
}

impl RequestHeader {
    /// Reads the header from the start of the chain's readable part; `None`
    /// if it is shorter than 16 bytes.
    pub fn parse(
        reader: &mut ChainReader<'_>,
        mem: &dyn GuestMemory,
    ) -> Result<Option<Self>, crate::memory::MemoryError> {
        let mut raw = [0u8; 16];
        if reader.read(mem, &mut raw)? < raw.len() {
            return Ok(None);
        }
        let kind = match u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes")) {
            VIRTIO_BLK_T_IN => RequestType::In,
            VIRTIO_BLK_T_OUT => RequestType::Out,
            VIRTIO_BLK_T_FLUSH => RequestType::Flush,
            VIRTIO_BLK_T_GET_ID => RequestType::GetId,
            t => RequestType::Unsupported(t),
        };
        let sector = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
        Ok(Some(Self { kind, sector }))
    }
}

/// Guest address of the status byte: the last byte of the writable part.
pub(crate) fn status_addr(chain: &DescriptorChain) -> Option<u64> {
    chain
        .writable
        .iter()
        .rev()
        .find(|d| d.len > 0)
        .map(|d| d.addr + u64::from(d.len) - 1)
}
