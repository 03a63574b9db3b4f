//! Errors of the network.

use std::net::SocketAddr;

/// What can go wrong when a container's network is started.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration is inconsistent (addresses outside the subnet, MTU too small, ...).
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// A port forward's host address could not be bound because it is already taken.
    #[error("port forward {proto} {addr}: host address already in use")]
    PortInUse {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The host address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A port forward's host address could not be bound for another reason.
    #[error("port forward {proto} {addr}: cannot bind host address")]
    Bind {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The host address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The network's own thread or runtime could not be created.
    #[error("cannot start the network runtime")]
    Runtime(#[source] std::io::Error),
}
