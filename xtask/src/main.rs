//! spin's build and test tasks: `cargo xtask <command>`.

mod bench;
mod bench_run;
mod boot;
mod cache;
mod cpio;
mod deps;
mod emulators;
mod guest;
mod images;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  deps               install the system packages the build and tests need (apt, as root)
                     and check the toolchains
  build-emulators    build the emulators for wasm32-wasip1 into target/spin/emulators/
  build-guest        build kernels, spin-init, initramfs and test images into target/spin/
  boot [--native] [--disk F.sqfs] [--mem MiB] -- CMD...
                     boot the riscv64 guest on spin's emulator (wasm by default) and run CMD
  bench emu|run|net|pull
                     a benchmark, peers side by side (emu: qemu/wasm/native;
                     run: container start, total and memory vs qemu)
  demo               `spin run` of the demo container (busybox: a greeting, `uname -m`,
                     an env variable and a mounted host file)
  test               install, build and run every test (what CI runs)
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    match cmd.as_str() {
        "deps" => deps::install(),
        "build-emulators" => emulators::build().map(|_| ()),
        "build-guest" => guest::build_all(),
        "boot" => {
            let code = boot::boot(&args[1..])?;
            std::process::exit(code);
        }
        "bench" => bench::bench(&args[1..]),
        "demo" => demo(),
        "test" => test(),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `target/spin` of the workspace: where every built artifact goes.
pub fn artifacts_dir() -> PathBuf {
    workspace_root().join("target/spin")
}

/// Runs a command, failing with its command line when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout, failing when it fails.
pub fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn demo() -> Result<()> {
    deps::check()?;
    emulators::build()?;
    guest::build_all()?;
    let image = artifacts_dir().join("images/busybox-riscv64.sqfs");
    let share = std::env::temp_dir().join(format!("spin-demo-{}", std::process::id()));
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("hello.txt"), "a file from the host\n")?;
    eprintln!(
        "demo: `spin run` of a busybox image on spin's riscv64 emulator (wasm32-wasip1 \
         under wasmtime), with a host folder mounted at /data"
    );
    let start = std::time::Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .env("SPIN_ARTIFACTS", artifacts_dir())
        .args(["run", "-q", "-p", "spin-cli", "--", "run", "--rm"])
        .args(["-e", "SPIN=is awesome"])
        .arg("-v")
        .arg(format!("{}:/data:ro", share.display()))
        .arg("--image-file")
        .arg(&image)
        .args([
            "sh",
            "-c",
            "echo 'Hello from a spin container!'; uname -m; echo \"spin $SPIN\"; cat /data/hello.txt",
        ])
        .status()
        .context("running spin")?;
    let _ = std::fs::remove_dir_all(&share);
    eprintln!("demo: {status} after {:.2?}", start.elapsed());
    if !status.success() {
        bail!("the demo container failed ({status})");
    }
    Ok(())
}

fn test() -> Result<()> {
    deps::install()?;
    toolchain::print_versions()?;
    emulators::build()?;
    guest::build_all()?;
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    run_cmd(Command::new(&cargo).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(
        Command::new(&cargo)
            .current_dir(&root)
            .env("SPIN_ARTIFACTS", artifacts_dir())
            .args(["test", "--workspace"]),
    )
}
