//! The server at message level, against files the test makes with std::fs.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

#[test]
fn version_negotiates_msize_and_resets_fids() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(dir.path(), false);
    assert_eq!(c.msize, 256 * 1024 + 4096);
    assert_eq!(
        c.version(64 << 20, "9P2000.L").unwrap().0,
        spin_virtio::p9::MAX_MESSAGE_LEN
    );
    assert_eq!(c.version(8192, "9P2000.u").unwrap().1, "unknown");
    assert_eq!(c.version(100, "9P2000.L"), Err(EINVAL));
    c.version(8192, "9P2000.L").unwrap();
    // The reset dropped the root fid.
    assert_eq!(c.getattr(ROOT).unwrap_err(), EBADF);
    c.attach(ROOT).unwrap();
    assert_eq!(c.attach(ROOT), Err(EINVAL), "attach to a live fid");
    assert!(c.getattr(ROOT).is_ok());
}

#[test]
fn getattr_shows_the_host_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, b"hello, 9p").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    fs::create_dir(dir.path().join("d")).unwrap();
    std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
    let mut c = Client::new(dir.path(), false);

    c.walk_path(2, "f").unwrap();
    let a = c.getattr(2).unwrap();
    let m = host_meta(&file);
    assert_eq!(a.valid & 0x7ff, 0x7ff);
    assert_eq!(a.mode, 0o100640);
    assert_eq!(a.mode, m.mode());
    assert_eq!(a.uid, m.uid());
    assert_eq!(a.gid, m.gid());
    assert_eq!(a.size, 9);
    assert_eq!(a.nlink, 1);
    assert_eq!(a.qid.path, m.ino());
    assert_eq!(a.qid.kind, 0);
    assert_eq!(a.blocks, m.blocks());
    assert_eq!(a.blksize, m.blksize());
    assert_eq!(a.mtime, (m.mtime() as u64, m.mtime_nsec() as u64));
    assert_eq!(a.atime, (m.atime() as u64, m.atime_nsec() as u64));
    assert_eq!(a.ctime, (m.ctime() as u64, m.ctime_nsec() as u64));

    let q = c.walk_path(3, "d").unwrap();
    assert_eq!(q.kind, 0x80);
    assert_eq!(c.getattr(3).unwrap().mode & 0o170000, 0o040000);
    let q = c.walk_path(4, "l").unwrap();
    assert_eq!(q.kind, 0x02, "a symlink is walked to as itself");
    assert_eq!(c.getattr(4).unwrap().mode & 0o170000, 0o120000);
    assert_eq!(c.readlink(4).unwrap(), "f");
    assert_eq!(c.readlink(2), Err(EINVAL));

    // A file owned by someone else shows that owner (root only can chown).
    if is_root() {
        std::os::unix::fs::chown(&file, Some(1234), Some(4321)).unwrap();
        let a = c.getattr(2).unwrap();
        assert_eq!((a.uid, a.gid), (1234, 4321));
    }
}

#[test]
fn walk_is_partial_and_clones() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    let mut c = Client::new(dir.path(), false);
    // First name missing: an error, no newfid.
    assert_eq!(c.walk(ROOT, 2, &["nope"]), Err(ENOENT));
    assert_eq!(c.clunk(2), Err(EBADF));
    // Later name missing: the qids so far, still no newfid.
    let q = c.walk(ROOT, 2, &["a", "b", "c", "d"]).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(c.clunk(2), Err(EBADF));
    // Full walk, then a clone (no names), then walk in place (fid == newfid).
    assert_eq!(c.walk(ROOT, 2, &["a", "b"]).unwrap().len(), 2);
    assert_eq!(c.walk(2, 3, &[]).unwrap().len(), 0);
    assert_eq!(c.walk(3, 3, &[".."]).unwrap().len(), 1);
    assert_eq!(
        c.getattr(3).unwrap().qid.path,
        host_meta(&dir.path().join("a")).ino()
    );
    // A live newfid cannot be reused; unknown fids are EBADF.
    assert_eq!(c.walk(ROOT, 2, &["a"]), Err(EINVAL));
    assert_eq!(c.walk(77, 78, &["a"]), Err(EBADF));
    // 17 names are too many.
    let many = vec!["a"; 17];
    assert_eq!(c.walk(ROOT, 9, &many), Err(EINVAL));
    // Walking from a file fails.
    fs::write(dir.path().join("f"), b"").unwrap();
    c.walk_path(10, "f").unwrap();
    assert_eq!(c.walk(10, 11, &["x"]), Err(ENOTDIR));
    for fid in [2, 3, 10] {
        c.clunk(fid).unwrap();
    }
    assert_eq!(c.server.fid_count(), 1);
}

#[test]
fn create_write_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(dir.path(), false);
    c.walk(ROOT, 2, &[]).unwrap();
    let q = c.lcreate(2, "new.txt", O_RDWR, 0o600).unwrap();
    assert_eq!(q.kind, 0);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut off = 0;
    for chunk in data.chunks(50_000) {
        assert_eq!(c.write(2, off, chunk).unwrap(), chunk.len() as u32);
        off += chunk.len() as u64;
    }
    // Reads are capped to the msize.
    let big = c.read(2, 0, u32::MAX).unwrap();
    assert_eq!(big.len(), (c.msize - 11) as usize);
    assert_eq!(c.read_all(2).unwrap(), data);
    c.clunk(2).unwrap();
    let path = dir.path().join("new.txt");
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(host_meta(&path).mode() & 0o777, 0o600);

    // O_EXCL on an existing name.
    c.walk(ROOT, 2, &[]).unwrap();
    assert_eq!(c.lcreate(2, "new.txt", O_RDWR | O_EXCL, 0o600), Err(EEXIST));
    assert_eq!(c.lcreate(2, "a/b", O_RDWR, 0o600), Err(EINVAL));
    c.clunk(2).unwrap();

    // Reopen with O_TRUNC; a read-only open refuses writes.
    c.walk_path(3, "new.txt").unwrap();
    c.lopen(3, O_WRONLY | O_TRUNC).unwrap();
    assert_eq!(c.lopen(3, O_RDONLY), Err(EINVAL), "already open");
    c.write(3, 0, b"short").unwrap();
    c.clunk(3).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"short");
    c.walk_path(3, "new.txt").unwrap();
    assert_eq!(c.read(3, 0, 10), Err(EBADF), "not open");
    c.lopen(3, O_RDONLY).unwrap();
    // A walk of no names onto the same fid leaves it open.
    assert_eq!(c.walk(3, 3, &[]).unwrap().len(), 0);
    assert_eq!(c.write(3, 0, b"x"), Err(EBADF));
    assert_eq!(c.read(3, 1, 100).unwrap(), b"hort");
    c.call(TFSYNC, Body::new().u32(3).u32(0)).unwrap();
    c.clunk(3).unwrap();

    // Directories cannot be opened for writing.
    c.walk(ROOT, 4, &[]).unwrap();
    assert_eq!(c.lopen(4, O_RDWR), Err(EISDIR));
}

#[test]
fn readdir_of_10000_entries_lists_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    fs::create_dir(&big).unwrap();
    let mut names = HashSet::new();
    for i in 0..10_000 {
        let name = format!("entry-{i:05}-{}", "x".repeat(i % 40));
        fs::write(big.join(&name), b"").unwrap();
        names.insert(name);
    }
    fs::create_dir(big.join("sub")).unwrap();
    names.insert("sub".into());
    let mut c = Client::new(dir.path(), false);
    // Small counts (a few entries a call) and a large one.
    for count in [80, 200, 4096, 1 << 20] {
        c.walk_path(2, "big").unwrap();
        let all = c.list(2, count).unwrap();
        c.clunk(2).unwrap();
        let mut seen = HashSet::new();
        for e in &all {
            assert!(seen.insert(e.name.clone()), "{} listed twice", e.name);
        }
        assert!(seen.remove("."));
        assert!(seen.remove(".."));
        assert_eq!(seen, names, "count {count}");
        let sub = all.iter().find(|e| e.name == "sub").unwrap();
        assert_eq!((sub.qid.kind, sub.dtype), (0x80, 4));
        let f = all.iter().find(|e| e.name == "entry-00001-x").unwrap();
        assert_eq!((f.qid.kind, f.dtype), (0, 8));
        assert_eq!(f.qid.path, host_meta(&big.join("entry-00001-x")).ino());
    }
    // A count too small for the next entry is an error, not an end.
    c.walk_path(2, "big").unwrap();
    c.lopen(2, O_RDONLY).unwrap();
    assert_eq!(c.readdir(2, 0, 10).unwrap_err(), EINVAL);
    // Reading a directory that is not open is refused.
    c.walk_path(3, "big").unwrap();
    assert_eq!(c.readdir(3, 0, 4096).unwrap_err(), EBADF);
}

#[test]
fn root_dotdot_entry_does_not_show_the_host_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(dir.path(), false);
    let root = c.getattr(ROOT).unwrap().qid;
    c.walk(ROOT, 2, &[]).unwrap();
    let all = c.list(2, 4096).unwrap();
    let dotdot = all.iter().find(|e| e.name == "..").unwrap();
    assert_eq!(dotdot.qid, root);
}

#[test]
fn namespace_operations() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("f"), b"data").unwrap();
    let mut c = Client::new(p, false);

    // mkdir, with the mode asked (the umask of this process may take bits).
    let q = c.mkdir(ROOT, "d", 0o750).unwrap();
    assert_eq!(q.kind, 0x80);
    assert!(p.join("d").is_dir());
    assert_eq!(q.path, host_meta(&p.join("d")).ino());
    assert_eq!(c.mkdir(ROOT, "d", 0o750), Err(EEXIST));
    assert_eq!(c.mkdir(ROOT, "..", 0o750), Err(EINVAL));

    // symlink + readlink: targets are stored as given, even absolute ones.
    let q = c.symlink(ROOT, "s", "/etc/passwd").unwrap();
    assert_eq!(q.kind, 0x02);
    assert_eq!(
        fs::read_link(p.join("s")).unwrap().to_str().unwrap(),
        "/etc/passwd"
    );
    c.walk_path(2, "s").unwrap();
    assert_eq!(c.readlink(2).unwrap(), "/etc/passwd");
    c.clunk(2).unwrap();

    // link
    c.walk_path(2, "f").unwrap();
    c.walk_path(3, "d").unwrap();
    c.link(3, 2, "hard").unwrap();
    assert_eq!(
        host_meta(&p.join("d/hard")).ino(),
        host_meta(&p.join("f")).ino()
    );
    assert_eq!(c.getattr(2).unwrap().nlink, 2);

    // rename (Trename) moves the fid with it.
    c.rename(2, 3, "moved").unwrap();
    assert!(!p.join("f").exists());
    assert_eq!(fs::read(p.join("d/moved")).unwrap(), b"data");
    c.lopen(2, O_RDONLY).unwrap();
    assert_eq!(c.read(2, 0, 100).unwrap(), b"data");
    c.clunk(2).unwrap();

    // renameat, then `..` from a fid below the renamed folder follows the move.
    c.mkdir(3, "inner", 0o755).unwrap();
    c.walk_path(4, "d/inner").unwrap();
    c.renameat(ROOT, "d", ROOT, "e").unwrap();
    assert!(p.join("e/moved").exists());
    let q = c.walk(4, 5, &[".."]).unwrap();
    assert_eq!(q[0].path, host_meta(&p.join("e")).ino());
    c.clunk(5).unwrap();
    assert_eq!(c.renameat(ROOT, "nope", ROOT, "x"), Err(ENOENT));

    // unlinkat, with and without AT_REMOVEDIR.
    c.mkdir(3, "sub", 0o755).unwrap();
    assert_eq!(c.unlinkat(3, "sub", 0), Err(EISDIR));
    c.unlinkat(3, "sub", AT_REMOVEDIR).unwrap();
    assert!(!p.join("e/sub").exists());
    c.unlinkat(3, "hard", 0).unwrap();
    assert!(!p.join("e/hard").exists());
    assert_eq!(c.unlinkat(ROOT, "e", AT_REMOVEDIR), Err(ENOTEMPTY));

    // Tremove clunks even when it fails.
    c.walk_path(6, "e").unwrap();
    assert_eq!(c.remove(6), Err(ENOTEMPTY));
    assert_eq!(c.clunk(6), Err(EBADF));
    c.walk_path(6, "e/moved").unwrap();
    c.remove(6).unwrap();
    assert!(!p.join("e/moved").exists());
    // The root cannot be removed.
    c.walk(ROOT, 7, &[]).unwrap();
    assert!(c.remove(7).is_err());
    assert!(p.exists());

    // mknod: a fifo is fine, a device is refused.
    let q = c.mknod(ROOT, "fifo", 0o010644, 0, 0).unwrap();
    assert_eq!(q.kind, 0);
    assert!(host_meta(&p.join("fifo")).file_type().is_fifo_like());
    assert_eq!(c.mknod(ROOT, "null", 0o020666, 1, 3), Err(EPERM));
    assert!(!p.join("null").exists());
    // Opening the fifo is the guest's business, not the host's.
    c.walk_path(8, "fifo").unwrap();
    assert_eq!(c.lopen(8, O_RDONLY), Err(EOPNOTSUPP));
    // Creating over it neither blocks (no reader) nor opens it.
    c.walk(ROOT, 9, &[]).unwrap();
    assert_eq!(c.lcreate(9, "fifo", O_WRONLY, 0o644), Err(EEXIST));
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn setattr_truncate_mode_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    fs::write(&path, b"0123456789").unwrap();
    let mut c = Client::new(dir.path(), false);
    c.walk_path(2, "f").unwrap();

    // Truncate an unopened fid (like truncate(1)).
    c.setattr(2, 0x8 | 0x20 | 0x40, 0, 0, 0, 4, (0, 0), (0, 0))
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123");
    // Grow it.
    c.setattr(2, 0x8, 0, 0, 0, 100, (0, 0), (0, 0)).unwrap();
    assert_eq!(host_meta(&path).len(), 100);

    // Mode (type bits from the client are ignored).
    c.setattr(2, 0x1, 0o100604, 0, 0, 0, (0, 0), (0, 0))
        .unwrap();
    assert_eq!(host_meta(&path).mode() & 0o7777, 0o604);

    // Times set exactly, with nanoseconds.
    c.setattr(
        2,
        0x10 | 0x20 | 0x80 | 0x100,
        0,
        0,
        0,
        0,
        (1_000_000_000, 123_456_789),
        (1_200_000_000, 987_654_321),
    )
    .unwrap();
    let m = host_meta(&path);
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_200_000_000, 987_654_321));
    let a = c.getattr(2).unwrap();
    assert_eq!(a.mtime, (1_200_000_000, 987_654_321));

    // mtime NOW, atime untouched.
    c.setattr(2, 0x20, 0, 0, 0, 0, (0, 0), (0, 0)).unwrap();
    let m = host_meta(&path);
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000_000, 123_456_789));
    assert!(m.mtime() > 1_600_000_000);

    // chown to ourselves works; to someone else only for root (else EPERM).
    let me = host_meta(&path);
    c.setattr(2, 0x2 | 0x4, 0, me.uid(), me.gid(), 0, (0, 0), (0, 0))
        .unwrap();
    let r = c.setattr(2, 0x2, 0, 4242, 0, 0, (0, 0), (0, 0));
    if is_root() {
        r.unwrap();
        assert_eq!(host_meta(&path).uid(), 4242);
        assert_eq!(host_meta(&path).gid(), me.gid());
    } else {
        assert_eq!(r, Err(EPERM));
    }

    // Symlinks: times apply to the link, never to its target.
    std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
    c.walk_path(3, "l").unwrap();
    c.setattr(3, 0x20 | 0x100, 0, 0, 0, 0, (0, 0), (1_300_000_000, 0))
        .unwrap();
    assert_eq!(host_meta(&dir.path().join("l")).mtime(), 1_300_000_000);
    assert_ne!(host_meta(&path).mtime(), 1_300_000_000);
    assert_eq!(
        c.setattr(3, 0x8, 0, 0, 0, 0, (0, 0), (0, 0)),
        Err(EINVAL),
        "truncating a symlink"
    );
    assert_eq!(fs::read(&path).unwrap().len(), 100);
}

#[test]
fn statfs_lock_xattr_flush_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(dir.path(), false);
    let b = c.call(TSTATFS, Body::new().u32(ROOT)).unwrap();
    let mut r = Rd(&b);
    assert_eq!(r.u32(), 0x01021997);
    assert!(r.u32() > 0, "bsize");
    assert!(r.u64() > 0, "blocks");

    let b = c
        .call(
            TLOCK,
            Body::new()
                .u32(ROOT)
                .u8(1)
                .u32(0)
                .u64(0)
                .u64(10)
                .u32(7)
                .s("me"),
        )
        .unwrap();
    assert_eq!(b, [0]);
    let b = c
        .call(
            TGETLOCK,
            Body::new().u32(ROOT).u8(1).u64(5).u64(10).u32(7).s("me"),
        )
        .unwrap();
    let mut r = Rd(&b);
    assert_eq!(r.u8(), 2, "unlocked");
    assert_eq!((r.u64(), r.u64(), r.u32()), (5, 10, 7));
    assert_eq!(r.s(), b"me");

    assert_eq!(
        c.call(TXATTRWALK, Body::new().u32(ROOT).u32(2).s("user.x")),
        Err(ENODATA)
    );
    assert_eq!(
        c.call(TXATTRWALK, Body::new().u32(ROOT).u32(2).s("")),
        Err(EOPNOTSUPP)
    );
    assert_eq!(
        c.call(
            TXATTRCREATE,
            Body::new().u32(ROOT).s("user.x").u64(1).u32(0)
        ),
        Err(EOPNOTSUPP)
    );
    assert_eq!(c.call(TFLUSH, Body::new().u16(3)).unwrap(), b"");
    // Tauth and the legacy Tstat/Topen are not served.
    assert_eq!(c.call(102, Body::new()), Err(EOPNOTSUPP));
    assert_eq!(c.call(112, Body::new().u32(ROOT).u8(0)), Err(EOPNOTSUPP));
    assert_eq!(c.call(200, Body::new()), Err(EOPNOTSUPP));
}

#[test]
fn open_path_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let e = spin_p9::P9Server::open(dir.path().join("missing"), false).unwrap_err();
    assert!(matches!(e, spin_p9::Error::NotFound(_)), "{e}");
    assert!(e.to_string().contains("does not exist"));
    fs::write(dir.path().join("file"), b"").unwrap();
    let e = spin_p9::P9Server::open(dir.path().join("file"), false).unwrap_err();
    assert!(matches!(e, spin_p9::Error::NotADirectory(_)), "{e}");
    assert!(spin_p9::P9Server::open(dir.path(), true).is_ok());
}
