//! Pulls from Debian's docker-registry on 127.0.0.1, images pushed with skopeo.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use serde_json::json;
use spin_registry::{
    Credentials, Error, Limits, Platform, PullEvent, PullOptions, Reference, Registry,
};

fn opts() -> PullOptions {
    PullOptions {
        insecure: true,
        retries: 3,
        retry_delay: Duration::from_millis(20),
        ..PullOptions::default()
    }
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

async fn pull(reg: &Registry, name: &str, o: &PullOptions) -> Result<std::path::PathBuf, Error> {
    reg.pull(&r(name), o, &|_| {}).await
}

fn busybox_config() -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=b"],
        "WorkingDir": "/tmp", "User": "0:0", "ExposedPorts": {"8080/tcp": {}}
    })
}

/// Store files other than locks, sorted: what a consistent store shows.
fn store_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["blobs/sha256", "rootfs", "tmp"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            out.push(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_riscv64_amd64_and_multiplatform_index() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let (bb, amd_layer) = busybox_amd64_layer();
    let (elf, rv_layer) = riscv64_layer(work.path());
    let amd = layout.image("amd64", &[(GZIP, gzip(&amd_layer))], busybox_config());
    let rv = layout.image(
        "riscv64",
        &[(GZIP, gzip(&rv_layer))],
        json!({"Cmd": ["/bin/hello"]}),
    );
    let idx = layout.index(&[amd.clone(), rv.clone()]);
    layout.tag("amd64", &amd);
    layout.tag("riscv64", &rv);
    layout.tag("multi", &idx);
    reg.push(&layout.dir, "amd64", "test/busybox:amd64", false);
    reg.push(&layout.dir, "riscv64", "test/busybox:riscv64", false);
    reg.push(&layout.dir, "multi", "test/busybox:multi", true);

    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let h = reg.host();

    // amd64 busybox.
    let events = Mutex::new(Vec::new());
    let p = registry
        .pull(&r(&format!("{h}/test/busybox:amd64")), &opts(), &|e| {
            events.lock().unwrap().push(e)
        })
        .await
        .unwrap();
    assert_eq!(
        listing(&p),
        [
            "drwxr-xr-x 0/0 bin",
            "-rwxr-xr-x 0/0 bin/busybox",
            "-rwxr-xr-x 0/0 bin/cat",
            "lrwxrwxrwx 0/0 bin/ls -> busybox",
            "lrwxrwxrwx 0/0 bin/sh -> busybox",
            "drwxr-xr-x 0/0 etc",
            "-rw-r--r-- 0/0 etc/passwd",
            "drwxrwxrwt 0/0 tmp",
        ]
    );
    let x = work.path().join("x-amd");
    extract(&p, &x);
    assert_eq!(std::fs::read(x.join("bin/busybox")).unwrap(), bb);
    let ev = events.into_inner().unwrap();
    assert!(ev.iter().any(
        |e| matches!(e, PullEvent::Resolved { platform, .. } if platform.architecture == "amd64")
    ));
    assert!(
        ev.iter().any(
            |e| matches!(e, PullEvent::Layer { downloaded, total, .. } if downloaded == total)
        )
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, PullEvent::LayerDone { cached: false, .. }))
    );
    // The defaults kept beside the image.
    let info = registry
        .inspect(&r(&format!("{h}/test/busybox:amd64")))
        .unwrap();
    assert_eq!(
        info.config.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".to_string()][..])
    );
    assert_eq!(
        info.config.cmd.as_deref(),
        Some(&["echo hi".to_string()][..])
    );
    assert_eq!(info.config.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(info.config.user.as_deref(), Some("0:0"));
    assert!(
        info.config
            .exposed_ports
            .as_ref()
            .unwrap()
            .contains_key("8080/tcp")
    );
    assert_eq!(info.config.env.as_ref().unwrap().len(), 2);
    let defaults = registry
        .defaults(&r(&format!("{h}/test/busybox:amd64")))
        .unwrap();
    assert_eq!(defaults.config, info.config);
    assert_eq!(defaults.platform, Platform::linux("amd64"));

    // riscv64.
    let p = pull(&registry, &format!("{h}/test/busybox:riscv64"), &opts())
        .await
        .unwrap();
    let x = work.path().join("x-rv");
    extract(&p, &x);
    assert_eq!(std::fs::read(x.join("bin/hello")).unwrap(), elf);

    // Index: riscv64 by default, amd64 on request, arm64 refused.
    let multi = format!("{h}/test/busybox:multi");
    let p_default = pull(&registry, &multi, &opts()).await.unwrap();
    assert_eq!(
        registry.inspect(&r(&multi)).unwrap().platform,
        Platform::linux("riscv64")
    );
    assert_eq!(
        p_default,
        registry
            .path(&r(&format!("{h}/test/busybox:riscv64")))
            .unwrap(),
        "same manifest, same cached image"
    );
    assert!(registry.inspect(&r(&multi)).unwrap().index.is_some());
    let amd_opts = PullOptions {
        platform: Some("linux/amd64".parse().unwrap()),
        ..opts()
    };
    let ev = Mutex::new(Vec::new());
    registry
        .pull(&r(&multi), &amd_opts, &|e| ev.lock().unwrap().push(e))
        .await
        .unwrap();
    assert_eq!(
        registry.inspect(&r(&multi)).unwrap().platform,
        Platform::linux("amd64")
    );
    assert!(
        ev.into_inner()
            .unwrap()
            .iter()
            .any(|e| matches!(e, PullEvent::LayerDone { cached: true, .. })),
        "shared layer not downloaded again"
    );
    let arm = PullOptions {
        platform: Some("linux/arm64".parse().unwrap()),
        ..opts()
    };
    let err = pull(&registry, &multi, &arm).await.unwrap_err();
    match &err {
        Error::NoMatchingPlatform { wanted, available } => {
            assert_eq!(wanted, "linux/arm64");
            assert_eq!(
                available,
                &["linux/amd64".to_string(), "linux/riscv64".to_string()]
            );
        }
        e => panic!("{e}"),
    }

    // images / path / rmi with shared blobs.
    let names: Vec<String> = registry
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 3);
    registry
        .remove(&r(&format!("{h}/test/busybox:amd64")))
        .unwrap();
    // multi (now amd64) still uses the amd64 blobs and image.
    let p = registry.path(&r(&multi)).unwrap();
    assert!(p.is_file());
    registry.remove(&r(&multi)).unwrap();
    assert!(matches!(
        registry.path(&r(&multi)),
        Err(Error::NotInStore(_))
    ));
    // Only the riscv64 image's blobs (manifest, config, layer) and rootfs remain.
    let files = store_files(store.path());
    assert_eq!(
        files.iter().filter(|f| f.starts_with("blobs/")).count(),
        3,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("rootfs/")).count(),
        2,
        "{files:?}"
    );
    // path() answers from disk, even after the squashfs is deleted.
    let rv = r(&format!("{h}/test/busybox:riscv64"));
    let p = registry.path(&rv).unwrap();
    std::fs::remove_file(&p).unwrap();
    drop(reg); // the registry is gone: path() must not need it
    assert_eq!(registry.path(&rv).unwrap(), p);
    assert!(p.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_layer_whiteouts_links_and_recreated_dir() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let l1 = tar(&[
        E::Dir("app/", 0o755),
        E::File("app/a", 0o644, b"a1"),
        E::File("app/b", 0o644, b"b1"),
        E::Dir("cache/", 0o755),
        E::File("cache/x", 0o644, b"x"),
        E::Dir("cache/sub/", 0o755),
        E::File("etc/conf", 0o600, b"v1"),
        E::File("bin/tool", 0o755, b"tool"),
    ]);
    let l2 = tar(&[
        E::File("app/.wh.a", 0o644, b""),
        E::File(".wh.cache", 0o644, b""),
        E::Hardlink("bin/tool-link", "bin/tool"),
        E::Symlink("etc/conf.link", "conf"),
        E::File("etc/conf", 0o644, b"v2"),
    ]);
    let l3 = tar(&[
        E::Dir("cache/", 0o700),
        E::File("cache/fresh", 0o644, b"fresh"),
        E::Dir("app/", 0o755),
        E::File("app/.wh..wh..opq", 0o644, b""),
        E::File("app/c", 0o644, b"c3"),
    ]);
    let img = layout.image(
        "riscv64",
        &[(GZIP, gzip(&l1)), (ZSTD, zstd(&l2)), (TAR, l3)],
        json!({}),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "test/layers:v1", false);
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let p = pull(
        &registry,
        &format!("{}/test/layers:v1", reg.host()),
        &opts(),
    )
    .await
    .unwrap();
    assert_eq!(
        listing(&p),
        [
            "drwxr-xr-x 0/0 app",
            "-rw-r--r-- 0/0 app/c",
            "drwxr-xr-x 0/0 bin",
            "-rwxr-xr-x 0/0 bin/tool",
            "-rwxr-xr-x 0/0 bin/tool-link",
            "drwx------ 0/0 cache",
            "-rw-r--r-- 0/0 cache/fresh",
            "drwxr-xr-x 0/0 etc",
            "-rw-r--r-- 0/0 etc/conf",
            "lrwxrwxrwx 0/0 etc/conf.link -> conf",
        ]
    );
    let x = work.path().join("x");
    extract(&p, &x);
    assert_eq!(std::fs::read(x.join("etc/conf")).unwrap(), b"v2");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(x.join("bin/tool")).unwrap().ino(),
        std::fs::metadata(x.join("bin/tool-link")).unwrap().ino()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_htpasswd() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::Basic("alice", "s3cret"));
    let mut layout = Layout::new(&work.path().join("layout"));
    let img = layout.image(
        "amd64",
        &[(GZIP, gzip(&tar(&[E::File("hello", 0o644, b"hi")])))],
        json!({}),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "private/img:v1", false);
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let name = format!("{}/private/img:v1", reg.host());
    let err = pull(&registry, &name, &opts()).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err}");
    let wrong = PullOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "nope".into(),
        }),
        ..opts()
    };
    let err = pull(&registry, &name, &wrong).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err}");
    let right = PullOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        }),
        ..opts()
    };
    let p = pull(&registry, &name, &right).await.unwrap();
    assert_eq!(listing(&p), ["-rw-r--r-- 0/0 hello"]);
    assert_eq!(registry.images().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow() {
    let work = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start("bob", "pw");
    let reg = RegistryServer::start(Auth::Token(tokens.clone()));
    let mut layout = Layout::new(&work.path().join("layout"));
    let img = layout.image(
        "riscv64",
        &[(GZIP, gzip(&tar(&[E::File("t", 0o600, b"token")])))],
        json!({}),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "tok/img:v1", false);
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let name = format!("{}/tok/img:v1", reg.host());
    let err = pull(&registry, &name, &opts()).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err}");
    tokens.requests.lock().unwrap().clear();
    let o = PullOptions {
        credentials: Some(Credentials {
            username: "bob".into(),
            password: "pw".into(),
        }),
        ..opts()
    };
    let p = pull(&registry, &name, &o).await.unwrap();
    assert_eq!(listing(&p), ["-rw------- 0/0 t"]);
    let reqs = tokens.requests.lock().unwrap().clone();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|q| q.contains("service=spin-test")
            && q.contains("scope=repository%3Atok%2Fimg%3Apull")),
        "{reqs:?}"
    );
}

/// Pushes a raw manifest (any media types) and its blobs through the
/// registry API, bypassing skopeo's checks.
async fn push_raw(
    host: &str,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
    manifest: &serde_json::Value,
) {
    let c = reqwest::Client::new();
    for b in blobs {
        let resp = c
            .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("http://{host}{loc}")
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = c
            .put(format!("{loc}{sep}digest={}", sha(b)))
            .body(b.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    let resp = c
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("content-type", manifest["mediaType"].as_str().unwrap())
        .body(serde_json::to_vec(manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

fn raw_image(arch: &str, layers: &[(&str, Vec<u8>)]) -> (Vec<Vec<u8>>, serde_json::Value) {
    let cfg =
        serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "config": {}})).unwrap();
    let mut blobs = vec![cfg.clone()];
    let ls: Vec<_> = layers
        .iter()
        .map(|(mt, b)| {
            blobs.push(b.clone());
            json!({"mediaType": mt, "digest": sha(b), "size": b.len()})
        })
        .collect();
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": ls,
    });
    (blobs, m)
}

fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every fault of the list, each leaving the store consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_give_one_clear_error_and_a_consistent_store() {
    let reg = RegistryServer::start(Auth::None);
    let h = reg.host();
    let big = pseudo_random(3 << 20);
    let good_layer = gzip(&tar(&[
        E::File("big", 0o644, &big),
        E::File("small", 0o644, b"s"),
    ]));
    let (blobs, m) = raw_image("amd64", &[(GZIP, good_layer.clone())]);
    push_raw(&h, "f/good", "v1", &blobs, &m).await;
    let layer_digest = sha(&good_layer);

    // Bad images.
    let trunc = good_layer[..good_layer.len() / 2].to_vec();
    let (b, m) = raw_image("amd64", &[(GZIP, trunc)]);
    push_raw(&h, "f/truncated-gzip", "v1", &b, &m).await;
    let mut zs = zstd(&tar(&[E::File("big", 0o644, &big)]));
    let mid = zs.len() / 2;
    zs[mid..mid + 64].fill(0);
    let (b, m) = raw_image("amd64", &[(ZSTD, zs)]);
    push_raw(&h, "f/corrupt-zstd", "v1", &b, &m).await;
    let (b, m) = raw_image("arm64", &[(GZIP, gzip(&tar(&[E::File("a", 0o644, b"a")])))]);
    push_raw(&h, "f/arm64", "v1", &b, &m).await;
    let (b, m) = raw_image(
        "amd64",
        &[("application/vnd.example.unknown", b"whatever".to_vec())],
    );
    push_raw(&h, "f/unknown-type", "v1", &b, &m).await;
    use tar::EntryType as T;
    let hostile = {
        let mut out = Vec::new();
        for (name, kind, link, data) in [
            (
                &b"../../../../../../tmp/spin-escape-dotdot"[..],
                T::Regular,
                &b""[..],
                &b"x"[..],
            ),
            (b"/tmp/spin-escape-abs", T::Regular, b"", b"y"),
            (b"up", T::Symlink, b"../../../../../../../tmp", b""),
            (b"up/spin-escape-link", T::Regular, b"", b"z"),
        ] {
            let mut hd = tar::Header::new_gnu();
            hd.set_entry_type(kind);
            hd.set_mode(0o644);
            hd.set_size(data.len() as u64);
            let bytes = hd.as_mut_bytes();
            bytes[..name.len()].copy_from_slice(name);
            bytes[157..157 + link.len()].copy_from_slice(link);
            hd.set_cksum();
            out.extend_from_slice(hd.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    };
    let (b, m) = raw_image("amd64", &[(TAR, hostile)]);
    push_raw(&h, "f/hostile", "v1", &b, &m).await;
    let bomb = gzip(&tar(&[E::File("zeros", 0o644, &vec![0u8; 32 << 20])]));
    let (b, m) = raw_image("amd64", &[(GZIP, bomb)]);
    push_raw(&h, "f/bomb", "v1", &b, &m).await;

    let proxy = Proxy::start(reg.port);
    let ph = proxy.host();
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let empty: Vec<String> = vec![];
    let check_clean = |what: &str| {
        assert!(
            registry.images().unwrap().is_empty(),
            "{what}: no image listed"
        );
        let files = store_files(store.path());
        assert!(
            files
                .iter()
                .all(|f| !f.starts_with("tmp/") && !f.starts_with("rootfs/")),
            "{what}: partial files {files:?}"
        );
        assert!(
            !files.contains(&format!("blobs/sha256/{}", &layer_digest[7..])),
            "{what}: bad layer kept"
        );
    };
    let set = |f: Vec<Fault>| *proxy.faults.lock().unwrap() = f;

    // 404: unknown image.
    let err = pull(&registry, &format!("{ph}/f/nothing:v1"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    check_clean("404");
    // 401 with a Basic challenge and no credentials; 403.
    set(vec![Fault::Status {
        path: "/manifests/".into(),
        status: 401,
        times: 1,
        challenge: Some("Basic realm=\"x\"".into()),
    }]);
    let err = pull(&registry, &format!("{ph}/f/good:v1"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err}");
    set(vec![Fault::Status {
        path: "/manifests/".into(),
        status: 403,
        times: 1,
        challenge: None,
    }]);
    let err = pull(&registry, &format!("{ph}/f/good:v1"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    // 500 for longer than the retries: an error naming the status.
    set(vec![Fault::Status {
        path: "/manifests/".into(),
        status: 500,
        times: 10,
        challenge: None,
    }]);
    let err = pull(&registry, &format!("{ph}/f/good:v1"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 500, .. }), "{err}");
    check_clean("500");
    // Digest mismatch: a byte flipped on the wire.
    set(vec![Fault::Corrupt {
        path: layer_digest.clone(),
    }]);
    let err = pull(&registry, &format!("{ph}/f/good:v1"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    check_clean("digest mismatch");
    // Bad content.
    for (name, ok) in [
        (
            "truncated-gzip",
            &(|e: &Error| matches!(e, Error::Image(spin_image::Error::Layer { .. })))
                as &dyn Fn(&Error) -> bool,
        ),
        ("corrupt-zstd", &|e: &Error| {
            matches!(e, Error::Image(spin_image::Error::Layer { .. }))
        }),
        ("arm64", &|e: &Error| {
            matches!(e, Error::NoMatchingPlatform { .. })
        }),
        ("unknown-type", &|e: &Error| {
            matches!(e, Error::Image(spin_image::Error::UnknownMediaType(_)))
        }),
    ] {
        set(vec![]);
        let err = pull(&registry, &format!("{ph}/f/{name}:v1"), &opts())
            .await
            .unwrap_err();
        assert!(ok(&err), "{name}: {err}");
        assert!(registry.images().unwrap().is_empty(), "{name}");
        let files = store_files(store.path());
        assert!(
            files
                .iter()
                .all(|f| !f.starts_with("tmp/") && !f.starts_with("rootfs/")),
            "{name}: {files:?}"
        );
    }
    // Tar bomb under small limits.
    let small =
        Registry::open(store.path())
            .unwrap()
            .with_convert_options(spin_image::ConvertOptions {
                limits: Limits {
                    max_total_bytes: 8 << 20,
                    max_entries: 1000,
                },
                ..Default::default()
            });
    let err = pull(&small, &format!("{ph}/f/bomb:v1"), &opts())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Image(spin_image::Error::TooLarge { .. })),
        "{err}"
    );
    assert!(small.images().unwrap().is_empty());
    assert!(
        store_files(store.path())
            .iter()
            .all(|f| !f.starts_with("tmp/") && !f.starts_with("rootfs/"))
    );
    assert_eq!(empty.len(), 0);

    // Hostile paths: contained inside the image, nothing on the host.
    for f in ["spin-escape-dotdot", "spin-escape-abs", "spin-escape-link"] {
        let _ = std::fs::remove_file(Path::new("/tmp").join(f));
    }
    let p = pull(&registry, &format!("{ph}/f/hostile:v1"), &opts())
        .await
        .unwrap();
    assert_eq!(
        listing(&p),
        [
            "drwxr-xr-x 0/0 tmp",
            "-rw-r--r-- 0/0 tmp/spin-escape-abs",
            "-rw-r--r-- 0/0 tmp/spin-escape-dotdot",
            "-rw-r--r-- 0/0 tmp/spin-escape-link",
            "lrwxrwxrwx 0/0 up -> ../../../../../../../tmp",
        ]
    );
    for f in ["spin-escape-dotdot", "spin-escape-abs", "spin-escape-link"] {
        assert!(
            !Path::new("/tmp").join(f).exists(),
            "{f} escaped to the host"
        );
    }
    registry.remove(&r(&format!("{ph}/f/hostile:v1"))).unwrap();

    // 429 twice, then a connection cut mid-blob twice: retried, resumed.
    proxy.log.lock().unwrap().clear();
    set(vec![
        Fault::Status {
            path: "/manifests/".into(),
            status: 429,
            times: 2,
            challenge: None,
        },
        Fault::Cut {
            path: layer_digest.clone(),
            bytes: 1 << 20,
            times: 2,
        },
    ]);
    let events = Mutex::new(Vec::new());
    let p = registry
        .pull(&r(&format!("{ph}/f/good:v1")), &opts(), &|e| {
            events.lock().unwrap().push(e)
        })
        .await
        .unwrap();
    let retries = events
        .into_inner()
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, PullEvent::Retrying { .. }))
        .count();
    assert_eq!(retries, 4, "two 429 retries and two resumptions");
    let log = proxy.log.lock().unwrap().clone();
    let ranges: Vec<_> = log
        .iter()
        .filter(|(p, _)| p.contains(&layer_digest))
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "resumed with Range: {ranges:?}"
    );
    let x = tempfile::tempdir().unwrap();
    extract(&p, x.path());
    assert_eq!(std::fs::read(x.path().join("big")).unwrap(), big);
    assert_eq!(registry.images().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_only_for_loopback() {
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    let err = pull(&registry, "example.com/x:y", &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsecureNotLoopback(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_oci_layout_docker_archive_and_export() {
    let work = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&work.path().join("layout"));
    let (bb, amd_layer) = busybox_amd64_layer();
    let amd = layout.image("amd64", &[(GZIP, gzip(&amd_layer))], busybox_config());
    let other = layout.image(
        "arm64",
        &[(GZIP, gzip(&tar(&[E::File("x", 0o644, b"x")])))],
        json!({}),
    );
    let idx = layout.index(&[other, amd.clone()]);
    layout.tag("latest", &idx);
    let store = tempfile::tempdir().unwrap();
    let registry = Registry::open(store.path()).unwrap();
    // A bare tag is named after the directory.
    let imported = registry.import(&layout.dir, None, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "docker.io/library/layout:latest");
    assert_eq!(imported[0].platform, Platform::linux("amd64"));
    let p = registry.path(&r("layout")).unwrap();
    let x = work.path().join("x");
    extract(&p, &x);
    assert_eq!(std::fs::read(x.join("bin/busybox")).unwrap(), bb);

    // docker save archive made by skopeo from the layout.
    need("skopeo", "skopeo");
    let tarball = work.path().join("save.tar");
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--override-arch",
            "amd64",
        ])
        .arg(format!("oci:{}:latest", layout.dir.display()))
        .arg(format!(
            "docker-archive:{}:saved/busybox:1.0",
            tarball.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = registry.import(&tarball, None, None).unwrap();
    assert_eq!(imported[0].name, "docker.io/saved/busybox:1.0");
    let p2 = registry.path(&r("saved/busybox:1.0")).unwrap();
    assert_eq!(listing(&p2), listing(&p));
    assert_eq!(
        registry
            .inspect(&r("saved/busybox:1.0"))
            .unwrap()
            .config
            .cmd
            .as_deref(),
        Some(&["echo hi".to_string()][..])
    );

    // Export, then import the export into a second store.
    let exported = work.path().join("exported");
    registry.export(&r("saved/busybox:1.0"), &exported).unwrap();
    let store2 = tempfile::tempdir().unwrap();
    let registry2 = Registry::open(store2.path()).unwrap();
    let again = registry2.import(&exported, None, None).unwrap();
    assert_eq!(again[0].name, "docker.io/saved/busybox:1.0");
    assert_eq!(
        listing(&registry2.path(&r("saved/busybox:1.0")).unwrap()),
        listing(&p)
    );
    // skopeo reads the export too.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!(
            "oci:{}:docker.io/saved/busybox:1.0",
            exported.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A layout that is not one.
    let err = registry.import(work.path(), None, None).unwrap_err();
    assert!(
        matches!(err, Error::Image(spin_image::Error::InvalidArchive(_))),
        "{err}"
    );
}
