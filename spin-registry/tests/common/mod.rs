//! Test peers: Debian's docker-registry (distribution 2.8) on 127.0.0.1, a
//! bearer token server, a fault-injecting HTTP proxy, OCI layouts built
//! here and pushed with skopeo.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Fails with the Debian package name when a tool is missing.
pub fn need(tool: &str, package: &str) {
    let found = if tool.starts_with('/') {
        Path::new(tool).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}`"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("docker-registry exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on {port}");
}

/// How the registry authenticates.
pub enum Auth {
    None,
    /// htpasswd with one user.
    Basic(&'static str, &'static str),
    /// Token auth against a [`TokenServer`].
    Token(Arc<TokenServer>),
}

/// A running docker-registry; killed on drop.
pub struct RegistryServer {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
    pub creds: Option<(String, String)>,
}

impl RegistryServer {
    pub fn start(auth: Auth) -> RegistryServer {
        need("/usr/bin/docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (auth_cfg, creds) = match &auth {
            Auth::None => (String::new(), None),
            Auth::Basic(u, p) => {
                let hash = bcrypt::hash(p, 5).unwrap();
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{u}:{hash}\n")).unwrap();
                (
                    format!(
                        "auth:\n  htpasswd:\n    realm: spin-test\n    path: {}\n",
                        file.display()
                    ),
                    Some((u.to_string(), p.to_string())),
                )
            }
            Auth::Token(t) => (
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: spin-test\n    issuer: spin-test-issuer\n    rootcertbundle: {}\n",
                    t.port,
                    t.cert.display()
                ),
                Some((t.user.to_string(), t.password.to_string())),
            ),
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_cfg}",
            dir.path().join("data").display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_port(port, &mut child);
        RegistryServer {
            port,
            child,
            dir,
            creds,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy` of an OCI layout reference into this registry.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, all: bool) {
        need("skopeo", "skopeo");
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy")
            .arg("copy")
            .arg("--dest-tls-verify=false")
            .arg("-q");
        if all {
            cmd.arg("--all");
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host()));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image layout being built.
pub struct Layout {
    pub dir: PathBuf,
    refs: Vec<serde_json::Value>,
}

pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8]) -> (String, u64) {
        let d = sha(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// An image manifest; returns its descriptor JSON.
    pub fn image(
        &self,
        arch: &str,
        layers: &[(&str, Vec<u8>)],
        config: serde_json::Value,
    ) -> serde_json::Value {
        let diff_ids: Vec<String> = layers.iter().map(|(_, b)| sha(b)).collect();
        let cfg = json!({
            "architecture": arch, "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
        let (cd, cs) = self.blob(&cfg_bytes);
        let ls: Vec<_> = layers
            .iter()
            .map(|(mt, b)| {
                let (d, s) = self.blob(b);
                json!({"mediaType": mt, "digest": d, "size": s})
            })
            .collect();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": ls,
        });
        let mb = serde_json::to_vec(&m).unwrap();
        let (md, ms) = self.blob(&mb);
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
               "platform": {"architecture": arch, "os": "linux"}})
    }

    pub fn index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
        let i = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let b = serde_json::to_vec(&i).unwrap();
        let (d, s) = self.blob(&b);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    }

    /// Names `desc` in index.json.
    pub fn tag(&mut self, tag: &str, desc: &serde_json::Value) {
        let mut d = desc.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs.push(d);
        let i = json!({"schemaVersion": 2, "manifests": self.refs});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&i).unwrap()).unwrap();
    }
}

/// One entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match *e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(m);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, m, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(m);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, d).unwrap();
            }
            E::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Debian's static amd64 busybox as an image layer (with a few applet links).
pub fn busybox_amd64_layer() -> (Vec<u8>, Vec<u8>) {
    need("/bin/busybox", "busybox-static");
    let bb = std::fs::read("/bin/busybox").unwrap();
    let layer = tar(&[
        E::Dir("bin/", 0o755),
        E::File("bin/busybox", 0o755, &bb),
        E::Symlink("bin/sh", "busybox"),
        E::Symlink("bin/ls", "busybox"),
        E::Hardlink("bin/cat", "bin/busybox"),
        E::Dir("etc/", 0o755),
        E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        E::Dir("tmp/", 0o1777),
    ]);
    (bb, layer)
}

/// Compiles the C program `source` into a static riscv64 ELF (in `work`).
pub fn riscv64_program(work: &Path, source: &str) -> Vec<u8> {
    need("riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu");
    let src = work.join("hello.c");
    std::fs::write(&src, source).unwrap();
    let out = work.join("hello");
    let st = Command::new("riscv64-linux-gnu-gcc")
        .arg("-static")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "riscv64-linux-gnu-gcc failed");
    let elf = std::fs::read(&out).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 243, "EM_RISCV");
    elf
}

/// A static riscv64 ELF built with riscv64-linux-gnu-gcc, as an image layer.
pub fn riscv64_layer(work: &Path) -> (Vec<u8>, Vec<u8>) {
    let elf = riscv64_program(
        work,
        "#include <stdio.h>\nint main(void){puts(\"hello from riscv64\");return 0;}\n",
    );
    let layer = tar(&[
        E::Dir("bin/", 0o755),
        E::File("bin/hello", 0o755, &elf),
        E::Symlink("bin/sh", "hello"),
        E::Dir("etc/", 0o755),
        E::File("etc/hostname", 0o644, b"riscv\n"),
    ]);
    (elf, layer)
}

/// `unsquashfs -lln` as "mode owner name[ -> target]" lines, root dropped.
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
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || !f[0].starts_with(['d', '-', 'l', 'c', 'b', 'p', 's']) {
                return None;
            }
            let name = f[5..].join(" ");
            let name = name.strip_prefix("R/")?.to_string();
            Some(format!("{} {} {name}", f[0], f[1]))
        })
        .collect()
}

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

// ---------------------------------------------------------------------------
// Bearer token server (RS256 JWTs signed with openssl, x5c chain header).

pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    key: PathBuf,
    cert_b64: String,
    pub user: &'static str,
    pub password: &'static str,
    pub requests: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
    stop: AtomicBool,
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    pub fn start(user: &'static str, password: &'static str) -> Arc<TokenServer> {
        need("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=spin-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Arc::new(TokenServer {
            port,
            cert,
            key,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(&der.stdout),
            user,
            password,
            requests: Mutex::new(Vec::new()),
            _dir: dir,
            stop: AtomicBool::new(false),
        });
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || s.serve(c));
                }
            }
        });
        server
    }

    fn serve(&self, mut c: TcpStream) {
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut auth = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                auth = Some(v.trim().to_string());
            }
        }
        self.requests.lock().unwrap().push(target.clone());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password))
        );
        if auth.as_deref() != Some(expected.as_str()) {
            let _ = c.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
        let mut access = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == "scope" {
                let parts: Vec<&str> = v.split(':').collect();
                if parts.len() == 3 {
                    access.push(json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [self.cert_b64]});
        let claims = json!({
            "iss": "spin-test-issuer", "sub": self.user, "aud": "spin-test",
            "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let sig = child.wait_with_output().unwrap();
        assert!(sig.status.success());
        let token = format!("{signing_input}.{}", b64url(&sig.stdout));
        let body =
            serde_json::to_vec(&json!({"token": token, "access_token": token, "expires_in": 600}))
                .unwrap();
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(&body);
    }
}

// ---------------------------------------------------------------------------
// Fault-injecting proxy in front of a registry.

/// What to do to matching requests.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status `times` times (then pass through).
    Status {
        path: String,
        status: u16,
        times: u32,
        challenge: Option<String>,
    },
    /// Send only `bytes` of the body `times` times, then close.
    Cut {
        path: String,
        bytes: usize,
        times: u32,
    },
    /// Flip a byte of the body.
    Corrupt { path: String },
}

/// (method and path, Range header) of each proxied request.
pub type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Proxy {
    pub port: u16,
    pub faults: Arc<Mutex<Vec<Fault>>>,
    /// (method+path, range header) of every request.
    pub log: RequestLog,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let log: RequestLog = Arc::default();
        let (f, l) = (faults.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, l) = (f.clone(), l.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &f, &l);
                });
            }
        });
        Proxy { port, faults, log }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn proxy_one(
    mut c: TcpStream,
    upstream: u16,
    faults: &Mutex<Vec<Fault>>,
    log: &Mutex<Vec<(String, Option<String>)>>,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    log.lock()
        .unwrap()
        .push((format!("{method} {path}"), headers.get("range").cloned()));
    let mut action = None;
    {
        let mut fs = faults.lock().unwrap();
        for f in fs.iter_mut() {
            match f {
                Fault::Status { path: p, times, .. } | Fault::Cut { path: p, times, .. }
                    if path.contains(p.as_str()) && *times > 0 =>
                {
                    *times -= 1;
                    action = Some(f.clone());
                    break;
                }
                Fault::Corrupt { path: p } if path.contains(p.as_str()) => {
                    action = Some(f.clone());
                    break;
                }
                _ => {}
            }
        }
    }
    if let Some(Fault::Status {
        status, challenge, ..
    }) = &action
    {
        let mut extra = String::new();
        if let Some(ch) = challenge {
            extra = format!("WWW-Authenticate: {ch}\r\n");
        }
        write!(
            c,
            "HTTP/1.1 {status} Injected\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    // Forward with a plain blocking HTTP/1.0-style exchange.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    write!(
        up,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nConnection: close\r\n"
    )?;
    for (k, v) in &headers {
        if matches!(
            k.as_str(),
            "authorization" | "accept" | "range" | "user-agent"
        ) {
            write!(up, "{k}: {v}\r\n")?;
        }
    }
    write!(up, "\r\n")?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(resp.len());
    let (head, body) = resp.split_at(split);
    let mut body = body.to_vec();
    let head_text = String::from_utf8_lossy(head).to_string();
    // Upstream may answer chunked; only blobs and manifests are proxied and
    // distribution sends those with Content-Length.
    match &action {
        Some(Fault::Cut { bytes, .. }) if body.len() > *bytes => {
            c.write_all(head)?;
            c.write_all(&body[..*bytes])?;
            c.flush()?;
            // Close abruptly.
            let _ = c.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Corrupt { .. }) if !body.is_empty() && head_text.starts_with("HTTP/1.1 20") => {
            let i = body.len() / 2;
            body[i] ^= 0xff;
        }
        _ => {}
    }
    c.write_all(head)?;
    c.write_all(&body)?;
    Ok(())
}
