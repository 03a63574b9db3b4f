//! TCP through the NAT and through forwards, with a simulated guest.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use spin_net::{Forward, NetConfig};

#[test]
fn ping_gateway_and_dns_address() {
    let (_h, g) = start(NetConfig::default());
    assert!(g.ping(GW, Duration::from_secs(5)));
    assert!(g.ping(DNS, Duration::from_secs(5)));
    // No other host in the subnet answers.
    assert!(!g.ping("10.0.2.99".parse().unwrap(), Duration::from_millis(300)));
}

#[test]
fn outbound_tcp_with_half_close_both_ways() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, peer) = server.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap(); // ends with the guest's FIN
        got.reverse();
        s.write_all(&got).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        peer
    });
    let (h, g) = start(loopback_config());
    let c = g.tcp_connect(via_gateway(port)).unwrap();
    c.write_all(b"hello, host").unwrap();
    c.shutdown_write();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"tsoh ,olleh");
    let peer = t.join().unwrap();
    assert!(peer.ip().is_loopback());
    assert_eq!(h.stats().denied, 0);
}

#[test]
fn resets_are_carried_both_ways() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (h, g) = start(loopback_config());

    // Host resets → guest sees a reset.
    let c = g.tcp_connect(via_gateway(port)).unwrap();
    let (s, _) = server.accept().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let mut buf = [0; 16];
    let e = c.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);

    // Guest resets → host sees a reset.
    let c = g.tcp_connect(via_gateway(port)).unwrap();
    let (mut s, _) = server.accept().unwrap();
    c.write_all(b"x").unwrap();
    let mut one = [0; 1];
    s.read_exact(&mut one).unwrap();
    c.abort();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    drop(h);
}

#[test]
fn refused_host_port_refuses_guest() {
    // A port nobody listens on: bind then drop.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_h, g) = start(loopback_config());
    let e = g.tcp_connect(via_gateway(port)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn denied_destinations_are_refused_and_counted() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    // Default policy: the host's loopback is not reachable.
    let (h, g) = start(NetConfig::default());
    let e = g.tcp_connect(via_gateway(port)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    // The cloud metadata address is refused without leaving the host.
    let e = g
        .tcp_connect("169.254.169.254:80".parse().unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    // The DNS address takes no TCP.
    let e = g.tcp_connect("10.0.2.3:53".parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(h.stats().denied, 3);
    // Nothing reached the host server.
    assert_eq!(
        server.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn forward_from_host_client_to_guest_server() {
    let mut cfg = NetConfig::default();
    cfg.forwards.push(Forward::tcp(0, 8080));
    cfg.forwards.push(Forward::tcp(0, 8081)); // nobody listens there
    let (h, g) = start(cfg);
    let host = h.forwards()[0].host;
    assert!(
        host.ip().is_loopback(),
        "forwards bind 127.0.0.1 by default"
    );
    let l = g.tcp_listen(8080, 4);

    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(host).unwrap();
        s.write_all(b"ping from host").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut r = Vec::new();
        s.read_to_end(&mut r).unwrap();
        r
    });
    let c = l.accept(Duration::from_secs(10)).unwrap();
    let remote = c.remote().unwrap();
    assert_eq!(remote.addr, smoltcp::wire::IpAddress::Ipv4(GW));
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping from host");
    c.write_all(b"pong from guest").unwrap();
    c.shutdown_write();
    assert_eq!(client.join().unwrap(), b"pong from guest");

    // A guest port that refuses: the host connection is closed cleanly.
    let mut s = TcpStream::connect(h.forwards()[1].host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn host_port_in_use_is_one_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cfg = NetConfig::default();
    cfg.forwards.push(Forward::tcp(port, 80));
    let err = spin_net::Network::start(cfg).unwrap_err();
    assert!(
        matches!(err, spin_net::NetError::PortInUse { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&port.to_string()) && msg.contains("in use"),
        "{msg}"
    );
}

#[test]
fn guest_not_reading_pushes_back_on_host() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (_h, g) = start(loopback_config());
    let _c = g.tcp_connect(via_gateway(port)).unwrap();
    let (mut s, _) = server.accept().unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0usize;
    // The guest never reads: the host's writes must stop succeeding after
    // the stack's and the kernel's buffers are full, not after 64 MB.
    while sent < 64 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                );
                break;
            }
        }
    }
    assert!(sent < 64 << 20, "no backpressure: {sent} bytes accepted");
}
