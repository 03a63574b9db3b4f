//! The stack task: one smoltcp interface per container, its NAT tables, the
//! DNS forwarder and the port forwards, all driven by a single future.
//!
//! Every host socket is owned by this future and polled from it, so all
//! wakers point at one task; the future does a bounded amount of work per
//! poll and yields.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress,
    Icmpv4DstUnreachable, IpAddress, IpCidr, IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tracing::{debug, warn};

use crate::config::NetConfig;
use crate::dns;
use crate::endpoint::Shared;
use crate::packet::{self, Link};
use crate::policy::{Decision, DenyReason};

/// Frames taken from the guest per round.
const INGEST_BATCH: usize = 256;
/// Rounds of work per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;
/// Ports the gateway uses for connections it opens to the guest.
const FWD_PORTS: std::ops::RangeInclusive<u16> = 40000..=60999;
/// Largest UDP datagram read from the host.
const UDP_BUF: usize = 65536;

/// A guest-initiated flow: guest's source port, destination as the guest saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    guest_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
}

/// A host connect in progress for a guest SYN.
struct Pending {
    /// The guest's latest SYN, replayed into smoltcp once the host connected.
    syn: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

struct ConnectDone {
    key: FlowKey,
    result: io::Result<TcpStream>,
}

/// One TCP connection, NAT or forwarded: a smoltcp socket and a host stream.
struct TcpConn {
    stream: Option<TcpStream>,
    nat: Option<FlowKey>,
    fwd_port: Option<u16>,
    /// The host side reached EOF; the guest was sent a FIN.
    host_eof: bool,
    /// The guest's FIN was passed on (host write side shut down).
    host_shut: bool,
    established: bool,
    created: StdInstant,
}

/// A UDP NAT flow: a connected host socket.
struct UdpFlow {
    sock: UdpSocket,
    /// The same socket, for sending without waiting for readiness.
    send: std::net::UdpSocket,
    last: StdInstant,
}

/// A UDP forward's host socket and its peers.
struct UdpForward {
    sock: UdpSocket,
    send: std::net::UdpSocket,
    guest_port: u16,
    peers: HashMap<SocketAddr, u16>,
}

/// A UDP forward peer, by the gateway port that stands for it.
struct UdpPeer {
    fwd: usize,
    peer: SocketAddr,
    last: StdInstant,
}

struct DnsDone {
    guest_port: u16,
    answer: Vec<u8>,
}

/// The smoltcp device: one frame from the guest at a time in; frames out
/// are staged and handed to the guest's bounded queue in one batch by
/// [`StackDevice::flush`] (one lock and at most one notification per batch).
struct StackDevice {
    shared: Arc<Shared>,
    rx: Vec<u8>,
    rx_ready: bool,
    mtu: usize,
    /// Frames for the guest not yet in its queue.
    out: Vec<Vec<u8>>,
    /// Spare frame buffers.
    pool: Vec<Vec<u8>>,
}

impl StackDevice {
    /// Hands the staged frames to the guest's queue.
    fn flush(&mut self) {
        self.shared
            .push_batch_to_guest(&mut self.out, &mut self.pool);
    }

    /// Whether the guest queue (with what is staged) has room for a frame.
    fn has_room(&self) -> bool {
        self.shared.guest_queue_len() + self.out.len() < self.shared.capacity
    }
}

struct RxTok<'a>(&'a [u8]);
struct TxTok<'a> {
    shared: &'a Shared,
    out: &'a mut Vec<Vec<u8>>,
    pool: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // Not zeroed: smoltcp writes every header and payload byte; at most
        // padding after TCP options keeps bytes of an earlier frame, and
        // every buffer here only ever held frames for this same guest.
        let mut b = self.pool.pop().unwrap_or_default();
        b.resize(len, 0);
        let r = f(&mut b);
        // A reply smoltcp sends while taking a frame in (the token that
        // comes with a received frame) may find the queue full: dropped.
        if self.shared.guest_queue_len() + self.out.len() < self.shared.capacity {
            self.out.push(b);
        } else {
            self.shared.drop_frame();
            self.pool.push(b);
        }
        r
    }
}

impl Device for StackDevice {
    type RxToken<'a> = RxTok<'a>;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(RxTok<'_>, TxTok<'_>)> {
        if !self.rx_ready {
            return None;
        }
        self.rx_ready = false;
        Some((
            RxTok(&self.rx),
            TxTok {
                shared: &self.shared,
                out: &mut self.out,
                pool: &mut self.pool,
            },
        ))
    }

    fn transmit(&mut self, _t: Instant) -> Option<TxTok<'_>> {
        if !self.has_room() {
            // Say so before looking again, so that a guest draining the
            // queue meanwhile either is seen here or sees the flag (and
            // wakes the stack).
            self.shared.tx_blocked.store(true, Ordering::SeqCst);
            if !self.has_room() {
                return None;
            }
        }
        Some(TxTok {
            shared: &self.shared,
            out: &mut self.out,
            pool: &mut self.pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

/// What the stack holds for one container.
pub(crate) struct Stack {
    cfg: NetConfig,
    shared: Arc<Shared>,
    iface: Interface,
    sockets: SocketSet<'static>,
    device: StackDevice,
    epoch: StdInstant,
    gw_mac: EthernetAddress,
    guest_mac: EthernetAddress,
    conns: HashMap<SocketHandle, TcpConn>,
    nat_by_key: HashMap<FlowKey, SocketHandle>,
    pending: HashMap<FlowKey, Pending>,
    connect_tx: mpsc::UnboundedSender<ConnectDone>,
    connect_rx: mpsc::UnboundedReceiver<ConnectDone>,
    udp_flows: HashMap<FlowKey, UdpFlow>,
    udp_forwards: Vec<UdpForward>,
    udp_peers: HashMap<u16, UdpPeer>,
    tcp_listeners: Vec<(TcpListener, u16)>,
    fwd_ports: HashSet<u16>,
    next_fwd_port: u16,
    dns_tx: mpsc::UnboundedSender<DnsDone>,
    dns_rx: mpsc::UnboundedReceiver<DnsDone>,
    dns_inflight: usize,
    sleep: Pin<Box<Sleep>>,
    next_sweep: StdInstant,
    udp_buf: Vec<u8>,
    inbox: VecDeque<Vec<u8>>,
    /// The time given to smoltcp for the frames being fed.
    feed_now: Instant,
}

/// Host sockets bound before the stack starts (so that errors reach the caller).
pub(crate) struct Bound {
    pub tcp: Vec<(std::net::TcpListener, u16)>,
    pub udp: Vec<(std::net::UdpSocket, u16)>,
}

impl Stack {
    /// Builds the stack; must run inside a tokio runtime context.
    pub fn new(cfg: NetConfig, shared: Arc<Shared>, bound: Bound) -> io::Result<Stack> {
        let gw_mac = EthernetAddress(cfg.gateway_mac);
        let mut device = StackDevice {
            shared: shared.clone(),
            rx: Vec::new(),
            rx_ready: false,
            mtu: cfg.mtu,
            out: Vec::new(),
            pool: Vec::new(),
        };
        let epoch = StdInstant::now();
        let mut icfg = Config::new(HardwareAddress::Ethernet(gw_mac));
        icfg.random_seed = seed();
        let mut iface = Interface::new(icfg, &mut device, Instant::from_micros(0));
        let prefix = cfg.subnet.prefix();
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.gateway_ip), prefix));
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.dns_ip), prefix));
        });
        // Every destination is routed "through" the gateway, which is us:
        // with any_ip the interface then accepts packets for any address.
        iface
            .routes_mut()
            .add_default_ipv4_route(cfg.gateway_ip)
            .map_err(|_| io::Error::other("cannot add default route"))?;
        iface.set_any_ip(true);

        let mut tcp_listeners = Vec::new();
        for (l, port) in bound.tcp {
            l.set_nonblocking(true)?;
            tcp_listeners.push((TcpListener::from_std(l)?, port));
        }
        let mut udp_forwards = Vec::new();
        for (s, port) in bound.udp {
            s.set_nonblocking(true)?;
            udp_forwards.push(UdpForward {
                send: s.try_clone()?,
                sock: UdpSocket::from_std(s)?,
                guest_port: port,
                peers: HashMap::new(),
            });
        }
        let (connect_tx, connect_rx) = mpsc::unbounded_channel();
        let (dns_tx, dns_rx) = mpsc::unbounded_channel();
        Ok(Stack {
            guest_mac: EthernetAddress(cfg.guest_mac),
            cfg,
            shared,
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            epoch,
            gw_mac,
            conns: HashMap::new(),
            nat_by_key: HashMap::new(),
            pending: HashMap::new(),
            connect_tx,
            connect_rx,
            udp_flows: HashMap::new(),
            udp_forwards,
            udp_peers: HashMap::new(),
            tcp_listeners,
            fwd_ports: HashSet::new(),
            next_fwd_port: *FWD_PORTS.start(),
            dns_tx,
            dns_rx,
            dns_inflight: 0,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            next_sweep: epoch + Duration::from_secs(1),
            udp_buf: vec![0; UDP_BUF],
            inbox: VecDeque::new(),
            feed_now: Instant::from_micros(0),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn link(&self) -> Link {
        Link {
            src: self.gw_mac,
            dst: self.guest_mac,
        }
    }

    fn update_counts(&self) {
        let c = &self.shared.counters;
        c.tcp_connections.store(
            (self.conns.len() + self.pending.len()) as u64,
            Ordering::Relaxed,
        );
        c.udp_flows.store(
            (self.udp_flows.len() + self.udp_peers.len()) as u64,
            Ordering::Relaxed,
        );
    }

    fn drop_frame(&self, why: &str) {
        self.shared.drop_frame();
        tracing::trace!(why, "dropped frame from guest");
    }

    /// Queues a frame written by `fill` for the guest (after the frames
    /// smoltcp staged, so that the queue's bound holds); drops it if the
    /// queue is full.
    fn emit(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        self.device.flush();
        if !self.shared.push_to_guest(|b| {
            fill(b);
            true
        }) {
            self.shared.drop_frame();
        }
    }

    // ----- guest frames in -------------------------------------------------

    /// Takes up to a batch of frames from the guest and handles them.
    fn ingest(&mut self) -> bool {
        {
            let mut q = self.shared.to_net.lock().unwrap();
            for _ in 0..INGEST_BATCH {
                match q.pop() {
                    Some(f) => self.inbox.push_back(f),
                    None => break,
                }
            }
        }
        if self.inbox.is_empty() {
            return false;
        }
        self.shared
            .counters
            .frames_from_guest
            .fetch_add(self.inbox.len() as u64, Ordering::Relaxed);
        // One clock reading for the batch.
        self.feed_now = self.now();
        let mut done = Vec::with_capacity(self.inbox.len());
        while let Some(frame) = self.inbox.pop_front() {
            let frame = self.handle_frame(frame);
            done.push(frame);
        }
        self.device.flush();
        let mut q = self.shared.to_net.lock().unwrap();
        for f in done {
            q.recycle(f);
        }
        true
    }

    /// Feeds a frame to smoltcp (at the time `feed_now`).
    fn feed(&mut self, frame: Vec<u8>) -> Vec<u8> {
        let old = std::mem::replace(&mut self.device.rx, frame);
        self.device.rx_ready = true;
        let now = self.feed_now;
        self.iface
            .poll_ingress_single(now, &mut self.device, &mut self.sockets);
        self.device.rx_ready = false;
        std::mem::replace(&mut self.device.rx, old)
    }

    /// Handles one frame from the guest; returns its buffer for reuse.
    fn handle_frame(&mut self, frame: Vec<u8>) -> Vec<u8> {
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            self.drop_frame("short ethernet frame");
            return frame;
        };
        let dst = eth.dst_addr();
        if dst != self.gw_mac && !dst.is_broadcast() {
            self.drop_frame("not for the gateway");
            return frame;
        }
        // Only the guest's own MAC may send (no spoofing of the neighbour cache).
        let src_mac = eth.src_addr();
        if src_mac != self.guest_mac {
            self.drop_frame("source MAC is not the guest's");
            return frame;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let ok = ArpPacket::new_checked(eth.payload())
                    .ok()
                    .and_then(|p| ArpRepr::parse(&p).ok())
                    .is_some_and(|r| match r {
                        ArpRepr::EthernetIpv4 {
                            target_protocol_addr,
                            source_protocol_addr,
                            source_hardware_addr,
                            ..
                        } => {
                            (target_protocol_addr == self.cfg.gateway_ip
                                || target_protocol_addr == self.cfg.dns_ip)
                                && source_protocol_addr == self.cfg.guest_ip
                                && source_hardware_addr == self.guest_mac
                        }
                        _ => false,
                    });
                if ok {
                    self.feed(frame)
                } else {
                    self.drop_frame("ARP not for the gateway");
                    frame
                }
            }
            EthernetProtocol::Ipv4 => {
                if self.handle_ipv4(&frame) {
                    self.feed(frame)
                } else {
                    frame
                }
            }
            _ => {
                self.drop_frame("unsupported ethertype");
                frame
            }
        }
    }

    /// Handles an IPv4 frame; returns whether smoltcp should get it.
    fn handle_ipv4(&mut self, frame: &[u8]) -> bool {
        let caps = ChecksumCapabilities::default();
        let eth = EthernetFrame::new_unchecked(frame);
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            self.drop_frame("bad IPv4 header");
            return false;
        };
        let Ok(ip_repr) = Ipv4Repr::parse(&ip, &caps) else {
            self.drop_frame("bad IPv4 header");
            return false;
        };
        if ip.more_frags() || ip.frag_offset() != 0 {
            self.drop_frame("IPv4 fragment");
            return false;
        }
        if ip_repr.src_addr != self.cfg.guest_ip {
            self.drop_frame("source is not the guest's address");
            return false;
        }
        let payload = ip.payload();
        let dst = ip_repr.dst_addr;
        let is_local = dst == self.cfg.gateway_ip || dst == self.cfg.dns_ip;
        match ip_repr.next_header {
            IpProtocol::Icmp => {
                if is_local {
                    true
                } else {
                    self.drop_frame("ICMP beyond the gateway");
                    false
                }
            }
            IpProtocol::Tcp => {
                let Ok(pkt) = TcpPacket::new_checked(payload) else {
                    self.drop_frame("bad TCP header");
                    return false;
                };
                // Only a connection request needs a look before smoltcp
                // (which verifies every other segment itself).
                if !pkt.syn() || pkt.ack() {
                    return true;
                }
                let Ok(seg) = TcpRepr::parse(
                    &pkt,
                    &IpAddress::Ipv4(ip_repr.src_addr),
                    &IpAddress::Ipv4(dst),
                    &caps,
                ) else {
                    self.drop_frame("bad TCP segment");
                    return false;
                };
                self.handle_tcp(frame, &ip_repr, &seg)
            }
            IpProtocol::Udp => {
                let Ok(pkt) = UdpPacket::new_checked(payload) else {
                    self.drop_frame("bad UDP header");
                    return false;
                };
                let Ok(repr) = UdpRepr::parse(
                    &pkt,
                    &IpAddress::Ipv4(ip_repr.src_addr),
                    &IpAddress::Ipv4(dst),
                    &caps,
                ) else {
                    self.drop_frame("bad UDP datagram");
                    return false;
                };
                self.handle_udp(&ip_repr, payload, repr, pkt.payload());
                false
            }
            _ => {
                self.drop_frame("unsupported IP protocol");
                false
            }
        }
    }

    /// Maps a destination the guest used to the address a host socket
    /// connects to, or the reason it may not.
    fn host_destination(&self, dst: Ipv4Addr) -> Result<Ipv4Addr, DenyReason> {
        let host = if dst == self.cfg.gateway_ip {
            Ipv4Addr::LOCALHOST
        } else if self.cfg.subnet.contains(dst) {
            return Err(DenyReason::OwnSubnet);
        } else {
            dst
        };
        match self.cfg.policy.decide(host) {
            Decision::Allow => Ok(host),
            Decision::Deny(r) => Err(r),
        }
    }

    fn deny_log(&self, proto: &str, dst: Ipv4Addr, port: u16, reason: DenyReason) {
        self.shared.counters.denied.fetch_add(1, Ordering::Relaxed);
        warn!(proto, %dst, port, %reason, "network policy denied a guest connection");
    }

    /// TCP from the guest. A new SYN starts a host connect; the SYN is
    /// replayed into smoltcp when the host side is connected.
    fn handle_tcp(&mut self, frame: &[u8], ip: &Ipv4Repr, seg: &TcpRepr<'_>) -> bool {
        let is_syn = seg.control == smoltcp::wire::TcpControl::Syn && seg.ack_number.is_none();
        if !is_syn {
            return true;
        }
        let key = FlowKey {
            guest_port: seg.src_port,
            dst: ip.dst_addr,
            dst_port: seg.dst_port,
        };
        if self.nat_by_key.contains_key(&key) {
            return true;
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.syn.clear();
            p.syn.extend_from_slice(frame);
            return false;
        }
        // A SYN to a port of a connection the gateway opened to the guest is
        // smoltcp's business (it will reset it).
        if ip.dst_addr == self.cfg.gateway_ip && self.fwd_ports.contains(&seg.dst_port) {
            return true;
        }
        let host = match self.host_destination(ip.dst_addr) {
            Ok(h) => h,
            Err(reason) => {
                self.deny_log("tcp", ip.dst_addr, seg.dst_port, reason);
                let link = self.link();
                self.emit(|b| packet::tcp_reset(b, link, ip, seg));
                return false;
            }
        };
        if self.conns.len() + self.pending.len() >= self.cfg.limits.max_tcp_connections {
            debug!(dst = %ip.dst_addr, port = seg.dst_port, "TCP connection cap reached; refusing");
            let link = self.link();
            self.emit(|b| packet::tcp_reset(b, link, ip, seg));
            return false;
        }
        let tx = self.connect_tx.clone();
        let addr = SocketAddr::new(IpAddr::V4(host), seg.dst_port);
        let timeout = self.cfg.limits.connect_timeout;
        let task = tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            };
            let _ = tx.send(ConnectDone { key, result });
        });
        self.pending.insert(
            key,
            Pending {
                syn: frame.to_vec(),
                task,
            },
        );
        self.update_counts();
        false
    }

    fn new_tcp_socket(&self) -> tcp::Socket<'static> {
        let l = &self.cfg.limits;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; l.tcp_rx_buffer]),
            tcp::SocketBuffer::new(vec![0; l.tcp_tx_buffer]),
        );
        s.set_nagle_enabled(false);
        s
    }

    /// Host connects that finished.
    fn poll_connects(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(done)) = self.connect_rx.poll_recv(cx) {
            progress = true;
            let Some(p) = self.pending.remove(&done.key) else {
                continue;
            };
            let key = done.key;
            match done.result {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let mut s = self.new_tcp_socket();
                    if s.listen(IpListenEndpoint {
                        addr: Some(IpAddress::Ipv4(key.dst)),
                        port: key.dst_port,
                    })
                    .is_err()
                    {
                        continue;
                    }
                    let h = self.sockets.add(s);
                    self.conns.insert(
                        h,
                        TcpConn {
                            stream: Some(stream),
                            nat: Some(key),
                            fwd_port: None,
                            host_eof: false,
                            host_shut: false,
                            established: false,
                            created: StdInstant::now(),
                        },
                    );
                    self.nat_by_key.insert(key, h);
                    self.feed_now = self.now();
                    let syn = self.feed(p.syn);
                    drop(syn);
                    let s = self.sockets.get::<tcp::Socket>(h);
                    let expected = (IpAddress::Ipv4(self.cfg.guest_ip), key.guest_port);
                    let ok = s
                        .remote_endpoint()
                        .is_some_and(|e| (e.addr, e.port) == expected);
                    if !ok {
                        debug!(?key, "replayed SYN not taken; dropping connection");
                        self.remove_conn(h);
                    }
                }
                Err(e) => {
                    debug!(dst = %key.dst, port = key.dst_port, error = %e, "host connect failed; resetting guest");
                    // Answer the guest's SYN with a reset.
                    let caps = ChecksumCapabilities::default();
                    let eth = EthernetFrame::new_unchecked(&p.syn[..]);
                    let ip = Ipv4Packet::new_unchecked(eth.payload());
                    if let Ok(ip_repr) = Ipv4Repr::parse(&ip, &caps)
                        && let Ok(tp) = TcpPacket::new_checked(ip.payload())
                        && let Ok(seg) = TcpRepr::parse(
                            &tp,
                            &IpAddress::Ipv4(ip_repr.src_addr),
                            &IpAddress::Ipv4(ip_repr.dst_addr),
                            &caps,
                        )
                    {
                        let link = self.link();
                        self.emit(|b| packet::tcp_reset(b, link, &ip_repr, &seg));
                    }
                }
            }
        }
        if progress {
            self.device.flush();
            self.update_counts();
        }
        progress
    }

    fn remove_conn(&mut self, h: SocketHandle) {
        if let Some(c) = self.conns.remove(&h) {
            if let Some(k) = c.nat {
                self.nat_by_key.remove(&k);
            }
            if let Some(p) = c.fwd_port {
                self.fwd_ports.remove(&p);
            }
            if let Some(stream) = c.stream
                && c.established
                && !(c.host_eof && c.host_shut)
            {
                reset_host(&stream);
            }
        }
        self.sockets.remove(h);
        self.update_counts();
    }

    // ----- UDP -------------------------------------------------------------

    fn handle_udp(&mut self, ip: &Ipv4Repr, ip_payload: &[u8], udp: UdpRepr, data: &[u8]) {
        let dst = ip.dst_addr;
        if dst.is_broadcast() || dst == self.cfg.subnet.broadcast() || dst.is_multicast() {
            self.drop_frame("UDP broadcast or multicast");
            return;
        }
        if dst == self.cfg.dns_ip {
            if udp.dst_port == 53 {
                self.dns_query(udp.src_port, data);
            } else {
                let link = self.link();
                let from = self.cfg.dns_ip;
                self.emit(|b| {
                    packet::icmp_unreachable(
                        b,
                        link,
                        from,
                        Icmpv4DstUnreachable::PortUnreachable,
                        ip,
                        ip_payload,
                    )
                });
            }
            return;
        }
        if dst == self.cfg.gateway_ip
            && let Some(peer) = self.udp_peers.get_mut(&udp.dst_port)
        {
            peer.last = StdInstant::now();
            let f = &self.udp_forwards[peer.fwd];
            if f.guest_port == udp.src_port {
                let _ = f.send.send_to(data, peer.peer);
            }
            return;
        }
        let key = FlowKey {
            guest_port: udp.src_port,
            dst,
            dst_port: udp.dst_port,
        };
        if let Some(flow) = self.udp_flows.get_mut(&key) {
            flow.last = StdInstant::now();
            if flow.send.send(data).is_err() {
                self.shared.drop_frame();
            }
            return;
        }
        let host = match self.host_destination(dst) {
            Ok(h) => h,
            Err(reason) => {
                self.deny_log("udp", dst, udp.dst_port, reason);
                let link = self.link();
                let from = self.cfg.gateway_ip;
                self.emit(|b| {
                    packet::icmp_unreachable(
                        b,
                        link,
                        from,
                        Icmpv4DstUnreachable::CommProhibited,
                        ip,
                        ip_payload,
                    )
                });
                return;
            }
        };
        if self.udp_flows.len() >= self.cfg.limits.max_udp_flows {
            debug!(%dst, port = udp.dst_port, "UDP flow cap reached; dropping");
            self.shared.drop_frame();
            return;
        }
        let target = SocketAddr::new(IpAddr::V4(host), udp.dst_port);
        let sock = (|| -> io::Result<(UdpSocket, std::net::UdpSocket)> {
            let bind: SocketAddr = if host.is_loopback() {
                (Ipv4Addr::LOCALHOST, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let s = std::net::UdpSocket::bind(bind)?;
            s.connect(target)?;
            s.set_nonblocking(true)?;
            let send = s.try_clone()?;
            Ok((UdpSocket::from_std(s)?, send))
        })();
        match sock {
            Ok((sock, send)) => {
                let flow = UdpFlow {
                    sock,
                    send,
                    last: StdInstant::now(),
                };
                self.udp_flows.insert(key, flow);
                self.update_counts();
                if let Some(f) = self.udp_flows.get(&key) {
                    let _ = f.send.send(data);
                }
            }
            Err(e) => {
                debug!(%target, error = %e, "cannot open UDP flow");
                self.shared.drop_frame();
            }
        }
    }

    /// Datagrams from the host for NAT flows and UDP forwards.
    fn poll_udp(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let link = self.link();
        let guest_ip = self.cfg.guest_ip;
        let max_payload = self.cfg.mtu - 28;
        let mut buf = std::mem::take(&mut self.udp_buf);
        for (key, flow) in self.udp_flows.iter_mut() {
            for _ in 0..64 {
                let mut rb = ReadBuf::new(&mut buf);
                match flow.sock.poll_recv(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        progress = true;
                        flow.last = StdInstant::now();
                        let data = rb.filled();
                        if data.len() > max_payload {
                            self.shared.drop_frame();
                            continue;
                        }
                        let src = (key.dst, key.dst_port);
                        let dst = (guest_ip, key.guest_port);
                        if !self.shared.push_to_guest(|b| {
                            packet::udp_frame(b, link, src, dst, data);
                            true
                        }) {
                            self.shared.drop_frame();
                        }
                    }
                    // ICMP errors from the host side: nothing to pass on.
                    Poll::Ready(Err(_)) => continue,
                    Poll::Pending => break,
                }
            }
        }
        let gw = self.cfg.gateway_ip;
        for fi in 0..self.udp_forwards.len() {
            for _ in 0..64 {
                let f = &mut self.udp_forwards[fi];
                let mut rb = ReadBuf::new(&mut buf);
                let peer = match f.sock.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(p)) => p,
                    Poll::Ready(Err(_)) => continue,
                    Poll::Pending => break,
                };
                progress = true;
                let data = rb.filled();
                if data.len() > max_payload {
                    self.shared.drop_frame();
                    continue;
                }
                let port = match f.peers.get(&peer) {
                    Some(&p) => p,
                    None => {
                        if self.udp_peers.len() >= self.cfg.limits.max_udp_flows {
                            self.shared.drop_frame();
                            continue;
                        }
                        let Some(p) = alloc_port(&mut self.fwd_ports, &mut self.next_fwd_port)
                        else {
                            continue;
                        };
                        f.peers.insert(peer, p);
                        self.udp_peers.insert(
                            p,
                            UdpPeer {
                                fwd: fi,
                                peer,
                                last: StdInstant::now(),
                            },
                        );
                        p
                    }
                };
                if let Some(up) = self.udp_peers.get_mut(&port) {
                    up.last = StdInstant::now();
                }
                let gp = f.guest_port;
                if !self.shared.push_to_guest(|b| {
                    packet::udp_frame(b, link, (gw, port), (guest_ip, gp), data);
                    true
                }) {
                    self.shared.drop_frame();
                }
            }
        }
        self.udp_buf = buf;
        if progress {
            self.update_counts();
        }
        progress
    }

    /// Forgets idle UDP flows and stuck handshakes.
    fn sweep(&mut self) {
        let now = StdInstant::now();
        let idle = self.cfg.limits.udp_idle_timeout;
        let before = self.udp_flows.len() + self.udp_peers.len();
        self.udp_flows.retain(|k, f| {
            let keep = now.duration_since(f.last) < idle;
            if !keep {
                debug!(dst = %k.dst, port = k.dst_port, "UDP flow expired");
            }
            keep
        });
        let mut expired = Vec::new();
        self.udp_peers.retain(|p, u| {
            let keep = now.duration_since(u.last) < idle;
            if !keep {
                expired.push((*p, u.fwd, u.peer));
            }
            keep
        });
        for (p, fwd, peer) in expired {
            self.udp_forwards[fwd].peers.remove(&peer);
            self.fwd_ports.remove(&p);
        }
        if before != self.udp_flows.len() + self.udp_peers.len() {
            self.update_counts();
        }
    }

    // ----- DNS -------------------------------------------------------------

    fn dns_query(&mut self, guest_port: u16, msg: &[u8]) {
        let q = match dns::parse(msg) {
            dns::Parsed::Ignore => {
                self.drop_frame("not a DNS query");
                return;
            }
            dns::Parsed::Error(id, rd, rcode) => {
                self.dns_answer(guest_port, &dns::error_response(id, rd, rcode));
                return;
            }
            dns::Parsed::Query(q) => q,
        };
        if !self.cfg.dns_forwarder {
            let r = dns::response(&q, dns::RCODE_REFUSED, &[], 0);
            self.dns_answer(guest_port, &r);
            return;
        }
        if q.qtype != dns::TYPE_A && q.qtype != dns::TYPE_AAAA {
            let r = dns::response(&q, dns::RCODE_NOTIMP, &[], 0);
            self.dns_answer(guest_port, &r);
            return;
        }
        if self.dns_inflight >= self.cfg.limits.max_dns_lookups {
            debug!("too many DNS lookups in flight; dropping query");
            self.shared.drop_frame();
            return;
        }
        self.dns_inflight += 1;
        let tx = self.dns_tx.clone();
        tokio::spawn(async move {
            let lookup = tokio::net::lookup_host((q.name.as_str(), 0));
            let answer = match tokio::time::timeout(Duration::from_secs(10), lookup).await {
                Ok(Ok(addrs)) => {
                    let mut v4: Vec<Ipv4Addr> = Vec::new();
                    for a in addrs {
                        if let IpAddr::V4(ip) = a.ip()
                            && !v4.contains(&ip)
                        {
                            v4.push(ip);
                        }
                    }
                    // The guest has no IPv6 route: AAAA questions get no records.
                    dns::response(&q, dns::RCODE_OK, &v4, 60)
                }
                Ok(Err(e)) => {
                    debug!(name = %q.name, error = %e, "DNS lookup failed");
                    dns::response(&q, dns::RCODE_NXDOMAIN, &[], 0)
                }
                Err(_) => dns::response(&q, dns::RCODE_SERVFAIL, &[], 0),
            };
            let _ = tx.send(DnsDone { guest_port, answer });
        });
    }

    fn dns_answer(&mut self, guest_port: u16, answer: &[u8]) {
        self.shared
            .counters
            .dns_queries
            .fetch_add(1, Ordering::Relaxed);
        let link = self.link();
        let src = (self.cfg.dns_ip, 53);
        let dst = (self.cfg.guest_ip, guest_port);
        self.emit(|b| packet::udp_frame(b, link, src, dst, answer));
    }

    fn poll_dns(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(d)) = self.dns_rx.poll_recv(cx) {
            self.dns_inflight -= 1;
            self.dns_answer(d.guest_port, &d.answer);
            progress = true;
        }
        progress
    }

    // ----- forwards --------------------------------------------------------

    fn poll_listeners(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        for i in 0..self.tcp_listeners.len() {
            loop {
                let (stream, peer) = match self.tcp_listeners[i].0.poll_accept(cx) {
                    Poll::Ready(Ok(x)) => x,
                    Poll::Ready(Err(e)) => {
                        debug!(error = %e, "accept failed");
                        break;
                    }
                    Poll::Pending => break,
                };
                progress = true;
                let guest_port = self.tcp_listeners[i].1;
                if self.conns.len() + self.pending.len() >= self.cfg.limits.max_tcp_connections {
                    debug!(%peer, "TCP connection cap reached; closing forwarded connection");
                    continue;
                }
                let Some(port) = alloc_port(&mut self.fwd_ports, &mut self.next_fwd_port) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let mut s = self.new_tcp_socket();
                let remote = (IpAddress::Ipv4(self.cfg.guest_ip), guest_port);
                let local = (IpAddress::Ipv4(self.cfg.gateway_ip), port);
                if let Err(e) = s.connect(self.iface.context(), remote, local) {
                    debug!(error = ?e, "cannot open forwarded connection");
                    self.fwd_ports.remove(&port);
                    continue;
                }
                debug!(%peer, guest_port, "forwarding connection to the guest");
                let h = self.sockets.add(s);
                self.conns.insert(
                    h,
                    TcpConn {
                        stream: Some(stream),
                        nat: None,
                        fwd_port: Some(port),
                        host_eof: false,
                        host_shut: false,
                        established: false,
                        created: StdInstant::now(),
                    },
                );
                self.update_counts();
            }
        }
        progress
    }

    // ----- TCP data --------------------------------------------------------

    /// Moves bytes between every smoltcp socket and its host stream.
    fn pump_tcp(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut dead = Vec::new();
        let handshake = self.cfg.limits.handshake_timeout;
        for (&h, c) in self.conns.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            let (p, remove) = pump_one(s, c, cx, handshake);
            progress |= p;
            if remove {
                dead.push(h);
            }
        }
        for h in dead {
            self.remove_conn(h);
            progress = true;
        }
        progress
    }

    fn egress(&mut self) -> bool {
        let mut progress = false;
        let now = self.now();
        for _ in 0..1024 {
            match self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
            {
                PollResult::SocketStateChanged => progress = true,
                PollResult::None => break,
            }
        }
        self.device.flush();
        progress
    }

    fn shutdown(&mut self) {
        for (_, p) in self.pending.drain() {
            p.task.abort();
        }
        let hs: Vec<SocketHandle> = self.conns.keys().copied().collect();
        for h in hs {
            if let Some(c) = self.conns.get_mut(&h)
                && let Some(s) = c.stream.take()
            {
                reset_host(&s);
            }
            self.remove_conn(h);
        }
        self.udp_flows.clear();
        self.update_counts();
    }
}

/// Pumps one connection; returns (progress, remove).
fn pump_one(
    s: &mut tcp::Socket<'static>,
    c: &mut TcpConn,
    cx: &mut Context<'_>,
    handshake: Duration,
) -> (bool, bool) {
    use tcp::State;
    let mut progress = false;
    let state = s.state();
    if !c.established
        && !matches!(
            state,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    {
        c.established = true;
    }
    // Guest → host.
    if let Some(stream) = c.stream.as_mut()
        && !c.host_shut
    {
        while s.can_recv() {
            match stream.poll_write_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => {
                    s.abort();
                    break;
                }
                Poll::Ready(Ok(())) => {}
            }
            let r = s.recv(|buf| match stream.try_write(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(_)) => progress = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(Err(_)) => {
                    // The host side is gone: reset the guest.
                    s.abort();
                    c.host_shut = true;
                    progress = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if !s.can_recv()
            && matches!(
                s.state(),
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            )
        {
            let _ = Pin::new(&mut *stream).poll_shutdown(cx);
            c.host_shut = true;
            progress = true;
        }
    }
    // Host → guest.
    if let Some(stream) = c.stream.as_mut()
        && !c.host_eof
    {
        while s.can_send() {
            match stream.poll_read_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => {
                    s.abort();
                    c.host_eof = true;
                    break;
                }
                Poll::Ready(Ok(())) => {}
            }
            let r = s.send(|buf| match stream.try_read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(0)) => {
                    s.close();
                    c.host_eof = true;
                    progress = true;
                    break;
                }
                Ok(Ok(_)) => progress = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(Err(_)) => {
                    // Reset by the host: reset the guest.
                    s.abort();
                    c.host_eof = true;
                    progress = true;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let state = s.state();
    let remove = match state {
        // A Closed socket that still has a peer owes it a reset: keep it
        // until smoltcp has sent it.
        State::Closed if s.remote_endpoint().is_some() => false,
        State::Closed | State::TimeWait => !s.can_recv() || c.stream.is_none() || c.host_shut,
        // Back to listening: the guest reset the handshake.
        State::Listen => true,
        State::SynSent | State::SynReceived if c.created.elapsed() > handshake => {
            s.abort();
            progress = true;
            false
        }
        _ => false,
    };
    (progress, remove)
}

/// Makes the host see a reset instead of a FIN when the stream is dropped.
fn reset_host(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn alloc_port(used: &mut HashSet<u16>, next: &mut u16) -> Option<u16> {
    let span = (*FWD_PORTS.end() - *FWD_PORTS.start()) as usize + 1;
    for _ in 0..span {
        let p = *next;
        *next = if p >= *FWD_PORTS.end() {
            *FWD_PORTS.start()
        } else {
            p + 1
        };
        if used.insert(p) {
            return Some(p);
        }
    }
    None
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(StdInstant::now().elapsed().as_nanos());
    h.finish()
}

impl Future for Stack {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.shared.closed.load(Ordering::Acquire) {
            this.shutdown();
            return Poll::Ready(());
        }
        this.shared.register_stack_waker(cx.waker());
        for round in 0.. {
            if round == ROUNDS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut progress = false;
            progress |= this.poll_connects(cx);
            progress |= this.poll_dns(cx);
            progress |= this.poll_listeners(cx);
            progress |= this.ingest();
            progress |= this.pump_tcp(cx);
            progress |= this.poll_udp(cx);
            progress |= this.egress();
            if !progress {
                break;
            }
        }
        let now_std = StdInstant::now();
        if now_std >= this.next_sweep {
            this.sweep();
            this.next_sweep = now_std + Duration::from_secs(1);
        }
        // Sleep until smoltcp's next timer or the next sweep.
        let now = this.now();
        // An idle network (nothing to expire) sleeps until woken.
        let idle = this.conns.is_empty()
            && this.pending.is_empty()
            && this.udp_flows.is_empty()
            && this.udp_peers.is_empty();
        let mut deadline = if idle {
            now_std + Duration::from_secs(3600)
        } else {
            this.next_sweep
        };
        if let Some(d) = this.iface.poll_delay(now, &this.sockets) {
            let d: Duration = d.into();
            deadline = deadline.min(now_std + d);
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
