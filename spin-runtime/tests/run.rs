//! Containers on spin's own riscv64 emulator (wasm build) under wasmtime.

mod common;

use common::{Capture, busybox, runtime};

use spin_runtime::ImageSource;

#[test]
fn uname_and_exit_codes_and_separate_streams() {
    let rt = runtime();
    let (out, err) = (Capture::default(), Capture::default());
    let status = rt
        .container(busybox())
        .command(["sh", "-c", "uname -m; echo oops >&2; exit 7"])
        .stdout(out.clone())
        .stderr(err.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.text(), "riscv64\n");
    assert_eq!(err.text(), "oops\n");
    assert_eq!(status.code(), 7);
}

#[test]
fn stop_ends_a_container_that_never_ends() {
    let rt = runtime();
    let container = rt.container(busybox()).command(["sleep", "1000"]);
    let stop = container.stop_handle();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        stop.stop();
    });
    let started = std::time::Instant::now();
    let status = container.run().unwrap_or_else(|e| panic!("{e}"));
    stopper.join().unwrap();
    assert!(status.stopped());
    assert_eq!(status.code(), 137);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn env_workdir_user_and_stdin() {
    let rt = runtime();
    let out = Capture::default();
    let status = rt
        .container(busybox())
        .command([
            "sh",
            "-c",
            "read line; echo \"$SPIN|$(pwd)|$(id -u)|$line\"",
        ])
        .env("SPIN", "is awesome")
        .workdir("/tmp/work")
        .user(1000, 1000)
        .stdin(std::io::Cursor::new(b"from stdin\n".to_vec()))
        .stdout(out.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), "is awesome|/tmp/work|1000|from stdin\n");
}

#[test]
fn stdin_ends_and_large_input_arrives_whole() {
    // 3 MiB: more than the host buffers, so the reader must wait for the guest.
    let input: Vec<u8> = (0..3u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command(["sh", "-c", "wc -c; echo done"])
        .stdin(std::io::Cursor::new(input.clone()))
        .stdout(out.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), format!("{}\ndone\n", input.len()));
}

#[test]
fn two_containers_at_once() {
    let rt = runtime();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let rt = &rt;
                s.spawn(move || {
                    let out = Capture::default();
                    let status = rt
                        .container(busybox())
                        .command(["sh", "-c", &format!("echo container {i}")])
                        .stdout(out.clone())
                        .run()
                        .unwrap_or_else(|e| panic!("{e}"));
                    (status.code(), out.text())
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), (0, format!("container {i}\n")));
        }
    });
}

#[test]
fn bad_options_are_refused_before_boot() {
    let rt = runtime();
    let missing = rt
        .container(ImageSource::ImageFile("/nonexistent/image.sqfs".into()))
        .command(["true"])
        .run();
    assert!(
        matches!(missing, Err(spin_runtime::Error::Missing { .. })),
        "{missing:?}"
    );
    let too_big = rt
        .container(busybox())
        .command(["true"])
        .memory_mib(8192)
        .run();
    assert!(
        matches!(too_big, Err(spin_runtime::Error::Invalid(_))),
        "{too_big:?}"
    );
    let relative = rt
        .container(busybox())
        .command(["true"])
        .workdir("tmp")
        .run();
    assert!(
        matches!(relative, Err(spin_runtime::Error::Invalid(_))),
        "{relative:?}"
    );
    let no_command = rt.container(busybox()).run();
    assert!(
        matches!(no_command, Err(spin_runtime::Error::Invalid(_))),
        "{no_command:?}"
    );
}

#[test]
fn a_missing_command_exits_127() {
    let rt = runtime();
    let err = Capture::default();
    let status = rt
        .container(busybox())
        .command(["no-such-command"])
        .stderr(err.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 127);
    assert!(err.text().contains("no-such-command"), "{}", err.text());
}

/// The whole system against the reference peer: the same kernel, initramfs, image
/// and commands under qemu-system-riscv64 give the same output and status.
#[test]
fn same_output_and_status_as_qemu() {
    let rt = runtime();
    let artifacts =
        spin_qemu::Artifacts::locate(spin_qemu::Arch::Riscv64).unwrap_or_else(|e| panic!("{e}"));
    let script = "uname -a; ls -l /bin | wc -l; echo $((6 * 7)); sort /etc/passwd; \
                  echo a > /tmp/f && cat /tmp/f; exit 5";
    let out = Capture::default();
    let ours = rt
        .container(busybox())
        .command(["sh", "-c", script])
        .stdout(out.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let reference =
        spin_qemu::QemuRun::new(artifacts, spin_init::RunSpec::command(["sh", "-c", script]))
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.text(), reference.stdout_text());
    assert_eq!(Some(ours.code()), reference.exit_code());
    assert_eq!(ours.code(), 5);
}

#[test]
fn a_guest_with_3_gib_fills_2_5_gib_of_memory() {
    let out = Capture::default();
    let err = Capture::default();
    // A tmpfs holds its files in RAM: 2560 MiB written there are 2560 MiB of
    // guest memory touched.
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            "free -m | awk '/Mem:/ {print \"total\", ($2 > 2900)}'; \
             mkdir /big && mount -t tmpfs -o size=2700m big /big && \
             dd if=/dev/zero of=/big/fill bs=1M count=2560 2>/dev/null && \
             du -m /big/fill && free -m | awk '/Mem:/ {print \"used\", ($3 + $6 > 2560)}'",
        ])
        .memory_mib(3072)
        .stdout(out.clone())
        .stderr(err.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0, "stderr: {}", err.text());
    assert_eq!(out.text(), "total 1\n2560\t/big/fill\nused 1\n");
}
