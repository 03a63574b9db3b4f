//! Boots a riscv64 Linux kernel natively and prints its console.
//!
//! `cargo run --release -p spin-emu-riscv --example boot -- KERNEL [INITRD] [--cmdline "..."] [--mem MiB] [--timeout SECS]`
//!
//! Prints guest instructions, wall time and MIPS on stderr at the end, and
//! exits with the SBI reset reason (or 124 on timeout, 125 on a crash).

use spin_emu_riscv::host::{StdClock, StdoutConsole};
use spin_emu_riscv::machine::{Clock, Machine, MachineConfig, RunResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A [`StdClock`] that also adds up the time spent idle.
struct CountingClock(StdClock, Arc<AtomicU64>);

impl Clock for CountingClock {
    fn now_ns(&mut self) -> u64 {
        self.0.now_ns()
    }
    fn wait(&mut self, deadline_ns: u64) {
        let t = Instant::now();
        self.0.wait(deadline_ns);
        self.1
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// User + system CPU time of this process (Linux only; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    let mut config = MachineConfig::default();
    let mut timeout = 60u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cmdline" => config.cmdline = args.next().expect("--cmdline needs a value"),
            "--mem" => {
                config.ram_size = args
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("--mem MiB")
                    << 20
            }
            "--timeout" => {
                timeout = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--timeout SECS")
            }
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        eprintln!("usage: boot KERNEL [INITRD] [--cmdline ARGS] [--mem MiB] [--timeout SECS]");
        std::process::exit(2);
    }
    let kernel = std::fs::read(&files[0]).unwrap_or_else(|e| panic!("{}: {e}", files[0]));
    let initrd = files
        .get(1)
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")));
    let idle = Arc::new(AtomicU64::new(0));
    let mut m = Machine::new(
        &config,
        &kernel,
        initrd.as_deref(),
        Vec::new(),
        Box::new(StdoutConsole),
        Box::new(CountingClock(StdClock::default(), idle.clone())),
    )
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let stop = m.stop_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(timeout));
        stop.store(true, Ordering::Relaxed);
    });
    let t0 = Instant::now();
    let r = m.run(None);
    let dt = t0.elapsed().as_secs_f64();
    let n = m.cpu.instret;
    let idle = idle.load(Ordering::Relaxed) as f64 / 1e9;
    let cpu = cpu_seconds();
    eprintln!(
        "\n[boot] {r:?} after {n} instructions in {dt:.3} s ({idle:.3} s idle, {cpu:.2} s CPU): \
         {:.1} MIPS (wall, busy), {:.1} MIPS (CPU time)",
        n as f64 / (dt - idle) / 1e6,
        n as f64 / cpu / 1e6
    );
    std::process::exit(match r {
        RunResult::Reset { reason, .. } => reason as i32,
        RunResult::Stopped | RunResult::Budget => 124,
        RunResult::Crashed { .. } => 125,
    });
}
