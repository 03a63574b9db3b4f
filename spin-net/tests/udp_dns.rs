//! UDP NAT, UDP forwards, the DNS forwarder and flow expiry.

mod common;

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use spin_net::{Forward, NetConfig};

#[test]
fn udp_round_trip_through_nat() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        host.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 2048];
        for _ in 0..2 {
            let (n, from) = host.recv_from(&mut buf).unwrap();
            let mut d = buf[..n].to_vec();
            d.reverse();
            host.send_to(&d, from).unwrap();
        }
    });
    let (h, g) = start(loopback_config());
    let u = g.udp_bind(5000);
    for msg in [&b"first datagram"[..], &[0xab; 1400][..]] {
        u.send_to(msg, via_gateway(port)).unwrap();
        let (d, from) = u.recv_from(Duration::from_secs(10)).expect("echo");
        let mut want = msg.to_vec();
        want.reverse();
        assert_eq!(d, want);
        assert_eq!(from, via_gateway(port));
    }
    echo.join().unwrap();
    assert_eq!(h.stats().udp_flows, 1);
}

#[test]
fn udp_to_denied_destination_is_refused() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let (h, g) = start(NetConfig::default());
    let u = g.udp_bind(5001);
    u.send_to(b"no", via_gateway(port)).unwrap();
    u.send_to(b"no", "169.254.169.254:53".parse().unwrap())
        .unwrap();
    let t = Instant::now();
    while h.stats().denied < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(h.stats().denied, 2);
    assert_eq!(h.stats().udp_flows, 0);
    let mut buf = [0; 16];
    assert!(host.recv_from(&mut buf).is_err(), "datagram leaked to host");
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

#[test]
fn dns_of_localhost_is_answered() {
    let (h, g) = start(NetConfig::default());
    let u = g.udp_bind(5353);
    let dns = SocketAddrV4::new(DNS, 53);
    let q = dns_query(0xbeef, "localhost", 1);
    u.send_to(&q, dns).unwrap();
    let (r, from) = u.recv_from(Duration::from_secs(10)).expect("answer");
    assert_eq!(from, dns);
    assert_eq!(&r[..2], &[0xbe, 0xef]);
    assert_eq!(r[2] & 0x80, 0x80, "a response");
    assert_eq!(r[3] & 0x0f, 0, "NOERROR");
    let answers = u16::from_be_bytes([r[6], r[7]]);
    assert!(answers >= 1);
    // The question is echoed; the first answer's address follows.
    let q_end = q.len();
    let rdata = &r[q_end + 12..q_end + 16];
    assert_eq!(
        rdata[0], 127,
        "localhost resolves to the loopback: {rdata:?}"
    );

    // AAAA: no records for a guest without IPv6, but not an error.
    u.send_to(&dns_query(2, "localhost", 28), dns).unwrap();
    let (r, _) = u.recv_from(Duration::from_secs(10)).expect("answer");
    assert_eq!(r[3] & 0x0f, 0);
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);

    // Malformed: the question is cut → FORMERR.
    let mut bad = dns_query(3, "localhost", 1);
    bad.truncate(16);
    u.send_to(&bad, dns).unwrap();
    let (r, _) = u.recv_from(Duration::from_secs(10)).expect("answer");
    assert_eq!(r[3] & 0x0f, 1);
    // Unsupported type → NOTIMP.
    u.send_to(&dns_query(4, "localhost", 15), dns).unwrap();
    let (r, _) = u.recv_from(Duration::from_secs(10)).expect("answer");
    assert_eq!(r[3] & 0x0f, 4);
    assert_eq!(h.stats().dns_queries, 4);
}

#[test]
fn udp_forward_from_host_to_guest() {
    let mut cfg = NetConfig::default();
    cfg.forwards.push(Forward::udp(0, 7000));
    let (h, g) = start(cfg);
    let fwd = h.forwards()[0].host;
    let u = g.udp_bind(7000);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.send_to(b"to the guest", fwd).unwrap();
    let (d, from) = u.recv_from(Duration::from_secs(10)).expect("forwarded");
    assert_eq!(d, b"to the guest");
    assert_eq!(*from.ip(), GW);
    u.send_to(b"back to host", from).unwrap();
    let mut buf = [0; 64];
    let (n, src) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back to host");
    assert_eq!(src, fwd);
}

#[test]
fn idle_udp_flows_expire() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let mut cfg = loopback_config();
    cfg.limits.udp_idle_timeout = Duration::from_millis(500);
    let (h, g) = start(cfg);
    let u = g.udp_bind(5002);
    u.send_to(b"x", via_gateway(port)).unwrap();
    let mut buf = [0; 4];
    host.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    host.recv_from(&mut buf).unwrap();
    assert_eq!(h.stats().udp_flows, 1);
    let t = Instant::now();
    while h.stats().udp_flows != 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.stats().udp_flows, 0, "flow did not expire");
}
