use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;
use crate::mmio::INT_USED_RING;
use crate::test_utils::{Buf, TestDriver};

#[derive(Clone, Default)]
struct Wire {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    waiting: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl NetBackend for Wire {
    fn send(&mut self, frame: &[u8]) {
        self.sent.lock().unwrap().push(frame.to_vec());
    }
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        match self.waiting.lock().unwrap().pop_front() {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                f.len()
            }
            None => 0,
        }
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn card(wire: &Wire) -> TestDriver {
    let mut t = TestDriver::new(Box::new(NetDevice::new(Box::new(wire.clone()), MAC)));
    let f = t.init(1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS, 32);
    assert_ne!(f & 1 << VIRTIO_NET_F_MAC, 0);
    t
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn config_has_mac_and_link() {
    let wire = Wire::default();
    let mut t = card(&wire);
    let mac: Vec<u8> = (0..6).map(|i| t.read_config(i, 1) as u8).collect();
    assert_eq!(mac, MAC);
    assert_eq!(t.read_config(6, 2), u32::from(VIRTIO_NET_S_LINK_UP));
}

#[test]
fn transmit_strips_the_header() {
    let wire = Wire::default();
    let mut t = card(&wire);
    let f = frame(60, 1);
    let hdr = t.alloc_data(&[0; NET_HDR_LEN]);
    let data = t.alloc_data(&f);
    let head = t.add_chain(TX_QUEUE, &[Buf::r(hdr, 12), Buf::r(data, 60)]);
    // Header and frame in one buffer, through an indirect table.
    let mut one = vec![0; NET_HDR_LEN];
    one.extend(frame(1514, 2));
    let a = t.alloc_data(&one);
    t.add_indirect(TX_QUEUE, &[Buf::r(a, one.len() as u32)]);
    t.kick(TX_QUEUE);
    assert_eq!(t.pop_used(TX_QUEUE), Some((head, 0)));
    assert!(t.pop_used(TX_QUEUE).is_some());
    assert_eq!(*wire.sent.lock().unwrap(), vec![f, frame(1514, 2)]);
}

#[test]
fn oversized_transmit_is_dropped_not_fatal() {
    let wire = Wire::default();
    let mut t = card(&wire);
    let a = t.alloc(NET_HDR_LEN as u64 + 4000, 8);
    t.add_chain(TX_QUEUE, &[Buf::r(a, NET_HDR_LEN as u32 + 4000)]);
    t.add_chain(TX_QUEUE, &[Buf::r(a, 4)]);
    t.kick(TX_QUEUE);
    assert!(t.pop_used(TX_QUEUE).is_some());
    assert!(t.pop_used(TX_QUEUE).is_some());
    assert!(wire.sent.lock().unwrap().is_empty());
    assert!(t.transport.is_active());
}

#[test]
fn receive_fills_posted_buffers() {
    let wire = Wire::default();
    let mut t = card(&wire);
    let len = (NET_HDR_LEN + MAX_FRAME_LEN) as u32;
    let bufs: Vec<(u16, u64)> = (0..2)
        .map(|_| {
            let a = t.alloc(u64::from(len), 8);
            (t.add_chain(RX_QUEUE, &[Buf::w(a, len)]), a)
        })
        .collect();
    t.kick(RX_QUEUE);
    assert!(!t.poll(), "nothing to receive yet");
    wire.waiting
        .lock()
        .unwrap()
        .extend([frame(42, 3), frame(1518, 4), frame(100, 5)]);
    assert!(t.poll());
    assert_ne!(t.ack_interrupt() & INT_USED_RING, 0);
    for (i, (seed, n)) in [(3u8, 42usize), (4, 1518)].into_iter().enumerate() {
        let (head, used) = t.pop_used(RX_QUEUE).unwrap();
        assert_eq!(head, bufs[i].0);
        assert_eq!(used as usize, NET_HDR_LEN + n);
        let got = t.read_mem(bufs[i].1, used as usize);
        assert_eq!(&got[..10], &[0; 10]);
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
        assert_eq!(got[NET_HDR_LEN..], frame(n, seed));
    }
    // The third frame waits in the host until the guest posts a buffer.
    assert_eq!(wire.waiting.lock().unwrap().len(), 1);
    let a = t.alloc(u64::from(len), 8);
    t.add_chain(RX_QUEUE, &[Buf::w(a, 6), Buf::w(a + 6, len - 6)]);
    t.kick(RX_QUEUE);
    assert_eq!(t.pop_used(RX_QUEUE).unwrap().1, 112);
    assert_eq!(t.read_mem(a + 12, 100), frame(100, 5));
}
