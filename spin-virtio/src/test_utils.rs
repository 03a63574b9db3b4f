//! A guest driver double for tests: it drives an [`MmioTransport`] through its
//! registers the way Linux's virtio-mmio driver does, over a [`VecMemory`],
//! builds descriptor chains (direct and indirect), and reads the used rings.
//!
//! Test code: it panics on misuse (e.g. running out of descriptors).

use std::collections::HashMap;

use crate::device::{VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1, VirtioDevice};
use crate::memory::{GuestMemory, GuestMemoryExt, VecMemory};
use crate::mmio::{self, MmioTransport, regs};
use crate::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Where the test RAM starts (as on riscv64's virt machine).
pub const RAM_BASE: u64 = 0x8000_0000;

/// A buffer of a chain the test builds: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Whether the device may write it.
    pub writable: bool,
}

impl Buf {
    /// A device-readable buffer.
    pub fn r(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: false,
        }
    }
    /// A device-writable buffer.
    pub fn w(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: true,
        }
    }
}

/// The driver side of one queue.
#[derive(Debug, Clone)]
pub struct DriverQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    /// The driver's next available index.
    pub avail_idx: u16,
    /// The next used index the driver will read.
    pub last_used: u16,
    free: Vec<u16>,
    chains: HashMap<u16, Vec<u16>>,
}

/// A driver for one device over test memory.
pub struct TestDriver {
    /// The transport under test.
    pub transport: MmioTransport,
    /// Guest RAM.
    pub mem: VecMemory,
    next_free: u64,
    /// Per-queue driver state (after [`TestDriver::setup_queue`]).
    pub queues: Vec<Option<DriverQueue>>,
}

impl TestDriver {
    /// A driver for `device` with 1 MiB of RAM at [`RAM_BASE`].
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        Self::with_memory(device, 1 << 20)
    }

    /// A driver for `device` with `size` bytes of RAM at [`RAM_BASE`].
    pub fn with_memory(device: Box<dyn VirtioDevice>, size: usize) -> Self {
        let transport = MmioTransport::new(device);
        let n = transport.state().queues.len();
        Self {
            transport,
            mem: VecMemory::new(RAM_BASE, size),
            next_free: RAM_BASE,
            queues: vec![None; n],
        }
    }

    /// Reads a 32-bit register.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        self.transport.read(offset, 4)
    }

    /// Writes a 32-bit register.
    pub fn write_reg(&mut self, offset: u64, value: u32) {
        self.transport.write(offset, 4, value, &mut self.mem);
    }

    /// Reads `size` bytes of configuration space at `offset`.
    pub fn read_config(&mut self, offset: u64, size: u8) -> u32 {
        self.transport.read(regs::CONFIG + offset, size)
    }

    /// The device status register.
    pub fn status(&mut self) -> u32 {
        self.read_reg(regs::STATUS)
    }

    /// Reserves `len` bytes of RAM aligned to `align`; returns the address.
    pub fn alloc(&mut self, len: u64, align: u64) -> u64 {
        let addr = self.next_free.next_multiple_of(align);
        self.next_free = addr + len;
        assert!(
            self.next_free <= RAM_BASE + self.mem.size(),
            "test RAM exhausted"
        );
        addr
    }

    /// Reserves a buffer holding `data`.
    pub fn alloc_data(&mut self, data: &[u8]) -> u64 {
        let addr = self.alloc(data.len() as u64, 8);
        self.mem.write(addr, data).unwrap();
        addr
    }

    /// Reads `len` bytes of RAM.
    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(addr, &mut v).unwrap();
        v
    }

    /// Linux's probe and feature negotiation, wanting `wanted` plus the
    /// transport features Linux always takes (VERSION_1, indirect descriptors).
    pub fn negotiate(&mut self, wanted: u64) -> Result<u64, String> {
        self.negotiate_exact(wanted | 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_INDIRECT_DESC)
    }

    /// Linux's probe and feature negotiation: reset, identify, ACKNOWLEDGE,
    /// DRIVER, read the features, write back `offered & wanted`, FEATURES_OK
    /// and check it stuck. Returns the negotiated features.
    pub fn negotiate_exact(&mut self, wanted: u64) -> Result<u64, String> {
        self.write_reg(regs::STATUS, 0);
        if self.status() != 0 {
            return Err("reset did not complete".into());
        }
        if self.read_reg(regs::MAGIC_VALUE) != mmio::MAGIC_VALUE {
            return Err("bad magic".into());
        }
        if self.read_reg(regs::VERSION) != 2 {
            return Err("not virtio-mmio version 2".into());
        }
        if self.read_reg(regs::DEVICE_ID) == 0 {
            return Err("no device".into());
        }
        self.write_reg(regs::STATUS, mmio::STATUS_ACKNOWLEDGE);
        self.write_reg(regs::STATUS, mmio::STATUS_ACKNOWLEDGE | mmio::STATUS_DRIVER);
        self.write_reg(regs::DEVICE_FEATURES_SEL, 1);
        let mut offered = u64::from(self.read_reg(regs::DEVICE_FEATURES)) << 32;
        self.write_reg(regs::DEVICE_FEATURES_SEL, 0);
        offered |= u64::from(self.read_reg(regs::DEVICE_FEATURES));
        let features = offered & wanted;
        self.write_reg(regs::DRIVER_FEATURES_SEL, 1);
        self.write_reg(regs::DRIVER_FEATURES, (features >> 32) as u32);
        self.write_reg(regs::DRIVER_FEATURES_SEL, 0);
        self.write_reg(regs::DRIVER_FEATURES, features as u32);
        let s = mmio::STATUS_ACKNOWLEDGE | mmio::STATUS_DRIVER | mmio::STATUS_FEATURES_OK;
        self.write_reg(regs::STATUS, s);
        if self.status() & mmio::STATUS_FEATURES_OK == 0 {
            return Err("device refused the features".into());
        }
        Ok(features)
    }

    /// Linux's `vm_setup_vq`: select, check not ready, read the maximum,
    /// allocate the rings for `min(size, max)` entries, write them, set ready.
    pub fn setup_queue(&mut self, index: u32, size: u16) -> Result<u16, String> {
        self.write_reg(regs::QUEUE_SEL, index);
        if self.read_reg(regs::QUEUE_READY) != 0 {
            return Err(format!("queue {index} already set up"));
        }
        let max = self.read_reg(regs::QUEUE_NUM_MAX);
        if max == 0 {
            return Err(format!("queue {index} does not exist"));
        }
        let size = size.min(max as u16);
        let n = u64::from(size);
        let desc = self.alloc(16 * n, 16);
        let avail = self.alloc(6 + 2 * n, 2);
        let used = self.alloc(6 + 8 * n, 4);
        self.write_reg(regs::QUEUE_NUM, u32::from(size));
        for (lo, addr) in [
            (regs::QUEUE_DESC_LOW, desc),
            (regs::QUEUE_DRIVER_LOW, avail),
            (regs::QUEUE_DEVICE_LOW, used),
        ] {
            self.write_reg(lo, addr as u32);
            self.write_reg(lo + 4, (addr >> 32) as u32);
        }
        self.write_reg(regs::QUEUE_READY, 1);
        if self.read_reg(regs::QUEUE_READY) != 1 {
            return Err(format!("queue {index} refused"));
        }
        self.queues[index as usize] = Some(DriverQueue {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
            free: (0..size).rev().collect(),
            chains: HashMap::new(),
        });
        Ok(size)
    }

    /// Sets DRIVER_OK.
    pub fn driver_ok(&mut self) {
        let s = self.status();
        self.write_reg(regs::STATUS, s | mmio::STATUS_DRIVER_OK);
    }

    /// Negotiates `wanted`, sets up every queue with `size` entries and sets
    /// DRIVER_OK. Returns the negotiated features.
    pub fn init(&mut self, wanted: u64, size: u16) -> u64 {
        let f = self.negotiate(wanted).expect("negotiation");
        for i in 0..self.queues.len() {
            self.setup_queue(i as u32, size).expect("queue setup");
        }
        self.driver_ok();
        assert!(
            self.transport.is_active(),
            "device not active after DRIVER_OK"
        );
        f
    }

    fn queue(&mut self, q: usize) -> &mut DriverQueue {
        self.queues[q].as_mut().expect("queue set up")
    }

    /// Writes one raw descriptor into queue `q`'s table.
    pub fn write_desc(&mut self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.queue(q).desc + 16 * u64::from(index);
        write_raw_desc(&mut self.mem, at, addr, len, flags, next);
    }

    /// Makes descriptor `head` available in queue `q` (no notification).
    pub fn push_avail(&mut self, q: usize, head: u16) {
        let dq = self.queue(q);
        let slot = u64::from(dq.avail_idx % dq.size);
        let (avail, idx) = (dq.avail, dq.avail_idx.wrapping_add(1));
        dq.avail_idx = idx;
        self.mem.write_u16(avail + 4 + 2 * slot, head).unwrap();
        self.mem.write_u16(avail + 2, idx).unwrap();
    }

    /// Builds a chain of direct descriptors and makes it available; returns its head.
    pub fn add_chain(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let dq = self.queue(q);
        assert!(bufs.len() <= dq.free.len(), "out of descriptors");
        let ids: Vec<u16> = (0..bufs.len()).map(|_| dq.free.pop().unwrap()).collect();
        dq.chains.insert(ids[0], ids.clone());
        for (i, b) in bufs.iter().enumerate() {
            let mut flags = if b.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.write_desc(q, ids[i], b.addr, b.len, flags, next);
        }
        self.push_avail(q, ids[0]);
        ids[0]
    }

    /// Builds a chain in an indirect table behind one descriptor and makes it
    /// available; returns its head.
    pub fn add_indirect(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let table = self.alloc(16 * bufs.len() as u64, 16);
        for (i, b) in bufs.iter().enumerate() {
            let mut flags = if b.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            write_raw_desc(
                &mut self.mem,
                table + 16 * i as u64,
                b.addr,
                b.len,
                flags,
                i as u16 + 1,
            );
        }
        let dq = self.queue(q);
        let id = dq.free.pop().expect("out of descriptors");
        dq.chains.insert(id, vec![id]);
        self.write_desc(
            q,
            id,
            table,
            16 * bufs.len() as u32,
            VIRTQ_DESC_F_INDIRECT,
            0,
        );
        self.push_avail(q, id);
        id
    }

    /// Notifies queue `q`.
    pub fn kick(&mut self, q: usize) {
        self.write_reg(regs::QUEUE_NOTIFY, q as u32);
    }

    /// The next used element of queue `q`, if any: (head, length). Frees the
    /// chain's descriptors.
    pub fn pop_used(&mut self, q: usize) -> Option<(u16, u32)> {
        let dq = self.queues[q].as_ref().expect("queue set up");
        let idx = self.mem.read_u16(dq.used + 2).unwrap();
        if idx == dq.last_used {
            return None;
        }
        let at = dq.used + 4 + 8 * u64::from(dq.last_used % dq.size);
        let id = self.mem.read_u32(at).unwrap();
        let len = self.mem.read_u32(at + 4).unwrap();
        let dq = self.queue(q);
        dq.last_used = dq.last_used.wrapping_add(1);
        let head = u16::try_from(id).expect("used id fits a queue index");
        if let Some(ids) = dq.chains.remove(&head) {
            dq.free.extend(ids);
        }
        Some((head, len))
    }

    /// Reads and acknowledges the interrupt status, as Linux's handler does.
    pub fn ack_interrupt(&mut self) -> u32 {
        let s = self.read_reg(regs::INTERRUPT_STATUS);
        self.write_reg(regs::INTERRUPT_ACK, s);
        s
    }

    /// Sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT on queue `q`.
    pub fn set_no_interrupt(&mut self, q: usize, on: bool) {
        let avail = self.queue(q).avail;
        self.mem.write_u16(avail, u16::from(on)).unwrap();
    }

    /// Lets the device take host input.
    pub fn poll(&mut self) -> bool {
        self.transport.poll(&mut self.mem)
    }
}

fn write_raw_desc(mem: &mut VecMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    mem.write_u64(at, addr).unwrap();
    mem.write_u32(at + 8, len).unwrap();
    mem.write_u16(at + 12, flags).unwrap();
    mem.write_u16(at + 14, next).unwrap();
}
