//! Many connections and large transfers, checked by hash.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use spin_net::{Forward, NetConfig};

const BIG: usize = 100 << 20;
const CHUNK: usize = 64 * 1024;

#[test]
fn two_hundred_concurrent_connections() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // Echo server: a thread per connection.
    std::thread::spawn(move || {
        for s in server.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut buf = [0; 256];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let (h, g) = start(loopback_config());
    let conns: Vec<_> = (0..200)
        .map(|i| {
            g.tcp_connect(via_gateway(port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // All 200 are open at once.
    assert_eq!(h.stats().tcp_connections, 200);
    for (i, c) in conns.iter().enumerate() {
        c.write_all(format!("message number {i:03}").as_bytes())
            .unwrap();
    }
    for (i, c) in conns.iter().enumerate() {
        let want = format!("message number {i:03}");
        let mut got = Vec::new();
        let mut buf = [0; 64];
        while got.len() < want.len() {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "connection {i} closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, want.as_bytes(), "connection {i}");
    }
    for c in &conns {
        c.shutdown_write();
    }
    for c in &conns {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    // Closed connections are forgotten.
    let t = std::time::Instant::now();
    while h.stats().tcp_connections != 0 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(h.stats().tcp_connections, 0);
}

/// Writes `BIG` pseudo-random bytes with `write`, returns their hash.
fn produce(seed: u64, mut write: impl FnMut(&[u8])) -> [u8; 16] {
    let mut rng = Bytes::new(seed);
    let mut hash = StreamHash::default();
    let mut buf = vec![0; CHUNK];
    let mut left = BIG;
    while left > 0 {
        let n = left.min(CHUNK);
        rng.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        write(&buf[..n]);
        left -= n;
    }
    hash.finish()
}

#[test]
fn hundred_megabytes_each_way_through_nat() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let host = std::thread::spawn(move || {
        // Guest → host: hash what arrives, send the hash back.
        let (mut s, _) = server.accept().unwrap();
        let mut hash = StreamHash::default();
        let mut buf = vec![0; CHUNK];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            hash.update(&buf[..n]);
        }
        assert_eq!(total, BIG);
        let d = hash.finish();
        s.write_all(&d).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Host → guest.
        let (mut s, _) = server.accept().unwrap();
        let sent = produce(2, |b| s.write_all(b).unwrap());
        s.shutdown(Shutdown::Write).unwrap();
        sent
    });
    let (_h, g) = start(loopback_config());
    let c = g.tcp_connect(via_gateway(port)).unwrap();
    let sent = produce(1, |b| c.write_all(b).unwrap());
    c.shutdown_write();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, sent, "hash of guest → host transfer");

    let c = g.tcp_connect(via_gateway(port)).unwrap();
    let mut hash = StreamHash::default();
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        hash.update(&buf[..n]);
    }
    assert_eq!(total, BIG);
    let got = hash.finish();
    assert_eq!(got, host.join().unwrap(), "hash of host → guest transfer");
}

#[test]
fn hundred_megabytes_each_way_through_forward() {
    let mut cfg = NetConfig::default();
    cfg.forwards.push(Forward::tcp(0, 9000));
    let (h, g) = start(cfg);
    let addr = h.forwards()[0].host;
    let l = g.tcp_listen(9000, 2);
    let host = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let sent = produce(3, |b| s.write_all(b).unwrap());
        s.shutdown(Shutdown::Write).unwrap();
        let mut hash = StreamHash::default();
        let mut buf = vec![0; CHUNK];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            hash.update(&buf[..n]);
        }
        assert_eq!(total, BIG);
        let got = hash.finish();
        (sent, got)
    });
    let c = l.accept(Duration::from_secs(20)).unwrap();
    let mut hash = StreamHash::default();
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        hash.update(&buf[..n]);
    }
    assert_eq!(total, BIG);
    let got_in_guest = hash.finish();
    let sent_by_guest = produce(4, |b| c.write_all(b).unwrap());
    c.shutdown_write();
    let (sent_by_host, got_in_host) = host.join().unwrap();
    assert_eq!(got_in_guest, sent_by_host, "host → guest");
    assert_eq!(got_in_host, sent_by_guest, "guest → host");
}
