//! No way out of the share: `..`, symlinks (absolute, relative, swapped in
//! during a request sequence), read-only shares, malformed messages.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// A tempdir holding `share/` (exported) and `outside/` (must stay untouched).
struct Setup {
    _dir: tempfile::TempDir,
    share: std::path::PathBuf,
    outside: std::path::PathBuf,
}

const SECRET: &[u8] = b"OUTSIDE SECRET\n";

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let outside = dir.path().join("outside");
    fs::create_dir(&share).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
    Setup {
        _dir: dir,
        share,
        outside,
    }
}

impl Setup {
    /// The outside file is as it was made.
    fn assert_outside_intact(&self) {
        let secret = self.outside.join("secret");
        assert_eq!(fs::read(&secret).unwrap(), SECRET);
        let m = host_meta(&secret);
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_eq!(m.nlink(), 1);
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "nothing created outside");
    }
}

#[test]
fn dotdot_at_the_root_stays_at_the_root() {
    let s = setup();
    fs::create_dir(s.share.join("a")).unwrap();
    let mut c = Client::new(&s.share, false);
    let root = c.getattr(ROOT).unwrap().qid;
    let qids = c.walk(ROOT, 2, &["..", "..", "..", "outside"]).unwrap();
    assert_eq!(&qids[..3], &[root; 3]);
    assert_eq!(qids.len(), 3, "outside/ is not below the root");
    let qids = c.walk(ROOT, 2, &["a", "..", "..", ".."]).unwrap();
    assert_eq!(qids.len(), 4);
    assert_eq!(qids[3], root);
    assert_eq!(c.getattr(2).unwrap().qid, root);
    assert_eq!(c.getattr(2).unwrap().qid.path, host_meta(&s.share).ino());
    // Names with a slash are never looked up as paths.
    assert_eq!(c.walk(ROOT, 3, &["../outside"]), Err(EINVAL));
    assert_eq!(c.walk(ROOT, 3, &["a/../../outside"]), Err(EINVAL));
    assert_eq!(c.walk(ROOT, 3, &["a\0b"]), Err(EINVAL));
    // An attach name is walked the same way.
    c.call(
        TATTACH,
        Body::new().u32(9).u32(!0).s("").s("../../outside").u32(0),
    )
    .unwrap_err();
    let b = c
        .call(TATTACH, Body::new().u32(9).u32(!0).s("").s("/../..").u32(0))
        .unwrap();
    assert_eq!(Rd(&b).qid(), root);
}

#[test]
fn symlinks_are_never_followed() {
    let s = setup();
    symlink("/", s.share.join("slash")).unwrap();
    symlink("../..", s.share.join("up")).unwrap();
    symlink(&s.outside, s.share.join("out")).unwrap();
    symlink("../outside/secret", s.share.join("rel")).unwrap();
    symlink("/etc/passwd", s.share.join("passwd")).unwrap();
    let mut c = Client::new(&s.share, false);

    for (link, next) in [("slash", "etc"), ("up", "outside"), ("out", "secret")] {
        // The link itself is what a walk reaches...
        let q = c.walk(ROOT, 2, &[link]).unwrap();
        assert_eq!(q[0].kind, 0x02, "{link}");
        assert_eq!(q[0].path, host_meta(&s.share.join(link)).ino());
        c.clunk(2).unwrap();
        // ...and nothing beyond it.
        let q = c.walk(ROOT, 2, &[link, next]).unwrap();
        assert_eq!(q.len(), 1, "{link}/{next} must not resolve");
        assert_eq!(c.clunk(2), Err(EBADF));
        c.walk(ROOT, 3, &[link]).unwrap();
        assert_eq!(c.walk(3, 4, &[next]), Err(ENOTDIR), "{link}/{next}");
        assert_eq!(c.mkdir(3, "x", 0o755), Err(ENOTDIR));
        assert_eq!(c.lcreate(3, "x", O_RDWR, 0o644), Err(ENOTDIR));
        assert_eq!(c.symlink(3, "x", "y"), Err(ENOTDIR));
        assert_eq!(c.unlinkat(3, "secret", 0), Err(ENOTDIR));
        c.clunk(3).unwrap();
    }

    // Opening a symlink does not open its target.
    for link in ["passwd", "rel"] {
        c.walk(ROOT, 2, &[link]).unwrap();
        for flags in [O_RDONLY, O_RDWR, O_WRONLY | O_TRUNC] {
            assert_eq!(c.lopen(2, flags), Err(ELOOP), "{link} {flags:o}");
        }
        assert_eq!(c.read(2, 0, 4096), Err(EBADF));
        // No change goes through to the target either.
        assert_eq!(
            c.setattr(2, 0x1, 0o777, 0, 0, 0, (0, 0), (0, 0)),
            Err(EOPNOTSUPP)
        );
        assert_eq!(c.setattr(2, 0x8, 0, 0, 0, 0, (0, 0), (0, 0)), Err(EINVAL));
        c.setattr(2, 0x20 | 0x100, 0, 0, 0, 0, (0, 0), (1_000, 0))
            .unwrap();
        c.clunk(2).unwrap();
    }
    // Creating over a symlink name neither follows nor truncates it.
    for flags in [O_RDWR, O_WRONLY | O_TRUNC] {
        assert_eq!(c.lcreate_at_root("rel", flags), Err(ELOOP));
    }
    assert_eq!(c.lcreate_at_root("rel", O_RDWR | O_EXCL), Err(EEXIST));
    // A hard link of the link is a link to the link.
    c.walk(ROOT, 2, &["rel"]).unwrap();
    c.link(ROOT, 2, "rel2").unwrap();
    assert!(host_meta(&s.share.join("rel2")).file_type().is_symlink());
    // Renaming the symlink moves the symlink.
    c.renameat(ROOT, "rel", ROOT, "rel3").unwrap();
    assert!(host_meta(&s.share.join("rel3")).file_type().is_symlink());
    // Removing it removes the symlink.
    c.unlinkat(ROOT, "rel3", 0).unwrap();
    s.assert_outside_intact();
}

trait CreateAtRoot {
    fn lcreate_at_root(&mut self, name: &str, flags: u32) -> R<Qid>;
}

impl CreateAtRoot for Client {
    fn lcreate_at_root(&mut self, name: &str, flags: u32) -> R<Qid> {
        self.walk(ROOT, 50, &[]).unwrap();
        let r = self.lcreate(50, name, flags, 0o644);
        self.clunk(50).unwrap();
        r
    }
}

#[test]
fn renamed_out_directory_gives_no_way_up() {
    // A folder moved out of the share by the host while the guest holds a fid
    // below it: `..` from there is resolved from the root, not by the host.
    let s = setup();
    fs::create_dir_all(s.share.join("a/b")).unwrap();
    let mut c = Client::new(&s.share, false);
    c.walk_path(2, "a/b").unwrap();
    fs::rename(s.share.join("a"), s.outside.join("a")).unwrap();
    let r = c.walk(2, 3, &["..", ".."]);
    assert!(matches!(r, Err(ENOENT)), "{r:?}");
    fs::rename(s.outside.join("a"), s.share.join("a")).unwrap();
    s.assert_outside_intact();
}

#[test]
fn read_only_share_refuses_every_change() {
    let s = setup();
    let p = &s.share;
    fs::write(p.join("f"), b"keep").unwrap();
    fs::create_dir(p.join("d")).unwrap();
    symlink("f", p.join("l")).unwrap();
    let before = host_meta(&p.join("f"));
    let mut c = Client::new(p, true);
    c.walk_path(2, "f").unwrap();
    c.walk_path(3, "d").unwrap();
    for flags in [O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_WRONLY | O_TRUNC] {
        assert_eq!(c.lopen(2, flags), Err(EROFS), "lopen {flags:o}");
    }
    assert_eq!(c.lcreate(3, "n", O_RDWR, 0o644), Err(EROFS));
    assert_eq!(c.mkdir(3, "n", 0o755), Err(EROFS));
    assert_eq!(c.symlink(3, "n", "f"), Err(EROFS));
    assert_eq!(c.mknod(3, "n", 0o010644, 0, 0), Err(EROFS));
    assert_eq!(c.link(3, 2, "n"), Err(EROFS));
    assert_eq!(c.rename(2, 3, "n"), Err(EROFS));
    assert_eq!(c.renameat(ROOT, "f", ROOT, "n"), Err(EROFS));
    assert_eq!(c.unlinkat(ROOT, "f", 0), Err(EROFS));
    assert_eq!(c.unlinkat(ROOT, "d", AT_REMOVEDIR), Err(EROFS));
    for valid in [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x10 | 0x80, 0x20 | 0x100] {
        assert_eq!(
            c.setattr(2, valid, 0o777, 0, 0, 0, (5, 0), (5, 0)),
            Err(EROFS),
            "setattr {valid:#x}"
        );
    }
    c.walk_path(4, "f").unwrap();
    assert_eq!(c.remove(4), Err(EROFS));
    assert_eq!(c.clunk(4), Err(EBADF), "Tremove clunked");
    // Reading still works.
    c.lopen(2, O_RDONLY).unwrap();
    assert_eq!(c.read(2, 0, 100).unwrap(), b"keep");
    assert_eq!(c.write(2, 0, b"x"), Err(EBADF));
    let names: Vec<String> = c
        .list(3, 4096)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 2);

    let after = host_meta(&p.join("f"));
    assert_eq!(fs::read(p.join("f")).unwrap(), b"keep");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    let mut names: Vec<_> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "f", "l"]);
    assert_eq!(fs::read_dir(p.join("d")).unwrap().count(), 0);
}

/// Swaps `share/d` (a real folder) and `share/d_link` (a symlink to outside)
/// as fast as it can, while the server walks, opens, reads and changes
/// `d/secret`: nothing it does may reach outside.
#[test]
fn symlink_race_never_escapes() {
    let s = setup();
    let d = s.share.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("secret"), b"inside").unwrap();
    symlink(&s.outside, s.share.join("d_link")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let share = cap_std_dir(&s.share);
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    &share,
                    "d",
                    &share,
                    "d_link",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };

    let mut c = Client::new(&s.share, false);
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut reads, mut opens, mut iterations) = (0u32, 0u32, 0u32);
    while Instant::now() < deadline {
        iterations += 1;
        // Walk in one message, open, read.
        if c.walk(ROOT, 2, &["d", "secret"])
            .is_ok_and(|q| q.len() == 2)
        {
            if c.lopen(2, O_RDWR).is_ok() {
                opens += 1;
                let data = c.read(2, 0, 100).unwrap();
                assert_eq!(data, b"inside");
                reads += 1;
            }
            // Changes by an unopened fid.
            let _ = c.setattr(2, 0x1, 0o600, 0, 0, 0, (0, 0), (0, 0));
            let _ = c.setattr(2, 0x8, 0, 0, 0, 6, (0, 0), (0, 0));
            let _ = c.setattr(2, 0x20 | 0x100, 0, 0, 0, 0, (0, 0), (7, 0));
            c.clunk(2).unwrap();
        } else {
            let _ = c.clunk(2);
        }
        // Walk the folder, then (after a swap, maybe) name things in it.
        if c.walk(ROOT, 3, &["d"]).is_ok_and(|q| q.len() == 1) {
            // Truncates the inside file (the fid holds the real folder) and
            // puts its content back.
            if c.lcreate(3, "secret", O_WRONLY | O_TRUNC, 0o600).is_ok() {
                c.write(3, 0, b"inside").unwrap();
            }
            let _ = c.clunk(3);
            c.walk(ROOT, 3, &["d"]).unwrap_or_default();
            let _ = c.mkdir(3, "made", 0o755);
            let _ = c.unlinkat(3, "made", AT_REMOVEDIR);
            let _ = c.symlink(3, "made", "x");
            let _ = c.unlinkat(3, "made", 0);
            if c.walk(3, 4, &["secret"]).is_ok() {
                if c.lopen(4, O_RDONLY).is_ok() {
                    assert_eq!(c.read(4, 0, 100).unwrap(), b"inside");
                    reads += 1;
                }
                c.clunk(4).unwrap();
            }
        }
        let _ = c.clunk(3);
        s.assert_outside_intact();
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("race: {iterations} iterations, {opens} opens, {reads} reads, {swaps} swaps");
    assert!(swaps > 100, "the swapper ran");
    assert!(reads > 10, "some reads happened");
    s.assert_outside_intact();
}

#[test]
fn malformed_messages_get_errors() {
    let s = setup();
    fs::write(s.share.join("f"), b"data").unwrap();
    let mut c = Client::new(&s.share, false);

    // Shorter than a header: an Rlerror with no tag to echo.
    for len in 0..7 {
        let out = c.raw(&vec![0xff; len]);
        assert_eq!(out[4], RLERROR);
        assert_eq!(&out[5..7], &[0xff, 0xff]);
    }
    // A size field that lies.
    let mut m = message(TCLUNK, 1, &ROOT.to_le_bytes());
    m[0] = 200;
    let out = c.raw(&m);
    assert_eq!((out[4], out[7]), (RLERROR, EPROTO as u8));

    // Every well-formed request, cut short at every length: EPROTO, no panic.
    let full = [
        (TWALK, Body::new().u32(ROOT).u32(5).u16(2).s("f").s("x")),
        (TGETATTR, Body::new().u32(ROOT).u64(0x7ff)),
        (TREAD, Body::new().u32(ROOT).u64(0).u32(10)),
        (
            TWRITE,
            Body::new().u32(ROOT).u64(0).u32(3).u8(1).u8(2).u8(3),
        ),
        (TREADDIR, Body::new().u32(ROOT).u64(0).u32(100)),
        (
            TLCREATE,
            Body::new().u32(ROOT).s("n").u32(2).u32(0o644).u32(0),
        ),
        (
            TSETATTR,
            Body::new()
                .u32(ROOT)
                .u32(0)
                .u32(0)
                .u32(0)
                .u32(0)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0),
        ),
        (TRENAMEAT, Body::new().u32(ROOT).s("a").u32(ROOT).s("b")),
        (TVERSION, Body::new().u32(8192).s("9P2000.L")),
        (TATTACH, Body::new().u32(9).u32(!0).s("u").s("").u32(0)),
    ];
    for (kind, body) in &full {
        for cut in 0..body.0.len() {
            assert_eq!(
                c.call(*kind, Body(body.0[..cut].to_vec())),
                Err(EPROTO),
                "type {kind} cut at {cut}"
            );
        }
    }
    assert_eq!(c.server.fid_count(), 1, "no fid made by a cut message");

    // A string length past the end of the message.
    assert_eq!(
        c.call(
            TWALK,
            Body::new().u32(ROOT).u32(5).u16(1).u16(0xffff).u8(b'f')
        ),
        Err(EPROTO)
    );
    // Too many names, a count past the data, fids nobody made.
    assert_eq!(
        c.call(TWALK, Body::new().u32(ROOT).u32(5).u16(0xffff)),
        Err(EINVAL)
    );
    c.walk_path(2, "f").unwrap();
    c.lopen(2, O_RDWR).unwrap();
    assert_eq!(
        c.call(TWRITE, Body::new().u32(2).u64(0).u32(u32::MAX).u8(1)),
        Err(EPROTO)
    );
    for kind in [TGETATTR, TCLUNK, TREMOVE, TREADLINK, TSTATFS] {
        assert_eq!(c.call(kind, Body::new().u32(12345).u64(0)), Err(EBADF));
    }
    // A huge read count is capped to the msize; a huge offset reads nothing.
    assert_eq!(c.read(2, 0, u32::MAX).unwrap(), b"data");
    assert_eq!(c.read(2, 1 << 40, 100).unwrap(), b"");
    // A live newfid is not replaced.
    assert_eq!(c.walk(ROOT, 2, &[]), Err(EINVAL));
    assert_eq!(c.read(2, 0, 4).unwrap(), b"data", "fid 2 still open");
    // Bad names for creation.
    for name in ["", ".", "..", "a/b", "a\0"] {
        assert_eq!(c.mkdir(ROOT, name, 0o755), Err(EINVAL), "{name:?}");
    }
    // Bad open flags.
    c.walk_path(3, "f").unwrap();
    assert_eq!(c.lopen(3, 3), Err(EINVAL));
}

#[test]
fn fid_table_is_capped() {
    let s = setup();
    let mut c = Client::new(&s.share, false);
    for fid in 2..spin_p9::MAX_FIDS as u32 + 1 {
        c.walk(ROOT, fid, &[]).unwrap();
    }
    assert_eq!(c.server.fid_count(), spin_p9::MAX_FIDS);
    assert_eq!(c.walk(ROOT, 0, &[]), Err(24), "EMFILE");
    c.clunk(2).unwrap();
    c.walk(ROOT, 0, &[]).unwrap();
    // A version reset drops them all.
    c.version(8192, "9P2000.L").unwrap();
    assert_eq!(c.server.fid_count(), 0);
}
