//! Which destinations the guest may reach.
//!
//! Decisions are taken on the *host* destination, after the gateway address
//! has been translated to the host's loopback (127.0.0.1).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A network from any address inside it and a prefix length (clamped to 32).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let addr = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        Ipv4Net { addr, prefix }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Error of parsing an [`Ipv4Net`] from `a.b.c.d/n`.
#[derive(Debug, thiserror::Error)]
#[error("invalid IPv4 network {0:?} (expected a.b.c.d/n)")]
pub struct ParseNetError(String);

impl FromStr for Ipv4Net {
    type Err = ParseNetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseNetError(s.to_string());
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net::new(addr, prefix))
    }
}

/// Outcome of a policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The guest may reach the destination.
    Allow,
    /// The guest may not; the reason is logged.
    Deny(DenyReason),
}

/// Why a destination was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The host's loopback (directly or through the gateway) without an allow.
    HostLoopback,
    /// The cloud metadata address 169.254.169.254.
    Metadata,
    /// Link-local 169.254.0.0/16.
    LinkLocal,
    /// Unspecified, multicast, broadcast or reserved addresses.
    NotUnicast,
    /// Another address of the container's own subnet (no such host).
    OwnSubnet,
    /// A network in the policy's deny list.
    DenyList,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::HostLoopback => "host loopback",
            DenyReason::Metadata => "cloud metadata address",
            DenyReason::LinkLocal => "link-local address",
            DenyReason::NotUnicast => "not a unicast address",
            DenyReason::OwnSubnet => "no such host in the container's subnet",
            DenyReason::DenyList => "denied by policy",
        })
    }
}

/// The guest's reachability policy.
///
/// Default: public (and private) unicast addresses are allowed; the host's
/// loopback, link-local addresses and the cloud metadata address are denied.
/// Explicit `allow` networks win over every built-in denial and over `deny`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Let the guest reach the host's loopback through the gateway address
    /// (connections to 10.0.2.2:P go to 127.0.0.1:P).
    pub allow_host_loopback: bool,
    /// Networks always allowed (checked first).
    pub allow: Vec<Ipv4Net>,
    /// Networks denied in addition to the built-in ones.
    pub deny: Vec<Ipv4Net>,
}

impl Policy {
    /// The default policy with host loopback allowed through the gateway.
    pub fn with_host_loopback() -> Self {
        Policy {
            allow_host_loopback: true,
            ..Policy::default()
        }
    }

    /// Decides whether the guest may reach `host_dst`, the address the host
    /// socket would connect to (the gateway already translated to 127.0.0.1).
    pub fn decide(&self, host_dst: Ipv4Addr) -> Decision {
        if self.allow.iter().any(|n| n.contains(host_dst)) {
            return Decision::Allow;
        }
        if host_dst.is_loopback() {
            return if self.allow_host_loopback {
                Decision::Allow
            } else {
                Decision::Deny(DenyReason::HostLoopback)
            };
        }
        if host_dst == Ipv4Addr::new(169, 254, 169, 254) {
            return Decision::Deny(DenyReason::Metadata);
        }
        if host_dst.is_link_local() {
            return Decision::Deny(DenyReason::LinkLocal);
        }
        let first = host_dst.octets()[0];
        if host_dst.is_unspecified()
            || first == 0
            || host_dst.is_multicast()
            || host_dst.is_broadcast()
            || first >= 240
        {
            return Decision::Deny(DenyReason::NotUnicast);
        }
        if self.deny.iter().any(|n| n.contains(host_dst)) {
            return Decision::Deny(DenyReason::DenyList);
        }
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        let p = Policy::default();
        assert_eq!(p.decide("1.1.1.1".parse().unwrap()), Decision::Allow);
        assert_eq!(p.decide("192.168.1.1".parse().unwrap()), Decision::Allow);
        assert_eq!(
            p.decide("127.0.0.1".parse().unwrap()),
            Decision::Deny(DenyReason::HostLoopback)
        );
        assert_eq!(
            p.decide("127.3.2.1".parse().unwrap()),
            Decision::Deny(DenyReason::HostLoopback)
        );
        assert_eq!(
            p.decide("169.254.169.254".parse().unwrap()),
            Decision::Deny(DenyReason::Metadata)
        );
        assert_eq!(
            p.decide("169.254.1.1".parse().unwrap()),
            Decision::Deny(DenyReason::LinkLocal)
        );
        assert_eq!(
            p.decide("224.0.0.1".parse().unwrap()),
            Decision::Deny(DenyReason::NotUnicast)
        );
        assert_eq!(
            p.decide("0.1.2.3".parse().unwrap()),
            Decision::Deny(DenyReason::NotUnicast)
        );
    }

    #[test]
    fn allow_and_deny_lists() {
        let p = Policy {
            allow_host_loopback: false,
            allow: vec!["169.254.169.254/32".parse().unwrap()],
            deny: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert_eq!(
            p.decide("169.254.169.254".parse().unwrap()),
            Decision::Allow
        );
        assert_eq!(
            p.decide("10.1.2.3".parse().unwrap()),
            Decision::Deny(DenyReason::DenyList)
        );
        assert_eq!(p.decide("11.1.2.3".parse().unwrap()), Decision::Allow);
        assert_eq!(
            Policy::with_host_loopback().decide("127.0.0.1".parse().unwrap()),
            Decision::Allow
        );
    }

    #[test]
    fn nets() {
        let n: Ipv4Net = "10.0.2.77/24".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 2, 255));
        assert!(n.contains(Ipv4Addr::new(10, 0, 2, 15)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 3, 15)));
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Net>()
                .unwrap()
                .contains(Ipv4Addr::BROADCAST)
        );
    }
}
