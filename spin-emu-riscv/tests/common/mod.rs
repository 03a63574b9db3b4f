//! Helpers shared by the integration tests: cross-compiling snippets and
//! programs with the riscv64 GNU toolchain and running them in qemu-riscv64.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn tmp(name: &str, ext: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}.{ext}", std::process::id()))
}

/// Compiles C or assembly source (`ext` is "c" or "S") into a static riscv64 ELF.
pub fn compile(name: &str, src: &str, ext: &str, extra: &[&str]) -> Vec<u8> {
    let s = tmp(name, ext);
    let out = tmp(name, "elf");
    std::fs::write(&s, src).unwrap();
    let res = Command::new("riscv64-linux-gnu-gcc")
        .args(["-static", "-O2", "-march=rv64gc", "-mabi=lp64d"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&s)
        .output()
        .expect("riscv64-linux-gnu-gcc is installed");
    assert!(
        res.status.success(),
        "compile failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let elf = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&s);
    let _ = std::fs::remove_file(&out);
    elf
}

/// Runs an ELF under qemu-riscv64-static with argv[0] = "prog": (exit code, stdout).
pub fn qemu(elf: &[u8], args: &[&str]) -> (i32, Vec<u8>) {
    let p = tmp("qemu", "elf");
    std::fs::write(&p, elf).unwrap();
    // qemu-user refuses to load a file without execute permission.
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let res = Command::new("qemu-riscv64-static")
        .args(["-0", "prog"])
        .arg(&p)
        .args(args)
        .output()
        .expect("qemu-riscv64-static is installed");
    let _ = std::fs::remove_file(&p);
    if !res.status.success() {
        eprintln!(
            "qemu {:?} {}: {}",
            p,
            res.status,
            String::from_utf8_lossy(&res.stderr)
        );
    }
    (res.status.code().unwrap_or(-1), res.stdout)
}

/// Wraps an assembly snippet into a program that runs it, then writes x1..x31
/// and fflags (32 little-endian u64, x31 being clobbered as the base register)
/// to stdout and exits 0. The snippet may use a 4 KiB `scratch` buffer.
pub fn snippet_program(body: &str) -> String {
    format!(
        r#"
    .option norvc
    .data
    .balign 16
scratch: .zero 4096
regs: .zero 256
    .text
    .globl _start
_start:
    .option push
    .option rvc
{body}
    .option pop
    la x31, regs
    sd x1, 8(x31)
    sd x2, 16(x31)
    sd x3, 24(x31)
    sd x4, 32(x31)
    sd x5, 40(x31)
    sd x6, 48(x31)
    sd x7, 56(x31)
    sd x8, 64(x31)
    sd x9, 72(x31)
    sd x10, 80(x31)
    sd x11, 88(x31)
    sd x12, 96(x31)
    sd x13, 104(x31)
    sd x14, 112(x31)
    sd x15, 120(x31)
    sd x16, 128(x31)
    sd x17, 136(x31)
    sd x18, 144(x31)
    sd x19, 152(x31)
    sd x20, 160(x31)
    sd x21, 168(x31)
    sd x22, 176(x31)
    sd x23, 184(x31)
    sd x24, 192(x31)
    sd x25, 200(x31)
    sd x26, 208(x31)
    sd x27, 216(x31)
    sd x28, 224(x31)
    sd x29, 232(x31)
    sd x30, 240(x31)
    frflags x1
    sd x1, 248(x31)
    li a0, 1
    mv a1, x31
    li a2, 256
    li a7, 64
    ecall
    li a0, 0
    li a7, 93
    ecall
"#
    )
}

/// Parses the 32 words written by a [`snippet_program`].
pub fn regs(out: &[u8]) -> Vec<u64> {
    assert_eq!(out.len(), 256, "snippet output");
    out.chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Assembles and links bare code (at 0x8020_0040, where `fake_image` puts it):
/// the raw bytes of its .text section.
pub fn assemble_raw(src: &str) -> Vec<u8> {
    let s = tmp("raw", "S");
    let o = tmp("raw", "o");
    let bin = tmp("raw", "bin");
    std::fs::write(&s, src).unwrap();
    let res = Command::new("riscv64-linux-gnu-gcc")
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,-Ttext=0x80200040",
            "-Wl,--build-id=none",
        ])
        .args(["-march=rv64gc", "-mabi=lp64d", "-o"])
        .arg(&o)
        .arg(&s)
        .output()
        .expect("riscv64-linux-gnu-gcc is installed");
    assert!(
        res.status.success(),
        "assemble failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let res = Command::new("riscv64-linux-gnu-objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&o)
        .arg(&bin)
        .output()
        .expect("riscv64-linux-gnu-objcopy is installed");
    assert!(
        res.status.success(),
        "objcopy failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let out = std::fs::read(&bin).unwrap();
    for p in [s, o, bin] {
        let _ = std::fs::remove_file(p);
    }
    out
}

/// A riscv64 Linux `Image` whose code (entered in S-mode) is `body`.
pub fn fake_image(body: &str) -> Vec<u8> {
    let code = assemble_raw(&format!(".text\n.globl _start\n_start:\n{body}\n"));
    let mut img = vec![0u8; 64];
    img[..4].copy_from_slice(&0x0400_006fu32.to_le_bytes()); // j +64
    img[56..60].copy_from_slice(b"RSC\x05");
    img.extend_from_slice(&code);
    img
}
