use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;
use crate::MmioTransport;
use crate::mmio::{INT_USED_RING, STATUS_DEVICE_NEEDS_RESET};
use crate::test_utils::{Buf, TestDriver};

/// Per-port host side the test can see and steer.
#[derive(Default)]
struct Host {
    output: Vec<Vec<u8>>,
    input: Vec<VecDeque<u8>>,
    /// Bytes the host takes before it is full (per port); None: unlimited.
    room: Vec<Option<usize>>,
    closed: Vec<bool>,
}

#[derive(Clone)]
struct SharedHost(Arc<Mutex<Host>>);

impl SharedHost {
    fn new(ports: usize) -> Self {
        Self(Arc::new(Mutex::new(Host {
            output: vec![Vec::new(); ports],
            input: vec![VecDeque::new(); ports],
            room: vec![None; ports],
            closed: vec![false; ports],
        })))
    }
    fn h(&self) -> std::sync::MutexGuard<'_, Host> {
        self.0.lock().unwrap()
    }
}

impl ConsoleBackend for SharedHost {
    fn write(&mut self, port: usize, data: &[u8]) -> usize {
        let mut h = self.h();
        let n = h.room[port].map_or(data.len(), |r| r.min(data.len()));
        if let Some(r) = h.room[port].as_mut() {
            *r -= n;
        }
        h.output[port].extend_from_slice(&data[..n]);
        n
    }
    fn read(&mut self, port: usize, buf: &mut [u8]) -> usize {
        let mut h = self.h();
        let n = buf.len().min(h.input[port].len());
        for b in buf.iter_mut().take(n) {
            *b = h.input[port].pop_front().unwrap();
        }
        n
    }
    fn input_closed(&mut self, port: usize) -> bool {
        self.h().closed[port]
    }
}

const NAMES: [&str; 3] = ["spin.control", "spin.stdout", "spin.stderr"];

fn console(host: &SharedHost) -> TestDriver {
    let mut ports: Vec<PortConfig> = NAMES.iter().map(|n| PortConfig::named(n)).collect();
    ports.push(PortConfig {
        name: String::new(),
        console: true,
    });
    TestDriver::new(Box::new(ConsoleDevice::new(Box::new(host.clone()), ports)))
}

/// Posts `n` control receive buffers of 64 bytes; returns their addresses by head.
fn post_control_buffers(t: &mut TestDriver, n: usize) -> Vec<(u16, u64)> {
    (0..n)
        .map(|_| {
            let a = t.alloc(64, 8);
            (t.add_chain(CONTROL_RX_QUEUE, &[Buf::w(a, 64)]), a)
        })
        .collect()
}

fn send_control(t: &mut TestDriver, id: u32, event: u16, value: u16) {
    let a = t.alloc_data(&ControlMessage::new(id, event, value).encode());
    t.add_chain(CONTROL_TX_QUEUE, &[Buf::r(a, 8)]);
    t.kick(CONTROL_TX_QUEUE);
    assert!(
        t.pop_used(CONTROL_TX_QUEUE).is_some(),
        "control message not consumed"
    );
}

/// Control messages the device sent since the last call.
fn received(t: &mut TestDriver, bufs: &[(u16, u64)]) -> Vec<ControlMessage> {
    let mut out = Vec::new();
    while let Some((head, len)) = t.pop_used(CONTROL_RX_QUEUE) {
        let addr = bufs.iter().find(|b| b.0 == head).unwrap().1;
        out.push(ControlMessage::decode(&t.read_mem(addr, len as usize)).unwrap());
        // Give the buffer back, as Linux does.
        t.add_chain(CONTROL_RX_QUEUE, &[Buf::w(addr, 64)]);
    }
    t.kick(CONTROL_RX_QUEUE);
    out
}

/// Linux's probe of a multiport console: returns the driver and the control
/// receive buffers, with every port added, named and open on the host side.
fn handshake(host: &SharedHost) -> (TestDriver, Vec<(u16, u64)>) {
    let mut t = console(host);
    let f = t.init(1 << VIRTIO_CONSOLE_F_MULTIPORT, 16);
    assert_ne!(f & 1 << VIRTIO_CONSOLE_F_MULTIPORT, 0);
    assert_eq!(t.read_config(4, 4), 4, "max_nr_ports");
    let mut bufs = post_control_buffers(&mut t, 16);
    t.kick(CONTROL_RX_QUEUE);
    send_control(&mut t, u32::MAX, VIRTIO_CONSOLE_DEVICE_READY, 1);
    let msgs = received(&mut t, &bufs);
    let adds: Vec<u32> = msgs
        .iter()
        .filter(|m| m.event == VIRTIO_CONSOLE_DEVICE_ADD)
        .map(|m| m.id)
        .collect();
    assert_eq!(adds, vec![0, 1, 2, 3]);
    let mut names = Vec::new();
    for id in 0..4 {
        // Linux fills the port's receive queue, then says PORT_READY.
        send_control(&mut t, id, VIRTIO_CONSOLE_PORT_READY, 1);
        let msgs = received(&mut t, &bufs);
        let console = msgs
            .iter()
            .any(|m| m.event == VIRTIO_CONSOLE_CONSOLE_PORT && m.id == id);
        assert_eq!(console, id == 3, "CONSOLE_PORT only for the console port");
        if let Some(m) = msgs.iter().find(|m| m.event == VIRTIO_CONSOLE_PORT_NAME) {
            names.push(String::from_utf8(m.payload.clone()).unwrap());
        }
        assert!(
            msgs.iter()
                .any(|m| *m == ControlMessage::new(id, VIRTIO_CONSOLE_PORT_OPEN, 1)),
            "{msgs:?}"
        );
    }
    assert_eq!(names, NAMES);
    bufs.extend(post_control_buffers(&mut t, 0));
    (t, bufs)
}

#[test]
fn multiport_handshake_names_the_ports() {
    let host = SharedHost::new(4);
    let (mut t, bufs) = handshake(&host);
    // A repeated PORT_READY or DEVICE_READY announces nothing twice.
    send_control(&mut t, 1, VIRTIO_CONSOLE_PORT_READY, 1);
    send_control(&mut t, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    assert!(received(&mut t, &bufs).is_empty());
    let dev = t.transport.device_as::<ConsoleDevice>().unwrap();
    assert_eq!(dev.port_id("spin.stderr"), Some(2));
    assert!(dev.state().ports.iter().all(|p| p.ready && p.host_open));
}

#[test]
fn output_reaches_the_host_by_port() {
    let host = SharedHost::new(4);
    let (mut t, _) = handshake(&host);
    send_control(&mut t, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    let a = t.alloc_data(b"hello, ");
    let b = t.alloc_data(b"stdout\n");
    let head = t.add_chain(tx_queue(1), &[Buf::r(a, 7), Buf::r(b, 7)]);
    let e = t.alloc_data(b"oops\n");
    t.kick(tx_queue(1));
    assert_eq!(t.pop_used(tx_queue(1)), Some((head, 0)));
    t.add_chain(tx_queue(2), &[Buf::r(e, 5)]);
    t.kick(tx_queue(2));
    assert!(t.pop_used(tx_queue(2)).is_some());
    assert_eq!(host.h().output[1], b"hello, stdout\n");
    assert_eq!(host.h().output[2], b"oops\n");
    assert!(host.h().output[0].is_empty());
}

#[test]
fn output_waits_for_the_host() {
    let host = SharedHost::new(4);
    let (mut t, _) = handshake(&host);
    host.h().room[1] = Some(4);
    let a = t.alloc_data(b"0123456789");
    let b = t.alloc_data(b"abc");
    let h1 = t.add_chain(tx_queue(1), &[Buf::r(a, 10)]);
    let h2 = t.add_chain(tx_queue(1), &[Buf::r(b, 3)]);
    t.kick(tx_queue(1));
    assert_eq!(
        t.pop_used(tx_queue(1)),
        None,
        "buffer returned before the host took it"
    );
    assert_eq!(host.h().output[1], b"0123");
    t.ack_interrupt();
    assert!(!t.poll(), "nothing moved, no interrupt");
    host.h().room[1] = Some(7);
    assert!(t.poll());
    assert_eq!(t.pop_used(tx_queue(1)), Some((h1, 0)));
    assert_eq!(t.pop_used(tx_queue(1)), None);
    assert_eq!(host.h().output[1], b"0123456789a");
    host.h().room[1] = None;
    t.poll();
    assert_eq!(t.pop_used(tx_queue(1)), Some((h2, 0)));
    assert_eq!(host.h().output[1], b"0123456789abc");
}

#[test]
fn input_reaches_the_guest_once_it_opens_the_port() {
    let host = SharedHost::new(4);
    let (mut t, bufs) = handshake(&host);
    let rx = t.alloc(8, 8);
    let head = t.add_chain(rx_queue(1), &[Buf::w(rx, 8)]);
    t.kick(rx_queue(1));
    host.h().input[1].extend(b"echo hi\nexit\n");
    assert!(
        !t.poll(),
        "input delivered to a port the guest has not opened"
    );
    assert_eq!(
        host.h().input[1].len(),
        13,
        "input taken from the host too early"
    );
    send_control(&mut t, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    assert_ne!(t.ack_interrupt() & INT_USED_RING, 0);
    assert_eq!(t.pop_used(rx_queue(1)), Some((head, 8)));
    assert_eq!(t.read_mem(rx, 8), b"echo hi\n");
    // The rest waits for the next buffer: the host keeps it.
    assert_eq!(host.h().input[1].len(), 5);
    t.add_chain(rx_queue(1), &[Buf::w(rx, 8)]);
    t.kick(rx_queue(1));
    assert_eq!(t.pop_used(rx_queue(1)).map(|u| u.1), Some(5));
    assert_eq!(t.read_mem(rx, 5), b"exit\n");
    // End of input: the host side closes once all was delivered.
    host.h().closed[1] = true;
    t.add_chain(rx_queue(1), &[Buf::w(rx, 8)]);
    t.kick(rx_queue(1));
    t.poll();
    let msgs = received(&mut t, &bufs);
    assert_eq!(
        msgs,
        vec![ControlMessage::new(1, VIRTIO_CONSOLE_PORT_OPEN, 0)]
    );
    assert_eq!(t.pop_used(rx_queue(1)), None);
    assert_eq!(t.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn without_multiport_port_zero_just_works() {
    let host = SharedHost::new(4);
    let mut t = console(&host);
    let f = t.negotiate(0).unwrap();
    assert_eq!(f & 1 << VIRTIO_CONSOLE_F_MULTIPORT, 0);
    t.setup_queue(0, 8).unwrap();
    t.setup_queue(1, 8).unwrap();
    t.driver_ok();
    let a = t.alloc_data(b"boot log");
    t.add_chain(1, &[Buf::r(a, 8)]);
    t.kick(1);
    assert_eq!(host.h().output[0], b"boot log");
    host.h().input[0].extend(b"x");
    let rx = t.alloc(4, 4);
    t.add_chain(0, &[Buf::w(rx, 4)]);
    t.kick(0);
    assert_eq!(t.pop_used(0).map(|u| u.1), Some(1));
    assert_eq!(t.read_mem(rx, 1), b"x");
}

#[test]
fn reset_forgets_the_session() {
    let host = SharedHost::new(4);
    let (mut t, _) = handshake(&host);
    t.write_reg(crate::mmio::regs::STATUS, 0);
    let dev = t.transport.device_as::<ConsoleDevice>().unwrap();
    assert!(dev.state().ports.iter().all(|p| !p.added && !p.ready));
    // And the handshake works again.
    let (_t, _) = handshake(&host);
}

#[test]
fn snapshot_and_restore_mid_session() {
    let host = SharedHost::new(4);
    let (mut t, _) = handshake(&host);
    send_control(&mut t, 1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    host.h().room[1] = Some(2);
    let a = t.alloc_data(b"snapshot");
    let head = t.add_chain(tx_queue(1), &[Buf::r(a, 8)]);
    t.kick(tx_queue(1));
    assert_eq!(host.h().output[1], b"sn");

    // Save both layers through a serde format, rebuild from scratch.
    let dev = t.transport.device_as::<ConsoleDevice>().unwrap();
    let saved_dev = serde_json::to_string(dev.state()).unwrap();
    let saved_mmio = serde_json::to_string(t.transport.state()).unwrap();
    let mut ports: Vec<PortConfig> = NAMES.iter().map(|n| PortConfig::named(n)).collect();
    ports.push(PortConfig {
        name: String::new(),
        console: true,
    });
    let mut fresh = ConsoleDevice::new(Box::new(host.clone()), ports);
    fresh
        .set_state(serde_json::from_str(&saved_dev).unwrap())
        .unwrap();
    t.transport =
        MmioTransport::with_state(Box::new(fresh), serde_json::from_str(&saved_mmio).unwrap())
            .unwrap();

    assert!(t.transport.is_active());
    host.h().room[1] = None;
    t.poll();
    assert_eq!(t.pop_used(tx_queue(1)), Some((head, 0)));
    assert_eq!(host.h().output[1], b"snapshot");

    // A state from another port layout is refused.
    let mut other = ConsoleDevice::new(Box::new(host.clone()), vec![PortConfig::named("x")]);
    assert!(
        other
            .set_state(serde_json::from_str(&saved_dev).unwrap())
            .is_err()
    );
    let other = ConsoleDevice::new(Box::new(host.clone()), vec![PortConfig::named("x")]);
    assert!(
        MmioTransport::with_state(Box::new(other), serde_json::from_str(&saved_mmio).unwrap())
            .is_err()
    );
}
