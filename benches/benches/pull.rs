//! Pull + convert from a local registry, side by side with the peer
//! pipeline `skopeo copy` + `sqfstar` of the same image, in one run.
//!
//! Needs Debian's docker-registry, skopeo, squashfs-tools and
//! busybox-static. The big case is a ~200 MB rootfs-like layer made of
//! generated files (text-like and binary-like), one gzip layer.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use spin_registry::{PullOptions, Reference, Registry};

fn need(tool: &str, package: &str) {
    let ok = if tool.starts_with('/') {
        Path::new(tool).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    assert!(
        ok,
        "`{tool}` is missing: install the Debian package `{package}`"
    );
}

struct Server(Child, #[allow(dead_code)] tempfile::TempDir, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry() -> Server {
    need("/usr/bin/docker-registry", "docker-registry");
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, dir, port)
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Writes a one-layer OCI layout and pushes it with skopeo.
fn push(layer_tar: &[u8], work: &Path, port: u16, repo: &str) {
    let dir = work.join(repo.replace('/', "_"));
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |b: &[u8]| {
        std::fs::write(dir.join("blobs/sha256").join(&sha(b)[7..]), b).unwrap();
        (sha(b), b.len())
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(layer_tar).unwrap();
    let layer = gz.finish().unwrap();
    let (ld, ls) = blob(&layer);
    let cfg = serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]}}),
    )
    .unwrap();
    let (cd, cs) = blob(&cfg);
    let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}))
    .unwrap();
    let (md, ms) = blob(&m);
    let idx = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    need("skopeo", "skopeo");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!("docker://127.0.0.1:{port}/{repo}:v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn busybox_layer() -> Vec<u8> {
    need("/bin/busybox", "busybox-static");
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
    for applet in ["sh", "ls", "cat", "cp", "mv", "rm", "echo", "mkdir"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// ~200 MB of files shaped like a Debian minbase rootfs: many small text
/// files, some larger binaries (pseudo-random, so incompressible-ish).
fn rootfs_layer(total: usize) -> Vec<u8> {
    let words: Vec<&str> =
        "the of and to in is for on that with as by this are be it from or at an package debian \
        lib usr share doc copyright license version config file system user root bin sbin etc var"
            .split_whitespace()
            .collect();
    let mut x = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut b = tar::Builder::new(Vec::with_capacity(total + total / 8));
    let mut written = 0usize;
    let mut i = 0;
    while written < total {
        let r = next();
        let (data, path) = if r % 10 < 7 {
            let n = 500 + (r as usize >> 8) % 20_000;
            let mut s = String::with_capacity(n + 16);
            while s.len() < n {
                s.push_str(words[(next() % words.len() as u64) as usize]);
                s.push(if next() % 12 == 0 { '\n' } else { ' ' });
            }
            (
                s.into_bytes(),
                format!("usr/share/doc/pkg{}/file{i}.txt", i % 700),
            )
        } else {
            let n = 20_000 + (r as usize >> 8) % 600_000;
            // Half random, half repetitive: roughly like machine code.
            let mut v = Vec::with_capacity(n);
            while v.len() < n {
                let w = next();
                if w % 2 == 0 {
                    v.extend_from_slice(&w.to_le_bytes());
                } else {
                    v.extend_from_slice(&[0x48, 0x89, 0xe5, 0x00, 0x00, 0x00, 0x0f, 0x1f]);
                }
            }
            (v, format!("usr/lib/x86_64-linux-gnu/lib{}.so.{i}", i % 300))
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &path, &data[..]).unwrap();
        written += data.len();
        i += 1;
    }
    b.into_inner().unwrap()
}

fn spin_pull(rt: &tokio::runtime::Runtime, port: u16, repo: &str, threads: usize) -> u64 {
    let store = tempfile::tempdir().unwrap();
    let registry =
        Registry::open(store.path())
            .unwrap()
            .with_convert_options(spin_image::ConvertOptions {
                threads,
                ..Default::default()
            });
    let r: Reference = format!("127.0.0.1:{port}/{repo}:v1").parse().unwrap();
    let opts = PullOptions {
        insecure: true,
        ..PullOptions::default()
    };
    let p = rt.block_on(registry.pull(&r, &opts, &|_| {})).unwrap();
    std::fs::metadata(p).unwrap().len()
}

/// The peer pipeline: skopeo copy to an OCI layout, then the single gzip
/// layer through sqfstar (zstd level 3, like spin's default).
fn peer_pull(port: u16, repo: &str) -> u64 {
    need("sqfstar", "squashfs-tools");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{port}/{repo}:v1"))
        .arg(format!("oci:{}:v1", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&md[7..])).unwrap())
            .unwrap();
    let ld = m["layers"][0]["digest"].as_str().unwrap();
    let layer: PathBuf = layout.join("blobs/sha256").join(&ld[7..]);
    let img = work.path().join("out.sqfs");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | sqfstar '{}' -comp zstd -Xcompression-level 3 -no-progress",
            layer.display(),
            img.display()
        ))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "sqfstar failed");
    std::fs::metadata(img).unwrap().len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = start_registry();
    let port = server.2;
    let work = tempfile::tempdir().unwrap();
    push(&busybox_layer(), work.path(), port, "bench/busybox");
    let size = std::env::var("SPIN_BENCH_ROOTFS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200usize);
    // SPIN_BENCH_ROOTFS_DIR=DIR: a real tree (e.g. `debootstrap --foreign
    // --arch=riscv64 --variant=minbase trixie DIR`) as the big layer.
    let big = match std::env::var_os("SPIN_BENCH_ROOTFS_DIR") {
        Some(dir) => {
            let out = Command::new("tar")
                .args(["--format=pax", "--numeric-owner", "-cf", "-", "-C"])
                .arg(&dir)
                .arg(".")
                .output()
                .unwrap();
            assert!(out.status.success(), "tar of {dir:?} failed");
            out.stdout
        }
        None => rootfs_layer(size << 20),
    };
    eprintln!("bench/rootfs layer: {} MB uncompressed", big.len() >> 20);
    push(&big, work.path(), port, "bench/rootfs");

    for (repo, samples) in [("bench/busybox", 20), ("bench/rootfs", 10)] {
        let mut g = c.benchmark_group(format!(
            "pull+convert/{}",
            repo.trim_start_matches("bench/")
        ));
        g.sample_size(samples)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        let a = spin_pull(&rt, port, repo, 0);
        let b = peer_pull(port, repo);
        eprintln!("{repo}: spin image {a} bytes, sqfstar image {b} bytes");
        g.bench_function("spin", |bch| bch.iter(|| spin_pull(&rt, port, repo, 0)));
        g.bench_function("spin-1-thread", |bch| {
            bch.iter(|| spin_pull(&rt, port, repo, 1))
        });
        g.bench_function("skopeo+sqfstar", |bch| bch.iter(|| peer_pull(port, repo)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
