use super::*;
use crate::test_utils::{Buf, TestDriver};

const TVERSION: u8 = 100;
const RVERSION: u8 = 101;
const TATTACH: u8 = 104;
const RATTACH: u8 = 105;
const ENOSYS: u32 = 38;

/// Just enough of a 9P2000.L server for the transport's tests: Tversion and
/// Tattach; anything else gets Rlerror(ENOSYS).
struct MiniServer {
    /// Answers with this many extra bytes of padding (to overflow the driver's buffer).
    pad_reply: usize,
}

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn message(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    v.push(kind);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(body);
    v
}

impl FsBackend for MiniServer {
    fn call(&mut self, request: &[u8], response: &mut Vec<u8>) {
        let kind = request[4];
        let tag = u16::from_le_bytes([request[5], request[6]]);
        let mut reply = match kind {
            TVERSION => {
                let msize = u32::from_le_bytes(request[7..11].try_into().unwrap()).min(8192);
                let len = u16::from_le_bytes([request[11], request[12]]) as usize;
                let version = std::str::from_utf8(&request[13..13 + len]).unwrap();
                let answer = if version == "9P2000.L" {
                    version
                } else {
                    "unknown"
                };
                let mut body = msize.to_le_bytes().to_vec();
                body.extend(string(answer));
                message(RVERSION, tag, &body)
            }
            // qid: directory, version 0, path 1.
            TATTACH => message(RATTACH, tag, &[0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            _ => message(RLERROR, tag, &ENOSYS.to_le_bytes()),
        };
        if self.pad_reply > 0 {
            reply.resize(reply.len() + self.pad_reply, 0);
            let n = reply.len() as u32;
            reply[0..4].copy_from_slice(&n.to_le_bytes());
        }
        response.extend(reply);
    }
}

fn device(pad_reply: usize) -> TestDriver {
    let mut t = TestDriver::new(Box::new(P9Device::new(
        Box::new(MiniServer { pad_reply }),
        "import0",
    )));
    let f = t.init(1 << VIRTIO_9P_MOUNT_TAG, 16);
    assert_ne!(f & 1 << VIRTIO_9P_MOUNT_TAG, 0);
    t
}

/// Sends `request` (split in two readable buffers) and returns the reply.
fn call(t: &mut TestDriver, request: &[u8], room: u32) -> Vec<u8> {
    let a = t.alloc_data(request);
    let split = (request.len() / 2) as u32;
    let r = t.alloc(u64::from(room), 8);
    let head = t.add_chain(
        0,
        &[
            Buf::r(a, split),
            Buf::r(a + u64::from(split), request.len() as u32 - split),
            Buf::w(r, room),
        ],
    );
    t.kick(0);
    let (id, len) = t.pop_used(0).expect("answered");
    assert_eq!(id, head);
    t.read_mem(r, len as usize)
}

#[test]
fn mount_tag_in_config() {
    let mut t = device(0);
    assert_eq!(t.read_config(0, 2), 7);
    let tag: Vec<u8> = (0..7).map(|i| t.read_config(2 + i, 1) as u8).collect();
    assert_eq!(tag, b"import0");
}

#[test]
fn version_and_attach() {
    let mut t = device(0);
    let mut body = 65536u32.to_le_bytes().to_vec();
    body.extend(string("9P2000.L"));
    let reply = call(&mut t, &message(TVERSION, 0xffff, &body), 4096);
    let mut expected = 8192u32.to_le_bytes().to_vec();
    expected.extend(string("9P2000.L"));
    assert_eq!(reply, message(RVERSION, 0xffff, &expected));

    let mut body = vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    body.extend(string("root"));
    body.extend(string(""));
    body.extend(0u32.to_le_bytes());
    let reply = call(&mut t, &message(TATTACH, 1, &body), 4096);
    assert_eq!(reply[4], RATTACH);
    assert_eq!(&reply[5..7], &[1, 0]);
    assert_eq!(reply.len(), 20);

    let reply = call(&mut t, &message(120, 2, &[]), 4096);
    assert_eq!(reply, message(RLERROR, 2, &ENOSYS.to_le_bytes()));
    assert_eq!(
        t.transport
            .device_as::<P9Device>()
            .unwrap()
            .state()
            .requests,
        3
    );
}

#[test]
fn reply_too_big_becomes_rlerror() {
    let mut t = device(1000);
    let mut body = 65536u32.to_le_bytes().to_vec();
    body.extend(string("9P2000.L"));
    let reply = call(&mut t, &message(TVERSION, 5, &body), 64);
    assert_eq!(reply, message(RLERROR, 5, &EMSGSIZE.to_le_bytes()));
}

#[test]
fn malformed_requests_are_returned_unanswered() {
    let mut t = device(0);
    // Size field larger than the buffer, smaller than a header, absurd.
    for size in [100u32, 3, u32::MAX] {
        let mut m = message(TVERSION, 1, &[0; 10]);
        m[0..4].copy_from_slice(&size.to_le_bytes());
        assert!(call(&mut t, &m, 64).is_empty(), "size {size}");
    }
    assert!(call(&mut t, &[1, 2, 3], 64).is_empty());
    assert_eq!(
        t.transport
            .device_as::<P9Device>()
            .unwrap()
            .state()
            .malformed,
        4
    );
    assert!(t.transport.is_active());
}
