use std::io;
use std::sync::{Arc, Mutex};

use super::*;
use crate::device::{VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;
use crate::mmio::{INT_USED_RING, STATUS_DEVICE_NEEDS_RESET};
use crate::test_utils::{Buf, TestDriver};

/// A RAM disk whose bytes and flush count the test can see.
#[derive(Clone, Default)]
struct SharedDisk {
    data: Arc<Mutex<Vec<u8>>>,
    flushes: Arc<Mutex<u32>>,
    ro: bool,
}

impl BlockBackend for SharedDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let d = self.data.lock().unwrap();
        let o = offset as usize;
        buf.copy_from_slice(
            d.get(o..o + buf.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?,
        );
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut d = self.data.lock().unwrap();
        let o = offset as usize;
        d.get_mut(o..o + data.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.ro
    }
}

const ALL: u64 = u64::MAX;

fn disk(sectors: usize, ro: bool) -> SharedDisk {
    let data: Vec<u8> = (0..sectors * 512)
        .map(|i| (i / 512) as u8 ^ (i % 251) as u8)
        .collect();
    SharedDisk {
        data: Arc::new(Mutex::new(data)),
        ro,
        ..Default::default()
    }
}

fn driver(d: &SharedDisk) -> TestDriver {
    let mut t = TestDriver::new(Box::new(BlockDevice::new(
        Box::new(d.clone()),
        "spin-test-disk",
    )));
    t.init(ALL, 16);
    t
}

fn header(t: &mut TestDriver, kind: u32, sector: u64) -> u64 {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    t.alloc_data(&h)
}

/// Runs one request: header, `out` data (readable), `in_len` bytes of
/// writable data, then the status byte. Returns (status, used len, data read).
fn request(
    t: &mut TestDriver,
    kind: u32,
    sector: u64,
    out: &[u8],
    in_len: u32,
    indirect: bool,
) -> (u8, u32, Vec<u8>) {
    let h = header(t, kind, sector);
    let mut bufs = vec![Buf::r(h, 16)];
    if !out.is_empty() {
        bufs.push(Buf::r(t.alloc_data(out), out.len() as u32));
    }
    let data = t.alloc(u64::from(in_len), 8);
    if in_len > 0 {
        bufs.push(Buf::w(data, in_len));
    }
    let status = t.alloc(1, 1);
    t.mem.write(status, &[0xff]).unwrap();
    bufs.push(Buf::w(status, 1));
    let head = if indirect {
        t.add_indirect(0, &bufs)
    } else {
        t.add_chain(0, &bufs)
    };
    t.kick(0);
    assert_eq!(
        t.ack_interrupt() & INT_USED_RING,
        INT_USED_RING,
        "no interrupt"
    );
    let (id, len) = t.pop_used(0).expect("used element");
    assert_eq!(id, head);
    (
        t.read_mem(status, 1)[0],
        len,
        t.read_mem(data, in_len as usize),
    )
}

#[test]
fn config_and_features() {
    let d = disk(8, false);
    let mut t = TestDriver::new(Box::new(BlockDevice::new(Box::new(d.clone()), "x")));
    assert_eq!(
        t.read_reg(crate::mmio::regs::DEVICE_ID),
        crate::device::TYPE_BLOCK
    );
    let f = t.negotiate(ALL).unwrap();
    assert_ne!(f & 1 << VIRTIO_F_VERSION_1, 0);
    assert_ne!(f & 1 << VIRTIO_F_RING_INDIRECT_DESC, 0);
    assert_eq!(f & 1 << VIRTIO_BLK_F_RO, 0);
    assert_eq!(t.read_config(0, 4), 8);
    assert_eq!(t.read_config(4, 4), 0);
    assert_eq!(t.read_config(12, 4), u32::from(QUEUE_SIZE - 2));
    assert_eq!(t.read_config(0, 1), 8);

    let ro = disk(3, true);
    let mut t = TestDriver::new(Box::new(BlockDevice::new(Box::new(ro), "x")));
    let f = t.negotiate(ALL).unwrap();
    assert_ne!(f & 1 << VIRTIO_BLK_F_RO, 0);
}

#[test]
fn read_and_write_round_trip() {
    let d = disk(16, false);
    let mut t = driver(&d);
    let expected = d.data.lock().unwrap()[512 * 3..512 * 5].to_vec();
    let (status, len, got) = request(&mut t, VIRTIO_BLK_T_IN, 3, &[], 1024, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(len, 1025);
    assert_eq!(got, expected);

    let payload: Vec<u8> = (0..1536).map(|i| (i * 7) as u8).collect();
    let (status, len, _) = request(&mut t, VIRTIO_BLK_T_OUT, 10, &payload, 0, true);
    assert_eq!((status, len), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(&d.data.lock().unwrap()[512 * 10..512 * 13], &payload[..]);

    let (status, _, got) = request(&mut t, VIRTIO_BLK_T_IN, 10, &[], 1536, true);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(got, payload);

    let (status, _, _) = request(&mut t, VIRTIO_BLK_T_FLUSH, 0, &[], 0, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(*d.flushes.lock().unwrap(), 1);
}

#[test]
fn read_only_refuses_writes() {
    let d = disk(4, true);
    let mut t = driver(&d);
    let before = d.data.lock().unwrap().clone();
    let (status, len, _) = request(&mut t, VIRTIO_BLK_T_OUT, 0, &[0xaa; 512], 0, false);
    assert_eq!((status, len), (VIRTIO_BLK_S_IOERR, 1));
    assert_eq!(*d.data.lock().unwrap(), before);
    let (status, _, got) = request(&mut t, VIRTIO_BLK_T_IN, 0, &[], 512, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(got, before[..512]);
}

#[test]
fn out_of_range_is_an_io_error() {
    let d = disk(4, false);
    let mut t = driver(&d);
    for (sector, len) in [(4, 512), (3, 1024), (u64::MAX / 512, 512), (u64::MAX, 512)] {
        let (status, _, _) = request(&mut t, VIRTIO_BLK_T_IN, sector, &[], len, false);
        assert_eq!(status, VIRTIO_BLK_S_IOERR, "read at {sector} len {len}");
        let (status, _, _) = request(
            &mut t,
            VIRTIO_BLK_T_OUT,
            sector,
            &vec![1; len as usize],
            0,
            false,
        );
        assert_eq!(status, VIRTIO_BLK_S_IOERR, "write at {sector}");
    }
    // Not a whole number of sectors.
    let (status, _, _) = request(&mut t, VIRTIO_BLK_T_IN, 0, &[], 100, false);
    assert_eq!(status, VIRTIO_BLK_S_IOERR);
    // The last sector is fine.
    let (status, _, _) = request(&mut t, VIRTIO_BLK_T_IN, 3, &[], 512, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert!(t.transport.is_active());
}

#[test]
fn get_id_and_unsupported() {
    let d = disk(1, false);
    let mut t = driver(&d);
    let (status, len, got) = request(&mut t, VIRTIO_BLK_T_GET_ID, 0, &[], 20, false);
    assert_eq!((status, len), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(&got[..14], b"spin-test-disk");
    assert_eq!(&got[14..], &[0; 6]);
    let (status, len, _) = request(&mut t, 99, 0, &[], 0, false);
    assert_eq!((status, len), (VIRTIO_BLK_S_UNSUPP, 1));
}

#[test]
fn malformed_request_does_not_stop_the_device() {
    let d = disk(1, false);
    let mut t = driver(&d);
    // Header too short: IOERR in the status byte.
    let h = t.alloc_data(&[0; 8]);
    let s = t.alloc(1, 1);
    t.add_chain(0, &[Buf::r(h, 8), Buf::w(s, 1)]);
    t.kick(0);
    assert_eq!(t.pop_used(0).unwrap().1, 1);
    assert_eq!(t.read_mem(s, 1)[0], VIRTIO_BLK_S_IOERR);
    // No writable byte at all: returned with nothing written.
    let h = header(&mut t, VIRTIO_BLK_T_IN, 0);
    t.add_chain(0, &[Buf::r(h, 16)]);
    t.kick(0);
    assert_eq!(t.pop_used(0).unwrap().1, 0);
    assert_eq!(t.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn large_request_is_chunked() {
    let d = disk(512, false);
    let mut t = TestDriver::with_memory(
        Box::new(BlockDevice::new(Box::new(d.clone()), "x")),
        2 << 20,
    );
    t.init(ALL, 16);
    let payload: Vec<u8> = (0..200 * 1024).map(|i| (i % 253) as u8).collect();
    let (status, _, _) = request(&mut t, VIRTIO_BLK_T_OUT, 7, &payload, 0, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    let (status, len, got) = request(&mut t, VIRTIO_BLK_T_IN, 7, &[], payload.len() as u32, false);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(len as usize, payload.len() + 1);
    assert_eq!(got, payload);
}

/// A disk whose every operation fails.
struct BrokenDisk;

impl BlockBackend for BrokenDisk {
    fn read_at(&mut self, _: u64, _: &mut [u8]) -> io::Result<()> {
        Err(io::ErrorKind::Other.into())
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Other.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Other.into())
    }
    fn len(&self) -> u64 {
        4096
    }
    fn read_only(&self) -> bool {
        false
    }
}

#[test]
fn backend_errors_become_io_errors() {
    let mut t = TestDriver::new(Box::new(BlockDevice::new(Box::new(BrokenDisk), "x")));
    t.init(ALL, 8);
    for (kind, out, in_len) in [
        (VIRTIO_BLK_T_IN, &[][..], 512),
        (VIRTIO_BLK_T_OUT, &[1u8; 512][..], 0),
        (VIRTIO_BLK_T_FLUSH, &[][..], 0),
    ] {
        let (status, _, _) = request(&mut t, kind, 0, out, in_len, false);
        assert_eq!(status, VIRTIO_BLK_S_IOERR, "request type {kind}");
    }
    assert_eq!(
        t.transport
            .device_as::<BlockDevice>()
            .unwrap()
            .state()
            .errors,
        3
    );
    assert!(t.transport.is_active());
}
