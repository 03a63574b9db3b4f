//! 9P2000.L message framing: little-endian fields, `u16`-counted strings.

use rustix::io::Errno;

/// Message types (T = request, the R answer is T + 1).
pub mod kind {
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// Size of a message header: size[4] type[1] tag[2].
pub const HEADER_LEN: usize = 7;

/// Qid type bits.
pub const QTDIR: u8 = 0x80;
pub const QTSYMLINK: u8 = 0x02;
pub const QTFILE: u8 = 0x00;

/// The server's identity for a file: type, version, unique path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qid {
    pub kind: u8,
    pub version: u32,
    pub path: u64,
}

/// Reads fields off a request body; every short read is `EPROTO`, so a
/// truncated or lying message can never index out of bounds.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        if self.data.len() < n {
            return Err(Errno::PROTO);
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Errno> {
        Ok(self.bytes(N)?.try_into().expect("length checked"))
    }

    pub fn u8(&mut self) -> Result<u8, Errno> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A string's raw bytes (9P strings are not required to be UTF-8 here:
    /// Linux file names are bytes).
    pub fn string(&mut self) -> Result<&'a [u8], Errno> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
}

/// Builds one R-message in place: the size field is patched by [`Writer::finish`].
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>, kind: u8, tag: u16) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(kind);
        out.extend_from_slice(&tag.to_le_bytes());
        Writer { out, start }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }

    /// A string; callers only pass names and link targets the host gave,
    /// which are far below the `u16` limit, but cut defensively anyway.
    pub fn string(&mut self, v: &[u8]) -> &mut Self {
        let v = &v[..v.len().min(u16::MAX as usize)];
        self.u16(v.len() as u16).bytes(v)
    }

    pub fn qid(&mut self, q: Qid) -> &mut Self {
        self.u8(q.kind).u32(q.version).u64(q.path)
    }

    /// The message so far (header included).
    pub fn len(&self) -> usize {
        self.out.len() - self.start
    }

    /// Direct access for bulk payloads (reads, directory entries).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    pub fn finish(self) {
        let n = (self.out.len() - self.start) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&n.to_le_bytes());
    }
}

/// Appends `Rlerror(errno)`.
pub fn lerror(out: &mut Vec<u8>, tag: u16, errno: Errno) {
    let mut w = Writer::new(out, kind::RLERROR, tag);
    w.u32(errno.raw_os_error() as u32);
    w.finish();
}
