//! The transport and the queue driven through the registers, including a
//! hostile driver.

use crate::block::{BlockDevice, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VecBlockBackend};
use crate::device::{TYPE_BLOCK, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use crate::memory::{GuestMemory, GuestMemoryExt};
use crate::mmio::*;
use crate::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::test_utils::{Buf, RAM_BASE, TestDriver};

fn block() -> TestDriver {
    TestDriver::new(Box::new(BlockDevice::new(
        Box::new(VecBlockBackend::new(vec![0; 4096], false)),
        "t",
    )))
}

fn ready_block(size: u16) -> TestDriver {
    let mut t = block();
    t.init(0, size);
    t
}

/// Posts a FLUSH request (header + status) and returns (head, status address).
fn flush_request(t: &mut TestDriver) -> (u16, u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes());
    let h = t.alloc_data(&h);
    let s = t.alloc(1, 1);
    (t.add_chain(0, &[Buf::r(h, 16), Buf::w(s, 1)]), s)
}

fn needs_reset(t: &mut TestDriver) -> bool {
    t.status() & STATUS_DEVICE_NEEDS_RESET != 0
}

#[test]
fn identification_registers() {
    let mut t = block();
    assert_eq!(t.read_reg(regs::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(t.read_reg(regs::VERSION), 2);
    assert_eq!(t.read_reg(regs::DEVICE_ID), TYPE_BLOCK);
    assert_eq!(t.read_reg(regs::VENDOR_ID), VENDOR_ID);
    assert_eq!(t.transport.device_type(), TYPE_BLOCK);
    t.write_reg(regs::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        t.read_reg(regs::DEVICE_FEATURES) & 1,
        1,
        "VERSION_1 offered"
    );
    t.write_reg(regs::DEVICE_FEATURES_SEL, 7);
    assert_eq!(t.read_reg(regs::DEVICE_FEATURES), 0);
    // Narrow or misaligned register accesses and unknown offsets read 0.
    assert_eq!(t.transport.read(regs::MAGIC_VALUE, 1), 0);
    assert_eq!(t.transport.read(2, 4), 0);
    assert_eq!(t.read_reg(0x0f8), 0);
    assert_eq!(
        t.read_reg(regs::SHM_LEN_LOW),
        u32::MAX,
        "no shared memory region"
    );
    assert_eq!(
        t.transport.read(MMIO_SIZE - 2, 4),
        0,
        "config access past the window"
    );
    assert_eq!(t.transport.read(regs::CONFIG, 3), 0);
    assert_eq!(t.read_reg(regs::CONFIG_GENERATION), 0);
}

#[test]
fn version_1_is_required() {
    let mut t = block();
    assert!(t.negotiate_exact(1 << VIRTIO_F_RING_INDIRECT_DESC).is_err());
    assert_eq!(t.status() & STATUS_FEATURES_OK, 0);
    // A feature the device does not offer is refused too.
    let mut t = block();
    t.write_reg(regs::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    t.write_reg(regs::DRIVER_FEATURES_SEL, 1);
    t.write_reg(regs::DRIVER_FEATURES, 1 | 1 << 10);
    t.write_reg(
        regs::STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    );
    assert_eq!(t.status() & STATUS_FEATURES_OK, 0);
    // And it works with VERSION_1 alone.
    let mut t = block();
    assert_eq!(
        t.negotiate_exact(1 << VIRTIO_F_VERSION_1),
        Ok(1 << VIRTIO_F_VERSION_1)
    );
}

#[test]
fn status_state_machine() {
    let mut t = block();
    // DRIVER_OK before FEATURES_OK is ignored.
    t.write_reg(
        regs::STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK,
    );
    assert_eq!(t.status(), STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    // Bits cannot be cleared except by a reset.
    t.write_reg(regs::STATUS, STATUS_ACKNOWLEDGE);
    assert_eq!(t.status(), STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    // Features cannot change after FEATURES_OK.
    let f = t.negotiate(0).unwrap();
    t.write_reg(regs::DRIVER_FEATURES_SEL, 0);
    t.write_reg(regs::DRIVER_FEATURES, 0);
    assert_eq!(t.transport.state().driver_features, f);
    t.setup_queue(0, 8).unwrap();
    t.driver_ok();
    assert!(t.transport.is_active());
    // Reset is immediate and complete.
    t.write_reg(regs::STATUS, 0);
    assert_eq!(t.status(), 0);
    assert!(!t.transport.is_active());
    t.write_reg(regs::QUEUE_SEL, 0);
    assert_eq!(t.read_reg(regs::QUEUE_READY), 0);
    // FAILED is accepted at any time.
    t.write_reg(regs::STATUS, STATUS_ACKNOWLEDGE | STATUS_FAILED);
    assert_eq!(t.status(), STATUS_ACKNOWLEDGE | STATUS_FAILED);
}

#[test]
fn queue_configuration_is_validated() {
    let mut t = block();
    t.negotiate(0).unwrap();
    t.write_reg(regs::QUEUE_SEL, 1);
    assert_eq!(t.read_reg(regs::QUEUE_NUM_MAX), 0, "no second queue");
    t.write_reg(regs::QUEUE_READY, 1);
    t.write_reg(regs::QUEUE_SEL, 0);
    assert_eq!(t.read_reg(regs::QUEUE_NUM_MAX), 256);
    let ring = t.alloc(8192, 4096);
    for (size, desc) in [(3, ring), (512, ring), (0, ring), (8, ring + 8)] {
        t.write_reg(regs::QUEUE_NUM, size);
        t.write_reg(regs::QUEUE_DESC_LOW, desc as u32);
        t.write_reg(regs::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        t.write_reg(regs::QUEUE_DRIVER_LOW, (ring + 4096) as u32);
        t.write_reg(regs::QUEUE_DEVICE_LOW, (ring + 6144) as u32);
        t.write_reg(regs::QUEUE_READY, 1);
        assert_eq!(
            t.read_reg(regs::QUEUE_READY),
            0,
            "size {size} desc {desc:#x} accepted"
        );
    }
    // Rings that would wrap the address space.
    t.write_reg(regs::QUEUE_NUM, 8);
    t.write_reg(regs::QUEUE_DESC_LOW, 0xffff_fff0);
    t.write_reg(regs::QUEUE_DESC_HIGH, 0xffff_ffff);
    t.write_reg(regs::QUEUE_READY, 1);
    assert_eq!(t.read_reg(regs::QUEUE_READY), 0);
    // A good configuration sticks, and a ready queue cannot be reconfigured.
    t.write_reg(regs::QUEUE_DESC_LOW, ring as u32);
    t.write_reg(regs::QUEUE_DESC_HIGH, (ring >> 32) as u32);
    t.write_reg(regs::QUEUE_READY, 1);
    assert_eq!(t.read_reg(regs::QUEUE_READY), 1);
    t.write_reg(regs::QUEUE_NUM, 4);
    assert_eq!(t.transport.state().queues[0].size, 8);
    assert_eq!(t.read_reg(regs::QUEUE_DESC_LOW), ring as u32);
    t.write_reg(regs::QUEUE_READY, 0);
    assert_eq!(t.read_reg(regs::QUEUE_READY), 0);
}

#[test]
fn interrupt_status_and_ack() {
    let mut t = ready_block(8);
    assert!(!t.transport.interrupt_pending());
    let (head, s) = flush_request(&mut t);
    t.kick(0);
    assert!(t.transport.interrupt_pending());
    assert_eq!(t.read_reg(regs::INTERRUPT_STATUS), INT_USED_RING);
    t.write_reg(regs::INTERRUPT_ACK, INT_USED_RING);
    assert!(!t.transport.interrupt_pending());
    assert_eq!(t.pop_used(0), Some((head, 1)));
    assert_eq!(t.read_mem(s, 1)[0], VIRTIO_BLK_S_OK);
    // The driver may ask for no interrupt.
    t.set_no_interrupt(0, true);
    flush_request(&mut t);
    t.kick(0);
    assert!(!t.transport.interrupt_pending());
    assert!(t.pop_used(0).is_some());
}

#[test]
fn buffers_made_available_before_driver_ok_are_served() {
    let mut t = block();
    t.negotiate(0).unwrap();
    t.setup_queue(0, 8).unwrap();
    let (head, _) = flush_request(&mut t);
    t.kick(0);
    assert_eq!(t.pop_used(0), None);
    t.driver_ok();
    assert_eq!(t.pop_used(0), Some((head, 1)));
}

#[test]
fn ring_indices_wrap_around_2_16() {
    // A 4-entry queue: indices wrap modulo the size every 4 requests and
    // modulo 2^16 after 65536.
    let mut t = ready_block(4);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes());
    let h = t.alloc_data(&h);
    let s = t.alloc(1, 1);
    let total: u32 = 65536 + 1000;
    let mut completed = 0u32;
    for i in 0..total {
        t.add_chain(0, &[Buf::r(h, 16), Buf::w(s, 1)]);
        // Two requests in flight across the wrap points now and then.
        if i % 3 == 0 {
            t.add_chain(0, &[Buf::r(h, 16), Buf::w(s, 1)]);
        }
        t.kick(0);
        while let Some((_, len)) = t.pop_used(0) {
            assert_eq!(len, 1);
            completed += 1;
        }
    }
    assert_eq!(completed, total + total.div_ceil(3));
    let q = &t.transport.state().queues[0];
    assert_eq!(q.next_avail, completed as u16);
    assert_eq!(q.next_used, completed as u16);
    assert!(completed > 65536);
    assert!(!needs_reset(&mut t));
}

/// Writes a raw descriptor 0 and makes it available, kicks, and checks the
/// device stopped with DEVICE_NEEDS_RESET and a config interrupt.
fn expect_reset(t: &mut TestDriver, what: &str) {
    t.kick(0);
    assert!(needs_reset(t), "{what}: device did not ask for a reset");
    assert_ne!(
        t.read_reg(regs::INTERRUPT_STATUS) & INT_CONFIG,
        0,
        "{what}: no config interrupt"
    );
    assert_eq!(t.pop_used(0), None, "{what}: a bad chain was completed");
    // The device does nothing more until reset...
    t.kick(0);
    assert!(!t.poll());
    // ...and works again after one.
    t.init(0, 8);
    let (head, _) = flush_request(t);
    t.kick(0);
    assert_eq!(
        t.pop_used(0),
        Some((head, 1)),
        "{what}: not working after reset"
    );
}

#[test]
fn descriptor_loop_needs_reset() {
    let mut t = ready_block(8);
    let a = t.alloc(64, 8);
    t.write_desc(0, 0, a, 16, VIRTQ_DESC_F_NEXT, 1);
    t.write_desc(0, 1, a, 16, VIRTQ_DESC_F_NEXT, 0);
    t.push_avail(0, 0);
    expect_reset(&mut t, "loop");
}

#[test]
fn self_loop_and_bad_indices_need_reset() {
    let cases: [(&str, u16, u16); 3] = [
        ("self loop", VIRTQ_DESC_F_NEXT, 0),
        ("next out of range", VIRTQ_DESC_F_NEXT, 8),
        ("next far", VIRTQ_DESC_F_NEXT, 0xffff),
    ];
    for (what, flags, next) in cases {
        let mut t = ready_block(8);
        let a = t.alloc(64, 8);
        t.write_desc(0, 0, a, 16, flags, next);
        t.push_avail(0, 0);
        expect_reset(&mut t, what);
    }
    let mut t = ready_block(8);
    t.push_avail(0, 9);
    expect_reset(&mut t, "head out of range");
}

#[test]
fn buffers_outside_memory_need_reset() {
    let end = RAM_BASE + (1 << 20);
    let cases: [(&str, u64, u32); 5] = [
        ("huge length", RAM_BASE + 0x1000, u32::MAX),
        ("past the end", end - 8, 16),
        ("below RAM", 0x1000, 16),
        ("address overflow", u64::MAX - 4, 16),
        ("far away", 0xdead_0000_0000, 1),
    ];
    for (what, addr, len) in cases {
        let mut t = ready_block(8);
        t.write_desc(0, 0, addr, len, 0, 0);
        t.push_avail(0, 0);
        expect_reset(&mut t, what);
    }
}

#[test]
fn ring_structure_faults_need_reset() {
    // The available index runs more than the queue size ahead.
    let mut t = ready_block(8);
    let avail = t.queues[0].as_ref().unwrap().avail;
    t.mem.write_u16(avail + 2, 9).unwrap();
    expect_reset(&mut t, "avail index jump");

    // A readable buffer after a writable one.
    let mut t = ready_block(8);
    let a = t.alloc(64, 8);
    t.write_desc(0, 0, a, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    t.write_desc(0, 1, a, 16, 0, 0);
    t.push_avail(0, 0);
    expect_reset(&mut t, "readable after writable");

    // Rings outside memory.
    let mut t = block();
    t.negotiate(0).unwrap();
    t.write_reg(regs::QUEUE_SEL, 0);
    t.write_reg(regs::QUEUE_NUM, 8);
    t.write_reg(regs::QUEUE_DESC_LOW, 0x1000);
    t.write_reg(regs::QUEUE_DRIVER_LOW, 0x2000);
    t.write_reg(regs::QUEUE_DEVICE_LOW, 0x3000);
    t.write_reg(regs::QUEUE_READY, 1);
    t.driver_ok();
    t.kick(0);
    assert!(needs_reset(&mut t), "rings outside memory");
}

#[test]
fn indirect_faults_need_reset() {
    type Setup = fn(&mut TestDriver, u64);
    let cases: [(&str, Setup); 5] = [
        ("nested indirect", |t, a| {
            t.mem.write_u64(a, a).unwrap();
            t.mem.write_u32(a + 8, 16).unwrap();
            t.mem.write_u16(a + 12, VIRTQ_DESC_F_INDIRECT).unwrap();
            t.write_desc(0, 0, a, 16, VIRTQ_DESC_F_INDIRECT, 0);
        }),
        ("indirect with next", |t, a| {
            t.write_desc(0, 0, a, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1)
        }),
        ("indirect length not a multiple of 16", |t, a| {
            t.write_desc(0, 0, a, 24, VIRTQ_DESC_F_INDIRECT, 0)
        }),
        ("empty indirect table", |t, a| {
            t.write_desc(0, 0, a, 0, VIRTQ_DESC_F_INDIRECT, 0)
        }),
        ("loop inside an indirect table", |t, a| {
            for i in 0..4u64 {
                t.mem.write_u64(a + 16 * i, a).unwrap();
                t.mem.write_u32(a + 16 * i + 8, 8).unwrap();
                t.mem.write_u16(a + 16 * i + 12, VIRTQ_DESC_F_NEXT).unwrap();
                t.mem
                    .write_u16(a + 16 * i + 14, ((i + 1) % 4) as u16)
                    .unwrap();
            }
            t.write_desc(0, 0, a, 64, VIRTQ_DESC_F_INDIRECT, 0);
        }),
    ];
    for (what, setup) in cases {
        let mut t = ready_block(8);
        let a = t.alloc(256, 16);
        setup(&mut t, a);
        t.push_avail(0, 0);
        expect_reset(&mut t, what);
    }
    // Indirect descriptors when the driver did not take the feature.
    let mut t = block();
    t.negotiate_exact(1 << VIRTIO_F_VERSION_1).unwrap();
    t.setup_queue(0, 8).unwrap();
    t.driver_ok();
    let h = t.alloc_data(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let s = t.alloc(1, 1);
    t.add_indirect(0, &[Buf::r(h, 16), Buf::w(s, 1)]);
    t.kick(0);
    assert!(needs_reset(&mut t), "indirect without the feature");
}

#[test]
fn long_chains_through_indirect_tables_work() {
    // An indirect table may be longer than the queue.
    let mut t = ready_block(4);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes());
    let h = t.alloc_data(&h);
    let mut bufs: Vec<Buf> = (0..16).map(|i| Buf::r(h + i, 1)).collect();
    let s = t.alloc(1, 1);
    bufs.push(Buf::w(s, 1));
    let head = t.add_indirect(0, &bufs);
    t.kick(0);
    assert_eq!(t.pop_used(0), Some((head, 1)));
    assert_eq!(t.read_mem(s, 1)[0], VIRTIO_BLK_S_OK);
}

#[test]
fn memory_error_names_the_address() {
    let t = block();
    let mut b = [0u8; 4];
    let e = t.mem.read(0x10, &mut b).unwrap_err();
    assert_eq!(e.addr, 0x10);
}
