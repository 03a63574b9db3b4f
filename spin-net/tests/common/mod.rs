//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use spin_net::testing::GuestSim;
use spin_net::{NetConfig, Network, NetworkHandle, Policy};

/// The gateway as the guest sees it.
pub const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS forwarder.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// A configuration whose policy lets the guest reach the host's loopback.
pub fn loopback_config() -> NetConfig {
    NetConfig {
        policy: Policy::with_host_loopback(),
        ..NetConfig::default()
    }
}

/// Starts a network and a simulated guest on it.
pub fn start(cfg: NetConfig) -> (NetworkHandle, GuestSim) {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("spin_net=info")
        .try_init();
    let (h, ep) = Network::start(cfg).expect("start network");
    (h, GuestSim::new(ep))
}

/// The guest-side address of a host loopback port (through the gateway).
pub fn via_gateway(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(GW, port)
}

/// Deterministic pseudo-random bytes (xorshift), for payloads.
pub struct Bytes(u64);

impl Bytes {
    /// A generator with a seed.
    pub fn new(seed: u64) -> Self {
        Bytes(seed | 1)
    }
    /// Fills `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
    /// The next number.
    pub fn next(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// An order-sensitive 64-bit hash of a byte stream (a multiply-xorshift
/// over 8-byte words; fast enough in unoptimised test builds).
#[derive(Clone)]
pub struct StreamHash {
    h: u64,
    pending: Vec<u8>,
    len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0x6a09_e667_f3bc_c908,
            pending: Vec::with_capacity(8),
            len: 0,
        }
    }
}

impl StreamHash {
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.h ^= self.h >> 29;
    }

    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !self.pending.is_empty() && !data.is_empty() {
            self.pending.push(data[0]);
            data = &data[1..];
            if self.pending.len() == 8 {
                let w = u64::from_le_bytes(self.pending[..].try_into().unwrap());
                self.pending.clear();
                self.word(w);
            }
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// The hash of everything added, with the length folded in.
    pub fn finish(&self) -> [u8; 16] {
        let mut s = self.clone();
        let mut last = [0u8; 8];
        last[..s.pending.len()].copy_from_slice(&s.pending);
        s.word(u64::from_le_bytes(last));
        s.word(s.len);
        let mut out = [0; 16];
        out[..8].copy_from_slice(&s.h.to_le_bytes());
        out[8..].copy_from_slice(&s.len.to_le_bytes());
        out
    }
}
