//! `cargo xtask deps`: the system packages the build and the tests need.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{output_of, run_cmd};

/// Debian packages, each with why it is needed.
pub const PACKAGES: &[(&str, &str)] = &[
    // guest kernels (DESIGN §3)
    ("linux-source-6.12", "guest kernel source"),
    ("make", "kernel build"),
    ("gcc", "kernel build"),
    ("flex", "kernel build"),
    ("bison", "kernel build"),
    ("bc", "kernel build"),
    ("libelf-dev", "kernel build"),
    ("libssl-dev", "kernel build"),
    ("xz-utils", "kernel source unpacking"),
    ("cpio", "initramfs checks"),
    ("gcc-riscv64-linux-gnu", "riscv64 kernel and spin-init"),
    ("libc6-dev-riscv64-cross", "static riscv64 spin-init"),
    // wasm32-wasip1 and riscv64 std without rustup targets (DESIGN §4)
    ("rustc-web", "std for wasm32-wasip1 and riscv64"),
    ("cargo-web", "std for wasm32-wasip1 and riscv64"),
    ("rust-web-src", "std for wasm32-wasip1 and riscv64"),
    ("wasi-libc", "wasm32-wasip1 C library"),
    ("lld-22", "wasm linker"),
    // reference peers and test images
    (
        "qemu-system-misc",
        "qemu-system-riscv64, the reference machine",
    ),
    (
        "qemu-system-x86",
        "qemu-system-x86_64, the reference machine",
    ),
    ("opensbi", "firmware for qemu-system-riscv64"),
    ("qemu-user-static", "qemu-riscv64-static, the reference CPU"),
    ("busybox-static", "amd64 test image"),
    ("squashfs-tools", "mksquashfs/unsquashfs for test images"),
    ("docker-registry", "the OCI registry tests pull from"),
    ("skopeo", "pushes test images to the registry"),
    ("umoci", "builds test OCI images"),
    ("libsquashfs-dev", "squashfs writer library"),
    ("pkg-config", "finds libsquashfs"),
    (
        "openssl",
        "signs the bearer tokens of the registry auth tests",
    ),
    ("python3", "reads xattrs back in the image tests"),
];

/// The oldest host rustc the workspace builds with.
const MIN_RUSTC: (u32, u32) = (1, 95);

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f", "${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect()
}

fn is_root() -> bool {
    output_of(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Installs what is missing (as root), or says exactly what to run.
pub fn install() -> Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        let list = missing.join(" ");
        if !is_root() {
            bail!("missing Debian packages; run: sudo apt-get install -y {list}");
        }
        eprintln!("deps: installing {list}");
        run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
        run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
        )?;
        let still = missing_packages();
        if !still.is_empty() {
            bail!("apt-get did not install: {}", still.join(" "));
        }
    }
    check_rustc()
}

/// Checks, without installing, that everything is there.
pub fn check() -> Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        if is_root() {
            return install();
        }
        bail!(
            "missing Debian packages; run: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    check_rustc()
}

fn check_rustc() -> Result<()> {
    let v = output_of(Command::new("rustc").arg("-V"))?;
    let version = v.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < MIN_RUSTC {
        bail!(
            "rustc {version} is too old: spin needs {}.{} or newer (rustup update stable)",
            MIN_RUSTC.0,
            MIN_RUSTC.1
        );
    }
    Ok(())
}
