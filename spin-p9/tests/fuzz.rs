//! A seeded random loop of mutated and random requests: the server never
//! panics, always answers one well-framed reply within the msize, and never
//! touches anything outside the share.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use spin_virtio::p9::FsBackend;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &["a", "b", "f", "d", "l", "..", ".", "", "x/y", "up", "fifo"];

/// A plausible request of a random type, with small fids and known names.
fn request(rng: &mut Rng) -> Body {
    let fid = |rng: &mut Rng| rng.below(8) as u32;
    let name = |rng: &mut Rng| *rng.pick(NAMES);
    let kinds = [
        TVERSION,
        TATTACH,
        TWALK,
        TCLUNK,
        TREMOVE,
        TGETATTR,
        TSETATTR,
        TLOPEN,
        TLCREATE,
        TREAD,
        TWRITE,
        TREADDIR,
        TMKDIR,
        TSYMLINK,
        TMKNOD,
        TREADLINK,
        TLINK,
        TRENAME,
        TRENAMEAT,
        TUNLINKAT,
        TSTATFS,
        TFSYNC,
        TXATTRWALK,
        TXATTRCREATE,
        TLOCK,
        TGETLOCK,
        TFLUSH,
    ];
    let kind = *rng.pick(&kinds);
    let b = Body::new().u8(kind);
    match kind {
        TVERSION => b.u32(4096 + rng.below(1 << 20) as u32).s("9P2000.L"),
        TATTACH => b.u32(fid(rng)).u32(!0).s("").s(name(rng)).u32(0),
        TWALK => {
            let n = rng.below(4) as u16;
            let mut b = b.u32(fid(rng)).u32(fid(rng)).u16(n);
            for _ in 0..n {
                b = b.s(name(rng));
            }
            b
        }
        TSETATTR => b
            .u32(fid(rng))
            .u32(rng.below(0x200) as u32)
            .u32(rng.below(0o10000) as u32 | 0o700)
            .u32(rng.next() as u32)
            .u32(rng.next() as u32)
            .u64(rng.below(1 << 20))
            .u64(rng.next())
            .u64(rng.below(2_000_000_000))
            .u64(rng.next())
            .u64(rng.next()),
        TLOPEN => b.u32(fid(rng)).u32(rng.next() as u32 & 0o1003),
        TLCREATE => b
            .u32(fid(rng))
            .s(name(rng))
            .u32(rng.next() as u32 & 0o1203)
            .u32(0o644)
            .u32(0),
        TREAD | TREADDIR => b
            .u32(fid(rng))
            .u64(rng.below(1 << 16))
            .u32(rng.next() as u32),
        TWRITE => {
            let n = rng.below(300) as u32;
            let mut b = b.u32(fid(rng)).u64(rng.below(1 << 16)).u32(n);
            b.0.extend((0..n).map(|i| i as u8));
            b
        }
        TMKDIR => b.u32(fid(rng)).s(name(rng)).u32(0o755).u32(0),
        TSYMLINK => b.u32(fid(rng)).s(name(rng)).s("/etc").u32(0),
        TMKNOD => b
            .u32(fid(rng))
            .s(name(rng))
            .u32(*rng.pick(&[0o010644, 0o100644, 0o020644, 0o140644]))
            .u32(1)
            .u32(3)
            .u32(0),
        TLINK => b.u32(fid(rng)).u32(fid(rng)).s(name(rng)),
        TRENAME => b.u32(fid(rng)).u32(fid(rng)).s(name(rng)),
        TRENAMEAT => b.u32(fid(rng)).s(name(rng)).u32(fid(rng)).s(name(rng)),
        TUNLINKAT => b
            .u32(fid(rng))
            .s(name(rng))
            .u32(rng.below(2) as u32 * 0x200),
        TXATTRWALK => b.u32(fid(rng)).u32(fid(rng)).s(name(rng)),
        TXATTRCREATE => b.u32(fid(rng)).s("user.a").u64(3).u32(0),
        TLOCK => b.u32(fid(rng)).u8(0).u32(0).u64(0).u64(0).u32(1).s("c"),
        TGETLOCK => b.u32(fid(rng)).u8(0).u64(0).u64(0).u32(1).s("c"),
        TFLUSH => b.u16(rng.next() as u16),
        TGETATTR => b.u32(fid(rng)).u64(0x7ff),
        TFSYNC => b.u32(fid(rng)).u32(0),
        _ => b.u32(fid(rng)),
    }
}

/// A request, maybe damaged: bytes flipped, cut, extended, or pure noise.
fn mutate(rng: &mut Rng, mut m: Vec<u8>) -> Vec<u8> {
    match rng.below(8) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(m.len() as u64) as usize;
                m[i] = rng.next() as u8;
            }
        }
        1 => m.truncate(rng.below(m.len() as u64 + 1) as usize),
        2 => m.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        3 => m = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        4 if m.len() >= 4 => {
            // A size field that lies.
            m[..4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
            return m;
        }
        _ => return m,
    }
    // Mostly keep the size field consistent, so that the damage reaches the
    // handlers rather than the framing check.
    if m.len() >= 4 && rng.below(4) != 0 {
        let n = m.len() as u32;
        m[..4].copy_from_slice(&n.to_le_bytes());
    }
    m
}

fn make_writable(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.is_dir()
    {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

#[test]
fn random_requests_never_panic_or_escape() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let outside = dir.path().join("outside");
    fs::create_dir_all(share.join("d")).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(share.join("f"), b"file").unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink("../outside", share.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", share.join("l")).unwrap();

    let seed = std::env::var("SPIN_P9_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let iterations: u32 = std::env::var("SPIN_P9_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000);
    eprintln!("fuzz: seed {seed}, {iterations} iterations");
    let mut rng = Rng(seed | 1);
    let mut c = Client::new(&share, false);
    let mut msize = c.msize as usize;
    let (mut ok, mut errors) = (0u32, 0u32);
    for i in 0..iterations {
        // Keep a few fids alive so that requests reach the file system.
        if i % 64 == 0 {
            let _ = c.version(65536, "9P2000.L");
            c.attach(ROOT).unwrap();
            for (fid, path) in [(2, "d"), (3, "f"), (4, "up"), (5, "")] {
                let _ = c.walk_path(fid, path);
            }
            let _ = c.lopen(3, O_RDWR);
            let _ = c.lopen(5, O_RDONLY);
            msize = 65536;
        }
        let body = request(&mut rng);
        let (kind, body) = (body.0[0], &body.0[1..]);
        let tag = rng.next() as u16;
        let m = mutate(&mut rng, message(kind, tag, body));
        let mut out = Vec::new();
        c.server.call(&m, &mut out);
        assert!(out.len() >= 7, "request {i}: reply too short");
        assert_eq!(
            u32::from_le_bytes(out[..4].try_into().unwrap()) as usize,
            out.len(),
            "request {i}: size field"
        );
        assert!(
            out.len() <= msize.max(8192),
            "request {i}: reply over msize"
        );
        if m.len() >= 7 {
            assert_eq!(&out[5..7], &m[5..7], "request {i}: tag");
            if out[4] == 7 {
                assert_eq!(out.len(), 11, "request {i}: Rlerror");
                errors += 1;
            } else {
                assert_eq!(out[4], m[4].wrapping_add(1), "request {i}: type");
                ok += 1;
                if m[4] == TVERSION {
                    msize = u32::from_le_bytes(out[7..11].try_into().unwrap()) as usize;
                }
            }
        }
        assert!(c.server.fid_count() <= spin_p9::MAX_FIDS);
    }
    eprintln!("fuzz: {ok} answered, {errors} errors");
    assert!(ok > iterations / 20, "enough requests got through");
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    make_writable(&share);
}
