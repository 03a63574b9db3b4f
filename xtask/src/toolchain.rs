//! Compilers for the targets the host toolchain may lack: wasm32-wasip1 (the
//! emulators) and riscv64 Linux (spin-init).
//!
//! With rustup and the target installed, rustup's cargo is used. Otherwise the
//! Debian route (DESIGN §4): Debian's `rustc-web` with its library source builds
//! std itself (`-Zbuild-std`), linked with `wasm-ld-22` against `wasi-libc`, or
//! with `riscv64-linux-gnu-gcc`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cache, output_of};

/// The target the emulators are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";
/// The target of the riscv64 spin-init.
pub const RISCV_TARGET: &str = "riscv64gc-unknown-linux-gnu";
/// The target of the x86-64 spin-init.
pub const X86_TARGET: &str = "x86_64-unknown-linux-gnu";

const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi";
const WASM_LD: &str = "wasm-ld-22";

/// The cargo of the host toolchain (the one running xtask).
pub fn host_cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where cross builds keep their output: in the cache, so a fresh clone on the
/// same machine does not rebuild std and the dependencies.
pub fn cross_target_dir() -> PathBuf {
    cache::root().join("cargo-target")
}

fn rustup_has_target(target: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == target)
        })
        .unwrap_or(false)
}

fn debian_route_ready() -> Result<()> {
    if !Path::new(DEBIAN_CARGO).exists() || !Path::new(DEBIAN_RUSTC).exists() {
        bail!(
            "Debian's Rust toolchain is missing: run `cargo xtask deps` (packages rustc-web cargo-web rust-web-src)"
        );
    }
    let sysroot = output_of(Command::new(DEBIAN_RUSTC).args(["--print", "sysroot"]))?;
    let lock = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/Cargo.lock");
    if !lock.exists() {
        bail!(
            "the Rust library source is missing ({}): run `cargo xtask deps` (package rust-web-src)",
            lock.display()
        );
    }
    Ok(())
}

/// A `cargo build` command for `target`, configured for whichever route is available.
pub fn cross_build(target: &str) -> Result<Command> {
    let upper = target.to_uppercase().replace('-', "_");
    let linker_var = format!("CARGO_TARGET_{upper}_LINKER");
    let flags_var = format!("CARGO_TARGET_{upper}_RUSTFLAGS");
    let mut flags: Vec<String> = Vec::new();
    let mut linker = None;
    match target {
        WASM_TARGET => {}
        RISCV_TARGET => {
            linker = Some("riscv64-linux-gnu-gcc".to_string());
            flags.push("-Ctarget-feature=+crt-static".into());
        }
        X86_TARGET => flags.push("-Ctarget-feature=+crt-static".into()),
        other => bail!("no recipe for target {other}"),
    }
    let use_rustup = target == X86_TARGET || rustup_has_target(target);
    let mut cmd = if use_rustup {
        Command::new(host_cargo())
    } else {
        debian_route_ready()?;
        let mut c = Command::new(DEBIAN_CARGO);
        // Debian's compiler, never rustup's proxies; build-std needs nightly features.
        c.env("RUSTC", DEBIAN_RUSTC)
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env_remove("RUSTUP_TOOLCHAIN");
        if target == WASM_TARGET {
            if !Path::new(WASI_LIBC).join("crt1-command.o").exists() {
                bail!("wasi-libc is missing: run `cargo xtask deps` (package wasi-libc)");
            }
            linker = Some(WASM_LD.to_string());
            flags.extend([
                "-Clink-self-contained=no".to_string(),
                format!("-L{WASI_LIBC}"),
                format!("-Clink-arg={WASI_LIBC}/crt1-command.o"),
            ]);
        }
        c
    };
    cmd.arg("build").arg("--release").args(["--target", target]);
    if !use_rustup {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    if let Some(l) = linker {
        cmd.env(linker_var, l);
    }
    cmd.env(flags_var, flags.join(" "))
        .env("CARGO_TARGET_DIR", cross_target_dir())
        .env_remove("RUSTFLAGS")
        .current_dir(crate::workspace_root());
    Ok(cmd)
}

/// Prints the versions of the tools a build used (CI's log keeps them).
pub fn print_versions() -> Result<()> {
    let line = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_else(|| "not found".into())
    };
    println!("versions:");
    println!(
        "  host rustc:        {}",
        line(Command::new("rustc").arg("-V"))
    );
    println!(
        "  Debian rustc-web:  {}",
        line(Command::new(DEBIAN_RUSTC).arg("-V"))
    );
    println!(
        "  linux-source:      {}",
        line(Command::new("dpkg-query").args([
            "-W",
            "-f",
            "${Version}\n",
            crate::guest::LINUX_SOURCE_PKG
        ]))
    );
    println!(
        "  qemu (riscv64):    {}",
        line(Command::new("qemu-system-riscv64").arg("--version"))
    );
    println!(
        "  qemu (x86_64):     {}",
        line(Command::new("qemu-system-x86_64").arg("--version"))
    );
    Ok(())
}
