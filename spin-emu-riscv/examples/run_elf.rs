//! Runs a static riscv64 Linux ELF in the user-mode harness, prints its
//! output and reports guest MIPS on stderr.
//!
//! `cargo run --release -p spin-emu-riscv --example run_elf -- PROGRAM [ARGS...]`

use spin_emu_riscv::user::run_elf;
use std::io::Write;
use std::time::Instant;

/// User + system CPU time of this process (Linux only; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: run_elf PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    match run_elf(&elf, &argv, u64::MAX) {
        Ok(out) => {
            let dt = t.elapsed().as_secs_f64();
            let _ = std::io::stdout().write_all(&out.stdout);
            let _ = std::io::stderr().write_all(&out.stderr);
            let cpu = cpu_seconds();
            eprintln!(
                "[run_elf] exit {} after {} instructions in {dt:.3} s ({cpu:.2} s CPU): \
                 {:.1} MIPS (wall), {:.1} MIPS (CPU time)",
                out.exit_code,
                out.instructions,
                out.instructions as f64 / dt / 1e6,
                out.instructions as f64 / cpu / 1e6
            );
            std::process::exit(out.exit_code);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
