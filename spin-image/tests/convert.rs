//! Conversion checked against squashfs-tools' `unsquashfs`.

mod common;

use std::path::Path;

use common::{E, extract, gzip, listing, raw_tar, tar, zstd};
use spin_image::{
    Compression, ConvertOptions, Error, LayerCompression, LayerInput, Limits, convert_layers,
};

fn convert(
    layers: &[(LayerCompression, Vec<u8>)],
    out: &Path,
    opts: &ConvertOptions,
) -> Result<spin_image::ConvertStats, Error> {
    convert_layers(
        layers.iter().map(|(c, b)| LayerInput {
            compression: *c,
            reader: Box::new(&b[..]),
        }),
        out,
        opts,
    )
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn one_layer_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let big = pseudo_random(300_000, 7);
    let mut sparse = vec![0u8; 256 * 1024];
    sparse.extend_from_slice(b"end");
    let exact = vec![b'x'; 128 * 1024];
    let layer = tar(&[
        E::Dir("bin/", 0o755),
        E::File("bin/tool", 0o4755, b"#!/bin/sh\necho hi\n"),
        E::Symlink("bin/sh", "tool"),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Dir("etc/", 0o755),
        E::Owned("etc/shadow", 0o640, 0, 42, b"root:*:1::::::\n"),
        E::Owned("home/user/.profile", 0o600, 1000, 1000, b"export A=1\n"),
        E::File("data/big", 0o644, &big),
        E::File("data/sparse", 0o644, &sparse),
        E::File("data/exact", 0o644, &exact),
        E::File("data/empty", 0o644, b""),
        E::Char("dev/null", 1, 3),
        E::Block("dev/vda", 254, 0),
        E::Char("dev/bigminor", 4, 300),
        E::Fifo("run/fifo"),
        E::Xattr("usr/bin/ping", &[("security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), ("user.note", b"hello")], b"ELF"),
        E::Dir("tmp/", 0o1777),
    ]);
    let out = dir.path().join("img.sqfs");
    for (i, opts) in [
        ConvertOptions::default(),
        ConvertOptions {
            compression: Compression::Gzip(6),
            ..Default::default()
        },
    ]
    .iter()
    .enumerate()
    {
        let stats = convert(&[(LayerCompression::Gzip, gzip(&layer))], &out, opts).unwrap();
        assert_eq!(stats.entries, 17);
        let l = listing(&out);
        let expect = [
            "drwxr-xr-x 0/0 bin",
            "lrwxrwxrwx 0/0 bin/sh -> tool",
            "-rwsr-xr-x 0/0 bin/tool",
            "-rwsr-xr-x 0/0 bin/tool2",
            "drwxr-xr-x 0/0 data",
            "-rw-r--r-- 0/0 data/big",
            "-rw-r--r-- 0/0 data/empty",
            "-rw-r--r-- 0/0 data/exact",
            "-rw-r--r-- 0/0 data/sparse",
            "drwxr-xr-x 0/0 dev",
            // unsquashfs -l prints major = rdev >> 8, minor = rdev & 0xff
            // (lossy for minors > 255); the real numbers are checked below.
            "crw-rw---- 0/6 4100,44 dev/bigminor",
            "crw-rw---- 0/6 1,3 dev/null",
            "brw-rw---- 0/6 254,0 dev/vda",
            "drwxr-xr-x 0/0 etc",
            "-rw-r----- 0/42 etc/shadow",
            "drwxr-xr-x 0/0 home",
            "drwxr-xr-x 0/0 home/user",
            "-rw------- 1000/1000 home/user/.profile",
            "drwxr-xr-x 0/0 run",
            "prw------- 0/0 run/fifo",
            "drwxrwxrwt 0/0 tmp",
            "drwxr-xr-x 0/0 usr",
            "drwxr-xr-x 0/0 usr/bin",
            "-rw-r--r-- 0/0 usr/bin/ping",
        ];
        assert_eq!(l, expect, "options #{i}");
        let x = dir.path().join(format!("x{i}"));
        extract(&out, &x);
        assert_eq!(std::fs::read(x.join("data/big")).unwrap(), big);
        assert_eq!(std::fs::read(x.join("data/sparse")).unwrap(), sparse);
        assert_eq!(std::fs::read(x.join("data/exact")).unwrap(), exact);
        assert_eq!(
            std::fs::read(x.join("bin/tool2")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(x.join("bin/tool")).unwrap();
        let b = std::fs::metadata(x.join("bin/tool2")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link kept");
        assert_eq!(a.nlink(), 2);
        // Device numbers as the kernel decodes them (new_decode_dev).
        let rdev = std::fs::symlink_metadata(x.join("dev/bigminor"))
            .unwrap()
            .rdev();
        let (major, minor) = (
            ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff),
            (rdev & 0xff) | ((rdev >> 12) & !0xff),
        );
        assert_eq!((major, minor), (4, 300));
        // xattrs, read back through python (os.getxattr).
        common::need("python3", "python3");
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg("import os,sys; print(os.getxattr(sys.argv[1], 'user.note').decode()); print(os.getxattr(sys.argv[1], 'security.capability').hex())")
            .arg(x.join("usr/bin/ping"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "hello\n0100000200200000000000000000000000000000\n"
        );
    }
}

#[test]
fn layers_whiteouts_opaque_and_recreated_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = tar(&[
        E::File("a/x", 0o644, b"x1"),
        E::File("a/y", 0o644, b"y1"),
        E::File("b/c", 0o644, b"c"),
        E::File("d/old", 0o644, b"old"),
        E::Dir("d/sub/", 0o755),
        E::File("e/gone", 0o644, b"gone"),
        E::File("f/keep", 0o644, b"keep"),
        E::File("link-src", 0o644, b"shared"),
    ]);
    let l2 = tar(&[
        E::File("a/.wh.x", 0o644, b""),
        E::File(".wh.b", 0o644, b""),
        E::Dir("d/", 0o700),
        E::File("d/.wh..wh..opq", 0o644, b""),
        E::File("d/new", 0o644, b"new"),
        E::File(".wh.e", 0o644, b""),
        E::Hardlink("f/hl", "link-src"),
        E::File("a/y", 0o600, b"y2"),
    ]);
    let l3 = tar(&[
        E::Dir("e/", 0o750),
        E::File("e/fresh", 0o644, b"fresh"),
        E::File("b", 0o644, b"now a file"),
    ]);
    let out = dir.path().join("img.sqfs");
    let layers = [
        (LayerCompression::Gzip, gzip(&l1)),
        (LayerCompression::Zstd, zstd(&l2)),
        (LayerCompression::None, l3),
    ];
    convert(&layers, &out, &ConvertOptions::default()).unwrap();
    let expect = [
        "drwxr-xr-x 0/0 a",
        "-rw------- 0/0 a/y",
        "-rw-r--r-- 0/0 b",
        "drwx------ 0/0 d",
        "-rw-r--r-- 0/0 d/new",
        "drwxr-x--- 0/0 e",
        "-rw-r--r-- 0/0 e/fresh",
        "drwxr-xr-x 0/0 f",
        "-rw-r--r-- 0/0 f/hl",
        "-rw-r--r-- 0/0 f/keep",
        "-rw-r--r-- 0/0 link-src",
    ];
    assert_eq!(listing(&out), expect);
    let x = dir.path().join("x");
    extract(&out, &x);
    assert_eq!(std::fs::read(x.join("a/y")).unwrap(), b"y2");
    assert_eq!(std::fs::read(x.join("b")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(x.join("f/hl")).unwrap(), b"shared");
}

#[test]
fn hostile_paths_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    use tar::EntryType as T;
    let layer = raw_tar(&[
        (b"../../../../escape-dotdot", T::Regular, b"", b"a"),
        (b"/abs/escape-abs", T::Regular, b"", b"b"),
        (b"etc/", T::Directory, b"", b""),
        (b"out", T::Symlink, b"../../../../../etc", b""),
        (b"out/through-link", T::Regular, b"", b"c"),
        (b"abs", T::Symlink, b"/etc", b""),
        (b"abs/through-abs-link", T::Regular, b"", b"d"),
        (b"hl", T::Link, b"../../etc/../../escape-dotdot", b""),
    ]);
    let out = dir.path().join("img.sqfs");
    convert(
        &[(LayerCompression::None, layer)],
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    let expect = [
        "lrwxrwxrwx 0/0 abs -> /etc",
        "-rw-r--r-- 0/0 escape-dotdot",
        "drwxr-xr-x 0/0 etc",
        "-rw-r--r-- 0/0 etc/through-abs-link",
        "-rw-r--r-- 0/0 etc/through-link",
        "-rw-r--r-- 0/0 hl",
        "lrwxrwxrwx 0/0 out -> ../../../../../etc",
    ];
    let l = listing(&out);
    // "/abs/escape-abs" is under the symlink "abs" only after it exists; it
    // came first, so it made a real directory that "abs" then replaced.
    assert_eq!(l, expect);
    // Nothing was written next to the image.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("img.sqfs")]);
}

#[test]
fn hard_link_to_missing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layer = tar(&[E::Hardlink("a", "nowhere")]);
    let err = convert(
        &[(LayerCompression::None, layer)],
        &dir.path().join("i"),
        &ConvertOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
}

fn sample_layer() -> Vec<u8> {
    let big = pseudo_random(200_000, 3);
    tar(&[E::File("a", 0o644, &big), E::File("b", 0o644, b"bbb")])
}

#[test]
fn truncated_and_corrupt_streams_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.sqfs");
    let layer = sample_layer();
    let gz = gzip(&layer);
    let zs = zstd(&layer);
    let mut corrupt_gz = gz.clone();
    let mid = corrupt_gz.len() / 2;
    corrupt_gz[mid..mid + 16].fill(0x55);
    let mut corrupt_zs = zs.clone();
    let mid = corrupt_zs.len() / 2;
    corrupt_zs[mid..mid + 16].fill(0x55);
    let cases: Vec<(&str, LayerCompression, Vec<u8>)> = vec![
        (
            "gzip truncated",
            LayerCompression::Gzip,
            gz[..gz.len() / 2].to_vec(),
        ),
        (
            "gzip truncated at the end",
            LayerCompression::Gzip,
            gz[..gz.len() - 4].to_vec(),
        ),
        ("gzip corrupt", LayerCompression::Gzip, corrupt_gz),
        (
            "zstd truncated",
            LayerCompression::Zstd,
            zs[..zs.len() / 2].to_vec(),
        ),
        (
            "zstd truncated at the end",
            LayerCompression::Zstd,
            zs[..zs.len() - 3].to_vec(),
        ),
        ("zstd corrupt", LayerCompression::Zstd, corrupt_zs),
        (
            "not gzip at all",
            LayerCompression::Gzip,
            b"plain text".to_vec(),
        ),
    ];
    for (what, c, bytes) in cases {
        let err = convert(&[(c, bytes)], &out, &ConvertOptions::default()).expect_err(what);
        assert!(
            matches!(err, Error::Layer { index: 0, .. }),
            "{what}: {err}"
        );
    }
    // The intact streams convert.
    convert(
        &[(LayerCompression::Gzip, gz), (LayerCompression::Zstd, zs)],
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
}

#[test]
fn tar_bombs_hit_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.sqfs");
    // 64 MiB of zeros compress to almost nothing.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&tar(&[E::File("zeros", 0o644, &zeros)]));
    assert!(bomb.len() < 1 << 20);
    let opts = ConvertOptions {
        limits: Limits {
            max_total_bytes: 16 << 20,
            ..Limits::default()
        },
        ..Default::default()
    };
    let err = convert(&[(LayerCompression::Gzip, bomb.clone())], &out, &opts).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit } if limit == 16 << 20),
        "{err}"
    );
    // Under a roomier limit the same layer converts (sparse blocks, tiny image).
    convert(
        &[(LayerCompression::Gzip, bomb)],
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    assert!(std::fs::metadata(&out).unwrap().len() < 1 << 20);

    let names: Vec<String> = (0..500).map(|i| format!("f{i}")).collect();
    let many = tar(&names
        .iter()
        .map(|n| E::File(n, 0o644, b""))
        .collect::<Vec<_>>());
    let opts = ConvertOptions {
        limits: Limits {
            max_entries: 100,
            ..Limits::default()
        },
        ..Default::default()
    };
    let err = convert(&[(LayerCompression::None, many)], &out, &opts).unwrap_err();
    assert!(matches!(err, Error::TooManyEntries { limit: 100 }), "{err}");
}

#[test]
fn unknown_media_type_is_an_error() {
    let err = LayerCompression::from_media_type("application/vnd.example.weird").unwrap_err();
    assert!(matches!(err, Error::UnknownMediaType(_)));
    assert_eq!(
        LayerCompression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
            .unwrap(),
        LayerCompression::Gzip
    );
}

#[test]
fn many_files_and_big_directories() {
    // Enough inodes to span many metadata blocks and a directory listing
    // larger than 64 KiB (extended directory inode).
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..5000)
        .map(|i| format!("d{}/file-with-a-long-name-{i:05}", i % 2))
        .collect();
    let entries: Vec<E> = names
        .iter()
        .map(|n| E::File(n, 0o644, n.as_bytes()))
        .collect();
    let out = dir.path().join("img.sqfs");
    convert(
        &[(LayerCompression::None, tar(&entries))],
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    let l = listing(&out);
    assert_eq!(l.len(), 5002);
    let x = dir.path().join("x");
    extract(&out, &x);
    for n in names.iter().step_by(97) {
        assert_eq!(std::fs::read(x.join(n)).unwrap(), n.as_bytes());
    }
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i}"), pseudo_random(10_000 * i + 1, i as u64 + 1)))
        .collect();
    let layer = tar(&files
        .iter()
        .map(|(n, d)| E::File(n, 0o644, d))
        .collect::<Vec<_>>());
    let mut images = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("t{threads}"));
        let opts = ConvertOptions {
            threads,
            ..Default::default()
        };
        convert(&[(LayerCompression::None, layer.clone())], &out, &opts).unwrap();
        images.push(std::fs::read(&out).unwrap());
    }
    assert!(
        images[0] == images[1],
        "images differ between 1 and 3 threads"
    );
    let x = dir.path().join("x");
    extract(&dir.path().join("t3"), &x);
    for (n, d) in &files {
        assert_eq!(&std::fs::read(x.join(n)).unwrap(), d);
    }
}

/// Differential test: the same tar of real host trees through spin-image and
/// through squashfs-tools' sqfstar gives the same `unsquashfs -lln` listing
/// (names, modes, owners, sizes, dates, link targets) and the same contents.
#[test]
fn same_listing_as_sqfstar_on_a_real_tree() {
    common::need("tar", "tar");
    common::need("sqfstar", "squashfs-tools");
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("in.tar");
    // SPIN_DIFF_TREE=DIR compares on another tree (e.g. a debootstrap rootfs).
    let mut cmd = std::process::Command::new("tar");
    cmd.args(["--format=pax", "--numeric-owner", "-cf"])
        .arg(&tarball);
    match std::env::var_os("SPIN_DIFF_TREE") {
        Some(d) => cmd.arg("-C").arg(d).arg("."),
        None => cmd.args([
            "-C",
            "/",
            "etc",
            "usr/share/zoneinfo",
            "usr/share/common-licenses",
        ]),
    };
    let st = cmd.status().unwrap();
    assert!(st.success() || st.code() == Some(1), "tar failed");
    let theirs = dir.path().join("theirs.sqfs");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sqfstar '{}' -no-progress -quiet < '{}'",
            theirs.display(),
            tarball.display()
        ))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "sqfstar failed");
    let ours = dir.path().join("ours.sqfs");
    let data = std::fs::read(&tarball).unwrap();
    convert(
        &[(LayerCompression::None, data)],
        &ours,
        &ConvertOptions::default(),
    )
    .unwrap();
    let full = |p: &Path| {
        let o = std::process::Command::new("unsquashfs")
            .args(["-lln", "-d", "R"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        // Directory sizes depend on where each tool puts inodes (directory
        // headers), and sqfstar dates the directories the tar does not list
        // with the current time (spin uses 0): compare directories by mode,
        // owner and name only.
        text.lines()
            .filter(|l| l.contains(" R/"))
            .map(|l| {
                if l.starts_with('d') {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    format!("{} {} {}", f[0], f[1], f[5..].join(" "))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (full(&ours), full(&theirs));
    assert!(a.len() > 100, "too few entries: {}", a.len());
    let diff: Vec<_> = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| x != y)
        .take(5)
        .collect();
    assert!(
        diff.is_empty() && a.len() == b.len(),
        "listings differ ({} vs {} lines): {diff:?}",
        a.len(),
        b.len()
    );
    let (xa, xb) = (dir.path().join("xa"), dir.path().join("xb"));
    extract(&ours, &xa);
    extract(&theirs, &xb);
    let o = std::process::Command::new("diff")
        .args(["-rq", "--no-dereference"])
        .arg(&xa)
        .arg(&xb)
        .output()
        .unwrap();
    // diff cannot compare device nodes (the listing above did); anything
    // else it reports is a difference.
    let text = String::from_utf8_lossy(&o.stdout);
    let real: Vec<&str> = text
        .lines()
        .filter(|l| {
            !(l.contains("is a character special file while file")
                && l.ends_with("is a character special file"))
        })
        .filter(|l| {
            !(l.contains("is a block special file while file")
                && l.ends_with("is a block special file"))
        })
        .collect();
    assert!(real.is_empty(), "extracted trees differ: {real:?}");
}
