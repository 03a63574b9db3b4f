//! The fid table and the request handlers.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, SeekFrom, Statx, StatxFlags, Timestamps,
};
use rustix::io::Errno;
use spin_virtio::p9::{FsBackend, MAX_MESSAGE_LEN};

use crate::ShareOptions;
use crate::wire::{self, HEADER_LEN, QTDIR, QTFILE, QTSYMLINK, Qid, Reader, Writer, kind};

/// The most fids one server keeps at once (more get `EMFILE`).
pub const MAX_FIDS: usize = 1 << 16;
/// The most names one Twalk may carry (the protocol's MAXWELEM).
const MAX_WALK: usize = 16;
/// Smallest msize accepted: every fixed-size reply must fit.
const MIN_MSIZE: u32 = 4096;
/// msize until Tversion says otherwise.
const DEFAULT_MSIZE: u32 = 8192;
/// Header of Rread/Rreaddir: size, type, tag, count.
const IO_HEADER_LEN: u32 = HEADER_LEN as u32 + 4;
/// `f_type` reported by Tstatfs (Linux's V9FS_MAGIC).
const V9FS_MAGIC: u32 = 0x0102_1997;
/// A tag for replies to messages too short to carry one.
const NOTAG: u16 = 0xffff;
/// Size of the getdents buffer (entries past a reply's room are read again
/// next time, so it only bounds one syscall's work).
const DIRENT_BUF: usize = 32 << 10;

// Tsetattr `valid` bits.
const SETATTR_MODE: u32 = 0x1;
const SETATTR_UID: u32 = 0x2;
const SETATTR_GID: u32 = 0x4;
const SETATTR_SIZE: u32 = 0x8;
const SETATTR_ATIME: u32 = 0x10;
const SETATTR_MTIME: u32 = 0x20;
const SETATTR_ATIME_SET: u32 = 0x80;
const SETATTR_MTIME_SET: u32 = 0x100;
/// Tgetattr: mode through blocks (P9_GETATTR_BASIC).
const GETATTR_BASIC: u64 = 0x7ff;

// 9P2000.L open flags (Linux's generic values, whatever the host's are).
const L_ACCMODE: u32 = 3;
const L_EXCL: u32 = 0o200;
const L_TRUNC: u32 = 0o1000;
const L_APPEND: u32 = 0o2000;
const L_DSYNC: u32 = 0o10000;
const L_SYNC: u32 = 0o4000000;
/// Tunlinkat flag (Linux's AT_REMOVEDIR).
const L_AT_REMOVEDIR: u32 = 0x200;
/// Rgetlock type "unlocked".
const LOCK_TYPE_UNLCK: u8 = 2;
/// File type bits of a 9P mode (Linux's S_IFMT and friends).
const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFSOCK: u32 = 0o140000;

type Result<T> = std::result::Result<T, Errno>;

/// What a fid's inode is; fixed for the inode's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// What Tlopen/Tlcreate opened.
enum Open {
    File { fd: OwnedFd, write: bool },
    Dir(OwnedFd),
}

/// One fid: a held handle on its inode and on the directory it was found in.
struct Fid {
    /// The inode itself (`O_PATH`, or the descriptor Tlcreate opened).
    node: Arc<OwnedFd>,
    /// The directory `path`'s last name was found in (none at the root).
    parent: Option<Arc<OwnedFd>>,
    /// Names from the share's root; only used to walk `..`.
    path: Vec<Vec<u8>>,
    kind: Kind,
    qid: Qid,
    open: Option<Open>,
}

impl Fid {
    /// The same file, not open (what a walk or a clone gives).
    fn unopened(&self) -> Fid {
        Fid {
            node: self.node.clone(),
            parent: self.parent.clone(),
            path: self.path.clone(),
            kind: self.kind,
            qid: self.qid,
            open: None,
        }
    }

    fn name(&self) -> &[u8] {
        self.path.last().map(Vec::as_slice).unwrap_or(b"")
    }

    /// The directory holding this fid's name; the root has none.
    fn parent(&self) -> Result<&OwnedFd> {
        self.parent.as_deref().ok_or(Errno::BUSY)
    }

    fn dir(&self) -> Result<&OwnedFd> {
        if self.kind == Kind::Dir {
            Ok(&self.node)
        } else {
            Err(Errno::NOTDIR)
        }
    }
}

/// A 9P2000.L server exporting one host directory (see the crate docs).
pub struct P9Server {
    root: Arc<OwnedFd>,
    root_dev: u64,
    /// Devices other than the root's met so far: their index tags qid paths.
    devices: Vec<u64>,
    read_only: bool,
    msize: u32,
    fids: HashMap<u32, Fid>,
    dirent_buf: Vec<MaybeUninit<u8>>,
}

impl std::fmt::Debug for P9Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P9Server")
            .field("read_only", &self.read_only)
            .field("msize", &self.msize)
            .field("fids", &self.fids.len())
            .finish()
    }
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

fn statx(fd: BorrowedFd<'_>) -> Result<Statx> {
    rfs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
}

fn kind_of(mode: u32) -> Kind {
    match FileType::from_raw_mode(mode) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn qid_type(kind: Kind) -> u8 {
    match kind {
        Kind::Dir => QTDIR,
        Kind::Symlink => QTSYMLINK,
        Kind::File | Kind::Other => QTFILE,
    }
}

fn dev_of(st: &Statx) -> u64 {
    rfs::makedev(st.stx_dev_major, st.stx_dev_minor)
}

/// A name the guest asks to create or look up: one component, no NUL.
fn check_name(name: &[u8]) -> Result<&[u8]> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Errno::INVAL);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::INVAL);
    }
    Ok(name)
}

/// The host's open flags for 9P2000.L ones (access mode, truncation, append,
/// sync); hints that make no sense for a server (direct I/O, noatime, async,
/// ...) are dropped.
fn open_flags(flags: u32) -> Result<OFlags> {
    let mut o = match flags & L_ACCMODE {
        0 => OFlags::RDONLY,
        1 => OFlags::WRONLY,
        2 => OFlags::RDWR,
        _ => return Err(Errno::INVAL),
    };
    if flags & L_TRUNC != 0 {
        o |= OFlags::TRUNC;
    }
    if flags & L_APPEND != 0 {
        o |= OFlags::APPEND;
    }
    if flags & L_SYNC != 0 {
        o |= OFlags::SYNC;
    } else if flags & L_DSYNC != 0 {
        o |= OFlags::DSYNC;
    }
    Ok(o | OFlags::CLOEXEC | OFlags::NOCTTY)
}

/// Whether an open with these 9P2000.L flags may change the file.
fn writes(flags: u32) -> bool {
    flags & L_ACCMODE != 0 || flags & L_TRUNC != 0
}

fn timespec(set: bool, now: bool, sec: u64, nsec: u64) -> rfs::Timespec {
    rfs::Timespec {
        tv_sec: if set { sec as i64 } else { 0 },
        tv_nsec: match (now, set) {
            (false, _) => rfs::UTIME_OMIT,
            (true, false) => rfs::UTIME_NOW,
            // Out-of-range nanoseconds are the host's to refuse (EINVAL).
            (true, true) => nsec.min(i64::MAX as u64) as _,
        },
    }
}

/// `/proc/self/fd/N` for `fd`: a name for exactly that inode, not a path.
fn proc_name(fd: &OwnedFd) -> String {
    fd.as_raw_fd().to_string()
}

impl P9Server {
    /// A server exporting `dir`.
    pub fn new(dir: cap_std::fs::Dir, options: ShareOptions) -> P9Server {
        let root: OwnedFd = dir.into_std_file().into();
        let root_dev = statx(root.as_fd()).map(|s| dev_of(&s)).unwrap_or(0);
        P9Server {
            root: Arc::new(root),
            root_dev,
            devices: Vec::new(),
            read_only: options.read_only,
            msize: DEFAULT_MSIZE,
            fids: HashMap::new(),
            dirent_buf: vec![MaybeUninit::uninit(); DIRENT_BUF],
        }
    }

    /// The msize negotiated by the last Tversion.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// How many fids are live.
    pub fn fid_count(&self) -> usize {
        self.fids.len()
    }

    /// A qid path unique across the devices a share spans: inode numbers of
    /// other filesystems mounted below the root are tagged in their top byte.
    fn qid_path(&mut self, dev: u64, ino: u64) -> u64 {
        if dev == self.root_dev {
            return ino;
        }
        let index = match self.devices.iter().position(|&d| d == dev) {
            Some(i) => i,
            None if self.devices.len() < 255 => {
                self.devices.push(dev);
                self.devices.len() - 1
            }
            None => 254,
        };
        ino ^ ((index as u64 + 1) << 56)
    }

    fn qid(&mut self, st: &Statx) -> Qid {
        Qid {
            kind: qid_type(kind_of(u32::from(st.stx_mode))),
            version: 0,
            path: self.qid_path(dev_of(st), st.stx_ino),
        }
    }

    fn fid(&self, fid: u32) -> Result<&Fid> {
        self.fids.get(&fid).ok_or(Errno::BADF)
    }

    fn fid_mut(&mut self, fid: u32) -> Result<&mut Fid> {
        self.fids.get_mut(&fid).ok_or(Errno::BADF)
    }

    /// Checks that `newfid` may be created.
    fn check_new(&self, newfid: u32) -> Result<()> {
        if self.fids.contains_key(&newfid) {
            return Err(Errno::INVAL);
        }
        if self.fids.len() >= MAX_FIDS {
            return Err(Errno::MFILE);
        }
        Ok(())
    }

    /// A directory fid's handle, held apart from the table (so that the
    /// handler may update the table while using it).
    fn dir_arc(&self, fid: u32) -> Result<Arc<OwnedFd>> {
        let f = self.fid(fid)?;
        f.dir()?;
        Ok(f.node.clone())
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(Errno::ROFS)
        } else {
            Ok(())
        }
    }

    fn root_fid(&mut self) -> Result<Fid> {
        let st = statx(self.root.as_fd())?;
        Ok(Fid {
            node: self.root.clone(),
            parent: None,
            path: Vec::new(),
            kind: Kind::Dir,
            qid: self.qid(&st),
            open: None,
        })
    }

    /// One step of a walk from `from`. Never follows a symlink, never leaves
    /// the root.
    fn step(&mut self, from: &Fid, name: &[u8]) -> Result<Fid> {
        let dir = from.dir()?;
        if name == b".." {
            if from.path.is_empty() {
                return Ok(from.unopened());
            }
            // Walked down again from the root rather than asked of the host,
            // whose `..` could lead out of a directory moved out of the share.
            let mut f = self.root_fid()?;
            for n in &from.path[..from.path.len() - 1] {
                f = self.step(&f, n)?;
            }
            return Ok(f);
        }
        if name == b"." {
            return Ok(from.unopened());
        }
        let name = check_name(name)?;
        let node = rfs::openat(
            dir,
            os(name),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = statx(node.as_fd())?;
        let mut path = from.path.clone();
        path.push(name.to_vec());
        Ok(Fid {
            node: Arc::new(node),
            parent: Some(from.node.clone()),
            path,
            kind: kind_of(u32::from(st.stx_mode)),
            qid: self.qid(&st),
            open: None,
        })
    }

    /// Opens the inode `f` holds, as itself (never by a name that could have
    /// been swapped since the walk).
    fn reopen(&self, f: &Fid, flags: OFlags) -> Result<OwnedFd> {
        if let Ok(proc_fd) = rustix_linux_procfs::proc_self_fd() {
            return rfs::openat(proc_fd, proc_name(&f.node), flags, Mode::empty());
        }
        // Without procfs: the name in the pinned directory, not followed,
        // and only if it is still the same inode.
        let fd = rfs::openat(
            f.parent()?,
            os(f.name()),
            flags | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let (a, b) = (statx(fd.as_fd())?, statx(f.node.as_fd())?);
        if (dev_of(&a), a.stx_ino) != (dev_of(&b), b.stx_ino) {
            return Err(Errno::STALE);
        }
        Ok(fd)
    }

    /// Keeps fids in step with a rename: those at `old` or below move to `new`.
    fn renamed(&mut self, old: &[Vec<u8>], new: &[Vec<u8>], new_parent: &Arc<OwnedFd>) {
        for f in self.fids.values_mut() {
            if f.path.len() >= old.len() && f.path[..old.len()] == *old {
                if f.path.len() == old.len() {
                    f.parent = Some(new_parent.clone());
                }
                f.path.splice(..old.len(), new.iter().cloned());
            }
        }
    }

    fn child_qid(&mut self, dir: &OwnedFd, name: &[u8]) -> Result<Qid> {
        let st = rfs::statx(
            dir,
            os(name),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        )?;
        Ok(self.qid(&st))
    }

    fn dispatch(&mut self, kind: u8, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        match kind {
            kind::TVERSION => self.version(r, w),
            kind::TATTACH => self.attach(r, w),
            kind::TWALK => self.walk(r, w),
            kind::TCLUNK => {
                let fid = r.u32()?;
                self.fids.remove(&fid).ok_or(Errno::BADF).map(drop)
            }
            kind::TREMOVE => self.remove(r),
            kind::TFLUSH => r.u16().map(drop),
            kind::TGETATTR => self.getattr(r, w),
            kind::TSETATTR => self.setattr(r),
            kind::TLOPEN => self.lopen(r, w),
            kind::TLCREATE => self.lcreate(r, w),
            kind::TREAD => self.read(r, w),
            kind::TWRITE => self.write(r, w),
            kind::TREADDIR => self.readdir(r, w),
            kind::TMKDIR => self.mkdir(r, w),
            kind::TSYMLINK => self.symlink(r, w),
            kind::TMKNOD => self.mknod(r, w),
            kind::TREADLINK => self.readlink(r, w),
            kind::TLINK => self.link(r),
            kind::TRENAME => self.rename(r),
            kind::TRENAMEAT => self.renameat(r),
            kind::TUNLINKAT => self.unlinkat(r),
            kind::TSTATFS => self.statfs(r, w),
            kind::TFSYNC => self.fsync(r),
            kind::TXATTRWALK => {
                let (fid, _newfid) = (r.u32()?, r.u32()?);
                let name = r.string()?;
                self.fid(fid)?;
                // No xattrs: a named one is absent, a listing unsupported.
                Err(if name.is_empty() {
                    Errno::OPNOTSUPP
                } else {
                    Errno::NODATA
                })
            }
            kind::TXATTRCREATE => Err(Errno::OPNOTSUPP),
            kind::TLOCK => {
                let fid = r.u32()?;
                self.fid(fid)?;
                // The guest is the only client: its own kernel orders its locks.
                w.u8(0);
                Ok(())
            }
            kind::TGETLOCK => {
                let fid = r.u32()?;
                let _type = r.u8()?;
                let (start, length, proc_id) = (r.u64()?, r.u64()?, r.u32()?);
                let client = r.string()?;
                self.fid(fid)?;
                w.u8(LOCK_TYPE_UNLCK)
                    .u64(start)
                    .u64(length)
                    .u32(proc_id)
                    .string(client);
                Ok(())
            }
            _ => Err(Errno::OPNOTSUPP),
        }
    }

    fn version(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let msize = r.u32()?;
        let version = r.string()?;
        // A new session: whatever the old one held is gone.
        self.fids.clear();
        if msize < MIN_MSIZE {
            return Err(Errno::INVAL);
        }
        self.msize = msize.min(MAX_MESSAGE_LEN);
        tracing::debug!(
            msize = self.msize,
            version = %String::from_utf8_lossy(version),
            "9p session"
        );
        let answer: &[u8] = if version.starts_with(b"9P2000.L") {
            b"9P2000.L"
        } else {
            b"unknown"
        };
        w.u32(self.msize).string(answer);
        Ok(())
    }

    fn attach(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, _afid) = (r.u32()?, r.u32()?);
        let (_uname, aname, _n_uname) = (r.string()?, r.string()?, r.u32()?);
        self.check_new(fid)?;
        let mut f = self.root_fid()?;
        // `aname` may pick a folder of the share (walked like any path).
        for name in aname.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            f = self.step(&f, name)?;
        }
        if f.kind != Kind::Dir {
            return Err(Errno::NOTDIR);
        }
        w.qid(f.qid);
        self.fids.insert(fid, f);
        Ok(())
    }

    fn walk(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, newfid, n) = (r.u32()?, r.u32()?, r.u16()? as usize);
        if n > MAX_WALK {
            return Err(Errno::INVAL);
        }
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            names.push(r.string()?);
        }
        let mut cur = self.fid(fid)?.unopened();
        if newfid != fid {
            self.check_new(newfid)?;
        }
        let mut qids = Vec::with_capacity(n);
        for name in &names {
            match self.step(&cur, name) {
                Ok(next) => {
                    qids.push(next.qid);
                    cur = next;
                }
                Err(e) if qids.is_empty() => return Err(e),
                // A partial walk: the qids so far, and no newfid.
                Err(_) => break,
            }
        }
        w.u16(qids.len() as u16);
        for q in &qids {
            w.qid(*q);
        }
        // (A walk of nothing onto itself changes nothing: the fid stays open.)
        if qids.len() == names.len() && !(names.is_empty() && newfid == fid) {
            self.fids.insert(newfid, cur);
        }
        Ok(())
    }

    fn remove(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let fid = r.u32()?;
        // Tremove clunks the fid whatever happens.
        let f = self.fids.remove(&fid).ok_or(Errno::BADF)?;
        self.writable()?;
        let flags = if f.kind == Kind::Dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rfs::unlinkat(f.parent()?, os(f.name()), flags)
    }

    fn getattr(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let fid = r.u32()?;
        let _mask = r.u64()?;
        let st = statx(self.fid(fid)?.node.as_fd())?;
        let qid = self.qid(&st);
        let ts = |t: rfs::StatxTimestamp| (t.tv_sec as u64, u64::from(t.tv_nsec));
        w.u64(GETATTR_BASIC)
            .qid(qid)
            .u32(u32::from(st.stx_mode))
            .u32(st.stx_uid)
            .u32(st.stx_gid)
            .u64(u64::from(st.stx_nlink))
            .u64(rfs::makedev(st.stx_rdev_major, st.stx_rdev_minor))
            .u64(st.stx_size)
            .u64(u64::from(st.stx_blksize))
            .u64(st.stx_blocks);
        for t in [st.stx_atime, st.stx_mtime, st.stx_ctime] {
            let (s, ns) = ts(t);
            w.u64(s).u64(ns);
        }
        // btime, gen, data_version: not part of the basic set.
        w.u64(0).u64(0).u64(0).u64(0);
        Ok(())
    }

    fn setattr(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let (fid, valid, mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let size = r.u64()?;
        let (asec, ansec, msec, mnsec) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let f = self.fid(fid)?;
        // ctime alone (sent along with most changes) is the host's to keep.
        let changes =
            SETATTR_MODE | SETATTR_UID | SETATTR_GID | SETATTR_SIZE | SETATTR_ATIME | SETATTR_MTIME;
        if valid & changes == 0 {
            return Ok(());
        }
        self.writable()?;
        if valid & SETATTR_MODE != 0 {
            if f.kind == Kind::Symlink {
                return Err(Errno::OPNOTSUPP);
            }
            // chmod of the held inode itself: chmod by name would follow a
            // symlink swapped in since the walk.
            let proc_fd = rustix_linux_procfs::proc_self_fd()?;
            rfs::chmodat(
                proc_fd,
                proc_name(&f.node),
                Mode::from_bits_truncate(mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if valid & (SETATTR_UID | SETATTR_GID) != 0 {
            let uid = (valid & SETATTR_UID != 0).then(|| rfs::Uid::from_raw(uid));
            let gid = (valid & SETATTR_GID != 0).then(|| rfs::Gid::from_raw(gid));
            rfs::chownat(&*f.node, "", uid, gid, AtFlags::EMPTY_PATH)?;
        }
        if valid & SETATTR_SIZE != 0 {
            match (&f.open, f.kind) {
                (Some(Open::File { fd, write: true }), _) => rfs::ftruncate(fd, size)?,
                (_, Kind::File) => {
                    let fd = self.reopen(f, OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY)?;
                    rfs::ftruncate(&fd, size)?;
                }
                (_, Kind::Dir) => return Err(Errno::ISDIR),
                _ => return Err(Errno::INVAL),
            }
        }
        if valid & (SETATTR_ATIME | SETATTR_MTIME) != 0 {
            let times = Timestamps {
                last_access: timespec(
                    valid & SETATTR_ATIME_SET != 0,
                    valid & SETATTR_ATIME != 0,
                    asec,
                    ansec,
                ),
                last_modification: timespec(
                    valid & SETATTR_MTIME_SET != 0,
                    valid & SETATTR_MTIME != 0,
                    msec,
                    mnsec,
                ),
            };
            match f.kind {
                // The name in the pinned directory, final symlink not followed.
                Kind::Symlink => {
                    rfs::utimensat(f.parent()?, os(f.name()), &times, AtFlags::SYMLINK_NOFOLLOW)?
                }
                _ => rfs::utimensat(
                    rustix_linux_procfs::proc_self_fd()?,
                    proc_name(&f.node),
                    &times,
                    AtFlags::empty(),
                )?,
            }
        }
        Ok(())
    }

    fn lopen(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, flags) = (r.u32()?, r.u32()?);
        let f = self.fid(fid)?;
        if f.open.is_some() {
            return Err(Errno::INVAL);
        }
        let oflags = open_flags(flags)?;
        if writes(flags) {
            self.writable()?;
        }
        let open = match f.kind {
            Kind::Dir => {
                if flags & L_ACCMODE != 0 {
                    return Err(Errno::ISDIR);
                }
                Open::Dir(rfs::openat(
                    &*f.node,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?)
            }
            Kind::File => Open::File {
                fd: self.reopen(f, oflags)?,
                write: flags & L_ACCMODE != 0,
            },
            Kind::Symlink => return Err(Errno::LOOP),
            // Fifos, sockets and devices are the guest kernel's business.
            Kind::Other => return Err(Errno::OPNOTSUPP),
        };
        let qid = f.qid;
        self.fid_mut(fid)?.open = Some(open);
        w.qid(qid).u32(0);
        Ok(())
    }

    fn lcreate(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let fid = r.u32()?;
        let name = r.string()?;
        let (flags, mode, _gid) = (r.u32()?, r.u32()?, r.u32()?);
        let f = self.fid(fid)?;
        let dir = f.dir()?;
        if f.open.is_some() {
            return Err(Errno::INVAL);
        }
        self.writable()?;
        let name = check_name(name)?;
        // Only regular files are created or opened here: an existing fifo
        // would block the server, a device would open the host's device.
        // O_NONBLOCK covers a fifo swapped in after the check.
        let existing = match flags & L_EXCL {
            0 => rfs::statx(dir, os(name), AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE),
            // O_EXCL fails on any existing name by itself.
            _ => Err(Errno::NOENT),
        };
        match existing {
            Ok(st) if kind_of(u32::from(st.stx_mode)) == Kind::Symlink => return Err(Errno::LOOP),
            Ok(st) if kind_of(u32::from(st.stx_mode)) != Kind::File => {
                return Err(Errno::EXIST);
            }
            _ => {}
        }
        let mut oflags = open_flags(flags)? | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        if flags & L_EXCL != 0 {
            oflags |= OFlags::EXCL;
        }
        let fd = rfs::openat(
            dir,
            os(name),
            oflags,
            Mode::from_bits_truncate(mode & 0o7777),
        )?;
        let st = statx(fd.as_fd())?;
        if kind_of(u32::from(st.stx_mode)) != Kind::File {
            return Err(Errno::INVAL);
        }
        let node = Arc::new(fd.try_clone().map_err(|_| Errno::MFILE)?);
        let qid = self.qid(&st);
        let f = self.fid_mut(fid)?;
        let parent = std::mem::replace(&mut f.node, node);
        f.parent = Some(parent);
        f.path.push(name.to_vec());
        f.kind = Kind::File;
        f.qid = qid;
        f.open = Some(Open::File {
            fd,
            write: flags & L_ACCMODE != 0,
        });
        w.qid(qid).u32(0);
        Ok(())
    }

    fn read(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let fd = match &self.fid(fid)?.open {
            Some(Open::File { fd, .. }) => fd,
            Some(Open::Dir(_)) => return Err(Errno::ISDIR),
            None => return Err(Errno::BADF),
        };
        let count = count.min(self.msize - IO_HEADER_LEN) as usize;
        let out = w.buffer();
        let at = out.len() + 4;
        out.resize(at + count, 0);
        let n = rustix::io::pread(fd, &mut out[at..], offset);
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                out.truncate(at - 4);
                return Err(e);
            }
        };
        out.truncate(at + n);
        out[at - 4..at].copy_from_slice(&(n as u32).to_le_bytes());
        Ok(())
    }

    fn write(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let data = r.bytes(count as usize)?;
        match &self.fid(fid)?.open {
            Some(Open::File { fd, write: true }) => {
                let n = rustix::io::pwrite(fd, data, offset)?;
                w.u32(n as u32);
                Ok(())
            }
            Some(Open::Dir(_)) => Err(Errno::ISDIR),
            _ => Err(Errno::BADF),
        }
    }

    fn readdir(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let count = count.min(self.msize - IO_HEADER_LEN) as usize;
        let f = self.fids.get(&fid).ok_or(Errno::BADF)?;
        let fd = match &f.open {
            Some(Open::Dir(fd)) => fd,
            Some(Open::File { .. }) => return Err(Errno::NOTDIR),
            None => return Err(Errno::BADF),
        };
        let at_root = f.path.is_empty();
        let root_qid = f.qid;
        let dev = dev_of(&statx(fd.as_fd())?);
        // Offsets are the host's own directory cookies: seeking to the last
        // one sent resumes exactly after it, however many calls it takes.
        rfs::seek(fd, SeekFrom::Start(offset))?;
        // Entries are gathered first: qid paths need `&mut self`.
        let mut entries: Vec<(Qid, u64, u8, Vec<u8>)> = Vec::new();
        let mut used = 0usize;
        // A getdents entry is about as long as its 9P form: a buffer the size
        // of the reply reads little that will be thrown away.
        let buf_len = (count + 512).clamp(1024, DIRENT_BUF);
        let mut raw = RawDir::new(fd, &mut self.dirent_buf[..buf_len]);
        while let Some(entry) = raw.next() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            let len = 13 + 8 + 1 + 2 + name.len();
            if used + len > count {
                if entries.is_empty() {
                    // Not even one entry fits: saying "end" would lose it.
                    return Err(Errno::INVAL);
                }
                break;
            }
            used += len;
            let (qtype, dtype) = match entry.file_type() {
                FileType::Directory => (QTDIR, 4),
                FileType::Symlink => (QTSYMLINK, 10),
                FileType::RegularFile => (QTFILE, 8),
                FileType::Fifo => (QTFILE, 1),
                FileType::CharacterDevice => (QTFILE, 2),
                FileType::BlockDevice => (QTFILE, 6),
                FileType::Socket => (QTFILE, 12),
                _ => (QTFILE, 0),
            };
            entries.push((
                Qid {
                    kind: qtype,
                    version: 0,
                    path: entry.ino(),
                },
                entry.next_entry_cookie(),
                dtype,
                name.to_vec(),
            ));
        }
        w.u32(used as u32);
        for (mut qid, next, dtype, name) in entries {
            if at_root && name == b".." {
                // The root's parent is not the guest's to see.
                qid = root_qid;
            } else {
                qid.path = self.qid_path(dev, qid.path);
            }
            w.qid(qid).u64(next).u8(dtype).string(&name);
        }
        Ok(())
    }

    fn mkdir(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let dfid = r.u32()?;
        let name = r.string()?;
        let (mode, _gid) = (r.u32()?, r.u32()?);
        let dir = self.dir_arc(dfid)?;
        self.writable()?;
        let name = check_name(name)?;
        rfs::mkdirat(&*dir, os(name), Mode::from_bits_truncate(mode & 0o7777))?;
        let qid = self.child_qid(&dir, name)?;
        w.qid(qid);
        Ok(())
    }

    fn symlink(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let dfid = r.u32()?;
        let (name, target) = (r.string()?, r.string()?);
        let _gid = r.u32()?;
        let dir = self.dir_arc(dfid)?;
        self.writable()?;
        let name = check_name(name)?;
        // The target is only data to the server: it is never resolved here.
        rfs::symlinkat(os(target), &*dir, os(name))?;
        let qid = self.child_qid(&dir, name)?;
        w.qid(qid);
        Ok(())
    }

    fn mknod(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let dfid = r.u32()?;
        let name = r.string()?;
        let (mode, _major, _minor, _gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let dir = self.dir_arc(dfid)?;
        self.writable()?;
        let name = check_name(name)?;
        let file_type = match mode & S_IFMT {
            0 | S_IFREG => FileType::RegularFile,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            // Device nodes would hand the guest the host's devices.
            S_IFCHR | S_IFBLK => return Err(Errno::PERM),
            _ => return Err(Errno::INVAL),
        };
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        rfs::mknodat(&*dir, os(name), file_type, perm, 0)?;
        let qid = self.child_qid(&dir, name)?;
        w.qid(qid);
        Ok(())
    }

    fn readlink(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let f = self.fid(r.u32()?)?;
        if f.kind != Kind::Symlink {
            return Err(Errno::INVAL);
        }
        let target = rfs::readlinkat(&*f.node, "", Vec::new())?;
        w.string(target.as_bytes());
        Ok(())
    }

    fn link(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let (dfid, fid) = (r.u32()?, r.u32()?);
        let name = r.string()?;
        let dir = self.fid(dfid)?.dir()?;
        let f = self.fid(fid)?;
        self.writable()?;
        let name = check_name(name)?;
        // No AT_SYMLINK_FOLLOW: a symlink swapped in is linked as itself.
        rfs::linkat(f.parent()?, os(f.name()), dir, os(name), AtFlags::empty())
    }

    fn rename(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let (fid, dfid) = (r.u32()?, r.u32()?);
        let name = r.string()?;
        let d = self.fid(dfid)?;
        let dir = self.dir_arc(dfid)?;
        let mut new_path = d.path.clone();
        let f = self.fid(fid)?;
        self.writable()?;
        let name = check_name(name)?;
        rfs::renameat(f.parent()?, os(f.name()), &*dir, os(name))?;
        let old_path = f.path.clone();
        new_path.push(name.to_vec());
        self.renamed(&old_path, &new_path, &dir);
        Ok(())
    }

    fn renameat(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let olddir = r.u32()?;
        let oldname = r.string()?;
        let newdir = r.u32()?;
        let newname = r.string()?;
        let od = self.fid(olddir)?;
        let from = od.dir()?;
        let nd = self.fid(newdir)?;
        let to = self.dir_arc(newdir)?;
        self.writable()?;
        let (oldname, newname) = (check_name(oldname)?, check_name(newname)?);
        rfs::renameat(from, os(oldname), &*to, os(newname))?;
        let mut old_path = od.path.clone();
        old_path.push(oldname.to_vec());
        let mut new_path = nd.path.clone();
        new_path.push(newname.to_vec());
        self.renamed(&old_path, &new_path, &to);
        Ok(())
    }

    fn unlinkat(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let dfid = r.u32()?;
        let name = r.string()?;
        let flags = r.u32()?;
        let dir = self.fid(dfid)?.dir()?;
        self.writable()?;
        let name = check_name(name)?;
        let flags = if flags & L_AT_REMOVEDIR != 0 {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rfs::unlinkat(dir, os(name), flags)
    }

    fn statfs(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Result<()> {
        let f = self.fid(r.u32()?)?;
        let s = rfs::fstatvfs(&*f.node)?;
        w.u32(V9FS_MAGIC)
            .u32(s.f_bsize.min(u64::from(u32::MAX)) as u32)
            .u64(s.f_blocks)
            .u64(s.f_bfree)
            .u64(s.f_bavail)
            .u64(s.f_files)
            .u64(s.f_ffree)
            .u64(s.f_fsid)
            .u32(s.f_namemax.min(u64::from(u32::MAX)) as u32);
        Ok(())
    }

    fn fsync(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let fid = r.u32()?;
        // Older clients send no datasync field.
        let datasync = r.u32().unwrap_or(0);
        match &self.fid(fid)?.open {
            Some(Open::File { fd, .. }) if datasync != 0 => rfs::fdatasync(fd),
            Some(Open::File { fd, .. }) | Some(Open::Dir(fd)) => rfs::fsync(fd),
            None => Err(Errno::BADF),
        }
    }
}

impl FsBackend for P9Server {
    fn call(&mut self, request: &[u8], response: &mut Vec<u8>) {
        let start = response.len();
        if request.len() < HEADER_LEN {
            wire::lerror(response, NOTAG, Errno::PROTO);
            return;
        }
        let size = u32::from_le_bytes(request[0..4].try_into().expect("4 bytes"));
        let kind = request[4];
        let tag = u16::from_le_bytes([request[5], request[6]]);
        if size as usize != request.len() {
            tracing::debug!(size, len = request.len(), "9p request size mismatch");
            wire::lerror(response, tag, Errno::PROTO);
            return;
        }
        let mut reader = Reader::new(&request[HEADER_LEN..]);
        let mut writer = Writer::new(response, kind.wrapping_add(1), tag);
        match self.dispatch(kind, &mut reader, &mut writer) {
            Ok(()) if writer.len() <= self.msize as usize => writer.finish(),
            result => {
                response.truncate(start);
                let errno = result.err().unwrap_or(Errno::MSGSIZE);
                tracing::trace!(kind, %errno, "9p request failed");
                wire::lerror(response, tag, errno);
            }
        }
    }
}
