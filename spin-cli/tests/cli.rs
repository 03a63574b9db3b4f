//! The `spin` binary against a real registry: two concurrent pulls into one
//! store, then the other image commands.

#[path = "../../spin-registry/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::*;

fn spin(store: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spin"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "spin failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn version() {
    let o = Command::new(env!("CARGO_BIN_EXE_spin"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(ok(&o).trim(), format!("spin {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn concurrent_pulls_and_image_commands() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let (_, layer) = busybox_amd64_layer();
    let img = layout.image(
        "amd64",
        &[(GZIP, gzip(&layer))],
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "cli/busybox:v1", false);
    let store = work.path().join("store");
    let name = format!("{}/cli/busybox:v1", reg.host());

    // Two processes pull the same image into the same store at once.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_spin"))
            .arg("--store")
            .arg(&store)
            .args(["pull", "--insecure", "-q", &name])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    ok(&a);
    ok(&b);
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");

    let list = ok(&spin(&store, &["images"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(&name) && list.contains("linux/amd64"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&spin(&store, &["inspect", &name]))).unwrap();
    assert_eq!(json["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(json["platform"]["architecture"], "amd64");
    let path = ok(&spin(&store, &["path", &name]));
    let path = std::path::Path::new(path.trim());
    assert!(listing(path).contains(&"-rwxr-xr-x 0/0 bin/busybox".to_string()));

    // Export, remove, import back.
    let exported = work.path().join("exported");
    ok(&spin(
        &store,
        &["export", &name, exported.to_str().unwrap()],
    ));
    ok(&spin(&store, &["rmi", &name]));
    let o = spin(&store, &["path", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not in the store"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let blobs = std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs collected");
    let imported = ok(&spin(&store, &["import", exported.to_str().unwrap()]));
    assert!(imported.starts_with(&name), "{imported}");
    ok(&spin(&store, &["path", &name]));

    // Clear errors.
    let o = spin(
        &store,
        &[
            "pull",
            "--insecure",
            "-q",
            &format!("{}/cli/missing:v1", reg.host()),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = spin(&store, &["pull", "Bad/Name"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid image reference"));
}

/// A pull killed mid-download leaves no lock behind and nothing visible:
/// the next pull and a removal (which needs the exclusive lock) go through.
#[test]
fn killed_pull_leaves_no_lock_and_nothing_partial() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let (_, layer) = busybox_amd64_layer();
    let gz = gzip(&layer);
    let layer_digest = sha(&gz);
    let img = layout.image("amd64", &[(GZIP, gz)], serde_json::json!({}));
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "cli/kill:v1", false);
    let proxy = Proxy::start(reg.port);
    // Every blob request is cut: the pull keeps resuming until killed.
    *proxy.faults.lock().unwrap() = vec![Fault::Cut {
        path: layer_digest[7..].to_string(),
        bytes: 100_000,
        times: 1000,
    }];
    let store = work.path().join("store");
    let name = format!("{}/cli/kill:v1", proxy.host());
    let mut child = Command::new(env!("CARGO_BIN_EXE_spin"))
        .arg("--store")
        .arg(&store)
        .args(["pull", "--insecure", "-q", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|(p, _)| p.contains(&layer_digest[7..]))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "pull never reached the layer"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing visible.
    assert!(ok(&spin(&store, &["images", "--json"])).trim() == "[]");
    let blobs: Vec<_> = std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !blobs
            .iter()
            .any(|b| b.to_string_lossy() == layer_digest[7..]),
        "partial layer visible as a blob"
    );
    // No orphaned lock: pull again (shared lock), then rmi (exclusive lock).
    proxy.faults.lock().unwrap().clear();
    let o = Command::new("timeout")
        .args(["60"])
        .arg(env!("CARGO_BIN_EXE_spin"))
        .arg("--store")
        .arg(&store)
        .args(["pull", "--insecure", "-q", &name])
        .output()
        .unwrap();
    ok(&o);
    let o = Command::new("timeout")
        .args(["60"])
        .arg(env!("CARGO_BIN_EXE_spin"))
        .arg("--store")
        .arg(&store)
        .args(["rmi", &name])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "removal cleans temporary files"
    );
    assert_eq!(
        std::fs::read_dir(store.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}
