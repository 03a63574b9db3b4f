//! Runs spin's guest under QEMU, the reference peer for spin's own emulators.
//!
//! The guest is the one spin boots: our kernel, an initramfs whose `/init` is
//! `spin-init`, and a squashfs image as the container's root. This crate speaks
//! the same host protocol as the runtime (named virtio-console ports, see
//! `guest/README.md`), with QEMU providing the devices: `qemu-system-riscv64 -M virt`
//! and `qemu-system-x86_64 -M microvm`.
//!
//! ```no_run
//! use spin_qemu::{Arch, Artifacts, QemuRun};
//! use spin_init::RunSpec;
//!
//! let artifacts = Artifacts::locate(Arch::Riscv64)?;
//! let outcome = QemuRun::new(artifacts, RunSpec::command(["uname", "-m"])).run()?;
//! assert_eq!(outcome.stdout_text().trim(), "riscv64");
//! # Ok::<(), spin_qemu::Error>(())
//! ```

use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spin_init::{READY, Report, RunSpec};

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// RISC-V 64 (`qemu-system-riscv64 -M virt`).
    Riscv64,
    /// x86-64 (`qemu-system-x86_64 -M microvm`).
    X86_64,
}

impl Arch {
    /// Both architectures.
    pub const ALL: [Arch; 2] = [Arch::Riscv64, Arch::X86_64];

    /// The name used in paths and by `uname -m`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The QEMU system emulator for this architecture.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::Riscv64 => "qemu-system-riscv64",
            Arch::X86_64 => "qemu-system-x86_64",
        }
    }

    /// The kernel file QEMU boots.
    pub fn kernel_file(self) -> &'static str {
        match self {
            Arch::Riscv64 => "Image",
            Arch::X86_64 => "bzImage",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Arch, Error> {
        match s {
            "riscv64" => Ok(Arch::Riscv64),
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            _ => Err(Error::Usage(format!(
                "unknown architecture {s:?} (riscv64 or x86_64)"
            ))),
        }
    }
}

/// What went wrong running the guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A built artifact is missing.
    #[error("{0} is missing: run `cargo xtask build-guest` first")]
    MissingArtifact(PathBuf),
    /// QEMU could not be started.
    #[error("cannot start {binary} (install it with `cargo xtask deps`): {source}")]
    Spawn {
        /// The QEMU binary.
        binary: String,
        /// The cause.
        source: io::Error,
    },
    /// The guest did not finish in time.
    #[error("the guest did not finish within {timeout:?}; console:\n{console}")]
    Timeout {
        /// The limit that passed.
        timeout: Duration,
        /// What the guest printed on its console.
        console: String,
    },
    /// The guest ended without reporting an exit status.
    #[error("the guest ended without an exit report ({detail}); console:\n{console}")]
    NoReport {
        /// What was seen instead.
        detail: String,
        /// What the guest printed on its console.
        console: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Host I/O around the run failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Where the build puts everything a guest needs (`target/spin` of the workspace).
pub fn artifacts_root() -> PathBuf {
    match std::env::var_os("SPIN_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/spin"),
    }
}

/// The files a guest of one architecture boots from.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The architecture.
    pub arch: Arch,
    /// The kernel image QEMU loads.
    pub kernel: PathBuf,
    /// The initramfs holding spin-init.
    pub initramfs: PathBuf,
    /// The busybox test image (squashfs), the default root disk.
    pub busybox_image: PathBuf,
}

impl Artifacts {
    /// Finds the built artifacts under [`artifacts_root`], failing if any is missing.
    pub fn locate(arch: Arch) -> Result<Artifacts, Error> {
        let root = artifacts_root();
        let guest = root.join("guest").join(arch.name());
        let artifacts = Artifacts {
            arch,
            kernel: guest.join(arch.kernel_file()),
            initramfs: guest.join("initramfs.cpio.gz"),
            busybox_image: root.join("images").join(format!("busybox-{arch}.sqfs")),
        };
        for p in [
            &artifacts.kernel,
            &artifacts.initramfs,
            &artifacts.busybox_image,
        ] {
            if !p.is_file() {
                return Err(Error::MissingArtifact(p.clone()));
            }
        }
        Ok(artifacts)
    }
}

/// A host folder shared with the guest through virtio-9p.
#[derive(Debug, Clone)]
pub struct Share {
    /// The mount tag (the spec's mounts refer to it).
    pub tag: String,
    /// The host folder.
    pub host_dir: PathBuf,
    /// Whether QEMU refuses writes.
    pub readonly: bool,
}

/// One run of a container command in a QEMU guest.
#[derive(Debug, Clone)]
pub struct QemuRun {
    artifacts: Artifacts,
    spec: RunSpec,
    disk: Option<PathBuf>,
    shares: Vec<Share>,
    memory_mib: u32,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report init sent: the exit status, or why the container could not start.
    pub report: Report,
    /// The container's stdout.
    pub stdout: Vec<u8>,
    /// The container's stderr.
    pub stderr: Vec<u8>,
    /// The kernel console (diagnostics).
    pub console: String,
    /// Time from starting QEMU to the guest asking for its run spec.
    pub boot_time: Duration,
    /// Time from starting QEMU to its end.
    pub total_time: Duration,
}

impl Outcome {
    /// The container's exit status, if it ran.
    pub fn exit_code(&self) -> Option<i32> {
        match self.report {
            Report::Exit(code) => Some(code),
            Report::Error(_) => None,
        }
    }

    /// The container's stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The container's stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl QemuRun {
    /// A run of `spec` on the busybox image with 256 MiB and a 120 s limit.
    pub fn new(artifacts: Artifacts, spec: RunSpec) -> QemuRun {
        QemuRun {
            disk: Some(artifacts.busybox_image.clone()),
            artifacts,
            spec,
            shares: Vec::new(),
            memory_mib: 256,
            timeout: Duration::from_secs(120),
            stdin: None,
        }
    }

    /// Uses another squashfs image as the root disk.
    pub fn disk(mut self, image: impl Into<PathBuf>) -> QemuRun {
        self.disk = Some(image.into());
        self
    }

    /// Shares a host folder; the spec must mount `tag` somewhere.
    pub fn share(mut self, share: Share) -> QemuRun {
        self.shares.push(share);
        self
    }

    /// Sets the guest memory.
    pub fn memory_mib(mut self, mib: u32) -> QemuRun {
        self.memory_mib = mib;
        self
    }

    /// Feeds `data` to the container's stdin (sets the spec's `stdin`). The port
    /// has no end-of-file: the command must stop reading by itself.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> QemuRun {
        self.stdin = Some(data.into());
        self.spec.stdin = true;
        self
    }

    /// Sets the limit after which QEMU is killed.
    pub fn timeout(mut self, timeout: Duration) -> QemuRun {
        self.timeout = timeout;
        self
    }

    fn command(&self, dir: &Path) -> Command {
        let arch = self.artifacts.arch;
        let mut cmd = Command::new(arch.qemu_binary());
        let append = match arch {
            Arch::Riscv64 => "console=ttyS0 quiet panic=-1",
            // No ACPI: reset through a triple fault, which -no-reboot turns into an exit.
            Arch::X86_64 => "console=ttyS0 quiet panic=-1 reboot=t",
        };
        match arch {
            Arch::Riscv64 => cmd.args(["-M", "virt", "-bios", "default"]),
            // Without ACPI, microvm announces its virtio-mmio devices on the command line.
            Arch::X86_64 => cmd.args(["-M", "microvm,acpi=off", "-nodefaults"]),
        };
        cmd.args([
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(["-smp", "1", "-m", &format!("{}M", self.memory_mib)])
        .arg("-kernel")
        .arg(&self.artifacts.kernel)
        .arg("-initrd")
        .arg(&self.artifacts.initramfs)
        .args(["-append", append])
        .arg("-chardev")
        .arg(chardev_file("con", &dir.join("console")))
        .args(["-serial", "chardev:con"]);
        if let Some(disk) = &self.disk {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},if=none,format=raw,id=hd0,readonly=on",
                    escape_opt(disk)
                ))
                .args(["-device", "virtio-blk-device,drive=hd0"]);
        }
        cmd.args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=ctl,path={}",
                escape_opt(&dir.join("ctl.sock"))
            ))
            .args(["-device", "virtserialport,chardev=ctl,name=spin.control"])
            .arg("-chardev")
            .arg(chardev_file("out", &dir.join("stdout")))
            .args(["-device", "virtserialport,chardev=out,name=spin.stdout"])
            .arg("-chardev")
            .arg(chardev_file("err", &dir.join("stderr")))
            .args(["-device", "virtserialport,chardev=err,name=spin.stderr"])
            .arg("-chardev")
            .arg(match self.stdin {
                // Closing the socket closes the port: the command reads end of file.
                Some(_) => format!("socket,id=in,path={}", escape_opt(&dir.join("in.sock"))),
                None => "null,id=in".to_string(),
            })
            .args(["-device", "virtserialport,chardev=in,name=spin.stdin"]);
        for (i, share) in self.shares.iter().enumerate() {
            cmd.arg("-fsdev").arg(format!(
                "local,id=fs{i},path={},security_model=none{}",
                escape_opt(&share.host_dir),
                if share.readonly { ",readonly=on" } else { "" }
            ));
            cmd.arg("-device").arg(format!(
                "virtio-9p-device,fsdev=fs{i},mount_tag={}",
                share.tag
            ));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Boots the guest, hands it the spec, and waits for its report.
    pub fn run(&self) -> Result<Outcome, Error> {
        let dir = tempdir()?;
        let result = self.run_in(&dir);
        let _ = fs::remove_dir_all(&dir);
        result
    }

    fn run_in(&self, dir: &Path) -> Result<Outcome, Error> {
        let listener = UnixListener::bind(dir.join("ctl.sock"))
            .map_err(io_err("binding the control socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("configuring the control socket"))?;
        let start = Instant::now();
        let deadline = start + self.timeout;
        let stdin_feeder = match &self.stdin {
            Some(data) => {
                let sock = UnixListener::bind(dir.join("in.sock"))
                    .map_err(io_err("binding the stdin socket"))?;
                let data = data.clone();
                Some(std::thread::spawn(move || feed_stdin(sock, data, deadline)))
            }
            None => None,
        };
        let binary = self.artifacts.arch.qemu_binary();
        let mut child = self.command(dir).spawn().map_err(|source| Error::Spawn {
            binary: binary.to_string(),
            source,
        })?;
        let console = || fs::read_to_string(dir.join("console")).unwrap_or_default();

        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(status) = child.try_wait().map_err(io_err("waiting for QEMU"))? {
                        return Err(Error::NoReport {
                            detail: format!("{binary} exited with {status}: {}", stderr_of(child)),
                            console: console(),
                        });
                    }
                    if Instant::now() > deadline {
                        kill(&mut child);
                        return Err(Error::Timeout {
                            timeout: self.timeout,
                            console: console(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_err("accepting QEMU's control connection")(e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(io_err("configuring the control connection"))?;
        // The watchdog makes every read below end by the deadline.
        let watchdog_stream = stream
            .try_clone()
            .map_err(io_err("cloning the control connection"))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(remaining);
            let _ = watchdog_stream.shutdown(std::net::Shutdown::Both);
        });
        drop(watchdog);

        let mut writer = stream
            .try_clone()
            .map_err(io_err("cloning the control connection"))?;
        let mut boot_time = None;
        let mut report = None;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.trim() == READY && boot_time.is_none() {
                boot_time = Some(start.elapsed());
                let json = serde_json::to_string(&self.spec).expect("a run spec always serializes");
                writer
                    .write_all(format!("{json}\n").as_bytes())
                    .map_err(io_err("sending the run spec"))?;
            } else if let Some(r) = Report::parse(&line) {
                report = Some(r);
                break;
            }
        }
        let status = wait_until(&mut child, deadline)?;
        let total_time = start.elapsed();
        let Some(report) = report else {
            if status.is_none() {
                return Err(Error::Timeout {
                    timeout: self.timeout,
                    console: console(),
                });
            }
            return Err(Error::NoReport {
                detail: format!("{binary} ended: {}", stderr_of(child)),
                console: console(),
            });
        };
        let read = |name: &str| fs::read(dir.join(name)).map_err(io_err(format!("reading {name}")));
        if let Some(feeder) = stdin_feeder {
            feeder
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the stdin thread panicked")))
                .map_err(io_err("feeding stdin to QEMU"))?;
        }
        let stdout = read("stdout")?;
        Ok(Outcome {
            report,
            stdout,
            stderr: read("stderr")?,
            console: console(),
            boot_time: boot_time.unwrap_or(total_time),
            total_time,
        })
    }
}

/// Accepts QEMU's stdin connection, sends `stdin`, and closes it (the end of file).
fn feed_stdin(listener: UnixListener, stdin: Vec<u8>, deadline: Instant) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ))?;
    stream.write_all(&stdin)?;
    // QEMU drops what it has not read when it sees the connection close, and it
    // reads only as fast as the guest takes: close once the queue is empty.
    while unread(&stream)? > 0 {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the guest did not read its stdin",
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.shutdown(std::net::Shutdown::Both)
}

/// Bytes written to a Unix socket that its peer has not read yet.
fn unread(stream: &std::os::unix::net::UnixStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the valid pointer.
    if unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Waits for QEMU to end by itself until `deadline`, then kills it; `None` if killed.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> Result<Option<std::process::ExitStatus>, Error> {
    loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting for QEMU"))? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            kill(child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn stderr_of(mut child: Child) -> String {
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut err, &mut text);
    }
    text.trim().to_string()
}

/// QEMU option values separate options with commas; a comma in a path is doubled.
fn escape_opt(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

fn chardev_file(id: &str, path: &Path) -> String {
    format!("file,id={id},path={}", escape_opt(path))
}

fn tempdir() -> Result<PathBuf, Error> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("spin-qemu-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}
