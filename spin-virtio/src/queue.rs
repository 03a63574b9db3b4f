//! The split virtqueue (virtio 1.2 §2.7): descriptor table, available ring and
//! used ring, seen from the device side.
//!
//! Everything the guest wrote is distrusted: indices are checked against the
//! queue and table sizes, chains are bounded by the number of entries of the
//! table they live in (so a loop ends in an error after at most that many
//! steps), every buffer is checked to lie in guest memory before a device uses
//! it, and address arithmetic never overflows. Any such fault is a
//! [`QueueError`]; the transport then marks the device as needing a reset.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::memory::{GuestMemory, GuestMemoryExt, MemoryError};

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of further descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available-ring flag: the driver does not want an interrupt for used buffers.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The largest queue size virtio allows for split queues.
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// The most entries an indirect table may have (its `next` fields are 16-bit).
pub const MAX_INDIRECT_ENTRIES: u32 = 65536;

const DESC_SIZE: u64 = 16;

/// A fault in what the driver put in a virtqueue.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueueError {
    /// A ring or buffer is not in guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The queue is used while not ready.
    #[error("queue is not ready")]
    NotReady,
    /// The queue size is zero, not a power of two, or above the device's maximum.
    #[error("invalid queue size {size} (maximum {max})")]
    InvalidSize {
        /// The size the driver wrote.
        size: u16,
        /// The device's maximum for this queue.
        max: u16,
    },
    /// A ring is not aligned as the spec requires.
    #[error("{what} at {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// Which ring.
        what: &'static str,
        /// Its guest physical address.
        addr: u64,
        /// The alignment required.
        align: u64,
    },
    /// An address computation overflowed 64 bits.
    #[error("address {addr:#x} + {len:#x} overflows")]
    AddressOverflow {
        /// Base address.
        addr: u64,
        /// Length or offset added to it.
        len: u64,
    },
    /// The available index moved further than the queue size past the last one seen.
    #[error("available index {avail_idx} is more than {size} ahead of {next_avail}")]
    AvailIndex {
        /// The driver's available index.
        avail_idx: u16,
        /// The next entry the device would consume.
        next_avail: u16,
        /// The queue size.
        size: u16,
    },
    /// A descriptor index is outside its table.
    #[error("descriptor index {index} outside a table of {table_len}")]
    DescriptorIndex {
        /// The index found.
        index: u32,
        /// The number of entries of the table.
        table_len: u32,
    },
    /// A chain visits more descriptors than its table holds (a loop).
    #[error("descriptor chain longer than its table of {table_len} (loop?)")]
    ChainTooLong {
        /// The number of entries of the table.
        table_len: u32,
    },
    /// An indirect descriptor inside an indirect table.
    #[error("nested indirect descriptor")]
    NestedIndirect,
    /// An indirect descriptor that also has NEXT set.
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    /// An indirect descriptor while VIRTIO_F_RING_INDIRECT_DESC was not negotiated.
    #[error("indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC")]
    IndirectNotNegotiated,
    /// An indirect table whose length is zero, not a multiple of 16 or too large.
    #[error("invalid indirect table length {0}")]
    IndirectLength(u32),
    /// A device-readable buffer after a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// A used-ring entry for a descriptor head outside the queue.
    #[error("used element for head {head} outside a queue of {size}")]
    UsedHead {
        /// The head index.
        head: u16,
        /// The queue size.
        size: u16,
    },
}

/// One guest buffer of a chain: where it is and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A parsed, validated descriptor chain: its device-readable buffers, then its
/// device-writable ones, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescriptorChain {
    /// Index of the chain's first descriptor (what goes back in the used ring).
    pub head: u16,
    /// Device-readable buffers.
    pub readable: Vec<Descriptor>,
    /// Device-writable buffers.
    pub writable: Vec<Descriptor>,
}

impl DescriptorChain {
    /// Total length of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|d| u64::from(d.len)).sum()
    }

    /// Total length of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|d| u64::from(d.len)).sum()
    }

    /// A cursor reading the device-readable buffers as one byte stream.
    pub fn reader(&self) -> ChainReader<'_> {
        ChainReader {
            cursor: Cursor::new(&self.readable),
        }
    }

    /// A cursor writing the device-writable buffers as one byte stream.
    pub fn writer(&self) -> ChainWriter<'_> {
        ChainWriter {
            cursor: Cursor::new(&self.writable),
        }
    }
}

/// Position in a list of buffers.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    descs: &'a [Descriptor],
    index: usize,
    offset: u32,
    done: u64,
    total: u64,
}

impl<'a> Cursor<'a> {
    fn new(descs: &'a [Descriptor]) -> Self {
        let total = descs.iter().map(|d| u64::from(d.len)).sum();
        Self {
            descs,
            index: 0,
            offset: 0,
            done: 0,
            total,
        }
    }

    /// The next contiguous piece of at most `max` bytes, advancing past it.
    fn next_piece(&mut self, max: usize) -> Option<(u64, usize)> {
        while let Some(d) = self.descs.get(self.index) {
            let left = d.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = (left as usize).min(max);
            // Validated chains cannot overflow; a hand-made one fails in memory instead.
            let addr = d.addr.wrapping_add(u64::from(self.offset));
            self.offset += n as u32;
            self.done += n as u64;
            return Some((addr, n));
        }
        None
    }

    fn remaining(&self) -> u64 {
        self.total - self.done
    }
}

/// Reads a chain's device-readable buffers in order.
#[derive(Debug, Clone)]
pub struct ChainReader<'a> {
    cursor: Cursor<'a>,
}

impl ChainReader<'_> {
    /// Reads up to `buf.len()` bytes; returns how many (0 at the end).
    pub fn read(&mut self, mem: &dyn GuestMemory, buf: &mut [u8]) -> Result<usize, MemoryError> {
        let mut n = 0;
        while n < buf.len() {
            let Some((addr, len)) = self.cursor.next_piece(buf.len() - n) else {
                break;
            };
            mem.read(addr, &mut buf[n..n + len])?;
            n += len;
        }
        Ok(n)
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut done = 0;
        while done < n {
            let max = usize::try_from(n - done).unwrap_or(usize::MAX);
            let Some((_, len)) = self.cursor.next_piece(max) else {
                break;
            };
            done += len as u64;
        }
        done
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.cursor.remaining()
    }

    /// Bytes read (or skipped) so far.
    pub fn consumed(&self) -> u64 {
        self.cursor.done
    }
}

/// Writes a chain's device-writable buffers in order.
#[derive(Debug, Clone)]
pub struct ChainWriter<'a> {
    cursor: Cursor<'a>,
}

impl ChainWriter<'_> {
    /// Writes as much of `data` as fits; returns how many bytes were written.
    pub fn write(&mut self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<usize, MemoryError> {
        let mut n = 0;
        while n < data.len() {
            let Some((addr, len)) = self.cursor.next_piece(data.len() - n) else {
                break;
            };
            mem.write(addr, &data[n..n + len])?;
            n += len;
        }
        Ok(n)
    }

    /// Bytes of space left.
    pub fn remaining(&self) -> u64 {
        self.cursor.remaining()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.cursor.done
    }
}

/// `base + off`, or an error instead of an overflow.
fn offset(base: u64, off: u64) -> Result<u64, QueueError> {
    base.checked_add(off).ok_or(QueueError::AddressOverflow {
        addr: base,
        len: off,
    })
}

/// One split virtqueue: the driver's configuration and the device's position
/// in the rings. Plain data (the snapshot of a queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// The largest size the device accepts for this queue.
    pub max_size: u16,
    /// The size the driver chose.
    pub size: u16,
    /// Whether the driver enabled the queue.
    pub ready: bool,
    /// Guest physical address of the descriptor table.
    pub desc_table: u64,
    /// Guest physical address of the available ring.
    pub avail_ring: u64,
    /// Guest physical address of the used ring.
    pub used_ring: u64,
    /// The next available-ring index the device will consume (free-running, mod 2^16).
    pub next_avail: u16,
    /// The next used-ring index the device will fill (free-running, mod 2^16).
    pub next_used: u16,
    /// Whether VIRTIO_F_RING_INDIRECT_DESC was negotiated.
    pub indirect: bool,
    /// Used buffers were added since the last interrupt decision.
    pub signal_pending: bool,
}

impl Queue {
    /// A queue that accepts at most `max_size` entries, not configured yet.
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            indirect: false,
            signal_pending: false,
        }
    }

    /// Back to the state after a device reset.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Checks the driver's configuration (size and alignment of the three
    /// areas, and that their extents do not overflow).
    pub fn validate(&self) -> Result<(), QueueError> {
        let size = self.size;
        if size == 0 || !size.is_power_of_two() || size > self.max_size || size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidSize {
                size,
                max: self.max_size,
            });
        }
        for (what, addr, align, len) in [
            (
                "descriptor table",
                self.desc_table,
                16,
                DESC_SIZE * u64::from(size),
            ),
            (
                "available ring",
                self.avail_ring,
                2,
                6 + 2 * u64::from(size),
            ),
            ("used ring", self.used_ring, 4, 6 + 8 * u64::from(size)),
        ] {
            if !addr.is_multiple_of(align) {
                return Err(QueueError::Misaligned { what, addr, align });
            }
            offset(addr, len)?;
        }
        Ok(())
    }

    /// The driver's available index.
    pub fn avail_idx(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        Ok(mem.read_u16(offset(self.avail_ring, 2)?)?)
    }

    /// How many chains the driver made available that the device has not taken.
    pub fn pending(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        if self.size == 0 {
            return Err(QueueError::InvalidSize {
                size: 0,
                max: self.max_size,
            });
        }
        let avail_idx = self.avail_idx(mem)?;
        let n = avail_idx.wrapping_sub(self.next_avail);
        if n > self.size {
            return Err(QueueError::AvailIndex {
                avail_idx,
                next_avail: self.next_avail,
                size: self.size,
            });
        }
        Ok(n)
    }

    /// Takes the next available chain, if any, parsed and validated.
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescriptorChain>, QueueError> {
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(offset(self.avail_ring, 4 + 2 * slot)?)?;
        let chain = self.chain(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// Gives back the chain taken by the last [`Queue::pop`] (it will be popped again).
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    /// Parses and validates the chain starting at descriptor `head`.
    pub fn chain(&self, mem: &dyn GuestMemory, head: u16) -> Result<DescriptorChain, QueueError> {
        let mut table = self.desc_table;
        let mut table_len = u32::from(self.size);
        let mut index = u32::from(head);
        let mut in_indirect = false;
        let mut visited = 0u32;
        let mut chain = DescriptorChain {
            head,
            ..Default::default()
        };
        if index >= table_len {
            return Err(QueueError::DescriptorIndex { index, table_len });
        }
        loop {
            visited += 1;
            if visited > table_len {
                return Err(QueueError::ChainTooLong { table_len });
            }
            let mut raw = [0u8; 16];
            mem.read(offset(table, DESC_SIZE * u64::from(index))?, &mut raw)?;
            let addr = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);

            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if in_indirect {
                    return Err(QueueError::NestedIndirect);
                }
                if flags & VIRTQ_DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                if len == 0 || !len.is_multiple_of(16) || len / 16 > MAX_INDIRECT_ENTRIES {
                    return Err(QueueError::IndirectLength(len));
                }
                check_range(mem, addr, len)?;
                table = addr;
                table_len = len / 16;
                index = 0;
                visited = 0;
                in_indirect = true;
                continue;
            }

            check_range(mem, addr, len)?;
            let desc = Descriptor { addr, len };
            if flags & VIRTQ_DESC_F_WRITE != 0 {
                chain.writable.push(desc);
            } else if chain.writable.is_empty() {
                chain.readable.push(desc);
            } else {
                return Err(QueueError::ReadableAfterWritable);
            }
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = u32::from(next);
            if index >= table_len {
                return Err(QueueError::DescriptorIndex { index, table_len });
            }
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written to it.
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        if head >= self.size {
            return Err(QueueError::UsedHead {
                head,
                size: self.size,
            });
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = offset(self.used_ring, 4 + 8 * slot)?;
        let mut raw = [0u8; 8];
        raw[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..8].copy_from_slice(&len.to_le_bytes());
        mem.write(elem, &raw)?;
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(offset(self.used_ring, 2)?, self.next_used)?;
        self.signal_pending = true;
        Ok(())
    }

    /// Whether the used buffers added since the last call should interrupt the
    /// driver (they should unless it set VIRTQ_AVAIL_F_NO_INTERRUPT). Clears the
    /// pending state.
    pub fn take_signal(&mut self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        if !std::mem::take(&mut self.signal_pending) {
            return Ok(false);
        }
        let flags = mem.read_u16(self.avail_ring)?;
        Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
    }
}

/// Checks that `len` bytes at `addr` are addressable and in guest memory (by
/// touching the first and the last byte; RAM regions are contiguous).
fn check_range(mem: &dyn GuestMemory, addr: u64, len: u32) -> Result<(), QueueError> {
    if len == 0 {
        return Ok(());
    }
    let last = offset(addr, u64::from(len) - 1)?;
    let mut b = [0u8; 1];
    mem.read(addr, &mut b)?;
    mem.read(last, &mut b)?;
    Ok(())
}
