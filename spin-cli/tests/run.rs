//! `spin run` end to end: images pulled from a real docker-registry on
//! 127.0.0.1 and run on spin's own riscv64 emulator (wasm build).

#[path = "../../spin-registry/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn spin(store: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spin"));
    if std::env::var_os("SPIN_ARTIFACTS").is_none() {
        cmd.env(
            "SPIN_ARTIFACTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/spin"),
        );
    }
    cmd.arg("--store").arg(store).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A static riscv64 program: with no arguments it greets as Docker's hello
/// image does; otherwise it prints its arguments, `$GREETING` and its working
/// directory, and exits with the number of arguments.
fn hello_layer(work: &Path) -> Vec<u8> {
    let elf = riscv64_program(
        work,
        r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) { puts("Hello from Docker!"); return 0; }
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd)) return 100;
    const char *g = getenv("GREETING");
    printf("args=");
    for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? "," : "", argv[i]);
    printf(" greeting=%s cwd=%s uid=%d\n", g ? g : "", cwd, (int)getuid());
    return argc - 1;
}
"#,
    );
    tar(&[
        E::Dir("etc/", 0o755),
        E::File(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/:/bin/sh\napp:x:1234:1234::/:/bin/sh\n",
        ),
        E::File("etc/group", 0o644, b"root:x:0:\napp:x:1234:\n"),
        E::Dir("usr/", 0o755),
        E::Dir("usr/bin/", 0o755),
        E::File("usr/bin/hello", 0o755, &elf),
    ])
}

fn busybox_image() -> PathBuf {
    std::env::var_os("SPIN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/spin"))
        .join("images/busybox-riscv64.sqfs")
}

#[test]
fn pull_from_a_registry_and_run_with_the_image_defaults() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let layer = hello_layer(work.path());
    let img = layout.image(
        "riscv64",
        &[(GZIP, gzip(&layer))],
        serde_json::json!({
            "Entrypoint": ["hello"],
            "Env": ["PATH=/usr/bin", "GREETING=from-image"],
            "WorkingDir": "/work",
            "User": "1000"
        }),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "spin/hello:v1", false);
    let store = work.path().join("store");
    let name = format!("{}/spin/hello:v1", reg.host());

    // Not in the store: pulled (plain HTTP, as the registry is on loopback), then run.
    let o = spin(&store, &["run", &name]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "Hello from Docker!\n");
    assert!(
        text(&o.stderr).contains("Unable to find image"),
        "{}",
        text(&o.stderr)
    );

    // Arguments follow the entrypoint; -e overrides the image's Env; the
    // image's WorkingDir and User apply; the status is the container's.
    let o = spin(&store, &["run", "-e", "GREETING=from-cli", &name, "a", "b"]);
    assert_eq!(
        text(&o.stdout),
        "args=a,b greeting=from-cli cwd=/work uid=1000\n",
        "stderr: {}",
        text(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o.stderr).contains("Unable to find image"));

    // -w and -u override the image's.
    let o = spin(&store, &["run", "-w", "/tmp", "-u", "0", &name, "x"]);
    assert_eq!(
        text(&o.stdout),
        "args=x greeting=from-image cwd=/tmp uid=0\n"
    );
    assert_eq!(o.status.code(), Some(1));

    // A user by name, from the image's /etc/passwd; an unknown one fails.
    let o = spin(&store, &["run", "-u", "app", &name, "x"]);
    assert_eq!(
        text(&o.stdout),
        "args=x greeting=from-image cwd=/work uid=1234\n"
    );
    let o = spin(&store, &["run", "-u", "nobody", &name, "x"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("unable to find user nobody"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn wrong_architecture_and_missing_images_fail_before_boot() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryServer::start(Auth::None);
    let mut layout = Layout::new(&work.path().join("layout"));
    let (_, layer) = busybox_amd64_layer();
    let img = layout.image(
        "amd64",
        &[(GZIP, gzip(&layer))],
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    layout.tag("v1", &img);
    reg.push(&layout.dir, "v1", "spin/bb:v1", false);
    let store = work.path().join("store");
    let name = format!("{}/spin/bb:v1", reg.host());

    let o = spin(
        &store,
        &[
            "pull",
            "--insecure",
            "-q",
            "--platform",
            "linux/amd64",
            &name,
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = spin(&store, &["run", &name, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("is for linux/amd64, not riscv64"),
        "{}",
        text(&o.stderr)
    );

    let o = spin(&store, &["run", &format!("{}/spin/absent:v1", reg.host())]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("absent"), "{}", text(&o.stderr));
}

#[test]
fn image_file_env_mounts_and_status() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("in.txt"), "from the host\n").unwrap();
    let image = busybox_image();
    let o = spin(
        work.path(),
        &[
            "run",
            "--rm",
            "-e",
            "SPIN=is awesome",
            "-v",
            &format!("{}:/import", share.display()),
            "--image-file",
            image.to_str().unwrap(),
            "sh",
            "-c",
            "echo $SPIN; cat /import/in.txt; echo out > /import/out.txt; exit 3",
        ],
    );
    assert_eq!(
        text(&o.stdout),
        "is awesome\nfrom the host\n",
        "{}",
        text(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(share.join("out.txt")).unwrap(),
        "out\n"
    );

    let o = spin(
        work.path(),
        &[
            "run",
            "-v",
            "/nonexistent/x:/x",
            "--image-file",
            image.to_str().unwrap(),
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("/nonexistent/x"),
        "{}",
        text(&o.stderr)
    );
    let o = spin(
        work.path(),
        &[
            "run",
            "-m",
            "4g",
            "--image-file",
            image.to_str().unwrap(),
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("memory"), "{}", text(&o.stderr));
}
