//! The emulator as a WASI command, run by spin-runtime under wasmtime.
//!
//! `spin-emu-riscv --kernel FILE --initrd FILE [--disk FILE] [--mem MiB]
//!  [--cmdline ARGS] [--share TAG]... [--net MAC]`
//!
//! Files come through the runtime's preopened folders; the devices reach the host
//! through the `spin_v1` imports (see `spin_virtio::host_abi`). The module exits 0
//! when the guest powers off; the container's own status travels on the control
//! port. Exit 1: bad arguments or files; 2: the guest crashed the machine; 3: the
//! host stopped it.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use spin_emu_riscv::machine::{Clock, Console, Machine, MachineConfig, RunResult};
    use spin_virtio::block::FileBackend;
    use spin_virtio::guest::GuestDevices;
    use spin_virtio::host_abi::{EVENT_STOP, PORT_KERNEL, wasm as abi};

    /// The largest 9p reply the guest asks for (its msize, set by spin-init).
    const P9_MSIZE: usize = 256 * 1024 + 4096;

    struct Args {
        kernel: String,
        initrd: Option<String>,
        disk: Option<String>,
        mem_mib: u64,
        cmdline: Option<String>,
        shares: Vec<String>,
        mac: Option<[u8; 6]>,
    }

    fn parse_args() -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        let mut out = Args {
            kernel: String::new(),
            initrd: None,
            disk: None,
            mem_mib: 256,
            cmdline: None,
            shares: Vec::new(),
            mac: None,
        };
        while let Some(a) = args.next() {
            let mut value = || args.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--kernel" => out.kernel = value()?,
                "--initrd" => out.initrd = Some(value()?),
                "--disk" => out.disk = Some(value()?),
                "--mem" => {
                    out.mem_mib = value()?
                        .parse()
                        .map_err(|_| "--mem takes MiB".to_string())?
                }
                "--cmdline" => out.cmdline = Some(value()?),
                "--share" => out.shares.push(value()?),
                "--net" => out.mac = Some(parse_mac(&value()?)?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if out.kernel.is_empty() {
            return Err("--kernel is required".into());
        }
        Ok(out)
    }

    fn parse_mac(s: &str) -> Result<[u8; 6], String> {
        let parts: Vec<u8> = s
            .split(':')
            .map(|p| u8::from_str_radix(p, 16))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("bad MAC address {s:?}"))?;
        parts
            .try_into()
            .map_err(|_| format!("bad MAC address {s:?}"))
    }

    /// The kernel console goes to the host's diagnostics port.
    struct KernelConsole;

    impl Console for KernelConsole {
        fn write(&mut self, bytes: &[u8]) {
            abi::console_write(PORT_KERNEL, bytes);
        }
    }

    /// The machine's stop flag, raised when the host's `wait` says stop.
    static MACHINE_STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    /// WASI's monotonic clock; idling blocks in the host's `wait`.
    struct HostClock {
        origin: Instant,
    }

    impl Clock for HostClock {
        fn now_ns(&mut self) -> u64 {
            self.origin.elapsed().as_nanos() as u64
        }

        fn wait(&mut self, deadline_ns: u64) {
            let timeout = deadline_ns.saturating_sub(self.now_ns());
            if abi::wait(timeout) & EVENT_STOP != 0
                && let Some(stop) = MACHINE_STOP.get()
            {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("reading the {what} {path}: {e}"))
    }

    pub fn main() -> i32 {
        match run() {
            Ok(code) => code,
            Err(e) => {
                eprintln!("spin-emu-riscv: {e}");
                1
            }
        }
    }

    fn run() -> Result<i32, String> {
        let args = parse_args()?;
        let kernel = read(&args.kernel, "kernel")?;
        let initrd = match &args.initrd {
            Some(p) => Some(read(p, "initrd")?),
            None => None,
        };
        let disk = match &args.disk {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| format!("opening the disk {p}: {e}"))?;
                let b = FileBackend::new(f, true).map_err(|e| format!("the disk {p}: {e}"))?;
                Some(Box::new(b) as Box<dyn spin_virtio::block::BlockBackend>)
            }
            None => None,
        };
        let ports = spin_virtio::host_abi::console_ports();
        let devices = GuestDevices {
            disk,
            console: Some((Box::new(abi::ImportConsole::default()), ports)),
            net: args.mac.map(|mac| {
                (
                    Box::new(abi::ImportNet) as Box<dyn spin_virtio::net::NetBackend>,
                    mac,
                )
            }),
            shares: args
                .shares
                .iter()
                .enumerate()
                .map(|(i, tag)| {
                    let backend = abi::ImportFs {
                        share: i as u32,
                        max_reply: P9_MSIZE,
                    };
                    (
                        tag.clone(),
                        Box::new(backend) as Box<dyn spin_virtio::p9::FsBackend>,
                    )
                })
                .collect(),
        };
        let devices = spin_emu_riscv::bus::guest_devices(devices);
        let mut config = MachineConfig {
            ram_size: args.mem_mib << 20,
            ..MachineConfig::default()
        };
        if let Some(c) = args.cmdline {
            config.cmdline = c;
        }
        let clock = HostClock {
            origin: Instant::now(),
        };
        let mut machine = Machine::new(
            &config,
            &kernel,
            initrd.as_deref(),
            devices,
            Box::new(KernelConsole),
            Box::new(clock),
        )
        .map_err(|e| e.to_string())?;
        drop((kernel, initrd));
        let _ = MACHINE_STOP.set(machine.stop_handle());
        match machine.run(None) {
            RunResult::Reset { .. } => Ok(0),
            RunResult::Stopped | RunResult::Budget => Ok(3),
            RunResult::Crashed { cause, tval, pc } => {
                eprintln!(
                    "spin-emu-riscv: the guest crashed the machine (cause {cause}, tval {tval:#x}, pc {pc:#x})"
                );
                Ok(2)
            }
        }
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    std::process::exit(wasm::main());
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!(
            "{} {}: this command is the wasm32-wasip1 build (cargo xtask build-emulators); \
             natively, use the library (cargo xtask boot --native)",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        );
        std::process::exit(2);
    }
}
