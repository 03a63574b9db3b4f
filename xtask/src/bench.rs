//! `cargo xtask bench emu|net|pull`: benchmarks, with peers measured in the same run.
//!
//! `emu` runs the same guest and commands on qemu-system-riscv64 (TCG), on spin's
//! emulator as wasm under wasmtime, and on the emulator natively, one after the
//! other, and prints the times side by side. `net` and `pull` are criterion
//! benchmarks in `benches/`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use spin_init::RunSpec;
use spin_qemu::{Arch, Artifacts, QemuRun};

use crate::boot::{self, RunOutput};
use crate::{artifacts_dir, run_cmd, workspace_root};

/// Runs the named benchmark.
pub fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("emu") => emu(),
        Some("run") => crate::bench_run::run(),
        Some(name @ ("net" | "pull")) => run_cmd(
            Command::new(crate::toolchain::host_cargo())
                .current_dir(workspace_root())
                .args(["bench", "-p", "spin-benches", "--bench", name]),
        ),
        _ => bail!("usage: cargo xtask bench emu|run|net|pull"),
    }
}

/// The workloads: a name and a shell command.
const WORKLOADS: [(&str, &str); 3] = [
    ("boot + `true`", "true"),
    ("boot + `echo`", "echo hello"),
    (
        "boot + sha256 of 32 MiB",
        "dd if=/dev/zero bs=1048576 count=32 2>/dev/null | sha256sum",
    ),
];

/// Best (smallest) of `runs` runs: the machine is shared and noisy.
const RUNS: usize = 3;

fn emu() -> Result<()> {
    crate::emulators::build()?;
    crate::guest::build_all()?;
    let disk = artifacts_dir().join("images/busybox-riscv64.sqfs");
    let artifacts = Artifacts::locate(Arch::Riscv64)?;
    // The reference's speed depends much on its version (TCG got faster).
    let version = Command::new("qemu-system-riscv64")
        .arg("--version")
        .output()
        .context("running qemu-system-riscv64 --version")?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!("reference: {}", version.lines().next().unwrap_or("?"));
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "workload (best of 3)", "qemu", "wasm", "native", "wasm/qemu", "wasm/native"
    );
    let mut compute = Vec::new();
    for (name, script) in WORKLOADS {
        let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let mut q = Duration::MAX;
        let mut w = Duration::MAX;
        let mut n = Duration::MAX;
        let mut instructions = 0;
        let mut outputs = Vec::new();
        for _ in 0..RUNS {
            let out = QemuRun::new(artifacts.clone(), RunSpec::command(command.clone()))
                .run()
                .context("qemu-system-riscv64")?;
            q = q.min(out.total_time);
            outputs.push(out.stdout);
            let wasm = boot::run_wasm(&command, &disk, 256, false)?;
            w = w.min(wasm.total);
            outputs.push(wasm.stdout.clone());
            let native: RunOutput = boot::native::run(&command, &disk, 256, false)?;
            if native.total < n {
                n = native.total;
                instructions = native.instructions.unwrap_or(0);
            }
            outputs.push(native.stdout);
        }
        if outputs.windows(2).any(|p| p[0] != p[1]) {
            bail!("the backends disagree on the output of {script:?}");
        }
        println!(
            "{name:<26} {:>9.2}s {:>9.2}s {:>9.2}s {:>10.2}x {:>10.2}x",
            q.as_secs_f64(),
            w.as_secs_f64(),
            n.as_secs_f64(),
            w.as_secs_f64() / q.as_secs_f64(),
            w.as_secs_f64() / n.as_secs_f64()
        );
        compute.push((q, w, n, instructions));
    }
    // The sha256 workload minus the bare boot: the computation alone.
    let (q0, w0, n0, i0) = compute[0];
    let (q2, w2, n2, i2) = compute[2];
    let (q, w, n) = (
        q2.saturating_sub(q0).as_secs_f64(),
        w2.saturating_sub(w0).as_secs_f64(),
        n2.saturating_sub(n0).as_secs_f64(),
    );
    let mips = (i2.saturating_sub(i0)) as f64 / n.max(1e-9) / 1e6;
    println!(
        "{:<26} {:>9.2}s {:>9.2}s {:>9.2}s {:>10.2}x {:>10.2}x   (native {mips:.0} MIPS)",
        "sha256 alone (difference)",
        q,
        w,
        n,
        w / q.max(1e-9),
        w / n.max(1e-9)
    );
    Ok(())
}
