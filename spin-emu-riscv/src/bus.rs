//! The physical address space: RAM, the PLIC and memory-mapped devices.

use crate::plic::Plic;

/// Guest RAM: one contiguous block of bytes at a physical base address.
///
/// RAM also tracks which of its pages hold decoded instructions ("code
/// pages"): a write to such a page, by the CPU or by a device, records the
/// page so that the CPU drops its decoded instructions before running again.
#[derive(Clone, Debug)]
pub struct Ram {
    /// Guest physical address of the first byte.
    pub base: u64,
    pub(crate) data: Vec<u8>,
    code: Vec<u64>,
    pub(crate) dirty_code: Vec<u32>,
}

impl Ram {
    /// Allocates `size` bytes of zeroed RAM at `base`.
    pub fn new(base: u64, size: usize) -> Ram {
        let pages = size.div_ceil(4096);
        Ram {
            base,
            data: vec![0; size],
            code: vec![0; pages.div_ceil(64)],
            dirty_code: Vec::new(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The whole of RAM, read-only.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// Marks page `page` (index from the start of RAM) as holding decoded code.
    pub(crate) fn mark_code(&mut self, page: usize) {
        self.code[page / 64] |= 1 << (page % 64);
    }

    /// Whether page `page` holds decoded code.
    pub(crate) fn is_code(&self, page: usize) -> bool {
        self.code[page / 64] & (1 << (page % 64)) != 0
    }

    /// Forgets every code page (the CPU dropped all its decoded pages).
    pub(crate) fn clear_code(&mut self) {
        self.code.fill(0);
        self.dirty_code.clear();
    }

    /// Records a write of `len` bytes at offset `off` (for code-page tracking).
    #[inline]
    pub(crate) fn note_write(&mut self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        let (first, last) = (off >> 12, (off + len - 1) >> 12);
        for page in first..=last {
            let (w, b) = (page / 64, 1u64 << (page % 64));
            if self.code[w] & b != 0 {
                self.code[w] &= !b;
                self.dirty_code.push(page as u32);
            }
        }
    }

    /// Returns the offset in `data` of the range `[addr, addr+len)` if RAM holds all of it.
    #[inline]
    pub fn offset(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        if end <= self.data.len() as u64 {
            Some(off as usize)
        } else {
            None
        }
    }

    /// Copies guest memory at `addr` into `buf`; `None` if it is not all RAM.
    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        let off = self.offset(addr, buf.len() as u64)?;
        buf.copy_from_slice(&self.data[off..off + buf.len()]);
        Some(())
    }

    /// Copies `buf` into guest memory at `addr`; `None` if it is not all RAM.
    pub fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Option<()> {
        let off = self.offset(addr, buf.len() as u64)?;
        self.data[off..off + buf.len()].copy_from_slice(buf);
        self.note_write(off, buf.len());
        Some(())
    }
}

impl spin_virtio::GuestMemory for Ram {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), spin_virtio::MemoryError> {
        self.read_bytes(addr, buf).ok_or(spin_virtio::MemoryError {
            addr,
            len: buf.len() as u64,
        })
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), spin_virtio::MemoryError> {
        self.write_bytes(addr, buf).ok_or(spin_virtio::MemoryError {
            addr,
            len: buf.len() as u64,
        })
    }
}

/// A memory-mapped device on the bus (a virtio-mmio transport, for instance).
pub trait MmioDevice {
    /// Reads a register (`size` is 1, 2 or 4 bytes).
    fn read(&mut self, offset: u64, size: u8) -> u32;
    /// Writes a register; the device may access guest RAM (DMA).
    fn write(&mut self, offset: u64, size: u8, value: u32, ram: &mut Ram);
    /// The level of the device's interrupt line.
    fn interrupt_pending(&self) -> bool;
    /// Lets the device's backend make progress (input arriving); true when it raised an interrupt.
    fn poll(&mut self, ram: &mut Ram) -> bool;
}

impl MmioDevice for spin_virtio::MmioTransport {
    fn read(&mut self, offset: u64, size: u8) -> u32 {
        spin_virtio::MmioTransport::read(self, offset, size)
    }
    fn write(&mut self, offset: u64, size: u8, value: u32, ram: &mut Ram) {
        spin_virtio::MmioTransport::write(self, offset, size, value, ram)
    }
    fn interrupt_pending(&self) -> bool {
        spin_virtio::MmioTransport::interrupt_pending(self)
    }
    fn poll(&mut self, ram: &mut Ram) -> bool {
        spin_virtio::MmioTransport::poll(self, ram)
    }
}

/// Base physical address of the PLIC.
pub const PLIC_BASE: u64 = 0x0c00_0000;
/// Size of the PLIC's register window.
pub const PLIC_SIZE: u64 = 0x0400_0000;
/// Base physical address of the first virtio-mmio device.
pub const MMIO_BASE: u64 = 0x1000_1000;
/// Size of each device's register window.
pub const MMIO_STRIDE: u64 = 0x1000;

/// The physical address space.
pub struct Bus {
    /// Guest RAM.
    pub ram: Ram,
    /// The platform-level interrupt controller.
    pub plic: Plic,
    /// Devices, the i-th at `MMIO_BASE + i * MMIO_STRIDE` with PLIC source `1 + i`.
    pub devices: Vec<Box<dyn MmioDevice>>,
}

impl Bus {
    /// A bus with only RAM and a PLIC.
    pub fn new(ram: Ram) -> Bus {
        Bus {
            ram,
            plic: Plic::new(),
            devices: Vec::new(),
        }
    }

    /// Reads `size` (1, 2, 4 or 8) bytes at a physical address; `None` is an access fault.
    pub fn read(&mut self, addr: u64, size: u8) -> Option<u64> {
        if let Some(off) = self.ram.offset(addr, size as u64) {
            let d = &self.ram.data[off..off + size as usize];
            let mut b = [0u8; 8];
            b[..size as usize].copy_from_slice(d);
            return Some(u64::from_le_bytes(b));
        }
        if addr & (size as u64 - 1) != 0 {
            return None;
        }
        if (PLIC_BASE..PLIC_BASE + PLIC_SIZE).contains(&addr) {
            return match size {
                4 => Some(self.plic.read(addr - PLIC_BASE) as u64),
                8 => {
                    let lo = self.plic.read(addr - PLIC_BASE) as u64;
                    let hi = self.plic.read(addr - PLIC_BASE + 4) as u64;
                    Some(lo | hi << 32)
                }
                _ => Some(0),
            };
        }
        let idx = addr.checked_sub(MMIO_BASE)? / MMIO_STRIDE;
        let off = (addr - MMIO_BASE) % MMIO_STRIDE;
        let dev = self.devices.get_mut(idx as usize)?;
        if size == 8 {
            let lo = dev.read(off, 4) as u64;
            let hi = dev.read(off + 4, 4) as u64;
            Some(lo | hi << 32)
        } else {
            Some(dev.read(off, size) as u64)
        }
    }

    /// Writes `size` (1, 2, 4 or 8) bytes at a physical address; `None` is an access fault.
    pub fn write(&mut self, addr: u64, size: u8, val: u64) -> Option<()> {
        if let Some(off) = self.ram.offset(addr, size as u64) {
            self.ram.data[off..off + size as usize]
                .copy_from_slice(&val.to_le_bytes()[..size as usize]);
            self.ram.note_write(off, size as usize);
            return Some(());
        }
        if addr & (size as u64 - 1) != 0 {
            return None;
        }
        if (PLIC_BASE..PLIC_BASE + PLIC_SIZE).contains(&addr) {
            match size {
                4 => self.plic.write(addr - PLIC_BASE, val as u32),
                8 => {
                    self.plic.write(addr - PLIC_BASE, val as u32);
                    self.plic.write(addr - PLIC_BASE + 4, (val >> 32) as u32);
                }
                _ => {}
            }
            return Some(());
        }
        let idx = addr.checked_sub(MMIO_BASE)? / MMIO_STRIDE;
        let off = (addr - MMIO_BASE) % MMIO_STRIDE;
        let dev = self.devices.get_mut(idx as usize)?;
        if size == 8 {
            dev.write(off, 4, val as u32, &mut self.ram);
            dev.write(off + 4, 4, (val >> 32) as u32, &mut self.ram);
        } else {
            dev.write(off, size, val as u32, &mut self.ram);
        }
        Some(())
    }

    /// Copies device interrupt levels into the PLIC and polls device backends.
    pub fn update_interrupts(&mut self, poll: bool) {
        for (i, d) in self.devices.iter_mut().enumerate() {
            if poll {
                d.poll(&mut self.ram);
            }
            self.plic.set_level(1 + i as u32, d.interrupt_pending());
        }
    }
}
