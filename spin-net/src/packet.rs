//! Frames the stack writes itself, outside smoltcp's sockets: resets for
//! refused connections, ICMP unreachables, and UDP datagrams of NAT flows,
//! DNS answers and UDP forwards.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    TcpRepr, UdpPacket, UdpRepr,
};

/// Link-layer addresses of a frame to the guest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub src: EthernetAddress,
    pub dst: EthernetAddress,
}

/// Writes Ethernet + IPv4 headers into `buf` (cleared first) and returns the
/// offset of the IP payload.
fn ipv4_frame(buf: &mut Vec<u8>, link: Link, ip: &Ipv4Repr) -> usize {
    let eth = EthernetRepr {
        src_addr: link.src,
        dst_addr: link.dst,
        ethertype: EthernetProtocol::Ipv4,
    };
    let total = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    buf.clear();
    buf.resize(total, 0);
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut pkt = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut pkt, &ChecksumCapabilities::default());
    eth.buffer_len() + ip.buffer_len()
}

/// A UDP datagram from `src` to `dst`.
pub(crate) fn udp_frame(
    buf: &mut Vec<u8>,
    link: Link,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    data: &[u8],
) {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + data.len(),
        hop_limit: 64,
    };
    let off = ipv4_frame(buf, link, &ip);
    let mut pkt = UdpPacket::new_unchecked(&mut buf[off..]);
    udp.emit(
        &mut pkt,
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        data.len(),
        |p| p.copy_from_slice(data),
        &ChecksumCapabilities::default(),
    );
}

/// A reset answering the segment `seg` that the guest sent in `ip`
/// (RFC 9293 §3.10.7.1: the reply to a segment for no connection).
pub(crate) fn tcp_reset(buf: &mut Vec<u8>, link: Link, ip: &Ipv4Repr, seg: &TcpRepr<'_>) {
    let (seq, ack) = match seg.ack_number {
        Some(a) => (a, None),
        None => (
            smoltcp::wire::TcpSeqNumber(0),
            Some(seg.seq_number + seg.segment_len()),
        ),
    };
    let rst = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        control: TcpControl::Rst,
        seq_number: seq,
        ack_number: ack,
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let reply = Ipv4Repr {
        src_addr: ip.dst_addr,
        dst_addr: ip.src_addr,
        next_header: IpProtocol::Tcp,
        payload_len: rst.header_len(),
        hop_limit: 64,
    };
    let off = ipv4_frame(buf, link, &reply);
    let mut pkt = TcpPacket::new_unchecked(&mut buf[off..]);
    rst.emit(
        &mut pkt,
        &IpAddress::Ipv4(reply.src_addr),
        &IpAddress::Ipv4(reply.dst_addr),
        &ChecksumCapabilities::default(),
    );
}

/// An ICMP destination unreachable from `from` about the guest's packet
/// `ip` whose payload starts with `payload` (RFC 792: header + 8 bytes).
pub(crate) fn icmp_unreachable(
    buf: &mut Vec<u8>,
    link: Link,
    from: Ipv4Addr,
    reason: Icmpv4DstUnreachable,
    ip: &Ipv4Repr,
    payload: &[u8],
) {
    let data = &payload[..payload.len().min(8)];
    let icmp = Icmpv4Repr::DstUnreachable {
        reason,
        header: *ip,
        data,
    };
    let reply = Ipv4Repr {
        src_addr: from,
        dst_addr: ip.src_addr,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let off = ipv4_frame(buf, link, &reply);
    let mut pkt = Icmpv4Packet::new_unchecked(&mut buf[off..]);
    icmp.emit(&mut pkt, &ChecksumCapabilities::default());
}
