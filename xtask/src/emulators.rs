//! `cargo xtask build-emulators`: the emulator crates as wasm32-wasip1 modules.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::toolchain::{self, WASM_TARGET};
use crate::{artifacts_dir, cache, run_cmd};

/// The emulator crates; each builds a WASI command of the same name.
pub const EMULATORS: [&str; 2] = ["spin-emu-riscv", "spin-emu-x86"];

/// Builds every emulator module into `target/spin/emulators/`; returns their paths.
pub fn build() -> Result<Vec<PathBuf>> {
    let mut cmd = toolchain::cross_build(WASM_TARGET)?;
    for crate_name in EMULATORS {
        cmd.args(["-p", crate_name, "--bin", crate_name]);
    }
    eprintln!("build-emulators: building for {WASM_TARGET}");
    run_cmd(&mut cmd).context("building the emulators for wasm32-wasip1")?;
    let built = toolchain::cross_target_dir()
        .join(WASM_TARGET)
        .join("release");
    let out_dir = artifacts_dir().join("emulators");
    let mut paths = Vec::new();
    for crate_name in EMULATORS {
        let src = built.join(format!("{crate_name}.wasm"));
        let dest = out_dir.join(format!("{crate_name}.wasm"));
        cache::install_file(&src, &dest)?;
        let size = dest.metadata()?.len();
        println!(
            "{} ({:.1} MiB)",
            dest.display(),
            size as f64 / (1 << 20) as f64
        );
        paths.push(dest);
    }
    Ok(paths)
}
