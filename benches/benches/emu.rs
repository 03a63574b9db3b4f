//! Emulation speed of spin-emu-riscv, natively: guest instructions per second
//! on a CPU-bound integer loop (ALU, a load and a store, a call and a return
//! per iteration) run by the user-mode harness. Criterion's throughput is in
//! guest instructions ("Melem/s" reads as MIPS).
//!
//! `cargo bench -p spin-benches --bench emu`
//!
//! The program is assembled here (a minimal static ELF), so the benchmark
//! needs no cross toolchain. Whole-system numbers, side by side with
//! qemu-system-riscv64 and the wasm build: `cargo xtask bench emu`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spin_emu_riscv::user::run_elf;

/// Loop iterations.
const ITERATIONS: u32 = 1 << 20;

const RA: u32 = 1;
const SP: u32 = 2;
const T0: u32 = 5;
const A0: u32 = 10;
const A1: u32 = 11;
const A2: u32 = 12;
const A3: u32 = 13;
const A4: u32 = 14;
const A5: u32 = 15;
const A7: u32 = 17;

fn r(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

fn i(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    ((imm as u32) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

fn s(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | 0x23
}

fn b(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    ((imm >> 12) & 1) << 31
        | ((imm >> 5) & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | ((imm >> 1) & 0xf) << 8
        | ((imm >> 11) & 1) << 7
        | 0x63
}

fn jal(imm: i32, rd: u32) -> u32 {
    let imm = imm as u32;
    ((imm >> 20) & 1) << 31
        | ((imm >> 1) & 0x3ff) << 21
        | ((imm >> 11) & 1) << 20
        | ((imm >> 12) & 0xff) << 12
        | rd << 7
        | 0x6f
}

/// The loop's machine code (entry at offset 0).
fn code() -> Vec<u32> {
    let addi = |rd, rs1, imm| i(imm, rs1, 0, rd, 0x13);
    vec![
        /* 0 */ addi(A0, 0, 0),
        /* 4 */ (ITERATIONS >> 12) << 12 | A1 << 7 | 0x37, // lui a1
        /* 8 */ addi(A2, 0, 1),
        /* 12 */ addi(SP, SP, -64),
        // loop:
        /* 16 */ r(0, A2, A0, 0, A0, 0x33), // add a0, a0, a2
        /* 20 */ r(0, A0, A2, 4, A2, 0x33), // xor a2, a2, a0
        /* 24 */ i(3, A0, 1, A3, 0x13), // slli a3, a0, 3
        /* 28 */ i(5, A2, 5, A4, 0x13), // srli a4, a2, 5
        /* 32 */ r(0, A4, A3, 6, A2, 0x33), // or a2, a3, a4
        /* 36 */ s(0, A0, SP, 3), // sd a0, 0(sp)
        /* 40 */ i(0, SP, 3, A5, 0x03), // ld a5, 0(sp)
        /* 44 */ r(0, A5, A2, 0, A2, 0x33), // add a2, a2, a5
        /* 48 */ jal(72 - 48, RA), // call mix
        /* 52 */ addi(A1, A1, -1),
        /* 56 */ b(16 - 56, 0, A1, 1), // bnez a1, loop
        /* 60 */ addi(A7, 0, 93), // exit(0)
        /* 64 */ addi(A0, 0, 0),
        /* 68 */ 0x73, // ecall
        // mix:
        /* 72 */ r(0, A2, A0, 3, T0, 0x33), // sltu t0, a0, a2
        /* 76 */ r(0, T0, A0, 0, A0, 0x33), // add a0, a0, t0
        /* 80 */ i(0, RA, 0, 0, 0x67), // ret
    ]
}

/// A static riscv64 ELF executable holding `code()` in one segment.
fn elf() -> Vec<u8> {
    const VADDR: u64 = 0x1_0000;
    const HEADERS: u64 = 64 + 56;
    let code: Vec<u8> = code().iter().flat_map(|w| w.to_le_bytes()).collect();
    let size = HEADERS + code.len() as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&243u16.to_le_bytes()); // EM_RISCV
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(VADDR + HEADERS).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&5u32.to_le_bytes()); // flags: RVC, double-float ABI
    for h in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&h.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [0, VADDR, VADDR, size, size, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&code);
    e
}

fn emu(c: &mut Criterion) {
    let elf = elf();
    let out = run_elf(&elf, &["loop"], u64::MAX).expect("the loop program runs");
    assert_eq!(out.exit_code, 0);
    let mut g = c.benchmark_group("emu");
    g.sample_size(10);
    g.throughput(Throughput::Elements(out.instructions));
    g.bench_function("riscv64 integer loop (user mode, native)", |b| {
        b.iter(|| run_elf(&elf, &["loop"], u64::MAX).expect("runs"))
    });
    g.finish();
}

criterion_group!(benches, emu);
criterion_main!(benches);
