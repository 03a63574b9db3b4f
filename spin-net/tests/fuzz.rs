//! Structured fuzzing of the frame input with proptest: Ethernet, ARP,
//! IPv4, TCP, UDP and ICMP frames built from generated fields (option
//! garbage, bogus lengths, fragments, spoofed addresses, SYN floods), then
//! mutated (bits flipped, bytes set, cut, padded; checksums fixed or not).
//!
//! Each case gets a fresh network (so that a failure shrinks to the frames
//! that cause it) with small caps, and checks that the stack is still alive
//! (it answers an ARP request queued after the case's frames), that it held
//! no more connections or flows than its caps, and that the guest's queue
//! never held more frames than its bound.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use spin_net::{FrameEndpoint, NetConfig, Network, NetworkHandle, Policy};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

const MAX_TCP: usize = 16;
const MAX_UDP: usize = 8;
const QUEUE: usize = 128;

/// One's-complement sum for Internet checksums.
fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [b] = chunks.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A transport payload as generated.
#[derive(Debug, Clone)]
enum L4 {
    Tcp {
        src: u16,
        dst: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        win: u16,
        /// Raw option bytes (padded to a multiple of 4).
        options: Vec<u8>,
        payload: Vec<u8>,
    },
    Udp {
        src: u16,
        dst: u16,
        /// A length field other than the real one.
        bogus_len: Option<u16>,
        payload: Vec<u8>,
    },
    Icmp {
        ty: u8,
        code: u8,
        rest: Vec<u8>,
    },
    Other {
        proto: u8,
        payload: Vec<u8>,
    },
}

/// A frame as generated, before mutation.
#[derive(Debug, Clone)]
enum Spec {
    Ip {
        dst: Ipv4Addr,
        /// Another source address than the guest's.
        spoof: Option<Ipv4Addr>,
        ttl: u8,
        /// More fragments, fragment offset.
        frag: (bool, u16),
        /// IP options (raw; the header length follows them).
        options: Vec<u8>,
        /// A total length other than the real one.
        bogus_len: Option<u16>,
        l4: L4,
    },
    Arp {
        op: u16,
        sender: Ipv4Addr,
        target: Ipv4Addr,
        spoof_mac: bool,
    },
    Raw {
        ethertype: u16,
        bytes: Vec<u8>,
    },
}

/// A change to the built frame.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Cut(usize),
    Pad(u8, u8),
}

#[derive(Debug, Clone)]
struct Frame {
    spec: Spec,
    mutations: Vec<Mutation>,
    /// Frame not addressed to the gateway's MAC, or from another MAC.
    wrong_dst_mac: bool,
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + body.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn build_l4(l4: &L4, src: Ipv4Addr, dst: Ipv4Addr) -> (u8, Vec<u8>) {
    let pseudo = |proto: u8, len: usize| {
        let mut p = Vec::with_capacity(12);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.push(0);
        p.push(proto);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p
    };
    match l4 {
        L4::Tcp {
            src: sp,
            dst: dp,
            flags,
            seq,
            ack,
            win,
            options,
            payload,
        } => {
            let mut opts = options.clone();
            opts.truncate(40);
            while opts.len() % 4 != 0 {
                opts.push(0);
            }
            let hlen = 20 + opts.len();
            let mut t = Vec::with_capacity(hlen + payload.len());
            t.extend_from_slice(&sp.to_be_bytes());
            t.extend_from_slice(&dp.to_be_bytes());
            t.extend_from_slice(&seq.to_be_bytes());
            t.extend_from_slice(&ack.to_be_bytes());
            t.push(((hlen / 4) as u8) << 4);
            t.push(*flags);
            t.extend_from_slice(&win.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 0]);
            t.extend_from_slice(&opts);
            t.extend_from_slice(payload);
            let c = csum(&[&pseudo(6, t.len()), &t]);
            t[16..18].copy_from_slice(&c.to_be_bytes());
            (6, t)
        }
        L4::Udp {
            src: sp,
            dst: dp,
            bogus_len,
            payload,
        } => {
            let len = 8 + payload.len();
            let mut u = Vec::with_capacity(len);
            u.extend_from_slice(&sp.to_be_bytes());
            u.extend_from_slice(&dp.to_be_bytes());
            u.extend_from_slice(&(len as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(payload);
            let c = csum(&[&pseudo(17, len), &u]);
            u[6..8].copy_from_slice(&c.to_be_bytes());
            if let Some(l) = bogus_len {
                u[4..6].copy_from_slice(&l.to_be_bytes());
            }
            (17, u)
        }
        L4::Icmp { ty, code, rest } => {
            let mut i = vec![*ty, *code, 0, 0];
            i.extend_from_slice(rest);
            let c = csum(&[&i]);
            i[2..4].copy_from_slice(&c.to_be_bytes());
            (1, i)
        }
        L4::Other { proto, payload } => (*proto, payload.clone()),
    }
}

fn build(f: &Frame) -> Vec<u8> {
    let (dst_mac, src_mac) = if f.wrong_dst_mac {
        ([0x02, 1, 2, 3, 4, 5], GUEST_MAC)
    } else {
        (GW_MAC, GUEST_MAC)
    };
    let mut frame = match &f.spec {
        Spec::Ip {
            dst,
            spoof,
            ttl,
            frag,
            options,
            bogus_len,
            l4,
        } => {
            let src = spoof.unwrap_or(GUEST);
            let (proto, body) = build_l4(l4, src, *dst);
            let mut opts = options.clone();
            opts.truncate(40);
            while opts.len() % 4 != 0 {
                opts.push(1);
            }
            let hlen = 20 + opts.len();
            let total = bogus_len.unwrap_or((hlen + body.len()) as u16);
            let mut ip = Vec::with_capacity(hlen + body.len());
            ip.push(0x40 | (hlen / 4) as u8);
            ip.push(0);
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            let ff = (u16::from(frag.0) << 13) | (frag.1 & 0x1fff);
            ip.extend_from_slice(&ff.to_be_bytes());
            ip.push(*ttl);
            ip.push(proto);
            ip.extend_from_slice(&[0, 0]);
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            ip.extend_from_slice(&opts);
            let c = csum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(&body);
            ethernet(dst_mac, src_mac, 0x0800, &ip)
        }
        Spec::Arp {
            op,
            sender,
            target,
            spoof_mac,
        } => {
            let sha = if *spoof_mac {
                [0x02, 9, 9, 9, 9, 9]
            } else {
                GUEST_MAC
            };
            let mut a = vec![0, 1, 8, 0, 6, 4];
            a.extend_from_slice(&op.to_be_bytes());
            a.extend_from_slice(&sha);
            a.extend_from_slice(&sender.octets());
            a.extend_from_slice(&[0; 6]);
            a.extend_from_slice(&target.octets());
            ethernet([0xff; 6], src_mac, 0x0806, &a)
        }
        Spec::Raw { ethertype, bytes } => ethernet(dst_mac, src_mac, *ethertype, bytes),
    };
    for m in &f.mutations {
        if frame.is_empty() {
            break;
        }
        let n = frame.len();
        match *m {
            Mutation::Flip(at, bit) => frame[at % n] ^= 1 << (bit % 8),
            Mutation::Set(at, v) => frame[at % n] = v,
            Mutation::Cut(at) => frame.truncate(at % n),
            Mutation::Pad(k, v) => frame.extend(std::iter::repeat_n(v, usize::from(k))),
        }
    }
    frame
}

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        4 => Just(GW),
        2 => Just(DNS),
        1 => Just(GUEST),
        1 => Just(Ipv4Addr::new(10, 0, 2, 255)),
        1 => Just(Ipv4Addr::new(10, 0, 2, 77)),
        1 => Just(Ipv4Addr::BROADCAST),
        1 => Just(Ipv4Addr::new(224, 0, 0, 251)),
        1 => Just(Ipv4Addr::new(192, 0, 2, 1)),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

/// Ports: the test's own loopback listeners, DNS, and anything.
fn port(tcp_port: u16, udp_port: u16) -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(tcp_port),
        2 => Just(udp_port),
        1 => Just(53u16),
        1 => Just(0u16),
        2 => any::<u16>(),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// TCP options: well-formed ones, truncated ones and garbage.
fn tcp_options() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![2, 4, 0x05, 0xb4]),
        Just(vec![2, 4, 0x05, 0xb4, 1, 3, 3, 14, 4, 2]),
        Just(vec![3, 3, 200]),
        Just(vec![2, 0]),
        Just(vec![5, 34, 0, 0, 0, 0]),
        Just(vec![8, 10, 0, 0, 0, 1, 0, 0, 0, 0]),
        bytes(40),
    ]
}

fn l4(tcp_port: u16, udp_port: u16) -> impl Strategy<Value = L4> {
    let p = move || port(tcp_port, udp_port);
    prop_oneof![
        5 => (
            p(),
            p(),
            prop_oneof![Just(0x02u8), Just(0x10), Just(0x12), Just(0x11), Just(0x04), Just(0x18), any::<u8>()],
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            tcp_options(),
            bytes(64),
        )
            .prop_map(|(src, dst, flags, seq, ack, win, options, payload)| L4::Tcp {
                src,
                dst,
                flags,
                seq,
                ack,
                win,
                options,
                payload
            }),
        3 => (p(), p(), prop::option::weighted(0.2, any::<u16>()), bytes(64))
            .prop_map(|(src, dst, bogus_len, payload)| L4::Udp {
                src,
                dst,
                bogus_len,
                payload
            }),
        2 => (prop_oneof![Just(8u8), Just(0), Just(3), Just(11), any::<u8>()], any::<u8>(), bytes(64))
            .prop_map(|(ty, code, rest)| L4::Icmp { ty, code, rest }),
        1 => (any::<u8>(), bytes(32)).prop_map(|(proto, payload)| L4::Other { proto, payload }),
    ]
}

fn spec(tcp_port: u16, udp_port: u16) -> impl Strategy<Value = Spec> {
    prop_oneof![
        8 => (
            addr(),
            prop::option::weighted(0.1, addr()),
            any::<u8>(),
            prop_oneof![8 => Just((false, 0u16)), 1 => (any::<bool>(), any::<u16>())],
            prop_oneof![8 => Just(vec![]), 1 => bytes(44)],
            prop::option::weighted(0.1, any::<u16>()),
            l4(tcp_port, udp_port),
        )
            .prop_map(|(dst, spoof, ttl, frag, options, bogus_len, l4)| Spec::Ip {
                dst,
                spoof,
                ttl,
                frag,
                options,
                bogus_len,
                l4
            }),
        1 => (
            prop_oneof![Just(1u16), Just(2), any::<u16>()],
            prop_oneof![4 => Just(GUEST), 1 => addr()],
            addr(),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(op, sender, target, spoof_mac)| Spec::Arp {
                op,
                sender,
                target,
                spoof_mac
            }),
        1 => (
            prop_oneof![Just(0x86ddu16), Just(0x0800), Just(0x0806), any::<u16>()],
            bytes(100),
        )
            .prop_map(|(ethertype, bytes)| Spec::Raw { ethertype, bytes }),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, v)| Mutation::Set(a, v)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Mutation::Pad(k, v)),
    ]
}

fn frame(tcp_port: u16, udp_port: u16) -> impl Strategy<Value = Frame> {
    (
        spec(tcp_port, udp_port),
        prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(mutation(), 1..4)],
        prop::bool::weighted(0.05),
    )
        .prop_map(|(spec, mutations, wrong_dst_mac)| Frame {
            spec,
            mutations,
            wrong_dst_mac,
        })
}

/// A case: generated frames, then optionally a SYN flood from many ports.
#[derive(Debug, Clone)]
struct Case {
    frames: Vec<Frame>,
    flood: u16,
}

fn case(tcp_port: u16, udp_port: u16) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(frame(tcp_port, udp_port), 1..40),
        prop_oneof![4 => Just(0u16), 1 => 1..200u16],
    )
        .prop_map(|(frames, flood)| Case { frames, flood })
}

fn flood_syn(i: u16, port: u16) -> Vec<u8> {
    build(&Frame {
        spec: Spec::Ip {
            dst: GW,
            spoof: None,
            ttl: 64,
            frag: (false, 0),
            options: vec![],
            bogus_len: None,
            l4: L4::Tcp {
                src: 30000 + i,
                dst: port,
                flags: 0x02,
                seq: 1000,
                ack: 0,
                win: 64000,
                options: vec![2, 4, 0x05, 0xb4],
                payload: vec![],
            },
        },
        mutations: vec![],
        wrong_dst_mac: false,
    })
}

fn arp_request() -> Vec<u8> {
    build(&Frame {
        spec: Spec::Arp {
            op: 1,
            sender: GUEST,
            target: GW,
            spoof_mac: false,
        },
        mutations: vec![],
        wrong_dst_mac: false,
    })
}

fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == GW.octets()
}

/// Takes the frames waiting for the guest; returns how many there were and
/// whether one was the gateway's ARP reply.
fn drain(ep: &FrameEndpoint, buf: &mut [u8]) -> (usize, bool) {
    let (mut n, mut arp) = (0, false);
    while let Some(len) = ep.try_recv_from_network(buf) {
        n += 1;
        arp |= is_arp_reply(&buf[..len]);
    }
    (n, arp)
}

fn config() -> NetConfig {
    let mut cfg = NetConfig {
        // Only the host's loopback, through the gateway.
        policy: Policy::with_host_loopback(),
        dns_forwarder: false,
        ..NetConfig::default()
    };
    cfg.limits.max_tcp_connections = MAX_TCP;
    cfg.limits.max_udp_flows = MAX_UDP;
    cfg.limits.frame_queue = QUEUE;
    cfg.limits.connect_timeout = Duration::from_secs(2);
    cfg.limits.handshake_timeout = Duration::from_secs(2);
    cfg
}

/// Runs one case on a fresh network; Err says what went wrong.
fn run_case(c: &Case, tcp_port: u16) -> Result<(), String> {
    let (h, ep): (NetworkHandle, FrameEndpoint) =
        Network::start(config()).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1514];
    let mut most_tcp = 0;
    let mut most_udp = 0;
    let mut check = |h: &NetworkHandle| -> Result<(), String> {
        let s = h.stats();
        most_tcp = most_tcp.max(s.tcp_connections);
        most_udp = most_udp.max(s.udp_flows);
        if most_tcp > MAX_TCP as u64
            || most_udp > MAX_UDP as u64
            || s.queued_to_guest > QUEUE as u64
            || s.queued_to_network > QUEUE as u64
        {
            return Err(format!("over the caps: {s:?}"));
        }
        Ok(())
    };
    for (i, f) in c.frames.iter().enumerate() {
        ep.send_to_network(&build(f));
        if i % 8 == 7 {
            check(&h)?;
            drain(&ep, &mut buf);
        }
    }
    for i in 0..c.flood {
        ep.send_to_network(&flood_syn(i, tcp_port));
        if i % 16 == 15 {
            check(&h)?;
            drain(&ep, &mut buf);
        }
    }
    // Alive: the gateway answers an ARP request queued after everything
    // (asked again now and then, as a guest would: a reply may be dropped
    // when the guest's queue is full).
    let start = Instant::now();
    let mut asked = ep.send_to_network(&arp_request());
    let mut last_ask = Instant::now();
    loop {
        check(&h)?;
        let (_, arp) = drain(&ep, &mut buf);
        if arp {
            break;
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "no ARP reply: the stack is dead or stuck ({:?})",
                h.stats()
            ));
        }
        if !asked || last_ask.elapsed() > Duration::from_millis(100) {
            asked = ep.send_to_network(&arp_request());
            last_ask = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    h.shutdown();
    Ok(())
}

#[test]
fn structured_frames_never_break_the_stack() {
    // Loopback peers for the NAT paths: a listener that accepts and drops,
    // and a UDP socket that takes whatever comes.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in tcp.incoming() {
            drop(s);
        }
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while udp.recv_from(&mut b).is_ok() {}
    });
    let cases: u32 = std::env::var("SPIN_NET_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&case(tcp_port, udp_port), |c| {
        run_case(&c, tcp_port).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{cases} cases in {:?}", started.elapsed());
}
