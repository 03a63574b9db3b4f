//! A simulated guest for tests and benchmarks: a second smoltcp interface
//! wired to a [`FrameEndpoint`] frame by frame, driven by its own thread,
//! with small blocking socket wrappers.
//!
//! Only built with the `test-util` feature.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint,
};

use crate::FrameEndpoint;

/// How long blocking calls wait without progress before failing.
const STALL: Duration = Duration::from_secs(20);

/// Addresses and buffer sizes of the simulated guest.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// The guest's address (10.0.2.15).
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet (24).
    pub prefix: u8,
    /// The default gateway (10.0.2.2).
    pub gateway: Ipv4Addr,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// Buffer size of each TCP socket, both directions.
    pub tcp_buffer: usize,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            ip: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            tcp_buffer: 256 * 1024,
        }
    }
}

struct GuestDevice {
    ep: FrameEndpoint,
    buf: Vec<u8>,
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a>(&'a FrameEndpoint);

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut r = None;
        let mut f = Some(f);
        self.0
            .send_to_network_with(len, |b| r = Some((f.take().unwrap())(b)));
        match r {
            Some(r) => r,
            // Dropped before being written (queue full): smoltcp still
            // needs its result, as from a frame lost on the wire.
            None => (f.take().unwrap())(&mut vec![0; len]),
        }
    }
}

impl Device for GuestDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let n = self.ep.try_recv_from_network(&mut self.buf)?;
        Some((Rx(&self.buf[..n]), Tx(&self.ep)))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        Some(Tx(&self.ep))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.ep.mtu() + 14;
        c
    }
}

struct State {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: GuestDevice,
    epoch: StdInstant,
    /// Closed by their owner: forgotten once the connection is over (as a
    /// kernel frees a closed socket).
    orphans: Vec<SocketHandle>,
}

impl State {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Polls the interface; returns when to poll again at the latest and
    /// whether anything happened.
    fn poll(&mut self) -> (Option<Duration>, bool) {
        let now = self.now();
        let mut progress =
            self.iface.poll(now, &mut self.device, &mut self.sockets) != PollResult::None;
        for _ in 0..1024 {
            let now = self.now();
            if self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
                == PollResult::None
            {
                break;
            }
            progress = true;
        }
        if !self.orphans.is_empty() {
            let sockets = &mut self.sockets;
            self.orphans.retain(|&h| {
                let done = matches!(
                    sockets.get::<tcp::Socket>(h).state(),
                    tcp::State::Closed | tcp::State::TimeWait
                );
                if done {
                    sockets.remove(h);
                }
                !done
            });
        }
        let now = self.now();
        let delay = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        (delay, progress)
    }
}

struct Inner {
    state: Mutex<State>,
    /// Signalled after a poll that did something.
    polled: Condvar,
    kick: Mutex<bool>,
    kick_cv: Condvar,
    stop: AtomicBool,
    next_port: AtomicU16,
    cfg: GuestConfig,
}

impl Inner {
    /// Asks the guest thread to poll (once, however often it is asked
    /// before it gets to it).
    fn kick(&self) {
        let mut k = self.kick.lock().unwrap();
        if !*k {
            *k = true;
            self.kick_cv.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Waits for a poll that does something (or a short time). Callers
    /// kick the guest thread themselves after changing a socket.
    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.polled
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap()
            .0
    }

    fn port(&self) -> u16 {
        let p = self.next_port.fetch_add(1, Ordering::Relaxed);
        if p < 20000 {
            self.next_port.store(20001, Ordering::Relaxed);
            20000
        } else {
            p
        }
    }
}

/// A simulated guest: a smoltcp interface on the guest side of an endpoint.
pub struct GuestSim {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for GuestSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestSim")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl GuestSim {
    /// Starts a guest with the default addresses on `ep`.
    pub fn new(ep: FrameEndpoint) -> Self {
        Self::with_config(ep, GuestConfig::default())
    }

    /// Starts a guest with the given addresses on `ep`.
    pub fn with_config(ep: FrameEndpoint, cfg: GuestConfig) -> Self {
        let mut device = GuestDevice {
            buf: vec![0; ep.mtu() + 14],
            ep: ep.clone(),
        };
        let mut icfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.mac)));
        icfg.random_seed = 0x5eed_u64 ^ u64::from(u32::from(cfg.ip));
        let mut iface = Interface::new(icfg, &mut device, Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix));
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(cfg.gateway)
            .expect("route");
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                iface,
                sockets: SocketSet::new(Vec::new()),
                device,
                epoch: StdInstant::now(),
                orphans: Vec::new(),
            }),
            polled: Condvar::new(),
            kick: Mutex::new(false),
            kick_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            next_port: AtomicU16::new(20000),
            cfg,
        });
        let weak = Arc::downgrade(&inner);
        ep.set_notifier(move || {
            if let Some(i) = weak.upgrade() {
                i.kick();
            }
        });
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name("guest-sim".into())
            .spawn(move || {
                while !i2.stop.load(Ordering::Acquire) {
                    let (delay, progress) = {
                        let mut g = i2.lock();
                        g.poll()
                    };
                    if progress {
                        i2.polled.notify_all();
                    }
                    let wait = delay
                        .unwrap_or(Duration::from_millis(50))
                        .min(Duration::from_millis(50));
                    let mut k = i2.kick.lock().unwrap();
                    if !*k && !wait.is_zero() {
                        k = i2.kick_cv.wait_timeout(k, wait).unwrap().0;
                    }
                    *k = false;
                }
            })
            .expect("spawn guest thread");
        GuestSim {
            inner,
            thread: Some(thread),
        }
    }

    /// Opens a TCP connection to `addr` and waits until it is established.
    pub fn tcp_connect(&self, addr: SocketAddrV4) -> io::Result<GuestTcp> {
        let i = &self.inner;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; i.cfg.tcp_buffer]),
            tcp::SocketBuffer::new(vec![0; i.cfg.tcp_buffer]),
        );
        s.set_nagle_enabled(false);
        let h = {
            let mut g = i.lock();
            let g = &mut *g;
            s.connect(
                g.iface.context(),
                (IpAddress::Ipv4(*addr.ip()), addr.port()),
                i.port(),
            )
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
            g.sockets.add(s)
        };
        // Dropped on failure, which frees the socket.
        let t = GuestTcp {
            inner: i.clone(),
            h,
        };
        i.kick();
        let start = StdInstant::now();
        let mut g = i.lock();
        let r = loop {
            match g.sockets.get::<tcp::Socket>(h).state() {
                tcp::State::SynSent | tcp::State::SynReceived => {}
                tcp::State::Closed => {
                    break Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connection refused",
                    ));
                }
                _ => break Ok(()),
            }
            if start.elapsed() > STALL {
                break Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
            g = i.wait(g);
        };
        drop(g);
        r.map(|()| t)
    }

    /// Listens on a TCP port with a backlog of `backlog` sockets.
    pub fn tcp_listen(&self, port: u16, backlog: usize) -> GuestListener {
        let l = GuestListener {
            inner: self.inner.clone(),
            port,
            sockets: Mutex::new(Vec::new()),
        };
        for _ in 0..backlog.max(1) {
            l.add_socket();
        }
        l
    }

    /// Binds a UDP socket on `port`.
    pub fn udp_bind(&self, port: u16) -> GuestUdp {
        let s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 256 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 256 * 1024]),
        );
        let mut s = s;
        s.bind(port).expect("bind");
        let h = self.inner.lock().sockets.add(s);
        GuestUdp {
            inner: self.inner.clone(),
            h,
        }
    }

    /// Sends an ICMP echo request to `addr`; returns whether the reply came in time.
    pub fn ping(&self, addr: Ipv4Addr, timeout: Duration) -> bool {
        let i = &self.inner;
        let mut s = icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        );
        let ident = 0x1234;
        s.bind(icmp::Endpoint::Ident(ident)).expect("bind icmp");
        let h = i.lock().sockets.add(s);
        let data = b"spin-net ping";
        let req = Icmpv4Repr::EchoRequest {
            ident,
            seq_no: 1,
            data,
        };
        {
            let mut g = i.lock();
            let s = g.sockets.get_mut::<icmp::Socket>(h);
            let buf = s
                .send(req.buffer_len(), IpAddress::Ipv4(addr))
                .expect("icmp send");
            let mut pkt = Icmpv4Packet::new_unchecked(buf);
            req.emit(&mut pkt, &Default::default());
        }
        i.kick();
        let start = StdInstant::now();
        let mut g = i.lock();
        let ok = loop {
            let s = g.sockets.get_mut::<icmp::Socket>(h);
            if let Ok((payload, from)) = s.recv()
                && from == IpAddress::Ipv4(addr)
                && let Ok(pkt) = Icmpv4Packet::new_checked(payload)
                && let Ok(Icmpv4Repr::EchoReply { data: d, .. }) =
                    Icmpv4Repr::parse(&pkt, &Default::default())
            {
                break d == data;
            }
            if start.elapsed() > timeout {
                break false;
            }
            g = i.wait(g);
        };
        g.sockets.remove(h);
        ok
    }
}

impl Drop for GuestSim {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP connection of the simulated guest, with blocking calls.
pub struct GuestTcp {
    inner: Arc<Inner>,
    h: SocketHandle,
}

impl std::fmt::Debug for GuestTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestTcp")
            .field("state", &self.state())
            .finish()
    }
}

/// Dropping a connection closes it (a FIN if it was open) and frees its
/// socket once the connection is over, as closing a descriptor would.
impl Drop for GuestTcp {
    fn drop(&mut self) {
        let mut g = self.inner.lock();
        g.sockets.get_mut::<tcp::Socket>(self.h).close();
        g.orphans.push(self.h);
        drop(g);
        self.inner.kick();
    }
}

impl GuestTcp {
    /// The socket's TCP state.
    pub fn state(&self) -> tcp::State {
        self.inner.lock().sockets.get::<tcp::Socket>(self.h).state()
    }

    /// The peer's endpoint.
    pub fn remote(&self) -> Option<IpEndpoint> {
        self.inner
            .lock()
            .sockets
            .get::<tcp::Socket>(self.h)
            .remote_endpoint()
    }

    /// Writes all of `data`, waiting for buffer space.
    pub fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        let i = &self.inner;
        let mut g = i.lock();
        let mut last = StdInstant::now();
        while !data.is_empty() {
            let s = g.sockets.get_mut::<tcp::Socket>(self.h);
            if !s.may_send() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "cannot send"));
            }
            let n = s
                .send_slice(data)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            if n > 0 {
                data = &data[n..];
                last = StdInstant::now();
                i.kick();
                continue;
            }
            if last.elapsed() > STALL {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "send stalled"));
            }
            g = i.wait(g);
        }
        Ok(())
    }

    /// Reads some bytes; 0 at end of stream. A reset gives `ConnectionReset`.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let i = &self.inner;
        let start = StdInstant::now();
        let mut g = i.lock();
        loop {
            let s = g.sockets.get_mut::<tcp::Socket>(self.h);
            match s.recv_slice(buf) {
                Ok(0) => {}
                Ok(n) => {
                    i.kick();
                    return Ok(n);
                }
                Err(tcp::RecvError::Finished) => return Ok(0),
                Err(tcp::RecvError::InvalidState) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "connection reset",
                    ));
                }
            }
            if start.elapsed() > STALL {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read stalled"));
            }
            g = i.wait(g);
        }
    }

    /// Reads until end of stream.
    pub fn read_to_end(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Sends a FIN (half-close): no more writes, reads go on.
    pub fn shutdown_write(&self) {
        self.inner
            .lock()
            .sockets
            .get_mut::<tcp::Socket>(self.h)
            .close();
        self.inner.kick();
    }

    /// Resets the connection.
    pub fn abort(&self) {
        self.inner
            .lock()
            .sockets
            .get_mut::<tcp::Socket>(self.h)
            .abort();
        self.inner.kick();
    }
}

/// A listening TCP port of the simulated guest.
pub struct GuestListener {
    inner: Arc<Inner>,
    port: u16,
    sockets: Mutex<Vec<SocketHandle>>,
}

impl std::fmt::Debug for GuestListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestListener")
            .field("port", &self.port)
            .finish()
    }
}

impl Drop for GuestListener {
    fn drop(&mut self) {
        let socks = std::mem::take(&mut *self.sockets.lock().unwrap());
        let mut g = self.inner.lock();
        for h in socks {
            g.sockets.get_mut::<tcp::Socket>(h).abort();
            g.orphans.push(h);
        }
        drop(g);
        self.inner.kick();
    }
}

impl GuestListener {
    fn add_socket(&self) {
        let b = self.inner.cfg.tcp_buffer;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; b]),
            tcp::SocketBuffer::new(vec![0; b]),
        );
        s.set_nagle_enabled(false);
        s.listen(self.port).expect("listen");
        let h = self.inner.lock().sockets.add(s);
        self.sockets.lock().unwrap().push(h);
    }

    /// Waits for an established connection (up to `timeout`).
    pub fn accept(&self, timeout: Duration) -> io::Result<GuestTcp> {
        let i = &self.inner;
        let start = StdInstant::now();
        loop {
            let found = {
                let g = i.lock();
                let mut socks = self.sockets.lock().unwrap();
                let pos = socks.iter().position(|&h| {
                    !matches!(
                        g.sockets.get::<tcp::Socket>(h).state(),
                        tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed
                    )
                });
                pos.map(|p| socks.remove(p))
            };
            if let Some(h) = found {
                self.add_socket();
                return Ok(GuestTcp {
                    inner: i.clone(),
                    h,
                });
            }
            if start.elapsed() > timeout {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "accept timed out"));
            }
            let g = i.lock();
            drop(i.wait(g));
        }
    }
}

/// A UDP socket of the simulated guest.
pub struct GuestUdp {
    inner: Arc<Inner>,
    h: SocketHandle,
}

impl std::fmt::Debug for GuestUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestUdp").finish()
    }
}

impl GuestUdp {
    /// Sends a datagram to `to`.
    pub fn send_to(&self, data: &[u8], to: SocketAddrV4) -> io::Result<()> {
        let mut g = self.inner.lock();
        g.sockets
            .get_mut::<udp::Socket>(self.h)
            .send_slice(data, (IpAddress::Ipv4(*to.ip()), to.port()))
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        drop(g);
        self.inner.kick();
        Ok(())
    }

    /// Waits for a datagram (up to `timeout`).
    pub fn recv_from(&self, timeout: Duration) -> Option<(Vec<u8>, SocketAddrV4)> {
        let i = &self.inner;
        let start = StdInstant::now();
        let mut g = i.lock();
        loop {
            let s = g.sockets.get_mut::<udp::Socket>(self.h);
            if let Ok((d, meta)) = s.recv() {
                let IpAddress::Ipv4(ip) = meta.endpoint.addr;
                return Some((d.to_vec(), SocketAddrV4::new(ip, meta.endpoint.port)));
            }
            if start.elapsed() > timeout {
                return None;
            }
            g = i.wait(g);
        }
    }
}
