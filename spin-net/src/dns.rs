//! The DNS forwarder's wire format (RFC 1035): parse one question, answer it
//! with the addresses the host's resolver gives.

use std::net::Ipv4Addr;

/// Query type A.
pub(crate) const TYPE_A: u16 = 1;
/// Query type AAAA.
pub(crate) const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Response codes used.
pub(crate) const RCODE_OK: u8 = 0;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
pub(crate) const RCODE_NOTIMP: u8 = 4;
pub(crate) const RCODE_REFUSED: u8 = 5;

/// A parsed standard query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    pub rd: bool,
    /// The name, lower-case, without the final dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as received (echoed in the answer).
    pub question: Vec<u8>,
}

/// What a message is, once parsed.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A standard query we can resolve.
    Query(Query),
    /// A message to answer with an error code only (id, rd, rcode).
    Error(u16, bool, u8),
    /// Not worth an answer (a response, or too short for an id).
    Ignore,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses a query message.
pub(crate) fn parse(msg: &[u8]) -> Parsed {
    let (Some(id), Some(flags)) = (be16(msg, 0), be16(msg, 2)) else {
        return Parsed::Ignore;
    };
    let rd = flags & 0x0100 != 0;
    if flags & 0x8000 != 0 {
        return Parsed::Ignore;
    }
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Parsed::Error(id, rd, RCODE_NOTIMP);
    }
    if be16(msg, 4) != Some(1) {
        return Parsed::Error(id, rd, RCODE_FORMERR);
    }
    let mut at = 12;
    let mut name = String::new();
    loop {
        let Some(&len) = msg.get(at) else {
            return Parsed::Error(id, rd, RCODE_FORMERR);
        };
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers cannot appear in the first question; other
        // label types are obsolete.
        if len & 0xc0 != 0 {
            return Parsed::Error(id, rd, RCODE_FORMERR);
        }
        let Some(label) = msg.get(at..at + len as usize) else {
            return Parsed::Error(id, rd, RCODE_FORMERR);
        };
        at += len as usize;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                return Parsed::Error(id, rd, RCODE_FORMERR);
            }
            name.push(c.to_ascii_lowercase() as char);
        }
        if name.len() > 253 {
            return Parsed::Error(id, rd, RCODE_FORMERR);
        }
    }
    let (Some(qtype), Some(qclass)) = (be16(msg, at), be16(msg, at + 2)) else {
        return Parsed::Error(id, rd, RCODE_FORMERR);
    };
    at += 4;
    Parsed::Query(Query {
        id,
        rd,
        name,
        qtype,
        qclass,
        question: msg[12..at].to_vec(),
    })
}

/// Builds a header-only answer with an error code.
pub(crate) fn error_response(id: u16, rd: bool, rcode: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(12);
    header(&mut m, id, rd, rcode, 0, 0);
    m
}

fn header(m: &mut Vec<u8>, id: u16, rd: bool, rcode: u8, qd: u16, an: u16) {
    let flags: u16 = 0x8000 | if rd { 0x0100 } else { 0 } | 0x0080 | u16::from(rcode & 0xf);
    for v in [id, flags, qd, an, 0, 0] {
        m.extend_from_slice(&v.to_be_bytes());
    }
}

/// Builds the answer to `q`: `rcode`, and A records for `addrs` (only
/// when the question asked for A records in class IN).
pub(crate) fn response(q: &Query, rcode: u8, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let answers: &[Ipv4Addr] = if q.qtype == TYPE_A && q.qclass == CLASS_IN && rcode == RCODE_OK {
        addrs
    } else {
        &[]
    };
    let mut m = Vec::with_capacity(12 + q.question.len() + 16 * answers.len());
    header(&mut m, q.id, q.rd, rcode, 1, answers.len() as u16);
    m.extend_from_slice(&q.question);
    for a in answers {
        m.extend_from_slice(&0xc00cu16.to_be_bytes()); // name: pointer to the question
        m.extend_from_slice(&TYPE_A.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&a.octets());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn parse_and_answer() {
        let Parsed::Query(q) = parse(&query("LocalHost", TYPE_A)) else {
            panic!("not a query")
        };
        assert_eq!(q.name, "localhost");
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        let r = response(&q, RCODE_OK, &[Ipv4Addr::LOCALHOST], 60);
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0xf, 0);
        assert_eq!(be16(&r, 6), Some(1));
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);
    }

    #[test]
    fn malformed() {
        assert!(matches!(parse(&[1]), Parsed::Ignore));
        let mut q = query("a.b", TYPE_A);
        q.truncate(15);
        assert!(matches!(
            parse(&q),
            Parsed::Error(0x1234, true, RCODE_FORMERR)
        ));
        let mut q = query("a.b", TYPE_A);
        q[12] = 0xc0;
        assert!(matches!(parse(&q), Parsed::Error(_, _, RCODE_FORMERR)));
        let mut q = query("a.b", TYPE_A);
        q[2] = 0x80; // a response
        assert!(matches!(parse(&q), Parsed::Ignore));
    }
}
