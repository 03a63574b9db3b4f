//! `cargo xtask build-guest`: kernels, spin-init, initramfs and test images.
//!
//! Outputs go to `target/spin/guest/<arch>/` and `target/spin/images/`. The costly
//! ones (kernels, cross-compiled std) live in the cache outside the clone, keyed by
//! hashes of their inputs, so a fresh clone on the same machine rebuilds nothing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::{Compression, write::GzEncoder};
use spin_qemu::Arch;

use crate::toolchain::{self, RISCV_TARGET, X86_TARGET};
use crate::{artifacts_dir, cache, cpio, images, output_of, run_cmd, workspace_root};

/// The Debian package holding the kernel source.
pub const LINUX_SOURCE_PKG: &str = "linux-source-6.12";
const LINUX_SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// Bump when the way kernels are built changes, to invalidate cached kernels.
const KERNEL_RECIPE: &str = "kernel-recipe-1";

/// Builds everything a guest of each architecture needs.
pub fn build_all() -> Result<()> {
    for arch in Arch::ALL {
        build_kernel(arch)?;
        build_initramfs(arch)?;
        images::build_busybox_image(arch)?;
    }
    Ok(())
}

fn guest_dir(arch: Arch) -> PathBuf {
    artifacts_dir().join("guest").join(arch.name())
}

fn kernel_make_arch(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Riscv64 => ("riscv", "riscv64-linux-gnu-"),
        Arch::X86_64 => ("x86_64", ""),
    }
}

/// The files a kernel build produces, relative to its build folder, and their names.
fn kernel_outputs(arch: Arch) -> &'static [(&'static str, &'static str)] {
    match arch {
        Arch::Riscv64 => &[
            ("arch/riscv/boot/Image", "Image"),
            (".config", "kernel.config"),
        ],
        Arch::X86_64 => &[
            ("arch/x86/boot/bzImage", "bzImage"),
            ("vmlinux", "vmlinux"),
            (".config", "kernel.config"),
        ],
    }
}

fn linux_source_version() -> Result<String> {
    let v =
        output_of(Command::new("dpkg-query").args(["-W", "-f", "${Version}", LINUX_SOURCE_PKG]))
            .with_context(|| {
                format!("{LINUX_SOURCE_PKG} is not installed: run `cargo xtask deps`")
            })?;
    Ok(v.trim().to_string())
}

/// The kernel source, unpacked once into the cache.
fn linux_source(version: &str) -> Result<PathBuf> {
    cache::entry(&format!("linux-src-{version}"), |dir| {
        eprintln!("build-guest: unpacking {LINUX_SOURCE_TARBALL}");
        run_cmd(
            Command::new("tar")
                .arg("-xf")
                .arg(LINUX_SOURCE_TARBALL)
                .arg("-C")
                .arg(dir)
                .arg("--strip-components=1"),
        )
    })
}

fn build_kernel(arch: Arch) -> Result<()> {
    let fragments = workspace_root().join("guest/kernel");
    let frag = fragments.join(format!("{}.config", arch.name()));
    let common = fragments.join("common.config");
    let version = linux_source_version()?;
    let key = cache::Key::default()
        .add("recipe", KERNEL_RECIPE)
        .add("source", &version)
        .add("arch", arch.name())
        .add_file(&common)?
        .add_file(&frag)?
        .finish();
    let entry = cache::entry(&format!("kernel-{arch}-{key}"), |out| {
        let src = linux_source(&version)?;
        let build = out.join("build");
        compile_kernel(arch, &src, &build, &[&frag, &common])?;
        for (from, to) in kernel_outputs(arch) {
            fs::copy(build.join(from), out.join(to))
                .with_context(|| format!("copying the kernel's {from}"))?;
        }
        fs::remove_dir_all(&build).context("removing the kernel build folder")
    })?;
    for (_, name) in kernel_outputs(arch) {
        cache::install_file(&entry.join(name), &guest_dir(arch).join(name))?;
    }
    println!("{}", guest_dir(arch).join(arch.kernel_file()).display());
    Ok(())
}

fn compile_kernel(arch: Arch, src: &Path, build: &Path, fragments: &[&Path]) -> Result<()> {
    let (make_arch, cross) = kernel_make_arch(arch);
    fs::create_dir_all(build)?;
    let make = |args: &[&str]| {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(src)
            .arg(format!("O={}", build.display()))
            .arg(format!("ARCH={make_arch}"))
            .arg(format!("CROSS_COMPILE={cross}"))
            .args(args);
        cmd
    };
    eprintln!("build-guest: configuring the {arch} kernel");
    run_cmd(make(&["-s", "tinyconfig"]).stdout(std::process::Stdio::null()))?;
    run_cmd(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(build)
            .arg(build.join(".config"))
            .args(fragments)
            .stdout(std::process::Stdio::null()),
    )?;
    run_cmd(make(&["-s", "olddefconfig"]).stdout(std::process::Stdio::null()))?;
    check_config(&build.join(".config"), fragments)?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    eprintln!("build-guest: compiling the {arch} kernel (a few minutes; cached afterwards)");
    let target = match arch {
        Arch::Riscv64 => "Image",
        Arch::X86_64 => "bzImage",
    };
    let log_path = build.join("build.log");
    let log = fs::File::create(&log_path)?;
    let status = make(&[&format!("-j{jobs}"), target])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running make")?;
    if !status.success() {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        bail!(
            "the {arch} kernel build failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Fails when Kconfig dropped an option a fragment asked for.
fn check_config(config: &Path, fragments: &[&Path]) -> Result<()> {
    let have = fs::read_to_string(config)?;
    let lines: std::collections::HashSet<&str> = have.lines().collect();
    let mut dropped = Vec::new();
    for frag in fragments {
        for line in fs::read_to_string(frag)?.lines() {
            let line = line.trim();
            if line.starts_with("CONFIG_") && !lines.contains(line) {
                dropped.push(line.to_string());
            } else if let Some(rest) = line.strip_prefix("# CONFIG_") {
                let name = rest.trim_end_matches(" is not set");
                if lines.contains(format!("CONFIG_{name}=y").as_str()) {
                    dropped.push(line.to_string());
                }
            }
        }
    }
    if !dropped.is_empty() {
        bail!(
            "Kconfig did not keep these options (missing dependencies?): {}",
            dropped.join(", ")
        );
    }
    Ok(())
}

/// Builds spin-init statically for `arch`; returns the binary's path.
pub fn build_init(arch: Arch) -> Result<PathBuf> {
    let target = match arch {
        Arch::Riscv64 => RISCV_TARGET,
        Arch::X86_64 => X86_TARGET,
    };
    eprintln!("build-guest: building spin-init for {arch}");
    let mut cmd = toolchain::cross_build(target)?;
    // The initramfs is unpacked by the guest on every boot: keep it small.
    cmd.args(["-p", "spin-init", "--bin", "spin-init"])
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols");
    run_cmd(&mut cmd).with_context(|| format!("building spin-init for {target}"))?;
    Ok(toolchain::cross_target_dir()
        .join(target)
        .join("release/spin-init"))
}

fn build_initramfs(arch: Arch) -> Result<()> {
    let init = build_init(arch)?;
    let init_bytes = fs::read(&init).with_context(|| format!("reading {}", init.display()))?;
    let mut w = cpio::Writer::new(GzEncoder::new(Vec::new(), Compression::best()));
    for dir in ["dev", "proc", "sys", "mnt", "tmp", "root"] {
        w.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    w.char_device("dev/console", 0o600, 5, 1)?;
    w.file("init", 0o755, &init_bytes)?;
    let gz = w.finish()?.finish()?;
    let dir = guest_dir(arch);
    cache::write_file(&dir.join("initramfs.cpio.gz"), &gz)?;
    cache::install_file(&init, &dir.join("spin-init"))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", dir.join("initramfs.cpio.gz").display())?;
    Ok(())
}
