//! Bounded property tests: random descriptor tables and rings under every
//! device, and random register traffic. Nothing may panic, loop, or complete
//! a chain that reaches outside memory.
//!
//! [`hostile_rings_write_only_to_writable_buffers`] is the strongest: hostile
//! direct and indirect descriptor tables (loops, out-of-range and overflowing
//! addresses, gigabyte lengths backed by a sparse memory region, wrapping ring
//! indices restored from a snapshot) under each device, checking every write
//! the device makes to guest memory against the used rings and the buffers the
//! driver marked device-writable, and every used element against its chain.

use proptest::prelude::*;

use crate::block::{BlockDevice, VecBlockBackend};
use crate::console::{ConsoleBackend, ConsoleDevice, PortConfig};
use crate::device::{VIRTIO_F_VERSION_1, VirtioDevice};
use crate::memory::{GuestMemory, GuestMemoryExt, MemoryError, VecMemory};
use crate::mmio::{self, MMIO_SIZE, MmioTransport, STATUS_DEVICE_NEEDS_RESET, regs};
use crate::net::{NetBackend, NetDevice};
use crate::p9::{FsBackend, P9Device};
use crate::queue::{Queue, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE};
use crate::test_utils::{RAM_BASE, TestDriver};

const RAM: usize = 64 * 1024;

struct Echo;
impl ConsoleBackend for Echo {
    fn write(&mut self, _port: usize, data: &[u8]) -> usize {
        data.len() / 2
    }
    fn read(&mut self, _port: usize, buf: &mut [u8]) -> usize {
        buf.fill(b'x');
        buf.len().min(3)
    }
}
impl NetBackend for Echo {
    fn send(&mut self, _frame: &[u8]) {}
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        buf[..60].fill(1);
        60
    }
}
impl FsBackend for Echo {
    fn call(&mut self, request: &[u8], response: &mut Vec<u8>) {
        response.extend_from_slice(request);
    }
}

fn device(kind: u8) -> Box<dyn VirtioDevice> {
    match kind % 4 {
        0 => Box::new(BlockDevice::new(
            Box::new(VecBlockBackend::new(vec![7; 8192], kind & 4 != 0)),
            "f",
        )),
        1 => Box::new(ConsoleDevice::new(
            Box::new(Echo),
            vec![PortConfig::named("a"), PortConfig::named("b")],
        )),
        2 => Box::new(NetDevice::new(Box::new(Echo), [2, 0, 0, 0, 0, 1])),
        _ => Box::new(P9Device::new(Box::new(Echo), "tag")),
    }
}

/// A descriptor with fields drawn mostly near memory, sometimes anywhere.
fn descriptor() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    let addr = prop_oneof![
        4 => (0..RAM as u64).prop_map(|o| RAM_BASE + o),
        1 => any::<u64>(),
    ];
    let len = prop_oneof![4 => 0u32..512, 1 => any::<u32>()];
    (
        addr,
        len,
        0u16..8,
        prop_oneof![4 => 0u16..10, 1 => any::<u16>()],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random descriptor tables, available rings and indices under each device.
    #[test]
    fn random_rings_never_panic(
        kind in any::<u8>(),
        descs in proptest::collection::vec(descriptor(), 8),
        ring in proptest::collection::vec(prop_oneof![4 => 0u16..8, 1 => any::<u16>()], 8),
        avail_idx in prop_oneof![4 => 0u16..10, 1 => any::<u16>()],
        avail_flags in 0u16..2,
        notifies in proptest::collection::vec(0u32..10, 1..6),
    ) {
        let mut t = TestDriver::with_memory(device(kind), RAM);
        t.init(u64::MAX, 8);
        for q in 0..t.queues.len() {
            let dq = t.queues[q].clone().unwrap();
            for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
                t.write_desc(q, i as u16, addr, len, flags, next);
            }
            for (i, &head) in ring.iter().enumerate() {
                t.mem.write_u16(dq.avail + 4 + 2 * i as u64, head).unwrap();
            }
            t.mem.write_u16(dq.avail, avail_flags).unwrap();
            t.mem.write_u16(dq.avail + 2, avail_idx).unwrap();
        }
        for q in notifies {
            t.kick(q as usize);
            t.poll();
        }
        // Every completed chain names a descriptor of the queue.
        for q in 0..t.queues.len() {
            while let Some((head, _)) = t.pop_used(q) {
                prop_assert!(head < 8);
            }
        }
        let s = t.status();
        prop_assert!(t.transport.is_active() || s & STATUS_DEVICE_NEEDS_RESET != 0);
    }

    /// Chains returned by the queue lie entirely in memory and are bounded.
    #[test]
    fn parsed_chains_are_in_memory(
        descs in proptest::collection::vec(descriptor(), 16),
        head in 0u16..20,
        indirect in any::<bool>(),
    ) {
        let mut mem = VecMemory::new(RAM_BASE, RAM);
        let table = RAM_BASE + 0x8000;
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let at = table + 16 * i as u64;
            mem.write_u64(at, addr).unwrap();
            mem.write_u32(at + 8, len).unwrap();
            mem.write_u16(at + 12, flags).unwrap();
            mem.write_u16(at + 14, next).unwrap();
        }
        let mut q = Queue::new(16);
        q.desc_table = table;
        q.avail_ring = RAM_BASE;
        q.used_ring = RAM_BASE + 0x1000;
        q.indirect = indirect;
        q.ready = true;
        if let Ok(chain) = q.chain(&mem, head) {
            prop_assert!(chain.readable.len() + chain.writable.len() <= 16);
            for d in chain.readable.iter().chain(&chain.writable) {
                if d.len > 0 {
                    let mut b = [0u8; 1];
                    prop_assert!(mem.read(d.addr, &mut b).is_ok());
                    prop_assert!(mem.read(d.addr + u64::from(d.len) - 1, &mut b).is_ok());
                }
            }
        }
    }

    /// Random register reads and writes (any offset, size, value), with
    /// notifications and polls in between.
    #[test]
    fn random_register_traffic_never_panics(
        kind in any::<u8>(),
        ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![3 => (0u64..0x40).prop_map(|r| r * 4), 1 => 0..MMIO_SIZE + 8, 1 => any::<u64>()], prop_oneof![4 => Just(4u8), 1 => any::<u8>()], prop_oneof![2 => 0u32..16, 1 => (0..RAM as u32).prop_map(|o| RAM_BASE as u32 + o), 1 => any::<u32>()]),
            1..200,
        ),
    ) {
        let mut t = MmioTransport::new(device(kind));
        let mut mem = VecMemory::new(RAM_BASE, RAM);
        for (i, (write, offset, size, value)) in ops.into_iter().enumerate() {
            if write {
                t.write(offset, size, value, &mut mem);
            } else {
                t.read(offset, size);
            }
            if i % 16 == 0 {
                t.poll(&mut mem);
            }
        }
        let _ = t.interrupt_pending();
    }
}

/// Layout of the hostile-ring test's RAM ([`RAM`] bytes at [`RAM_BASE`]): the
/// rings of queue q at `RINGS + q * 0x400` (table, then available ring at
/// +0x100, used ring at +0x200), indirect tables, then data buffers. Writable
/// buffers only point at data (or outside RAM), so the tables stay as written.
const RINGS: u64 = RAM_BASE;
const MAX_QUEUES: usize = 8;
const TABLES: u64 = RAM_BASE + 0x400 * MAX_QUEUES as u64;
const TABLE_ENTRIES: usize = 256;
const DATA: u64 = TABLES + 16 * TABLE_ENTRIES as u64;
const DATA_LEN: u64 = RAM_BASE + RAM as u64 - DATA;
/// Queue size the driver picks.
const QSIZE: u16 = 8;
/// A sparse region far above RAM: buffers of gigabytes there pass validation
/// without the test allocating them.
const SPARSE_BASE: u64 = 1 << 40;
const SPARSE_SIZE: u64 = 8 << 30;

/// RAM plus the sparse region (reads return a pattern, writes are dropped),
/// logging every write that succeeded.
struct FuzzMemory {
    ram: VecMemory,
    writes: Vec<(u64, usize)>,
}

fn sparse_range(addr: u64, len: usize) -> Result<(), MemoryError> {
    let err = MemoryError {
        addr,
        len: len as u64,
    };
    let off = addr.checked_sub(SPARSE_BASE).ok_or(err)?;
    match off.checked_add(len as u64) {
        Some(end) if end <= SPARSE_SIZE => Ok(()),
        _ => Err(err),
    }
}

impl GuestMemory for FuzzMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.ram.read(addr, buf).is_ok() {
            return Ok(());
        }
        sparse_range(addr, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            *b = (a ^ a >> 9).wrapping_mul(0x9e) as u8;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        if self.ram.write(addr, buf).is_err() {
            sparse_range(addr, buf.len())?;
        }
        self.writes.push((addr, buf.len()));
        Ok(())
    }
}

/// A descriptor (addr, len, flags, next) from a hostile driver: buffers in
/// the data area, the sparse region, at the edges of memory and of the
/// address space, anywhere; lengths small, huge, near `u32::MAX`; indirect
/// tables of any size; `next` in and out of the table.
fn hostile_descriptor() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    let flags = prop_oneof![
        6 => 0u16..4,
        2 => Just(VIRTQ_DESC_F_INDIRECT),
        1 => 0u16..8,
        1 => any::<u16>(),
    ];
    let next = prop_oneof![4 => 0u16..QSIZE, 1 => 0u16..20, 1 => any::<u16>()];
    (flags, next, any::<u64>(), any::<u32>(), 0u8..8, 0u8..8).prop_map(
        |(flags, next, r, rl, pick, lpick)| {
            let edge = |r: u64| {
                let end = [
                    RAM_BASE + RAM as u64,
                    SPARSE_BASE + SPARSE_SIZE,
                    0,
                    SPARSE_BASE,
                ][(r % 4) as usize];
                end.wrapping_sub((r >> 8) % 64)
            };
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                let entries = (1 + rl % 16) as u64;
                let addr = match pick {
                    0..=5 => TABLES + 16 * (r % (TABLE_ENTRIES as u64 - entries + 1)),
                    6 => SPARSE_BASE + (r % (SPARSE_SIZE / 16)) * 16,
                    _ => edge(r),
                };
                let len = match (pick, lpick) {
                    (0..=5, _) | (_, 0..=4) => 16 * entries as u32,
                    (_, 5) => rl,
                    // The most entries allowed, and one more.
                    (_, _) => 16 * (65536 + rl % 2),
                };
                (addr, len, flags, next)
            } else {
                let mut addr = match pick {
                    0..=3 => DATA + r % DATA_LEN,
                    4 => SPARSE_BASE + r % SPARSE_SIZE,
                    5 => edge(r),
                    6 => r,
                    // Anywhere in RAM, rings and tables included: read-only.
                    _ => RAM_BASE + r % RAM as u64,
                };
                if flags & VIRTQ_DESC_F_WRITE != 0 && (RAM_BASE..DATA).contains(&addr) {
                    addr = DATA + r % DATA_LEN;
                }
                let len = match lpick {
                    0..=4 => rl % 600,
                    5 => rl,
                    6 => u32::MAX - rl % 16,
                    _ => (1 << 30) + rl % 4096,
                };
                (addr, len, flags, next)
            }
        },
    )
}

/// A descriptor a driver could have written: a data buffer (sometimes in the
/// sparse region, sometimes huge there), or an indirect table of up to 16 entries.
fn plausible_descriptor() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (any::<u64>(), any::<u32>(), 0u16..4, 0u16..QSIZE, 0u8..16).prop_map(
        |(r, rl, flags, next, pick)| match pick {
            0 => {
                let entries = 1 + u64::from(rl % 16);
                let addr = TABLES + 16 * (r % (TABLE_ENTRIES as u64 - entries + 1));
                (addr, 16 * entries as u32, VIRTQ_DESC_F_INDIRECT, next)
            }
            1 => (
                SPARSE_BASE + r % (SPARSE_SIZE >> 31 << 30),
                (1 << 30) + rl % 4096,
                flags,
                next,
            ),
            2 => (
                SPARSE_BASE + r % (SPARSE_SIZE - 4096),
                rl % 4096,
                flags,
                next,
            ),
            _ => (DATA + r % (DATA_LEN - 600), rl % 600, flags, next),
        },
    )
}

/// Descriptors from drivers of hostility `level` (0..4): more hostile ones
/// as the level rises.
fn descriptors(level: u32, n: usize) -> impl Strategy<Value = Vec<(u64, u32, u16, u16)>> {
    proptest::collection::vec(
        prop_oneof![
            (12 - 3 * level) => plausible_descriptor(),
            (1 + 3 * level) => hostile_descriptor(),
        ],
        n,
    )
}

fn write_desc(mem: &mut FuzzMemory, at: u64, (addr, len, flags, next): (u64, u32, u16, u16)) {
    mem.ram.write_u64(at, addr).unwrap();
    mem.ram.write_u32(at + 8, len).unwrap();
    mem.ram.write_u16(at + 12, flags).unwrap();
    mem.ram.write_u16(at + 14, next).unwrap();
}

/// Negotiates `wanted` (plus VERSION_1) and sets up every queue with [`QSIZE`]
/// entries through the registers, then restores the device from that state
/// with every ring index at `start` (as after a snapshot), so that indices wrap.
fn hostile_transport(kind: u8, wanted: u64, start: u16, mem: &mut FuzzMemory) -> MmioTransport {
    let mut t = MmioTransport::new(device(kind));
    let mut w = |t: &mut MmioTransport, reg, v| t.write(reg, 4, v, mem);
    w(&mut t, regs::STATUS, mmio::STATUS_ACKNOWLEDGE);
    w(
        &mut t,
        regs::STATUS,
        mmio::STATUS_ACKNOWLEDGE | mmio::STATUS_DRIVER,
    );
    let features = t.offered_features() & (wanted | 1 << VIRTIO_F_VERSION_1);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 0);
    w(&mut t, regs::DRIVER_FEATURES, features as u32);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 1);
    w(&mut t, regs::DRIVER_FEATURES, (features >> 32) as u32);
    let s = mmio::STATUS_ACKNOWLEDGE | mmio::STATUS_DRIVER | mmio::STATUS_FEATURES_OK;
    w(&mut t, regs::STATUS, s);
    let queues = t.state().queues.len();
    assert!(queues <= MAX_QUEUES);
    for q in 0..queues {
        let base = RINGS + 0x400 * q as u64;
        w(&mut t, regs::QUEUE_SEL, q as u32);
        w(&mut t, regs::QUEUE_NUM, u32::from(QSIZE));
        for (lo, addr) in [
            (regs::QUEUE_DESC_LOW, base),
            (regs::QUEUE_DRIVER_LOW, base + 0x100),
            (regs::QUEUE_DEVICE_LOW, base + 0x200),
        ] {
            w(&mut t, lo, addr as u32);
            w(&mut t, lo + 4, (addr >> 32) as u32);
        }
        w(&mut t, regs::QUEUE_READY, 1);
    }
    w(&mut t, regs::STATUS, s | mmio::STATUS_DRIVER_OK);
    assert!(t.is_active());
    let mut state = t.state().clone();
    for q in &mut state.queues {
        assert!(q.ready);
        q.next_avail = start;
        q.next_used = start;
    }
    let mut dev = device(kind);
    dev.activate(state.driver_features).unwrap();
    MmioTransport::with_state(dev, state).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Hostile rings under each device: no panic, no hang, writes only to the
    /// used rings and to device-writable buffers, never more used elements than
    /// chains taken, and no used length beyond its chain's writable space.
    #[test]
    fn hostile_rings_write_only_to_writable_buffers(
        kind in any::<u8>(),
        wanted in prop_oneof![3 => Just(u64::MAX), 1 => any::<u64>()],
        (tables, indirect) in (0u32..4).prop_flat_map(|level| (
            proptest::collection::vec(descriptors(level, QSIZE as usize), MAX_QUEUES),
            descriptors(level, TABLE_ENTRIES),
        )),
        ring in proptest::collection::vec(prop_oneof![30 => 0u16..QSIZE, 1 => 0u16..20, 1 => any::<u16>()], QSIZE as usize),
        start in prop_oneof![Just(0u16), 0xfff0u16.., any::<u16>()],
        avail in proptest::collection::vec(prop_oneof![40 => 0u16..=QSIZE, 1 => any::<u16>()], MAX_QUEUES),
        avail_flags in 0u16..2,
        data_seed in any::<u64>(),
        rounds in proptest::collection::vec(proptest::collection::vec((0u32..10, any::<bool>()), 1..6), 1..3),
    ) {
        let mut mem = FuzzMemory { ram: VecMemory::new(RAM_BASE, RAM), writes: Vec::new() };
        // Data: mostly zero bytes, some random (plausible and implausible headers).
        let mut x = data_seed | 1;
        for a in DATA..DATA + DATA_LEN {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = if x % 4 == 0 { (x >> 32) as u8 } else { 0 };
            mem.ram.write(a, &[b]).unwrap();
        }
        let mut t = hostile_transport(kind, wanted, start, &mut mem);
        let nq = t.state().queues.len();
        for (i, &d) in indirect.iter().enumerate() {
            write_desc(&mut mem, TABLES + 16 * i as u64, d);
        }
        for (q, table) in tables.iter().enumerate().take(nq) {
            let base = RINGS + 0x400 * q as u64;
            for (i, &d) in table.iter().enumerate() {
                write_desc(&mut mem, base + 16 * i as u64, d);
            }
            mem.ram.write_u16(base + 0x100, avail_flags).unwrap();
            for (i, &head) in ring.iter().enumerate() {
                mem.ram.write_u16(base + 0x100 + 4 + 2 * i as u64, head).unwrap();
            }
            mem.ram.write_u16(base + 0x200 + 2, start).unwrap();
        }
        // Where the device may write.
        let mut allowed: Vec<(u64, u64)> = (0..nq)
            .map(|q| (RINGS + 0x400 * q as u64 + 0x200, 6 + 8 * u64::from(QSIZE)))
            .collect();
        for &(addr, len, flags, _) in tables[..nq].iter().flatten().chain(&indirect) {
            if flags & VIRTQ_DESC_F_WRITE != 0 && flags & VIRTQ_DESC_F_INDIRECT == 0 {
                allowed.push((addr, u64::from(len)));
            }
        }
        let mut idx = vec![start; nq];
        for ops in &rounds {
            for q in 0..nq {
                idx[q] = idx[q].wrapping_add(avail[q]);
                mem.ram.write_u16(RINGS + 0x400 * q as u64 + 0x102, idx[q]).unwrap();
            }
            for &(q, poll) in ops {
                // Mostly a queue of the device, sometimes none.
                let q = if q < 8 { q % nq as u32 } else { q };
                t.write(regs::QUEUE_NOTIFY, 4, q, &mut mem);
                if poll {
                    t.poll(&mut mem);
                }
            }
        }
        for &(addr, len) in &mem.writes {
            let end = u128::from(addr) + len as u128;
            prop_assert!(
                allowed.iter().any(|&(a, l)| u128::from(a) <= u128::from(addr) && end <= u128::from(a) + u128::from(l)),
                "write of {len} bytes at {addr:#x} outside the used rings and writable buffers"
            );
        }
        let state = t.state().clone();
        for (q, st) in state.queues.iter().enumerate() {
            let taken = st.next_avail.wrapping_sub(start);
            let used = st.next_used.wrapping_sub(start);
            prop_assert!(used <= taken, "queue {q}: {used} used elements for {taken} chains taken");
            prop_assert!(taken <= QSIZE * rounds.len() as u16 + QSIZE, "queue {q}: {taken} chains taken");
            let used_ring = RINGS + 0x400 * q as u64 + 0x200;
            for i in used.saturating_sub(QSIZE)..used {
                let slot = u64::from(start.wrapping_add(i) % QSIZE);
                let head = mem.ram.read_u32(used_ring + 4 + 8 * slot).unwrap();
                let len = mem.ram.read_u32(used_ring + 8 + 8 * slot).unwrap();
                prop_assert!(head < u32::from(QSIZE), "queue {q}: used head {head}");
                if let Ok(chain) = st.chain(&mem, head as u16) {
                    prop_assert!(
                        u64::from(len) <= chain.writable_len(),
                        "queue {q}: used length {len} for {} writable bytes", chain.writable_len()
                    );
                }
            }
        }
        let s = t.read(regs::STATUS, 4);
        prop_assert!(t.is_active() || s & STATUS_DEVICE_NEEDS_RESET != 0);
    }
}
