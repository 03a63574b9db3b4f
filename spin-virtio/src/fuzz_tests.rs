//! Bounded property tests: random descriptor tables and rings under every
//! device, and random register traffic. Nothing may panic, loop, or complete
//! a chain that reaches outside memory.

use proptest::prelude::*;

use crate::block::{BlockDevice, VecBlockBackend};
use crate::console::{ConsoleBackend, ConsoleDevice, PortConfig};
use crate::device::VirtioDevice;
use crate::memory::{GuestMemory, GuestMemoryExt, VecMemory};
use crate::mmio::{MMIO_SIZE, MmioTransport, STATUS_DEVICE_NEEDS_RESET};
use crate::net::{NetBackend, NetDevice};
use crate::p9::{FsBackend, P9Device};
use crate::queue::Queue;
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
