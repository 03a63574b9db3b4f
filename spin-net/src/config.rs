//! Configuration of a container's network: addresses, forwards, policy, limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::NetError;
use crate::policy::{Ipv4Net, Policy};

/// Transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP: each accepted host connection becomes a connection to the guest.
    Tcp,
    /// UDP: each host peer becomes a flow to the guest port.
    Udp,
}

impl Protocol {
    /// Lower-case name (`tcp`, `udp`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port forward: a host listener whose connections are opened from the
/// gateway to a port of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// TCP or UDP.
    pub proto: Protocol,
    /// Host address to bind (127.0.0.1 unless asked otherwise; port 0 picks one).
    pub host: SocketAddr,
    /// Port of the guest the connections go to.
    pub guest_port: u16,
}

impl Forward {
    /// A TCP forward from 127.0.0.1:`host_port` to the guest's `guest_port`.
    pub fn tcp(host_port: u16, guest_port: u16) -> Self {
        Forward {
            proto: Protocol::Tcp,
            host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), host_port),
            guest_port,
        }
    }

    /// A UDP forward from 127.0.0.1:`host_port` to the guest's `guest_port`.
    pub fn udp(host_port: u16, guest_port: u16) -> Self {
        Forward {
            proto: Protocol::Udp,
            host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), host_port),
            guest_port,
        }
    }

    /// The same forward bound on another host address (e.g. 0.0.0.0 to expose it).
    pub fn on(mut self, host_ip: IpAddr) -> Self {
        self.host.set_ip(host_ip);
        self
    }
}

/// Caps on what one container's network may hold, so that a hostile guest
/// cannot make the host allocate without bound.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most TCP connections at once (NAT, half-open and forwarded together).
    pub max_tcp_connections: usize,
    /// Most UDP flows at once.
    pub max_udp_flows: usize,
    /// Receive buffer of each TCP connection on the stack side (guest → host), bytes.
    pub tcp_rx_buffer: usize,
    /// Send buffer of each TCP connection on the stack side (host → guest), bytes.
    pub tcp_tx_buffer: usize,
    /// Frames waiting in each direction between the stack and the guest device.
    pub frame_queue: usize,
    /// Most DNS lookups in flight.
    pub max_dns_lookups: usize,
    /// A UDP flow without traffic for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// Give up a host connect after this long (the guest then gets a reset).
    pub connect_timeout: Duration,
    /// A guest connection that does not finish its handshake in this time is dropped.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tcp_connections: 1024,
            max_udp_flows: 512,
            tcp_rx_buffer: 256 * 1024,
            tcp_tx_buffer: 256 * 1024,
            frame_queue: 1024,
            max_dns_lookups: 64,
            udp_idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(20),
        }
    }
}

/// Everything that defines one container's network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The guest's subnet (default 10.0.2.0/24).
    pub subnet: Ipv4Net,
    /// The guest's address (default 10.0.2.15); used as destination of forwards.
    pub guest_ip: Ipv4Addr,
    /// The gateway's address (default 10.0.2.2): answers ARP and ping, and
    /// stands for the host's loopback when the policy allows it.
    pub gateway_ip: Ipv4Addr,
    /// The DNS forwarder's address (default 10.0.2.3).
    pub dns_ip: Ipv4Addr,
    /// The guest's MAC address (default 52:54:00:12:34:56), to configure the
    /// virtio-net device; frames are sent to the MAC the guest actually uses.
    pub guest_mac: [u8; 6],
    /// The gateway's MAC address (default 52:55:0a:00:02:02).
    pub gateway_mac: [u8; 6],
    /// IP MTU of the link (default 1500); frames are up to MTU + 14 bytes.
    pub mtu: usize,
    /// Resolve the guest's DNS questions through the host (default true);
    /// when false the forwarder answers REFUSED.
    pub dns_forwarder: bool,
    /// Port forwards from the host into the guest.
    pub forwards: Vec<Forward>,
    /// Which destinations the guest may reach.
    pub policy: Policy,
    /// Caps on connections and buffers.
    pub limits: Limits,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24),
            guest_ip: Ipv4Addr::new(10, 0, 2, 15),
            gateway_ip: Ipv4Addr::new(10, 0, 2, 2),
            dns_ip: Ipv4Addr::new(10, 0, 2, 3),
            guest_mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            gateway_mac: [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02],
            mtu: 1500,
            dns_forwarder: true,
            forwards: Vec::new(),
            policy: Policy::default(),
            limits: Limits::default(),
        }
    }
}

impl NetConfig {
    /// Largest Ethernet frame (without FCS) on this link.
    pub fn max_frame_len(&self) -> usize {
        self.mtu + 14
    }

    /// Checks the configuration for consistency.
    pub fn validate(&self) -> Result<(), NetError> {
        let err = |m: String| Err(NetError::Config(m));
        for (name, ip) in [
            ("guest", self.guest_ip),
            ("gateway", self.gateway_ip),
            ("dns", self.dns_ip),
        ] {
            if !self.subnet.contains(ip) {
                return err(format!("{name} address {ip} is outside {}", self.subnet));
            }
            if ip == self.subnet.network() || ip == self.subnet.broadcast() {
                return err(format!("{name} address {ip} is not a host address"));
            }
        }
        if self.guest_ip == self.gateway_ip
            || self.guest_ip == self.dns_ip
            || self.gateway_ip == self.dns_ip
        {
            return err("guest, gateway and dns addresses must differ".into());
        }
        if self.subnet.prefix() > 30 {
            return err("subnet is too small".into());
        }
        if !(576..=65521).contains(&self.mtu) {
            return err(format!("mtu {} out of range 576..=65521", self.mtu));
        }
        if self.gateway_mac[0] & 1 != 0 || self.guest_mac[0] & 1 != 0 {
            return err("MAC addresses must be unicast".into());
        }
        let l = &self.limits;
        if l.tcp_rx_buffer < 1024 || l.tcp_tx_buffer < 1024 {
            return err("TCP buffers must hold at least 1024 bytes".into());
        }
        if l.frame_queue == 0 {
            return err("frame queue must hold at least one frame".into());
        }
        for f in &self.forwards {
            if f.guest_port == 0 {
                return err("forward to guest port 0".into());
            }
        }
        Ok(())
    }
}
