//! The physical address space: RAM, the PLIC and memory-mapped devices.

use crate::plic::Plic;

/// log2 of the size of one block of RAM.
const BLOCK_SHIFT: u32 = 30;
/// Offsets within a block.
const BLOCK_MASK: usize = (1 << BLOCK_SHIFT) - 1;

/// One block of RAM (at most 1 GiB, a whole number of pages).
///
/// In wasm the blocks come straight from `memory.grow`: those pages are zero
/// and untouched, so the host commits only what the guest uses (the
/// allocator's `calloc` would write every byte), and no single Rust
/// allocation has to exceed wasm32's 2 GiB limit. The module lives as long
/// as its one machine, so the blocks are never given back.
#[cfg(target_arch = "wasm32")]
type Block = &'static mut [u8];
#[cfg(not(target_arch = "wasm32"))]
type Block = Box<[u8]>;

#[cfg(target_arch = "wasm32")]
fn new_block(len: usize) -> Block {
    const WASM_PAGE: usize = 64 * 1024;
    let pages = len.div_ceil(WASM_PAGE);
    let first = core::arch::wasm32::memory_grow(0, pages);
    if first == usize::MAX {
        // As the allocator does when memory runs out.
        std::alloc::handle_alloc_error(
            std::alloc::Layout::from_size_align(len, WASM_PAGE).expect("block layout"),
        );
    }
    // SAFETY: memory.grow just added `pages` zeroed pages at `first`, which
    // nothing else refers to; they stay mapped for the life of the module.
    unsafe { std::slice::from_raw_parts_mut((first * WASM_PAGE) as *mut u8, len) }
}

#[cfg(not(target_arch = "wasm32"))]
fn new_block(len: usize) -> Block {
    vec![0; len].into_boxed_slice()
}

/// Guest RAM: bytes at a physical base address, held in blocks of 1 GiB.
///
/// RAM also tracks which of its pages hold decoded instructions ("code
/// pages"): a write to such a page, by the CPU or by a device, records the
/// page so that the CPU drops its decoded instructions before running again.
pub struct Ram {
    /// Guest physical address of the first byte.
    pub base: u64,
    size: usize,
    blocks: Vec<Block>,
    code: Vec<u64>,
    pub(crate) dirty_code: Vec<u32>,
}

impl std::fmt::Debug for Ram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ram")
            .field("base", &self.base)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Ram {
    /// Allocates `size` bytes (rounded up to whole pages) of zeroed RAM at `base`.
    pub fn new(base: u64, size: usize) -> Ram {
        let size = size.div_ceil(4096) * 4096;
        let blocks = (0..size.div_ceil(BLOCK_MASK + 1))
            .map(|i| new_block((size - (i << BLOCK_SHIFT)).min(BLOCK_MASK + 1)))
            .collect();
        Ram {
            base,
            size,
            blocks,
            code: vec![0; (size / 4096).div_ceil(64)],
            dirty_code: Vec::new(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The page-aligned bytes from `off` to the end of its page (`off` < size).
    #[inline(always)]
    pub(crate) fn page_from(&self, off: usize) -> &[u8] {
        // Blocks hold whole pages, so the page ends inside the block.
        let o = off & BLOCK_MASK;
        &self.blocks[off >> BLOCK_SHIFT][o..(o | 0xfff) + 1]
    }

    /// `N` bytes at `off`, which do not cross a page.
    #[inline(always)]
    pub(crate) fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        let o = off & BLOCK_MASK;
        self.blocks[off >> BLOCK_SHIFT][o..o + N]
            .try_into()
            .expect("N bytes")
    }

    /// Writes `bytes` at `off`; they do not cross a page. Code pages are not
    /// tracked here (the CPU's store path keeps code pages out of its TLB).
    #[inline(always)]
    pub(crate) fn put(&mut self, off: usize, bytes: &[u8]) {
        let o = off & BLOCK_MASK;
        self.blocks[off >> BLOCK_SHIFT][o..o + bytes.len()].copy_from_slice(bytes);
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

    /// Returns the offset in RAM of the range `[addr, addr+len)` if RAM holds all of it.
    #[inline]
    pub fn offset(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        if end <= self.size as u64 {
            Some(off as usize)
        } else {
            None
        }
    }

    /// Copies guest memory at `addr` into `buf`; `None` if it is not all RAM.
    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        let mut off = self.offset(addr, buf.len() as u64)?;
        let mut done = 0;
        while done < buf.len() {
            let o = off & BLOCK_MASK;
            let block = &self.blocks[off >> BLOCK_SHIFT];
            let n = (block.len() - o).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[o..o + n]);
            (done, off) = (done + n, off + n);
        }
        Some(())
    }

    /// Copies `buf` into guest memory at `addr`; `None` if it is not all RAM.
    pub fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Option<()> {
        let start = self.offset(addr, buf.len() as u64)?;
        let (mut off, mut done) = (start, 0);
        while done < buf.len() {
            let o = off & BLOCK_MASK;
            let block = &mut self.blocks[off >> BLOCK_SHIFT];
            let n = (block.len() - o).min(buf.len() - done);
            block[o..o + n].copy_from_slice(&buf[done..done + n]);
            (done, off) = (done + n, off + n);
        }
        self.note_write(start, buf.len());
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

/// A spin guest's devices as this machine's bus devices, in mapping order.
pub fn guest_devices(devices: spin_virtio::guest::GuestDevices) -> Vec<Box<dyn MmioDevice>> {
    devices
        .into_transports()
        .into_iter()
        .map(|t| Box::new(t) as Box<dyn MmioDevice>)
        .collect()
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
        let mut b = [0u8; 8];
        if self.ram.read_bytes(addr, &mut b[..size as usize]).is_some() {
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
        if self
            .ram
            .write_bytes(addr, &val.to_le_bytes()[..size as usize])
            .is_some()
        {
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
