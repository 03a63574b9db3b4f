//! Guest physical memory as the devices see it.
//!
//! Each emulator implements [`GuestMemory`] over its RAM. Every access names a
//! guest physical address; an access that is not entirely backed by RAM fails
//! with a [`MemoryError`] and must not touch memory at all.

use thiserror::Error;

/// A guest physical access that RAM does not back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("guest memory access of {len} bytes at {addr:#x} is out of range")]
pub struct MemoryError {
    /// The first guest physical address of the failed access.
    pub addr: u64,
    /// The length of the failed access in bytes.
    pub len: u64,
}

/// Guest physical memory as the devices see it (implemented by each emulator's RAM).
pub trait GuestMemory {
    /// Fills `buf` from guest physical memory at `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Writes `buf` to guest physical memory at `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryError>;
}

/// Little-endian value helpers on top of [`GuestMemory`].
pub trait GuestMemoryExt: GuestMemory {
    /// Reads a little-endian `u16` at `addr`.
    fn read_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Reads a little-endian `u32` at `addr`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Reads a little-endian `u64` at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian `u16` at `addr`.
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), MemoryError> {
        self.write(addr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u32` at `addr`.
    fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), MemoryError> {
        self.write(addr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u64` at `addr`.
    fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), MemoryError> {
        self.write(addr, &v.to_le_bytes())
    }
}

impl<M: GuestMemory + ?Sized> GuestMemoryExt for M {}

/// Guest RAM as one contiguous `Vec<u8>` starting at a base address.
///
/// Used by the tests; an emulator may use it too when its RAM is one block.
#[derive(Debug, Clone)]
pub struct VecMemory {
    base: u64,
    bytes: Vec<u8>,
}

impl VecMemory {
    /// `size` zeroed bytes of RAM starting at guest physical address `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
        }
    }

    /// The first guest physical address backed by this RAM.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The size of this RAM in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The byte range of `bytes` an access covers, if it is entirely in RAM.
    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let err = MemoryError {
            addr,
            len: len as u64,
        };
        let start = addr.checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len as u64).ok_or(err)?;
        if end > self.bytes.len() as u64 {
            return Err(err);
        }
        Ok(start as usize..end as usize)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(addr, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_helpers_round_trip() {
        let mut m = VecMemory::new(0x1000, 64);
        m.write_u16(0x1000, 0xbeef).unwrap();
        m.write_u32(0x1004, 0xdead_beef).unwrap();
        m.write_u64(0x1008, 0x0123_4567_89ab_cdef).unwrap();
        assert_eq!(m.read_u16(0x1000).unwrap(), 0xbeef);
        assert_eq!(m.read_u32(0x1004).unwrap(), 0xdead_beef);
        assert_eq!(m.read_u64(0x1008).unwrap(), 0x0123_4567_89ab_cdef);
        let mut b = [0u8; 2];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [0xef, 0xbe]);
    }

    #[test]
    fn out_of_range_names_the_address() {
        let mut m = VecMemory::new(0x1000, 16);
        let e = m.read_u32(0x100e).unwrap_err();
        assert_eq!(
            e,
            MemoryError {
                addr: 0x100e,
                len: 4
            }
        );
        assert!(m.write(0xfff, &[0]).is_err());
        assert!(m.write(u64::MAX, &[0, 0]).is_err());
        assert!(e.to_string().contains("0x100e"));
    }
}
