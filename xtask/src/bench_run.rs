//! `cargo xtask bench run`: the cost of running a container, beside
//! qemu-system-riscv64 running the same guest and command in the same run.
//!
//! - `run()` to the first byte of stdout (library, compiled module in memory);
//! - the whole `spin run --image-file IMAGE true` process, with the compiled
//!   module cache on disk warm, and cold (an empty cache directory);
//! - resident memory per idle container (`sleep`), several in one process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spin_init::RunSpec;
use spin_qemu::{Arch, Artifacts, QemuRun};

use crate::{artifacts_dir, boot, run_cmd, workspace_root};

/// Best (smallest) of `RUNS`: the machine is shared and noisy.
const RUNS: usize = 3;
/// Idle containers run at once for the memory measurement.
const IDLE: usize = 4;

pub fn run() -> Result<()> {
    crate::emulators::build()?;
    crate::guest::build_all()?;
    let disk = artifacts_dir().join("images/busybox-riscv64.sqfs");
    let artifacts = Artifacts::locate(Arch::Riscv64)?;
    let spin = build_spin()?;
    let echo = vec!["echo".to_string(), "hello".to_string()];

    let mut first_wasm = Duration::MAX;
    let mut first_qemu = Duration::MAX;
    let mut warm = Duration::MAX;
    let mut cold = Duration::MAX;
    let mut qemu_true = Duration::MAX;
    for _ in 0..RUNS {
        let out = boot::run_wasm(&echo, &disk, 256, false)?;
        first_wasm = first_wasm.min(out.first_output.context("no output")?);
        // QEMU's stdout is a file read at the end: its time to the exit report
        // bounds its first output from above.
        let q = QemuRun::new(artifacts.clone(), RunSpec::command(echo.clone())).run()?;
        first_qemu = first_qemu.min(q.total_time);
        let q = QemuRun::new(artifacts.clone(), RunSpec::command(["true"])).run()?;
        qemu_true = qemu_true.min(q.total_time);
        warm = warm.min(time_spin(&spin, &disk, None)?);
        let empty = tempfile::tempdir()?;
        cold = cold.min(time_spin(&spin, &disk, Some(empty.path()))?);
    }
    let (spin_rss, qemu_rss) = idle_memory(&disk, &artifacts)?;

    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "measure (best of 3)", "spin", "qemu", "ratio"
    );
    let row = |name: &str, s: Duration, q: Duration| {
        println!(
            "{name:<44} {:>9.2}s {:>9.2}s {:>7.2}x",
            s.as_secs_f64(),
            q.as_secs_f64(),
            s.as_secs_f64() / q.as_secs_f64()
        );
    };
    row("run() to first output (`echo`)", first_wasm, first_qemu);
    row("`spin run IMAGE true`, warm module cache", warm, qemu_true);
    row("`spin run IMAGE true`, cold module cache", cold, qemu_true);
    println!(
        "{:<44} {:>8.0}MiB {:>8.0}MiB {:>7.2}x",
        format!("resident memory per idle container ({IDLE})"),
        spin_rss,
        qemu_rss,
        spin_rss / qemu_rss.max(1e-9)
    );
    Ok(())
}

/// Builds the `spin` binary; returns its path.
fn build_spin() -> Result<PathBuf> {
    run_cmd(
        Command::new(crate::toolchain::host_cargo())
            .current_dir(workspace_root())
            .args(["build", "-q", "-p", "spin-cli"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join("debug/spin"))
}

/// Wall time of one `spin run --image-file DISK true` process.
fn time_spin(spin: &Path, disk: &Path, cache: Option<&Path>) -> Result<Duration> {
    let mut cmd = Command::new(spin);
    cmd.env("SPIN_ARTIFACTS", artifacts_dir())
        .args(["run", "--image-file"])
        .arg(disk)
        .arg("true");
    if let Some(dir) = cache {
        cmd.env("SPIN_CACHE_DIR", dir);
    }
    let start = Instant::now();
    let status = cmd.status().context("running spin")?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("spin run ... true failed: {status}");
    }
    Ok(elapsed)
}

/// Signals, through stdout, that a container has booted.
#[derive(Clone, Default)]
struct Booted(Arc<Mutex<bool>>);

impl Write for Booted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        *self.0.lock().expect("poisoned") = true;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Resident MiB per idle container: spin's (growth of this process with
/// [`IDLE`] booted containers) and QEMU's (one process with the same guest).
fn idle_memory(disk: &Path, artifacts: &Artifacts) -> Result<(f64, f64)> {
    let runtime = spin_runtime::Runtime::new(spin_runtime::Arch::Riscv64)?;
    let before = rss_kib(std::process::id())?;
    let spin_rss = std::thread::scope(|s| -> Result<f64> {
        let mut stops = Vec::new();
        let mut flags = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..IDLE {
            let booted = Booted::default();
            let c = runtime
                .container(spin_runtime::ImageSource::ImageFile(disk.to_path_buf()))
                .command(["sh", "-c", "echo up; exec sleep 600"])
                .stdout(booted.clone());
            stops.push(c.stop_handle());
            flags.push(booted);
            handles.push(s.spawn(move || c.run()));
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while !flags.iter().all(|f| *f.0.lock().expect("poisoned")) {
            if Instant::now() > deadline {
                bail!("the idle containers did not boot");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let them settle into idling.
        std::thread::sleep(Duration::from_secs(2));
        let during = rss_kib(std::process::id())?;
        stops.iter().for_each(|s| s.stop());
        for h in handles {
            let _ = h.join();
        }
        Ok(during.saturating_sub(before) as f64 / 1024.0 / IDLE as f64)
    })?;

    // QEMU: one guest sleeping; its process's resident memory.
    let run = QemuRun::new(artifacts.clone(), RunSpec::command(["sh", "-c", "sleep 8"]));
    let qemu_rss = std::thread::scope(|s| -> Result<f64> {
        let h = s.spawn(|| run.run());
        std::thread::sleep(Duration::from_secs(6));
        let rss = qemu_pids()?
            .into_iter()
            .map(rss_kib)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        h.join()
            .map_err(|_| anyhow::anyhow!("qemu thread panicked"))??;
        Ok(rss as f64 / 1024.0)
    })?;
    Ok((spin_rss, qemu_rss))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Processes of qemu-system-riscv64 that are children of this one.
fn qemu_pids() -> Result<Vec<u32>> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if comm.ends_with("qemu-system-ris") && ppid == me {
            pids.push(pid);
        }
    }
    Ok(pids)
}
