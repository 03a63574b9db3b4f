//! Network throughput: TCP through spin-net's NAT and through a port forward
//! (a simulated guest, a smoltcp interface wired frame by frame to the
//! stack), side by side with plain loopback TCP in the same run.
//!
//! `upload` is guest → host (or client → server for loopback), `download`
//! is host → guest.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use spin_net::testing::{GuestSim, GuestTcp};
use spin_net::{Forward, NetConfig, Network, NetworkHandle, Policy};

/// Bytes per transfer.
const N: usize = 32 << 20;
const CHUNK: usize = 64 * 1024;
const GUEST_PORT: u16 = 9000;

/// A host server: `sink` connections are read to EOF then get one byte back;
/// other connections get `N` bytes then EOF. The first byte a client sends
/// says which: b's' sink, b'f' feed.
fn host_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut kind = [0u8; 1];
                if s.read_exact(&mut kind).is_err() {
                    return;
                }
                if kind[0] == b's' {
                    sink(&mut s);
                } else {
                    feed(&mut s);
                }
            });
        }
    });
    addr
}

fn sink(s: &mut TcpStream) {
    let mut buf = vec![0; CHUNK];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let _ = s.write_all(b"k");
}

fn feed(s: &mut TcpStream) {
    let buf = vec![0x5a; CHUNK];
    let mut left = N;
    while left > 0 {
        let n = left.min(CHUNK);
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
        left -= n;
    }
    let _ = s.shutdown(Shutdown::Write);
}

fn upload_std(s: &mut TcpStream) {
    s.write_all(b"s").unwrap();
    let buf = vec![0xa5; CHUNK];
    let mut left = N;
    while left > 0 {
        let n = left.min(CHUNK);
        s.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut k = [0; 1];
    s.read_exact(&mut k).unwrap();
}

fn download_std(s: &mut TcpStream) {
    s.write_all(b"f").unwrap();
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, N);
}

fn upload_guest(c: &GuestTcp) {
    c.write_all(b"s").unwrap();
    let buf = vec![0xa5; CHUNK];
    let mut left = N;
    while left > 0 {
        let n = left.min(CHUNK);
        c.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    c.shutdown_write();
    let mut k = [0; 1];
    assert_eq!(c.read(&mut k).unwrap(), 1);
}

fn download_guest(c: &GuestTcp) {
    c.write_all(b"f").unwrap();
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, N);
}

struct Setup {
    _net: NetworkHandle,
    guest: Arc<GuestSim>,
    forward: SocketAddr,
}

fn setup(mtu: usize) -> Setup {
    let mut cfg = NetConfig {
        policy: Policy::with_host_loopback(),
        mtu,
        ..NetConfig::default()
    };
    cfg.forwards.push(Forward::tcp(0, GUEST_PORT));
    let (net, ep) = Network::start(cfg).unwrap();
    let forward = net.forwards()[0].host;
    let guest = Arc::new(GuestSim::new(ep));
    // The guest's side of forwarded connections: the same protocol as the
    // host server, served by one thread per connection.
    let g = guest.clone();
    std::thread::spawn(move || {
        let l = g.tcp_listen(GUEST_PORT, 4);
        loop {
            let Ok(c) = l.accept(Duration::from_secs(3600)) else {
                return;
            };
            std::thread::spawn(move || {
                let mut kind = [0u8; 1];
                if c.read(&mut kind).unwrap_or(0) == 0 {
                    return;
                }
                let mut buf = vec![0; CHUNK];
                if kind[0] == b's' {
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = c.write_all(b"k");
                    c.shutdown_write();
                } else {
                    let buf = vec![0x5a; CHUNK];
                    let mut left = N;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        if c.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                    c.shutdown_write();
                }
            });
        }
    });
    Setup {
        _net: net,
        guest,
        forward,
    }
}

/// Every sample's bytes and time by benchmark, for the summary table.
static SAMPLES: Mutex<Vec<(String, f64, Duration)>> = Mutex::new(Vec::new());

/// Runs `f` `iters` times (one transfer of `N` bytes each) and records the
/// sample's throughput under `name`.
fn timed(name: &str, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let t = start.elapsed();
    let bytes = iters as f64 * N as f64;
    SAMPLES.lock().unwrap().push((name.to_string(), bytes, t));
    t
}

/// Throughput over every transfer recorded under `name` (warm-up
/// included): all bytes over all time, in bit/s, so that stalls count.
fn mean(name: &str) -> Option<f64> {
    let (mut bytes, mut time) = (0.0, 0.0);
    for (n, b, t) in SAMPLES.lock().unwrap().iter() {
        if n == name {
            bytes += b;
            time += t.as_secs_f64();
        }
    }
    (time > 0.0).then(|| bytes * 8.0 / time)
}

/// Prints throughputs, each against loopback TCP in the same
/// direction measured in the same run.
fn summary() {
    println!();
    println!(
        "{:<28} {:>12} {:>12}",
        "net (all bytes / all time)", "Gbit/s", "vs loopback"
    );
    for mtu in [1500usize, 65520] {
        for (bench, lo) in [
            ("loopback_upload", "loopback_upload"),
            ("loopback_download", "loopback_download"),
            ("nat_upload", "loopback_upload"),
            ("nat_download", "loopback_download"),
            ("forward_upload", "loopback_upload"),
            ("forward_download", "loopback_download"),
        ] {
            let name = format!("mtu{mtu}/{bench}");
            let Some(b) = mean(&name) else { continue };
            let ratio = mean(&format!("mtu1500/{lo}"))
                .map(|l| format!("{:.0}%", 100.0 * b / l))
                .unwrap_or_default();
            println!("{name:<28} {:>12.2} {ratio:>12}", b / 1e9);
        }
    }
}

fn bench_net(c: &mut Criterion) {
    let server = host_server();
    let SocketAddr::V4(server4) = server else {
        unreachable!()
    };
    let via_gw = SocketAddrV4::new("10.0.2.2".parse().unwrap(), server4.port());

    for mtu in [1500usize, 65520] {
        let s = setup(mtu);
        let mut g = c.benchmark_group(format!("net/mtu{mtu}"));
        g.throughput(Throughput::Bytes(N as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(6));

        let id = |b: &str| format!("mtu{mtu}/{b}");
        if mtu == 1500 {
            let name = id("loopback_upload");
            g.bench_function("loopback_upload", |b| {
                b.iter_custom(|n| {
                    timed(&name, n, || {
                        upload_std(&mut TcpStream::connect(server).unwrap())
                    })
                })
            });
            let name = id("loopback_download");
            g.bench_function("loopback_download", |b| {
                b.iter_custom(|n| {
                    timed(&name, n, || {
                        download_std(&mut TcpStream::connect(server).unwrap())
                    })
                })
            });
        }
        let name = id("nat_upload");
        g.bench_function("nat_upload", |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    upload_guest(&s.guest.tcp_connect(via_gw).unwrap())
                })
            })
        });
        let name = id("nat_download");
        g.bench_function("nat_download", |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    download_guest(&s.guest.tcp_connect(via_gw).unwrap())
                })
            })
        });
        // Through the forward: the host client talks to the guest's server.
        // "download" is host → guest (the host client uploads to it).
        let name = id("forward_download");
        g.bench_function("forward_download", |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    upload_std(&mut TcpStream::connect(s.forward).unwrap())
                })
            })
        });
        let name = id("forward_upload");
        g.bench_function("forward_upload", |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    download_std(&mut TcpStream::connect(s.forward).unwrap())
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_net);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
