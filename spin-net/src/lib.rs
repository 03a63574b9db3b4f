//! A user-space network for containers: a smoltcp interface per container
//! fed with the guest's Ethernet frames, with
//!
//! - a gateway (10.0.2.2 by default) that answers ARP and ping;
//! - a DNS forwarder (10.0.2.3) that resolves A questions through the host's
//!   resolver (`getaddrinfo`, so `/etc/hosts` applies);
//! - NAT: each TCP connection and UDP flow of the guest is terminated in
//!   smoltcp and re-originated from a host socket (tokio), with backpressure
//!   both ways, half-close and resets carried over, idle UDP flows expired;
//! - port forwards: a host listener per [`Forward`], each accepted connection
//!   opened from the gateway to the guest's port;
//! - a [`Policy`] on destinations; denied attempts get a TCP reset or an ICMP
//!   "communication administratively prohibited" and are logged (`warn`).
//!
//! # Threading model
//!
//! [`Network::start`] spawns one thread running a current-thread tokio
//! runtime; [`Network::start_on`] spawns the stack onto a runtime the caller
//! gives. Either way the whole stack (smoltcp interface, NAT tables, every
//! host socket) is **one task**: nothing in it is shared except the two
//! bounded frame queues behind [`FrameEndpoint`].
//!
//! The emulator's device thread uses the [`FrameEndpoint`] synchronously:
//! [`FrameEndpoint::send_to_network`] queues a frame and wakes the task;
//! [`FrameEndpoint::try_recv_from_network`] takes a frame for the guest.
//! When the guest queue goes from empty to non-empty the task runs the
//! callback given to [`FrameEndpoint::set_notifier`] (and wakes
//! [`FrameEndpoint::wait_for_frames`]), so the emulator's `wait` can sleep on
//! its own condition variable or eventfd alongside its timer. When the guest
//! queue is full the stack stops sending (TCP keeps the data) until the guest
//! drains it below half.
//!
//! Only IPv4 is carried; IPv6 frames and IP fragments are dropped.

#![warn(missing_docs)]

mod config;
mod dns;
mod endpoint;
mod error;
mod packet;
mod policy;
mod stack;
#[cfg(feature = "test-util")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::{Forward, Limits, NetConfig, Protocol};
pub use endpoint::{FrameEndpoint, NetStats, Notifier};
pub use error::NetError;
pub use policy::{Decision, DenyReason, Ipv4Net, ParseNetError, Policy};

use endpoint::Shared;
use stack::{Bound, Stack};

/// Entry point: starts a container's network.
#[derive(Debug)]
pub struct Network;

/// A forward as bound on the host (with the real port when 0 was asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundForward {
    /// The forward as configured.
    pub forward: Forward,
    /// The host address actually bound.
    pub host: SocketAddr,
}

/// Controls a running network; dropping it stops the network.
pub struct NetworkHandle {
    shared: Arc<Shared>,
    forwards: Vec<BoundForward>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Network {
    /// Starts the network on its own thread (a current-thread tokio runtime).
    /// Forwards are bound before this returns: a host port in use is an error here.
    pub fn start(config: NetConfig) -> Result<(NetworkHandle, FrameEndpoint), NetError> {
        let (shared, bound, forwards, ep) = prepare(&config)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetError::Runtime)?;
        let stack = {
            let _g = rt.enter();
            Stack::new(config, shared.clone(), bound).map_err(NetError::Runtime)?
        };
        let thread = std::thread::Builder::new()
            .name("spin-net".into())
            .spawn(move || rt.block_on(stack))
            .map_err(NetError::Runtime)?;
        Ok((
            NetworkHandle {
                shared,
                forwards,
                thread: Some(thread),
            },
            ep,
        ))
    }

    /// Starts the network as a task on the given tokio runtime (which must
    /// have I/O and time drivers enabled).
    pub fn start_on(
        config: NetConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(NetworkHandle, FrameEndpoint), NetError> {
        let (shared, bound, forwards, ep) = prepare(&config)?;
        let stack = {
            let _g = runtime.enter();
            Stack::new(config, shared.clone(), bound).map_err(NetError::Runtime)?
        };
        runtime.spawn(stack);
        Ok((
            NetworkHandle {
                shared,
                forwards,
                thread: None,
            },
            ep,
        ))
    }
}

type Prepared = (Arc<Shared>, Bound, Vec<BoundForward>, FrameEndpoint);

fn prepare(config: &NetConfig) -> Result<Prepared, NetError> {
    config.validate()?;
    let mut bound = Bound {
        tcp: Vec::new(),
        udp: Vec::new(),
    };
    let mut forwards = Vec::new();
    for f in &config.forwards {
        let name = f.proto.name();
        let wrap = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                NetError::PortInUse {
                    proto: name,
                    addr: f.host,
                    source: e,
                }
            } else {
                NetError::Bind {
                    proto: name,
                    addr: f.host,
                    source: e,
                }
            }
        };
        let host = match f.proto {
            Protocol::Tcp => {
                let l = std::net::TcpListener::bind(f.host).map_err(wrap)?;
                let a = l.local_addr().map_err(wrap)?;
                bound.tcp.push((l, f.guest_port));
                a
            }
            Protocol::Udp => {
                let s = std::net::UdpSocket::bind(f.host).map_err(wrap)?;
                let a = s.local_addr().map_err(wrap)?;
                bound.udp.push((s, f.guest_port));
                a
            }
        };
        forwards.push(BoundForward { forward: *f, host });
    }
    let shared = Shared::new(config.limits.frame_queue, config.max_frame_len());
    let ep = FrameEndpoint {
        shared: shared.clone(),
        guest_mac: config.guest_mac,
        mtu: config.mtu,
    };
    Ok((shared, bound, forwards, ep))
}

impl NetworkHandle {
    /// The forwards as bound on the host, in configuration order.
    pub fn forwards(&self) -> &[BoundForward] {
        &self.forwards
    }

    /// A snapshot of the network's counters.
    pub fn stats(&self) -> NetStats {
        self.shared.stats()
    }

    /// Stops the network: host connections are reset, listeners closed, the
    /// endpoint refuses further frames. Waits for the network's own thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_stack();
        self.shared.notify_guest();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle")
            .field("forwards", &self.forwards)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for NetworkHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
