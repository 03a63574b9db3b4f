//! The server against the real Linux v9fs client: boots spin's guest on the
//! native riscv64 emulator with two shares served by [`P9Server`] and runs
//! busybox commands in it.
//!
//! The guest is taken from `$SPIN_ARTIFACTS` (else this workspace's
//! `target/spin`): `guest/riscv64/{Image,initramfs.cpio.gz}` and
//! `images/busybox-riscv64.sqfs`. Without them the test says so and passes
//! (`cargo xtask build-guest` makes them).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spin_emu_riscv::host::StdClock;
use spin_emu_riscv::machine::{Console, Machine, MachineConfig, RunResult};
use spin_init::host::ControlSession;
use spin_init::{MountSpec, Report, RunSpec};
use spin_p9::P9Server;
use spin_virtio::block::FileBackend;
use spin_virtio::console::ConsoleBackend;
use spin_virtio::guest::GuestDevices;
use spin_virtio::host_abi::{PORT_CONTROL, PORT_STDERR, PORT_STDOUT};
use spin_virtio::p9::FsBackend;

struct Artifacts {
    kernel: PathBuf,
    initrd: PathBuf,
    disk: PathBuf,
}

fn artifacts() -> Option<Artifacts> {
    let root = std::env::var_os("SPIN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/spin"));
    let a = Artifacts {
        kernel: root.join("guest/riscv64/Image"),
        initrd: root.join("guest/riscv64/initramfs.cpio.gz"),
        disk: root.join("images/busybox-riscv64.sqfs"),
    };
    for p in [&a.kernel, &a.initrd, &a.disk] {
        if !p.is_file() {
            eprintln!(
                "SKIPPED: {} is missing (run `cargo xtask build-guest` or set SPIN_ARTIFACTS)",
                p.display()
            );
            return None;
        }
    }
    Some(a)
}

type Shared = Arc<Mutex<Vec<u8>>>;

/// The console ports: control session, stdout and stderr kept for the test.
struct Ports {
    session: Arc<Mutex<ControlSession>>,
    stdout: Shared,
    stderr: Shared,
}

impl ConsoleBackend for Ports {
    fn write(&mut self, port: usize, data: &[u8]) -> usize {
        match port as u32 {
            PORT_CONTROL => self.session.lock().unwrap().feed(data),
            PORT_STDOUT => self.stdout.lock().unwrap().extend_from_slice(data),
            PORT_STDERR => self.stderr.lock().unwrap().extend_from_slice(data),
            _ => {}
        }
        data.len()
    }

    fn read(&mut self, port: usize, buf: &mut [u8]) -> usize {
        match port as u32 {
            PORT_CONTROL => self.session.lock().unwrap().take_input(buf),
            _ => 0,
        }
    }
}

/// Kernel messages, shown when something goes wrong.
struct KernelLog(Shared);

impl Console for KernelLog {
    fn write(&mut self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

/// Requests seen, by (type, errno of an Rlerror).
type Tally = Arc<Mutex<BTreeMap<(u8, Option<u32>), u32>>>;

/// Counts what the guest's client sends and what it gets.
struct Recorder(P9Server, Tally);

impl FsBackend for Recorder {
    fn call(&mut self, request: &[u8], response: &mut Vec<u8>) {
        self.0.call(request, response);
        let errno = (response.get(4) == Some(&7))
            .then(|| u32::from_le_bytes(response[7..11].try_into().unwrap()));
        let kind = request.get(4).copied().unwrap_or(0);
        *self.1.lock().unwrap().entry((kind, errno)).or_default() += 1;
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Boots the guest once, runs `sh -c script` with `shares` mounted per `mounts`.
fn run(
    a: &Artifacts,
    script: &str,
    shares: Vec<(String, Box<dyn FsBackend>)>,
    mounts: Vec<MountSpec>,
) -> Run {
    let start = Instant::now();
    let mut spec = RunSpec::command(["sh", "-c", script]);
    spec.mounts = mounts;
    spec.validate().unwrap();
    let session = Arc::new(Mutex::new(ControlSession::new(&spec)));
    let (stdout, stderr, klog) = (Shared::default(), Shared::default(), Shared::default());
    let devices = GuestDevices {
        disk: Some(Box::new(
            FileBackend::new(fs::File::open(&a.disk).unwrap(), true).unwrap(),
        )),
        console: Some((
            Box::new(Ports {
                session: session.clone(),
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            }),
            spin_virtio::host_abi::console_ports(),
        )),
        shares,
        ..GuestDevices::default()
    };
    let devices = spin_emu_riscv::bus::guest_devices(devices);
    let mut machine = Machine::new(
        &MachineConfig::default(),
        &fs::read(&a.kernel).unwrap(),
        Some(&fs::read(&a.initrd).unwrap()),
        devices,
        Box::new(KernelLog(klog.clone())),
        Box::new(StdClock::default()),
    )
    .unwrap();
    let show = |why: &str| -> ! {
        let text = |s: &Shared| String::from_utf8_lossy(&s.lock().unwrap()).into_owned();
        panic!(
            "{why}\n--- kernel ---\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            text(&klog),
            text(&stdout),
            text(&stderr)
        );
    };
    let deadline = start + Duration::from_secs(300);
    loop {
        match machine.run(Some(200_000_000)) {
            RunResult::Budget if Instant::now() < deadline => continue,
            RunResult::Reset { .. } => break,
            other => show(&format!("the machine ended with {other:?}")),
        }
    }
    let code = match session.lock().unwrap().report() {
        Some(Report::Exit(code)) => *code,
        Some(Report::Error(e)) => show(&format!("the container did not start: {e}")),
        None => show("no exit report"),
    };
    let stdout = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    eprintln!(
        "guest run: exit {code} in {:.2?}, {} instructions",
        start.elapsed(),
        machine.cpu.instret
    );
    Run {
        code,
        stdout,
        stderr,
    }
}

/// The lines between `BEGIN name` and `END name`.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("BEGIN {name}");
    let end = format!("END {name}");
    out.lines()
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .collect()
}

/// The value of a `KEY=value` line.
fn value<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in the output:\n{out}"))
}

const SCRIPT: &str = r#"
echo BEGIN ls; ls -ln /import; echo END ls
echo "CAT=$(cat /import/hello.txt)"
echo "written in the guest" > /import/from-guest.txt; echo "WRITE=$?"
echo "APPEND_SRC=$(cat /import/from-guest.txt)"
mkdir /import/newdir; echo "MKDIR=$?"
mv /import/from-guest.txt /import/newdir/moved.txt; echo "MV=$?"
ln -s moved.txt /import/newdir/link; echo "LN=$?"
echo "READLINK=$(readlink /import/newdir/link)"
echo "VIA_LINK=$(cat /import/newdir/link)"
echo "again" >> /import/newdir/moved.txt; echo "APPEND=$?"
cp /import/hello.txt /import/todelete; rm /import/todelete; echo "RM=$?"
mkdir /import/gone && rmdir /import/gone; echo "RMDIR=$?"
touch /import/modes && chmod 751 /import/modes; echo "CHMOD=$?"
cp /import/random.bin /import/copy.bin; echo "CP=$?"
ls -a /import/big > /tmp/big.list; echo "LIST=$?"
echo "COUNT_ALL=$(wc -l < /tmp/big.list)"
echo "UNIQUE=$(sort -u /tmp/big.list | wc -l)"
echo "THIRD=$(sed -n 3p /tmp/big.list)"
echo "LAST=$(tail -n 1 /tmp/big.list)"
echo "SIZE=$(wc -c < /import/random.bin)"
touch /ro/new 2>/dev/null; echo "RO_TOUCH=$?"
echo x >> /ro/keep.txt 2>/dev/null; echo "RO_APPEND=$?"
rm -f /ro/keep.txt 2>/dev/null; echo "RO_RM=$?"
mkdir /ro/dir 2>/dev/null; echo "RO_MKDIR=$?"
echo "RO_CAT=$(cat /ro/keep.txt)"
echo BEGIN escape; cat /import/escape/passwd 2>&1; echo END escape
echo BEGIN guest_passwd; cat /etc/passwd 2>&1; echo END guest_passwd
echo BEGIN outside; cat /import/outside/secret 2>&1; cat /import/up/secret 2>&1; echo END outside
cd /import/.. && echo BEGIN dotdot && ls && echo END dotdot
echo BEGIN dotdot2; ls /import/../; echo END dotdot2
echo 0123456789 > /import/t; truncate -s 4 /import/t; echo "TRUNCATE=$?"
touch -d "2001-02-03 04:05:06" /import/t; echo "TOUCH_D=$?"
echo "STAT=$(stat -c '%a %u %g %s %Y %h' /import/hello.txt)"
mkfifo /import/fifo; echo "MKFIFO=$?"
ln /import/hello.txt /import/hard; echo "HARDLINK=$?"
echo "NLINK=$(stat -c %h /import/hello.txt)"
chown 555:666 /import/exec.sh 2>/dev/null; echo "CHOWN=$?"
getfattr -n user.x /import/hello.txt >/dev/null 2>&1; echo "GETFATTR=$?"
cp /bin/busybox /import/echo && echo "EXEC=$(/import/echo runs-from-the-share)"
printf 'echo "SCRIPT=$0"\n' > /import/run.sh; chmod +x /import/run.sh; /import/run.sh
echo "DF=$(df /import | tail -n 1 | wc -w)"
sync; echo "SYNC=$?"
"#;

#[test]
fn linux_client_uses_the_share() {
    let Some(a) = artifacts() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rw = dir.path().join("rw");
    let ro = dir.path().join("ro");
    let outside = dir.path().join("outside");
    for d in [&rw, &ro, &outside] {
        fs::create_dir(d).unwrap();
    }
    let secret = b"host-only secret 7f3a\n";
    fs::write(outside.join("secret"), secret).unwrap();
    fs::write(rw.join("hello.txt"), b"hello from the host\n").unwrap();
    fs::set_permissions(rw.join("hello.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(rw.join("exec.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(rw.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let root = rw.join("hello.txt").metadata().unwrap().uid() == 0;
    fs::write(rw.join("owned"), b"").unwrap();
    if root {
        std::os::unix::fs::chown(rw.join("owned"), Some(1234), Some(4321)).unwrap();
    }
    let random: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(rw.join("random.bin"), &random).unwrap();
    fs::create_dir(rw.join("big")).unwrap();
    for i in 0..5000 {
        fs::File::create(rw.join("big").join(format!("file-{i:04}"))).unwrap();
    }
    symlink("/etc", rw.join("escape")).unwrap();
    symlink(&outside, rw.join("outside")).unwrap();
    symlink("../outside", rw.join("up")).unwrap();
    fs::write(ro.join("keep.txt"), b"keep me\n").unwrap();
    let ro_before = ro.join("keep.txt").metadata().unwrap();

    let tally = Tally::default();
    let shares: Vec<(String, Box<dyn FsBackend>)> = vec![
        (
            "p9rw".into(),
            Box::new(Recorder(P9Server::open(&rw, false).unwrap(), tally.clone())),
        ),
        // Mounted read-write in the guest: the server itself must refuse.
        (
            "p9ro".into(),
            Box::new(Recorder(P9Server::open(&ro, true).unwrap(), tally.clone())),
        ),
    ];
    let mounts = vec![
        MountSpec {
            tag: "p9rw".into(),
            target: "/import".into(),
            readonly: false,
        },
        MountSpec {
            tag: "p9ro".into(),
            target: "/ro".into(),
            readonly: false,
        },
    ];
    let r = run(&a, SCRIPT, shares, mounts);
    let out = &r.stdout;
    let context = format!("stdout:\n{out}\nstderr:\n{}", r.stderr);
    let _ = std::io::stderr().write_all(context.as_bytes());
    assert_eq!(r.code, 0, "{context}");

    // ls -ln shows the host's modes, owners and sizes.
    let ls = section(out, "ls");
    let line = |name: &str| -> Vec<&str> {
        ls.iter()
            .find(|l| {
                l.split_whitespace().last() == Some(name) || l.contains(&format!(" {name} -> "))
            })
            .unwrap_or_else(|| panic!("{name} not listed: {ls:?}"))
            .split_whitespace()
            .collect()
    };
    let hello = line("hello.txt");
    let m = rw.join("hello.txt").metadata().unwrap();
    assert_eq!(hello[0], "-rw-r-----");
    assert_eq!(hello[2], m.uid().to_string());
    assert_eq!(hello[3], m.gid().to_string());
    assert_eq!(hello[4], "20");
    assert_eq!(line("exec.sh")[0], "-rwxr-xr-x");
    assert_eq!(line("big")[0].chars().next(), Some('d'));
    assert!(line("escape")[0].starts_with('l'));
    if root {
        assert_eq!(&line("owned")[2..4], ["1234", "4321"]);
    }

    assert_eq!(value(out, "CAT"), "hello from the host");
    for key in [
        "WRITE", "MKDIR", "MV", "LN", "APPEND", "RM", "RMDIR", "CHMOD", "CP", "SYNC",
    ] {
        assert_eq!(value(out, key), "0", "{key}");
    }
    assert_eq!(value(out, "APPEND_SRC"), "written in the guest");
    assert_eq!(
        fs::read_to_string(rw.join("newdir/moved.txt")).unwrap(),
        "written in the guest\nagain\n"
    );
    assert!(!rw.join("from-guest.txt").exists());
    assert_eq!(value(out, "READLINK"), "moved.txt");
    assert_eq!(
        fs::read_link(rw.join("newdir/link")).unwrap(),
        Path::new("moved.txt")
    );
    assert_eq!(value(out, "VIA_LINK"), "written in the guest");
    assert!(!rw.join("todelete").exists());
    assert!(!rw.join("gone").exists());
    assert_eq!(rw.join("modes").metadata().unwrap().mode() & 0o7777, 0o751);
    assert_eq!(fs::read(rw.join("copy.bin")).unwrap(), random);
    assert_eq!(value(out, "SIZE"), "700000");

    // A 5000-entry folder, listed in full.
    // (`ls -a`: 5000 names, `.` and `..`, sorted, each once.)
    assert_eq!(value(out, "LIST"), "0");
    assert_eq!(value(out, "COUNT_ALL"), "5002");
    assert_eq!(value(out, "UNIQUE"), "5002");
    assert_eq!(value(out, "THIRD"), "file-0000");
    assert_eq!(value(out, "LAST"), "file-4999");

    // The read-only share refused every change, and nothing changed.
    for key in ["RO_TOUCH", "RO_APPEND", "RO_RM", "RO_MKDIR"] {
        assert_ne!(value(out, key), "0", "{key}");
    }
    assert_eq!(value(out, "RO_CAT"), "keep me");
    assert_eq!(fs::read(ro.join("keep.txt")).unwrap(), b"keep me\n");
    let ro_after = ro.join("keep.txt").metadata().unwrap();
    assert_eq!(ro_after.mtime_nsec(), ro_before.mtime_nsec());
    assert_eq!(ro_after.mtime(), ro_before.mtime());
    assert_eq!(fs::read_dir(&ro).unwrap().count(), 1);

    // Symlinks out of the share lead into the guest's own namespace.
    assert_eq!(section(out, "escape"), section(out, "guest_passwd"));
    let outside_text = section(out, "outside").join("\n");
    assert!(!outside_text.contains("host-only secret"), "{outside_text}");
    assert_eq!(
        section(out, "outside").len(),
        2,
        "two errors: {outside_text}"
    );
    assert_eq!(fs::read(outside.join("secret")).unwrap(), secret);

    // `..` of the mount point is the guest's root.
    for name in ["dotdot", "dotdot2"] {
        let listing = section(out, name);
        for expected in ["bin", "import", "ro", "proc"] {
            assert!(listing.contains(&expected), "{name}: {listing:?}");
        }
        assert!(
            !listing.contains(&"rw"),
            "{name} shows the host: {listing:?}"
        );
    }
    assert_eq!(value(out, "DF"), "6");

    // Sizes, times, owners set from the guest land on the host.
    assert_eq!(fs::read(rw.join("t")).unwrap(), b"0123");
    assert_eq!(rw.join("t").metadata().unwrap().mtime(), 981_173_106);
    let m = rw.join("hello.txt").metadata().unwrap();
    assert_eq!(
        value(out, "STAT"),
        format!("640 {} {} 20 {} 1", m.uid(), m.gid(), m.mtime())
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        rw.join("fifo")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(value(out, "NLINK"), "2");
    assert_eq!(m.nlink(), 2);
    let exec = rw.join("exec.sh").metadata().unwrap();
    if root {
        assert_eq!(value(out, "CHOWN"), "0");
        assert_eq!((exec.uid(), exec.gid()), (555, 666));
    } else {
        assert_ne!(value(out, "CHOWN"), "0", "EPERM from the host");
    }
    assert_ne!(value(out, "GETFATTR"), "0");
    // Programs run from the share (exec maps them through the client).
    assert_eq!(value(out, "EXEC"), "runs-from-the-share");
    assert_eq!(value(out, "SCRIPT"), "/import/run.sh");
    for key in ["TRUNCATE", "TOUCH_D", "MKFIFO", "HARDLINK"] {
        assert_eq!(value(out, key), "0", "{key}");
    }

    // What the client sent, and which errors it got.
    let tally = tally.lock().unwrap();
    eprintln!("requests (type, errno): {tally:?}");
    for (&(kind, errno), n) in tally.iter() {
        // Framing or fid errors would mean client and server disagree.
        assert!(
            !matches!(errno, Some(71) | Some(9)),
            "{n} requests of type {kind} got errno {errno:?}"
        );
    }
}
