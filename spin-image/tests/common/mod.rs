//! Helpers: build layer tars in memory, list squashfs images with unsquashfs.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// One entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u64, u64, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Block(&'a str, u32, u32),
    Fifo(&'a str),
    Xattr(&'a str, &'a [(&'a str, &'a [u8])], &'a [u8]),
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h
}

/// A tar stream of `entries`.
pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    use tar::EntryType as T;
    for e in entries {
        match *e {
            E::Dir(p, m) => b
                .append_data(&mut header(T::Directory, m, 0, 0, 0), p, &[][..])
                .unwrap(),
            E::File(p, m, d) => b
                .append_data(&mut header(T::Regular, m, 0, 0, d.len() as u64), p, d)
                .unwrap(),
            E::Owned(p, m, u, g, d) => b
                .append_data(&mut header(T::Regular, m, u, g, d.len() as u64), p, d)
                .unwrap(),
            E::Symlink(p, t) => b
                .append_link(&mut header(T::Symlink, 0o777, 0, 0, 0), p, t)
                .unwrap(),
            E::Hardlink(p, t) => b
                .append_link(&mut header(T::Link, 0o644, 0, 0, 0), p, t)
                .unwrap(),
            E::Char(p, ma, mi) | E::Block(p, ma, mi) => {
                let kind = if matches!(e, E::Char(..)) {
                    T::Char
                } else {
                    T::Block
                };
                let mut h = header(kind, 0o660, 0, 6, 0);
                h.set_device_major(ma).unwrap();
                h.set_device_minor(mi).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Fifo(p) => b
                .append_data(&mut header(T::Fifo, 0o600, 0, 0, 0), p, &[][..])
                .unwrap(),
            E::Xattr(p, xs, d) => {
                let pax: Vec<(String, &[u8])> = xs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .unwrap();
                b.append_data(&mut header(T::Regular, 0o644, 0, 0, d.len() as u64), p, d)
                    .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Raw entries (for hostile names the builder would refuse).
/// (name, type, link target, data) of a raw entry.
pub type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mode = if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        };
        let mut h = header(*kind, mode, 0, 0, data.len() as u64);
        let bytes = h.as_mut_bytes();
        bytes[..100].fill(0);
        bytes[..name.len()].copy_from_slice(name);
        bytes[157..257].fill(0);
        bytes[157..157 + link.len()].copy_from_slice(link);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd with a content checksum (as most layer producers write it), so
/// that corruption inside the frame is detectable.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Fails with the Debian package name when a tool is missing.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}`"
    );
}

/// `unsquashfs -lln` as (mode, owner, name-with-target) lines, root dropped;
/// device lines keep their numbers, sizes and dates are dropped.
pub fn listing(image: &Path) -> Vec<String> {
    need("unsquashfs", "squashfs-tools");
    let out = Command::new("unsquashfs")
        .arg("-lln")
        .arg("-d")
        .arg("R")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unsquashfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || !f[0].starts_with(['d', '-', 'l', 'c', 'b', 'p', 's']) {
            continue;
        }
        let (mode, owner) = (f[0], f[1]);
        // Device lines have "major, minor" in place of the size.
        let (extra, rest) = if mode.starts_with(['c', 'b']) {
            (format!(" {}{}", f[2], f[3]), &f[6..])
        } else {
            (String::new(), &f[5..])
        };
        let name = rest.join(" ");
        if name == "R" {
            continue;
        }
        let name = name.strip_prefix("R/").unwrap_or(&name).to_string();
        lines.push(format!("{mode} {owner}{extra} {name}"));
    }
    lines
}

/// Extracts the image into `dir` with unsquashfs.
pub fn extract(image: &Path, dir: &Path) {
    need("unsquashfs", "squashfs-tools");
    let out = Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-f")
        .arg("-d")
        .arg(dir)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unsquashfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
