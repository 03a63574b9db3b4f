//! `cargo xtask boot`: boots the guest on spin's own emulator and runs one command.
//!
//! `cargo xtask boot [--arch riscv64] [--native] [--disk FILE.sqfs] [--mem MiB] -- CMD ARGS...`
//!
//! The default backend is the wasm module under wasmtime (through spin-runtime);
//! `--native` runs the emulator library directly in this process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spin_init::host::ControlSession;
use spin_init::{Report, RunSpec};

use crate::artifacts_dir;

struct Options {
    arch: String,
    native: bool,
    disk: Option<PathBuf>,
    mem_mib: u32,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        arch: "riscv64".into(),
        native: false,
        disk: None,
        mem_mib: 256,
        command: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--arch" => o.arch = it.next().context("--arch needs a value")?.clone(),
            "--native" => o.native = true,
            "--disk" => o.disk = Some(it.next().context("--disk needs a file")?.into()),
            "--mem" => {
                o.mem_mib = it
                    .next()
                    .context("--mem needs MiB")?
                    .parse()
                    .context("--mem needs MiB")?
            }
            "--" => {
                o.command = it.cloned().collect();
                break;
            }
            other => bail!(
                "unknown option {other:?} (usage: boot [--arch A] [--native] [--disk F] [--mem MiB] -- CMD...)"
            ),
        }
    }
    if o.command.is_empty() {
        bail!("no command: cargo xtask boot [options] -- CMD ARGS...");
    }
    if o.arch != "riscv64" {
        bail!("only --arch riscv64 boots so far (the x86-64 emulator is not written yet)");
    }
    Ok(o)
}

/// What one run produced, whichever backend ran it.
pub struct RunOutput {
    /// The container's exit code.
    pub code: i32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Time from the start to the first byte of stdout.
    pub first_output: Option<Duration>,
    /// Time from the start to the end.
    pub total: Duration,
    /// Guest instructions executed (native runs only).
    pub instructions: Option<u64>,
}

/// Collects stdout and remembers when its first byte came.
#[derive(Clone)]
struct Capture {
    start: Instant,
    echo: bool,
    inner: Arc<Mutex<(Vec<u8>, Option<Duration>)>>,
}

impl Capture {
    fn new(start: Instant, echo: bool) -> Capture {
        Capture {
            start,
            echo,
            inner: Arc::default(),
        }
    }

    fn take(&self) -> (Vec<u8>, Option<Duration>) {
        std::mem::take(&mut *self.inner.lock().expect("capture poisoned"))
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.inner.lock().expect("capture poisoned");
        inner.1.get_or_insert_with(|| self.start.elapsed());
        inner.0.extend_from_slice(buf);
        if self.echo {
            std::io::stdout().write_all(buf)?;
            std::io::stdout().flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `command` in `disk` on the wasm emulator under wasmtime.
pub fn run_wasm(command: &[String], disk: &Path, mem_mib: u32, echo: bool) -> Result<RunOutput> {
    let start = Instant::now();
    let out = Capture::new(start, echo);
    let runtime = spin_runtime::Runtime::new(spin_runtime::Arch::Riscv64)?;
    let status = runtime
        .container(spin_runtime::ImageSource::ImageFile(disk.to_path_buf()))
        .command(command.to_vec())
        .memory_mib(mem_mib)
        .stdout(out.clone())
        .run()?;
    let (stdout, first_output) = out.take();
    Ok(RunOutput {
        code: status.code(),
        stdout,
        first_output,
        total: start.elapsed(),
        instructions: None,
    })
}

/// Runs the command; returns its exit code.
pub fn boot(args: &[String]) -> Result<i32> {
    let o = parse(args)?;
    let disk = o
        .disk
        .clone()
        .unwrap_or_else(|| artifacts_dir().join("images/busybox-riscv64.sqfs"));
    if !disk.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build-guest`",
            disk.display()
        );
    }
    let run = if o.native {
        native::run(&o.command, &disk, o.mem_mib, true)?
    } else {
        run_wasm(&o.command, &disk, o.mem_mib, true)?
    };
    eprintln!(
        "boot: {} backend, exit {}, first output {:.2?}, total {:.2?}{}",
        if o.native { "native" } else { "wasm" },
        run.code,
        run.first_output.unwrap_or_default(),
        run.total,
        run.instructions
            .map(|n| format!(", {n} guest instructions"))
            .unwrap_or_default()
    );
    Ok(run.code)
}

pub mod native {
    use super::*;
    use spin_emu_riscv::host::StdClock;
    use spin_emu_riscv::machine::{Console, Machine, MachineConfig, RunResult};
    use spin_virtio::block::FileBackend;
    use spin_virtio::console::ConsoleBackend;
    use spin_virtio::guest::GuestDevices;
    use spin_virtio::host_abi::{PORT_CONTROL, PORT_STDERR, PORT_STDOUT};

    /// The console ports wired to this process: control session, stdout, stderr.
    struct Ports(Arc<Mutex<ControlSession>>, Capture);

    impl ConsoleBackend for Ports {
        fn write(&mut self, port: usize, data: &[u8]) -> usize {
            match port as u32 {
                PORT_CONTROL => self.0.lock().expect("session poisoned").feed(data),
                PORT_STDOUT => {
                    let _ = self.1.write_all(data);
                }
                PORT_STDERR => {
                    let _ = std::io::stderr().write_all(data);
                }
                _ => {}
            }
            data.len()
        }

        fn read(&mut self, port: usize, buf: &mut [u8]) -> usize {
            match port as u32 {
                PORT_CONTROL => self.0.lock().expect("session poisoned").take_input(buf),
                _ => 0,
            }
        }
    }

    /// Kernel messages are dropped unless asked for (`SPIN_KERNEL_LOG=1`).
    struct KernelLog(bool);

    impl Console for KernelLog {
        fn write(&mut self, bytes: &[u8]) {
            if self.0 {
                let _ = std::io::stderr().write_all(bytes);
            }
        }
    }

    /// Runs `command` in `disk` on the emulator library in this process.
    pub fn run(command: &[String], disk: &Path, mem_mib: u32, echo: bool) -> Result<RunOutput> {
        let start = Instant::now();
        let guest = artifacts_dir().join("guest/riscv64");
        let kernel = std::fs::read(guest.join("Image"))
            .context("reading the kernel (cargo xtask build-guest)")?;
        let initrd =
            std::fs::read(guest.join("initramfs.cpio.gz")).context("reading the initramfs")?;
        let session = Arc::new(Mutex::new(ControlSession::new(&RunSpec::command(
            command.to_vec(),
        ))));
        let out = Capture::new(start, echo);
        let devices = GuestDevices {
            disk: Some(Box::new(FileBackend::new(
                std::fs::File::open(disk)?,
                true,
            )?)),
            console: Some((
                Box::new(Ports(session.clone(), out.clone())),
                spin_virtio::host_abi::console_ports(),
            )),
            ..GuestDevices::default()
        };
        let devices = spin_emu_riscv::bus::guest_devices(devices);
        let config = MachineConfig {
            ram_size: u64::from(mem_mib) << 20,
            ..MachineConfig::default()
        };
        let verbose = std::env::var_os("SPIN_KERNEL_LOG").is_some();
        let mut machine = Machine::new(
            &config,
            &kernel,
            Some(&initrd),
            devices,
            Box::new(KernelLog(verbose)),
            Box::new(StdClock::default()),
        )?;
        match machine.run(None) {
            RunResult::Reset { .. } => {}
            other => bail!("the machine ended with {other:?}"),
        }
        let code = match session.lock().expect("session poisoned").report() {
            Some(Report::Exit(code)) => *code,
            Some(Report::Error(e)) => bail!("the container did not start: {e}"),
            None => bail!("the guest powered off without an exit report"),
        };
        let (stdout, first_output) = out.take();
        Ok(RunOutput {
            code,
            stdout,
            first_output,
            total: start.elapsed(),
            instructions: Some(machine.cpu.instret),
        })
    }
}
