//! Instruction-level tests: hand-written snippets with known results, and
//! random integer/M/A/C sequences compared bit for bit with qemu-riscv64.
//!
//! `SPIN_ISA_SEED` overrides the seed, `SPIN_ISA_SWEEP=<n>` runs n times more programs.

mod common;

use common::{compile, qemu, regs, snippet_program};
use spin_emu_riscv::user::{UserError, run_elf};

fn asm(body: &str) -> Vec<u8> {
    compile(
        "snippet",
        &snippet_program(body),
        "S",
        &["-nostdlib", "-no-pie"],
    )
}

fn run_snippet(body: &str) -> Vec<u64> {
    let elf = asm(body);
    let out = run_elf(&elf, &["snippet"], 10_000_000).expect("snippet runs");
    assert_eq!(out.exit_code, 0);
    regs(&out.stdout)
}

#[test]
fn integer_edge_cases() {
    let r = run_snippet(
        r#"
    li t0, -7
    li t1, 0
    div a0, t0, t1        # -1
    rem a1, t0, t1        # -7
    li t2, 0x8000000000000000
    li t3, -1
    div a2, t2, t3        # overflow: MIN
    rem a3, t2, t3        # 0
    mulhu a4, t3, t3      # 0xfffffffffffffffe
    li t4, 0x7fffffff
    addiw a5, t4, 1       # sign-extended 0xffffffff80000000
    sraiw a6, a5, 4
    "#,
    );
    assert_eq!(r[10], u64::MAX);
    assert_eq!(r[11] as i64, -7);
    assert_eq!(r[12], 0x8000_0000_0000_0000);
    assert_eq!(r[13], 0);
    assert_eq!(r[14], 0xffff_ffff_ffff_fffe);
    assert_eq!(r[15], 0xffff_ffff_8000_0000);
    assert_eq!(r[16], 0xffff_ffff_f800_0000);
}

#[test]
fn misaligned_memory_amo_and_lrsc() {
    let r = run_snippet(
        r#"
    la t0, scratch
    li t1, 0x1122334455667788
    sd t1, 3(t0)          # misaligned store
    ld a0, 3(t0)          # misaligned load
    lw a1, 5(t0)
    li t2, 5
    sd t2, 64(t0)
    addi t3, t0, 64
    amoadd.d a2, t2, (t3) # a2 = 5, mem = 10
    ld a3, 64(t0)
    lr.d a4, (t3)
    addi a4, a4, 1
    sc.d a5, a4, (t3)     # succeeds: a5 = 0
    ld a6, 64(t0)         # 11
    sc.d a7, a4, (t3)     # no reservation: 1
    "#,
    );
    assert_eq!(r[10], 0x1122_3344_5566_7788);
    assert_eq!(r[11], 0x3344_5566);
    assert_eq!(r[12], 5);
    assert_eq!(r[13], 10);
    assert_eq!(r[15], 0);
    assert_eq!(r[16], 11);
    assert_eq!(r[17], 1);
}

#[test]
fn compressed_and_fp_basics() {
    let r = run_snippet(
        r#"
    c.li a0, 7
    c.addi a0, -3
    c.slli a0, 3          # 32
    li a1, 3
    fcvt.d.l f1, a1
    fcvt.d.l f2, a0
    fdiv.d f3, f2, f1     # 10.666..., inexact
    fcvt.l.d a2, f3, rtz  # 10
    fmv.x.d a3, f1
    fcvt.s.d f4, f3
    fmv.x.d a4, f4        # NaN-boxed single
    "#,
    );
    assert_eq!(r[10], 32);
    assert_eq!(r[12], 10);
    assert_eq!(r[13], 3.0f64.to_bits());
    assert_eq!(r[14] >> 32, 0xffff_ffff);
    assert_eq!(r[14] as u32, (32.0f32 / 3.0).to_bits());
    assert_eq!(r[31] & 1, 1, "inexact flag");
}

#[test]
fn self_modifying_code() {
    let r = run_snippet(
        r#"
    .option norvc
    # Patch the next instruction of the same block, without and with fence.i.
    la t0, 1f
    li t1, 0x02a00513     # addi a0, zero, 42
    sw t1, 0(t0)
1:  addi a0, zero, 7
    la t0, 2f
    li t1, 0x02b00593     # addi a1, zero, 43
    sw t1, 0(t0)
    fence.i
2:  addi a1, zero, 8
    # Patch code that already ran (and was decoded) in a loop.
    li a2, 0
    li s0, 0
    li s1, 3
3:  la t0, 4f
4:  addi a2, a2, 1        # becomes addi a2, a2, 100 after the first pass
    li t1, 0x06460613
    sw t1, 0(t0)
    fence.i
    addi s0, s0, 1
    blt s0, s1, 3b
    # Patch with a byte store (a half of the instruction).
    la t0, 5f
    li t1, 0x2c           # imm[11:4] = 0x2c: addi a3, zero, 0x2c9
    sb t1, 3(t0)
5:  addi a3, zero, 9
    "#,
    );
    assert_eq!(r[10], 42);
    assert_eq!(r[11], 43);
    assert_eq!(r[12], 201);
    assert_eq!(r[13], 0x2c9);
}

#[test]
fn illegal_instruction_is_reported() {
    let elf = asm(".word 0xffffffff");
    match run_elf(&elf, &["x"], 1000) {
        Err(UserError::Fault {
            cause: 2,
            tval: 0xffff_ffff,
            ..
        }) => {}
        other => panic!("expected an illegal-instruction fault, got {other:?}"),
    }
    let elf = asm("csrw mstatus, zero");
    assert!(matches!(
        run_elf(&elf, &["x"], 1000),
        Err(UserError::Fault { cause: 2, .. })
    ));
    let elf = asm("li t0, 0x7ffffffffff0\n ld t1, 0(t0)");
    assert!(matches!(
        run_elf(&elf, &["x"], 1000),
        Err(UserError::Fault { cause: 5, .. })
    ));
    let elf = asm("1: j 1b");
    assert_eq!(
        run_elf(&elf, &["x"], 100_000),
        Err(UserError::Timeout(100_000))
    );
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

const RR: &[&str] = &[
    "add", "sub", "sll", "srl", "sra", "slt", "sltu", "xor", "or", "and", "addw", "subw", "sllw",
    "srlw", "sraw", "mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu", "mulw", "divw",
    "divuw", "remw", "remuw",
];
const RI: &[&str] = &["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"];
const SH: &[(&str, u64)] = &[
    ("slli", 64),
    ("srli", 64),
    ("srai", 64),
    ("slliw", 32),
    ("srliw", 32),
    ("sraiw", 32),
];
const LD: &[&str] = &["lb", "lh", "lw", "ld", "lbu", "lhu", "lwu"];
const ST: &[&str] = &["sb", "sh", "sw", "sd"];
const AMO: &[&str] = &[
    "amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax", "amominu", "amomaxu",
];
const REGS: &[u32] = &[
    0, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30,
];
const SPECIAL: &[u64] = &[
    0,
    1,
    u64::MAX,
    0x8000_0000_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000,
    0x7fff_ffff,
    0xffff_ffff,
];

fn random_program(rng: &mut Rng, blocks: usize, per_block: usize) -> String {
    let mut s = String::from("    la x4, scratch\n");
    for &r in REGS.iter().skip(1) {
        let v = if rng.next().is_multiple_of(3) {
            *rng.pick(SPECIAL)
        } else {
            rng.next()
        };
        s += &format!("    li x{r}, {}\n", v as i64);
    }
    for b in 0..blocks {
        for i in 0..per_block {
            let rd = rng.pick(REGS);
            let rs1 = rng.pick(REGS);
            let rs2 = rng.pick(REGS);
            let line = match rng.next() % 10 {
                0..=3 => format!("{} x{rd}, x{rs1}, x{rs2}", rng.pick(RR)),
                4 => format!(
                    "{} x{rd}, x{rs1}, {}",
                    rng.pick(RI),
                    (rng.next() % 4096) as i64 - 2048
                ),
                5 => {
                    let (op, w) = rng.pick(SH);
                    format!("{op} x{rd}, x{rs1}, {}", rng.next() % w)
                }
                6 => format!("{} x{rd}, {}(x4)", rng.pick(LD), rng.next() % 2040),
                7 => format!("{} x{rs2}, {}(x4)", rng.pick(ST), rng.next() % 2040),
                8 => {
                    let w = if rng.next().is_multiple_of(2) {
                        "w"
                    } else {
                        "d"
                    };
                    let off = (rng.next() % 255) * 8;
                    format!(
                        "addi x3, x4, {off}\n    {}.{w} x{rd}, x{rs2}, (x3)",
                        rng.pick(AMO)
                    )
                }
                _ => {
                    let br = *rng.pick(&["beq", "bne", "blt", "bge", "bltu", "bgeu"]);
                    format!("{br} x{rs1}, x{rs2}, 1f\n    xori x{rd}, x{rd}, {}\n1:", i)
                }
            };
            s += &format!("    {line}\n");
        }
        s += &format!("    jal x1, dump  # block {b}\n");
    }
    s += "    li a0, 0\n    li a7, 93\n    ecall\n";
    s
}

fn program_source(body: &str) -> String {
    format!(
        r#"
    .data
    .balign 16
scratch: .zero 4096
regs: .zero 256
    .text
    .globl _start
_start:
{body}
dump:
    la x31, regs
{stores}
    frflags a0
    sd a0, 248(x31)
    li a0, 1
    mv a1, x31
    li a2, 256
    li a7, 64
    ecall
    ld a0, 80(x31)
    ld a1, 88(x31)
    ld a2, 96(x31)
    ld a7, 136(x31)
    ret
"#,
        stores = (2..31)
            .map(|r| format!("    sd x{r}, {}(x31)\n", r * 8))
            .collect::<String>()
    )
}

#[test]
fn random_integer_sequences_match_qemu() {
    let seed = std::env::var("SPIN_ISA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    let sweep: usize = std::env::var("SPIN_ISA_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    for p in 0..8 * sweep {
        let body = random_program(&mut rng, 40, 12);
        let src = program_source(&body);
        if std::env::var("SPIN_ISA_DUMP").is_ok() {
            std::fs::write(format!("/tmp/isa-{p}.S"), &src).unwrap();
        }
        let elf = compile("random", &src, "S", &["-nostdlib", "-no-pie"]);
        let (qcode, qout) = qemu(&elf, &[]);
        let ours =
            run_elf(&elf, &["random"], 10_000_000).unwrap_or_else(|e| panic!("program {p}: {e}"));
        assert_eq!(qcode, 0);
        assert_eq!(ours.exit_code, 0);
        assert_eq!(ours.stdout.len(), qout.len(), "program {p}: output length");
        for (blk, (a, b)) in ours.stdout.chunks(256).zip(qout.chunks(256)).enumerate() {
            if a != b {
                let (ra, rb) = (regs(a), regs(b));
                let diff: Vec<String> = (0..32)
                    .filter(|&i| ra[i] != rb[i])
                    .map(|i| format!("x{i}: ours {:#x} qemu {:#x}", ra[i], rb[i]))
                    .collect();
                panic!("seed {seed:#x} program {p} block {blk} differs: {diff:?}\n{body}");
            }
        }
    }
}

const F64_SPECIAL: &[u64] = &[
    0,
    1 << 63,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0x7ff4_0000_0000_0001,
    1,
    0x000f_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0x43e0_0000_0000_0000,
    0xc3e0_0000_0000_0000,
    0x43f0_0000_0000_0000,
    0x41e0_0000_0000_0000,
    0x3ff8_0000_0000_0000,
    0x4004_0000_0000_0000,
    0xc004_0000_0000_0000,
];
const F32_SPECIAL: &[u32] = &[
    0,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0x7fa0_0001,
    1,
    0x007f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0x5f00_0000,
    0xdf00_0000,
    0x4f00_0000,
    0x3fc0_0000,
    0x4020_0000,
    0xc020_0000,
];
const RM: &[&str] = &["rne", "rtz", "rdn", "rup", "rmm", "dyn"];

fn random_fp_value(rng: &mut Rng) -> u64 {
    match rng.next() % 6 {
        0 | 1 => *rng.pick(F64_SPECIAL),
        2 | 3 => 0xffff_ffff_0000_0000 | *rng.pick(F32_SPECIAL) as u64,
        4 => 0xffff_ffff_0000_0000 | (rng.next() & 0xffff_ffff),
        _ => rng.next(),
    }
}

fn random_fp_program(rng: &mut Rng, blocks: usize, per_block: usize) -> String {
    // FS is already on in both harnesses (mstatus is not writable from U-mode).
    let mut s = String::new();
    for f in 0..32 {
        s += &format!(
            "    li t0, {}\n    fmv.d.x f{f}, t0\n",
            random_fp_value(rng) as i64
        );
    }
    for r in [5u32, 6, 7, 28, 29, 30] {
        let v = if rng.next().is_multiple_of(2) {
            *rng.pick(SPECIAL)
        } else {
            rng.next() % 2000
        };
        s += &format!("    li x{r}, {}\n", v as i64);
    }
    let xr = [5u32, 6, 7, 28, 29, 30];
    for b in 0..blocks {
        s += &format!("    fsrmi {}\n    fsflags zero\n", rng.next() % 5);
        for _ in 0..per_block {
            let (fd, f1, f2, f3) = (
                rng.next() % 32,
                rng.next() % 32,
                rng.next() % 32,
                rng.next() % 32,
            );
            let xd = rng.pick(&xr);
            let xs = rng.pick(&xr);
            let t = if rng.next().is_multiple_of(2) {
                "s"
            } else {
                "d"
            };
            let rm = rng.pick(RM);
            let line = match rng.next() % 12 {
                0 | 1 => format!(
                    "{}.{t} f{fd}, f{f1}, f{f2}, {rm}",
                    rng.pick(&["fadd", "fsub", "fmul", "fdiv"])
                ),
                2 => format!("fsqrt.{t} f{fd}, f{f1}, {rm}"),
                3 => format!(
                    "{}.{t} f{fd}, f{f1}, f{f2}",
                    rng.pick(&["fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx"])
                ),
                4 => format!(
                    "{}.{t} f{fd}, f{f1}, f{f2}, f{f3}, {rm}",
                    rng.pick(&["fmadd", "fmsub", "fnmsub", "fnmadd"])
                ),
                5 => format!(
                    "fcvt.{}.{t} x{xd}, f{f1}, {rm}",
                    rng.pick(&["w", "wu", "l", "lu"])
                ),
                6 => {
                    let from = *rng.pick(&["w", "wu", "l", "lu"]);
                    if t == "d" && from.starts_with('w') {
                        // Exact: the assembler takes no rounding mode.
                        format!("fcvt.d.{from} f{fd}, x{xs}")
                    } else {
                        format!("fcvt.{t}.{from} f{fd}, x{xs}, {rm}")
                    }
                }
                7 => {
                    if t == "s" {
                        format!("fcvt.s.d f{fd}, f{f1}, {rm}")
                    } else {
                        format!("fcvt.d.s f{fd}, f{f1}")
                    }
                }
                8 => format!(
                    "{}.{t} x{xd}, f{f1}, f{f2}",
                    rng.pick(&["feq", "flt", "fle"])
                ),
                9 => format!("fclass.{t} x{xd}, f{f1}"),
                10 => {
                    if t == "s" {
                        format!("fmv.x.w x{xd}, f{f1}\n    fmv.w.x f{fd}, x{xs}")
                    } else {
                        format!("fmv.x.d x{xd}, f{f1}\n    fmv.d.x f{fd}, x{xs}")
                    }
                }
                _ => format!(
                    "fsd f{f1}, {}(x4)\n    flw f{fd}, {}(x4)",
                    8 * (rng.next() % 8),
                    4 * (rng.next() % 16)
                ),
            };
            s += &format!("    {line}\n");
        }
        s += &format!("    jal x1, dump  # block {b}\n");
    }
    s += "    li a0, 0\n    li a7, 93\n    ecall\n";
    format!("    la x4, scratch\n    li x2, 0\n{s}")
}

fn fp_program_source(body: &str) -> String {
    let src = program_source(body);
    let fstores: String = (0..32)
        .map(|f| format!("    fsd f{f}, {}(x31)\n", 256 + 8 * f))
        .collect();
    src.replace("regs: .zero 256", "regs: .zero 512")
        .replace("    frflags a0\n", &format!("{fstores}    frflags a0\n"))
        .replace("    li a2, 256\n", "    li a2, 512\n")
}

#[test]
fn random_fp_sequences_match_qemu() {
    let seed = std::env::var("SPIN_ISA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf10a_7000_0000_0001u64);
    let sweep: usize = std::env::var("SPIN_ISA_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    for p in 0..6 * sweep {
        let body = random_fp_program(&mut rng, 40, 10);
        let elf = compile(
            "randomfp",
            &fp_program_source(&body),
            "S",
            &["-nostdlib", "-no-pie"],
        );
        let (qcode, qout) = qemu(&elf, &[]);
        let ours =
            run_elf(&elf, &["random"], 10_000_000).unwrap_or_else(|e| panic!("program {p}: {e}"));
        assert_eq!((qcode, ours.exit_code), (0, 0));
        assert_eq!(ours.stdout.len(), qout.len(), "program {p}: output length");
        for (blk, (a, b)) in ours.stdout.chunks(512).zip(qout.chunks(512)).enumerate() {
            if a != b {
                let w = |c: &[u8]| -> Vec<u64> {
                    c.chunks(8)
                        .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
                        .collect()
                };
                let (ra, rb) = (w(a), w(b));
                let diff: Vec<String> = (0..64)
                    .filter(|&i| ra[i] != rb[i])
                    .map(|i| {
                        let name = if i < 31 {
                            format!("x{i}")
                        } else if i == 31 {
                            "fflags".into()
                        } else {
                            format!("f{}", i - 32)
                        };
                        format!("{name}: ours {:#x} qemu {:#x}", ra[i], rb[i])
                    })
                    .collect();
                let block = body.split("jal x1, dump").nth(blk).unwrap_or("");
                panic!("seed {seed:#x} program {p} block {blk} differs: {diff:?}\n{block}");
            }
        }
    }
}
