//! The guest (our kernel, spin-init, a busybox image) on the reference peer, QEMU.
//!
//! These tests pin down what spin's own emulators must match. They need the
//! artifacts of `cargo xtask build-guest` (`cargo xtask test` builds them first).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use spin_init::{MountSpec, Report, RunSpec};
use spin_qemu::{Arch, Artifacts, Outcome, QemuRun, Share};

fn artifacts(arch: Arch) -> Artifacts {
    Artifacts::locate(arch).unwrap_or_else(|e| panic!("{e}"))
}

fn run(arch: Arch, spec: RunSpec) -> Outcome {
    run_with(QemuRun::new(artifacts(arch), spec))
}

fn run_with(run: QemuRun) -> Outcome {
    run.run().unwrap_or_else(|e| panic!("{e}"))
}

fn sh(script: &str) -> RunSpec {
    RunSpec::command(["sh", "-c", script])
}

fn uname_is(arch: Arch, expected: &str) {
    let out = run(arch, RunSpec::command(["uname", "-m"]));
    assert_eq!(out.exit_code(), Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(
        out.stdout_text().trim(),
        expected,
        "console:\n{}",
        out.console
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr: {}",
        out.stderr_text()
    );
}

#[test]
fn riscv64_uname() {
    uname_is(Arch::Riscv64, "riscv64");
}

#[test]
fn x86_64_uname() {
    uname_is(Arch::X86_64, "x86_64");
}

fn exit_status_and_stdio(arch: Arch) {
    let out = run(arch, sh("echo to-out; echo to-err >&2; exit 3"));
    assert_eq!(out.report, Report::Exit(3));
    assert_eq!(out.stdout_text(), "to-out\n");
    assert_eq!(out.stderr_text(), "to-err\n");
}

#[test]
fn riscv64_exit_status_and_separate_stdio() {
    exit_status_and_stdio(Arch::Riscv64);
}

#[test]
fn x86_64_exit_status_and_separate_stdio() {
    exit_status_and_stdio(Arch::X86_64);
}

/// A shared host folder (9p) is readable and writable, and env/cwd are applied.
fn share_env_and_cwd(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hello.txt"), "from the host\n").unwrap();
    fs::set_permissions(
        dir.path().join("hello.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let mut spec = sh(
        "cat hello.txt; stat -c %a hello.txt; echo \"$GREETING\"; pwd; echo written > out.txt; \
         echo tmp > /tmp/x && cat /tmp/x",
    );
    spec.env.push("GREETING=hello env".into());
    spec.cwd = "/data".into();
    spec.mounts.push(MountSpec {
        tag: "data".into(),
        target: "/data".into(),
        readonly: false,
    });
    let out = run_with(QemuRun::new(artifacts(arch), spec).share(Share {
        tag: "data".into(),
        host_dir: dir.path().to_path_buf(),
        readonly: false,
    }));
    assert_eq!(out.exit_code(), Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        "from the host\n640\nhello env\n/data\ntmp\n"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written\n"
    );
}

#[test]
fn riscv64_share_env_and_cwd() {
    share_env_and_cwd(Arch::Riscv64);
}

#[test]
fn x86_64_share_env_and_cwd() {
    share_env_and_cwd(Arch::X86_64);
}

#[test]
fn riscv64_missing_command_is_127() {
    let out = run(Arch::Riscv64, RunSpec::command(["no-such-command"]));
    assert_eq!(out.report, Report::Exit(127));
    assert!(
        out.stderr_text().contains("no-such-command"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn riscv64_read_only_share_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("echo x > /ro/new.txt");
    spec.mounts.push(MountSpec {
        tag: "ro".into(),
        target: "/ro".into(),
        readonly: true,
    });
    let out = run_with(QemuRun::new(artifacts(Arch::Riscv64), spec).share(Share {
        tag: "ro".into(),
        host_dir: dir.path().to_path_buf(),
        readonly: false, // the guest's read-only mount alone must refuse it
    }));
    assert_ne!(out.exit_code(), Some(0));
    assert!(!dir.path().join("new.txt").exists());
}

#[test]
fn riscv64_user_and_signal_status() {
    let mut spec = sh("id -u; id -g; kill -TERM $$");
    spec.uid = 65534;
    spec.gid = 65534;
    let out = run(Arch::Riscv64, spec);
    assert_eq!(out.stdout_text(), "65534\n65534\n");
    assert_eq!(out.report, Report::Exit(128 + 15));
}

#[test]
fn riscv64_bad_mount_is_reported_not_hung() {
    let mut spec = RunSpec::command(["true"]);
    spec.mounts.push(MountSpec {
        tag: "absent".into(),
        target: "/absent".into(),
        readonly: false,
    });
    let out = run(Arch::Riscv64, spec);
    match out.report {
        Report::Error(msg) => assert!(msg.contains("absent"), "{msg}"),
        other => panic!("expected an error report, got {other:?}"),
    }
}

#[test]
fn riscv64_stdin_reaches_the_command_and_ends() {
    let run = QemuRun::new(
        artifacts(Arch::Riscv64),
        sh("read line; echo \"got $line\"; wc -l"),
    )
    .stdin("hello stdin\nb\nc\n");
    let out = run_with(run);
    assert_eq!(out.exit_code(), Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(out.stdout_text(), "got hello stdin\n2\n");
}
