//! Host folders mounted into containers (virtio-9p served by spin-p9).

mod common;

use common::{Capture, busybox, runtime};

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use spin_runtime::Error;

#[test]
fn ls_of_a_mount_shows_host_files_with_their_modes_and_writes_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o751)).unwrap();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "host data\n").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o640)).unwrap();
    let uid = std::fs::metadata(&data).unwrap().uid();

    let out = Capture::default();
    let err = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            "ls -ln /import | awk 'NR>1 {print $1, $3, $9}'; cat /import/data.txt; \
             echo from-guest > /import/new.txt; mkdir /import/sub",
        ])
        .mount(dir.path(), "/import", false)
        .stdout(out.clone())
        .stderr(err.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0, "stderr: {}", err.text());
    assert_eq!(
        out.text(),
        format!("-rw-r----- {uid} data.txt\n-rwxr-x--x {uid} script.sh\nhost data\n")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "from-guest\n"
    );
    assert!(dir.path().join("sub").is_dir());
}

#[test]
fn a_read_only_mount_refuses_writes_and_keeps_the_host_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "original\n").unwrap();
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            "echo changed > /ro/keep.txt || echo refused; touch /ro/new || echo refused; \
             cat /ro/keep.txt",
        ])
        .mount(dir.path(), "/ro", true)
        .stdout(out.clone())
        .stderr(Capture::default())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), "refused\nrefused\noriginal\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "original\n"
    );
    assert!(!dir.path().join("new").exists());
}

#[test]
fn a_symlink_in_a_mount_cannot_reach_host_files() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            "cat /import/escape/secret /import/link /import/../../secret 2>/dev/null; \
             ls /import/..; true",
        ])
        .mount(dir.path(), "/import", false)
        .stdout(out.clone())
        .stderr(Capture::default())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    let text = out.text();
    assert!(!text.contains("host secret"), "{text}");
    // `..` of the mount is the guest's root.
    assert!(text.contains("import") && text.contains("proc"), "{text}");
}

#[test]
fn bad_mounts_are_refused_before_boot() {
    let missing = runtime()
        .container(busybox())
        .command(["true"])
        .mount("/nonexistent/spin-test-folder", "/x", false)
        .run();
    match missing {
        Err(Error::Mount { source, .. }) => {
            assert!(source.to_string().contains("nonexistent"), "{source}")
        }
        other => panic!("expected a mount error, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let relative = runtime()
        .container(busybox())
        .command(["true"])
        .mount(dir.path(), "relative/path", false)
        .run();
    assert!(matches!(relative, Err(Error::Invalid(_))), "{relative:?}");
    let root = runtime()
        .container(busybox())
        .command(["true"])
        .mount(dir.path(), "/", false)
        .run();
    assert!(matches!(root, Err(Error::Invalid(_))), "{root:?}");
}
