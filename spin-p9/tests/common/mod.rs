//! A small 9P2000.L client for the tests: encodes T-messages, checks the
//! framing of every reply and decodes the R-messages the tests look at.

#![allow(dead_code)]

use std::path::Path;

use spin_p9::{P9Server, ShareOptions};
use spin_virtio::p9::FsBackend;

pub const EPERM: u32 = 1;
pub const ENOENT: u32 = 2;
pub const EBADF: u32 = 9;
pub const EEXIST: u32 = 17;
pub const ENOTDIR: u32 = 20;
pub const EISDIR: u32 = 21;
pub const EINVAL: u32 = 22;
pub const EROFS: u32 = 30;
pub const ENOTEMPTY: u32 = 39;
pub const ELOOP: u32 = 40;
pub const ENODATA: u32 = 61;
pub const EPROTO: u32 = 71;
pub const EOPNOTSUPP: u32 = 95;

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
pub const RLERROR: u8 = 7;

pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_RDWR: u32 = 2;
pub const O_EXCL: u32 = 0o200;
pub const O_TRUNC: u32 = 0o1000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const AT_REMOVEDIR: u32 = 0x200;

pub const ROOT: u32 = 1;

/// A T-message body under construction.
#[derive(Default, Clone)]
pub struct Body(pub Vec<u8>);

impl Body {
    pub fn new() -> Body {
        Body::default()
    }
    pub fn u8(mut self, v: u8) -> Body {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Body {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Body {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Body {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn s(mut self, v: impl AsRef<[u8]>) -> Body {
        let v = v.as_ref();
        self = self.u16(v.len() as u16);
        self.0.extend(v);
        self
    }
}

/// A whole message: size, type, tag, body.
pub fn message(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut m = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    m.push(kind);
    m.extend(tag.to_le_bytes());
    m.extend(body);
    m
}

/// Reads an R-message body.
pub struct Rd<'a>(pub &'a [u8]);

impl Rd<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "reply too short");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    pub fn s(&mut self) -> Vec<u8> {
        let n = self.u16() as usize;
        self.take(n).to_vec()
    }
    pub fn qid(&mut self) -> Qid {
        Qid {
            kind: self.u8(),
            version: self.u32(),
            path: self.u64(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qid {
    pub kind: u8,
    pub version: u32,
    pub path: u64,
}

#[derive(Debug, Clone)]
pub struct Attr {
    pub valid: u64,
    pub qid: Qid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    pub atime: (u64, u64),
    pub mtime: (u64, u64),
    pub ctime: (u64, u64),
}

#[derive(Debug, Clone)]
pub struct Dirent {
    pub qid: Qid,
    pub offset: u64,
    pub dtype: u8,
    pub name: String,
}

pub type R<T> = Result<T, u32>;

pub struct Client {
    pub server: P9Server,
    tag: u16,
    pub msize: u32,
}

impl Client {
    /// A client of a server for `dir`, version negotiated, root attached as [`ROOT`].
    pub fn new(dir: &Path, read_only: bool) -> Client {
        let d = cap_std_dir(dir);
        let mut c = Client {
            server: P9Server::new(d, ShareOptions { read_only }),
            tag: 0,
            msize: 0,
        };
        c.msize = c.version(256 * 1024 + 4096, "9P2000.L").unwrap().0;
        c.attach(ROOT).unwrap();
        c
    }

    /// Sends raw bytes; returns the reply after checking its framing.
    pub fn raw(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.server.call(msg, &mut out);
        assert!(out.len() >= 7, "reply shorter than a header");
        let size = u32::from_le_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(size, out.len(), "reply size field");
        out
    }

    /// One request; `Ok(body)` of the expected R-message or `Err(errno)`.
    pub fn call(&mut self, kind: u8, body: Body) -> R<Vec<u8>> {
        self.tag = self.tag.wrapping_add(1) % 0xfff0;
        let tag = self.tag;
        let out = self.raw(&message(kind, tag, &body.0));
        assert_eq!(u16::from_le_bytes([out[5], out[6]]), tag, "reply tag");
        if out[4] == RLERROR {
            assert_eq!(out.len(), 11, "Rlerror length");
            return Err(u32::from_le_bytes(out[7..11].try_into().unwrap()));
        }
        assert_eq!(out[4], kind + 1, "reply type");
        Ok(out[7..].to_vec())
    }

    pub fn version(&mut self, msize: u32, v: &str) -> R<(u32, String)> {
        let b = self.call(TVERSION, Body::new().u32(msize).s(v))?;
        let mut r = Rd(&b);
        Ok((r.u32(), String::from_utf8(r.s()).unwrap()))
    }

    pub fn attach(&mut self, fid: u32) -> R<Qid> {
        let b = self.call(TATTACH, Body::new().u32(fid).u32(!0).s("root").s("").u32(0))?;
        Ok(Rd(&b).qid())
    }

    /// Twalk; `Ok(qids)` (maybe fewer than names: a partial walk).
    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> R<Vec<Qid>> {
        let mut body = Body::new().u32(fid).u32(newfid).u16(names.len() as u16);
        for n in names {
            body = body.s(n);
        }
        let b = self.call(TWALK, body)?;
        let mut r = Rd(&b);
        let n = r.u16();
        let qids: Vec<Qid> = (0..n).map(|_| r.qid()).collect();
        assert!(r.0.is_empty());
        Ok(qids)
    }

    /// Walks `path` (split on '/') from the root into `newfid`; must fully succeed.
    pub fn walk_path(&mut self, newfid: u32, path: &str) -> R<Qid> {
        let names: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let qids = self.walk(ROOT, newfid, &names)?;
        if qids.len() != names.len() {
            return Err(ENOENT);
        }
        Ok(qids.last().copied().unwrap_or(Qid {
            kind: 0x80,
            version: 0,
            path: 0,
        }))
    }

    pub fn clunk(&mut self, fid: u32) -> R<()> {
        self.call(TCLUNK, Body::new().u32(fid)).map(drop)
    }

    pub fn getattr(&mut self, fid: u32) -> R<Attr> {
        let b = self.call(TGETATTR, Body::new().u32(fid).u64(0x3fff))?;
        let mut r = Rd(&b);
        let a = Attr {
            valid: r.u64(),
            qid: r.qid(),
            mode: r.u32(),
            uid: r.u32(),
            gid: r.u32(),
            nlink: r.u64(),
            rdev: r.u64(),
            size: r.u64(),
            blksize: r.u64(),
            blocks: r.u64(),
            atime: (r.u64(), r.u64()),
            mtime: (r.u64(), r.u64()),
            ctime: (r.u64(), r.u64()),
        };
        for _ in 0..4 {
            r.u64();
        }
        assert!(r.0.is_empty());
        Ok(a)
    }

    pub fn lopen(&mut self, fid: u32, flags: u32) -> R<Qid> {
        let b = self.call(TLOPEN, Body::new().u32(fid).u32(flags))?;
        let mut r = Rd(&b);
        let q = r.qid();
        r.u32();
        Ok(q)
    }

    pub fn lcreate(&mut self, fid: u32, name: &str, flags: u32, mode: u32) -> R<Qid> {
        let b = self.call(
            TLCREATE,
            Body::new().u32(fid).s(name).u32(flags).u32(mode).u32(0),
        )?;
        Ok(Rd(&b).qid())
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> R<Vec<u8>> {
        let b = self.call(TREAD, Body::new().u32(fid).u64(offset).u32(count))?;
        let mut r = Rd(&b);
        let n = r.u32() as usize;
        assert_eq!(r.0.len(), n, "Rread count");
        Ok(r.0.to_vec())
    }

    pub fn read_all(&mut self, fid: u32) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(fid, out.len() as u64, 65536)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend(chunk);
        }
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> R<u32> {
        let mut body = Body::new().u32(fid).u64(offset).u32(data.len() as u32);
        body.0.extend(data);
        let b = self.call(TWRITE, body)?;
        Ok(Rd(&b).u32())
    }

    pub fn readdir(&mut self, fid: u32, offset: u64, count: u32) -> R<Vec<Dirent>> {
        let b = self.call(TREADDIR, Body::new().u32(fid).u64(offset).u32(count))?;
        let mut r = Rd(&b);
        let n = r.u32() as usize;
        assert_eq!(r.0.len(), n, "Rreaddir count");
        assert!(n <= count as usize);
        let mut out = Vec::new();
        while !r.0.is_empty() {
            out.push(Dirent {
                qid: r.qid(),
                offset: r.u64(),
                dtype: r.u8(),
                name: String::from_utf8(r.s()).unwrap(),
            });
        }
        Ok(out)
    }

    /// All entries of the directory at `fid` (opened here), `count` bytes a call.
    pub fn list(&mut self, fid: u32, count: u32) -> R<Vec<Dirent>> {
        self.lopen(fid, O_RDONLY | O_DIRECTORY)?;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let chunk = self.readdir(fid, offset, count)?;
            let Some(last) = chunk.last() else {
                return Ok(out);
            };
            offset = last.offset;
            out.extend(chunk);
        }
    }

    pub fn mkdir(&mut self, dfid: u32, name: &str, mode: u32) -> R<Qid> {
        let b = self.call(TMKDIR, Body::new().u32(dfid).s(name).u32(mode).u32(0))?;
        Ok(Rd(&b).qid())
    }

    pub fn symlink(&mut self, dfid: u32, name: &str, target: &str) -> R<Qid> {
        let b = self.call(TSYMLINK, Body::new().u32(dfid).s(name).s(target).u32(0))?;
        Ok(Rd(&b).qid())
    }

    pub fn mknod(&mut self, dfid: u32, name: &str, mode: u32, major: u32, minor: u32) -> R<Qid> {
        let b = self.call(
            TMKNOD,
            Body::new()
                .u32(dfid)
                .s(name)
                .u32(mode)
                .u32(major)
                .u32(minor)
                .u32(0),
        )?;
        Ok(Rd(&b).qid())
    }

    pub fn readlink(&mut self, fid: u32) -> R<String> {
        let b = self.call(TREADLINK, Body::new().u32(fid))?;
        Ok(String::from_utf8(Rd(&b).s()).unwrap())
    }

    pub fn link(&mut self, dfid: u32, fid: u32, name: &str) -> R<()> {
        self.call(TLINK, Body::new().u32(dfid).u32(fid).s(name))
            .map(drop)
    }

    pub fn rename(&mut self, fid: u32, dfid: u32, name: &str) -> R<()> {
        self.call(TRENAME, Body::new().u32(fid).u32(dfid).s(name))
            .map(drop)
    }

    pub fn renameat(&mut self, od: u32, on: &str, nd: u32, nn: &str) -> R<()> {
        self.call(TRENAMEAT, Body::new().u32(od).s(on).u32(nd).s(nn))
            .map(drop)
    }

    pub fn unlinkat(&mut self, dfid: u32, name: &str, flags: u32) -> R<()> {
        self.call(TUNLINKAT, Body::new().u32(dfid).s(name).u32(flags))
            .map(drop)
    }

    pub fn remove(&mut self, fid: u32) -> R<()> {
        self.call(TREMOVE, Body::new().u32(fid)).map(drop)
    }

    /// Tsetattr with every field given.
    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &mut self,
        fid: u32,
        valid: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        atime: (u64, u64),
        mtime: (u64, u64),
    ) -> R<()> {
        self.call(
            TSETATTR,
            Body::new()
                .u32(fid)
                .u32(valid)
                .u32(mode)
                .u32(uid)
                .u32(gid)
                .u64(size)
                .u64(atime.0)
                .u64(atime.1)
                .u64(mtime.0)
                .u64(mtime.1),
        )
        .map(drop)
    }

    /// Walks `path` into a fresh fid, runs `f` on it, clunks it.
    pub fn with<T>(&mut self, path: &str, f: impl FnOnce(&mut Client, u32) -> T) -> T {
        const TMP: u32 = 0xdead;
        self.walk_path(TMP, path).expect("walk");
        let out = f(self, TMP);
        self.clunk(TMP).unwrap();
        out
    }
}

pub fn cap_std_dir(dir: &Path) -> cap_std::fs::Dir {
    cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).unwrap()
}

/// stat(2) of a host path without following a final symlink.
pub fn host_meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // Files we create are owned by our effective uid.
    let dir = tempfile::tempdir().unwrap();
    std::fs::metadata(dir.path()).unwrap().uid() == 0
}
