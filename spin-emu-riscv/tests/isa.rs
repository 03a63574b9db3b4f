//! Instruction-level tests: hand-written snippets with known results, and
//! random integer/M/A/C and F/D sequences compared bit for bit with qemu-riscv64.
//!
//! The random programs are batched: one ELF holds [`BATCH`] independent programs
//! (each loads its registers, fflags/frm and scratch memory from its own table,
//! runs its blocks and dumps the registers after each), so a few thousand
//! programs cost a few assemblies and qemu runs. A mismatch names the program,
//! its block and its source, and writes a standalone reproduction.
//!
//! `SPIN_ISA_SEED` overrides the seed, `SPIN_ISA_SWEEP=<n>` runs n times more
//! programs, `SPIN_ISA_DUMP` writes each batch's source to /tmp.

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
fn blocks_run_across_page_boundaries() {
    // Straight-line code longer than a page runs off the end of one decoded
    // page into the next (4-byte and compressed), and loops jump back across
    // the boundary and within a page.
    let adds4 = "    addi a0, a0, 1\n".repeat(1500);
    let adds2 = "    c.addi a1, 1\n".repeat(3000);
    let r = run_snippet(&format!(
        r#"
    li a0, 0
    li a1, 0
    li s0, 0
    li s1, 3
1:
    .option push
    .option norvc
{adds4}
    .option pop
{adds2}
    li a2, 0
2:  addi a2, a2, 1
    blt a2, s1, 2b
    addi s0, s0, 1
    blt s0, s1, 1b
    "#
    ));
    assert_eq!(r[10], 4500);
    assert_eq!(r[11], 9000);
    assert_eq!(r[12], 3);
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

/// splitmix64: the seed of each program, from the run's seed and its index.
fn program_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
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
/// Registers the integer programs use: not x1 (the dump's return address), x3
/// (AMO addresses), x4 (the scratch base) or x31 (the dump's base).
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

/// Programs per ELF.
const BATCH: usize = 256;
/// Random programs in the default run (times `SPIN_ISA_SWEEP`).
const PROGRAMS: usize = 4096;
/// Bytes of scratch memory each program has (x4 points at it).
const SCRATCH: usize = 512;
/// Bytes the dump writes per block: x0..x30 (x1 and x31 as 0), fflags in
/// x31's slot, then f0..f31.
const RECORD: usize = 512;
/// Words of a program's table: x0..x31, f0..f31, then its scratch memory.
const TABLE: usize = 64 + SCRATCH / 8;

/// One random program of a batch.
struct Program {
    seed: u64,
    kind: &'static str,
    /// Initial x0..x31 (x0, x1, x4 and x31 are not loaded), f0..f31 and scratch memory.
    table: Vec<u64>,
    /// Blocks, each followed by a `jal x1, dump`.
    blocks: Vec<String>,
}

impl Program {
    fn new(seed: u64, kind: &'static str) -> (Program, Rng) {
        let mut rng = Rng(seed);
        let mut table = vec![0u64; TABLE];
        for w in table.iter_mut().skip(64) {
            *w = rng.next();
        }
        for f in &mut table[32..64] {
            *f = random_fp_value(&mut rng);
        }
        let p = Program {
            seed,
            kind,
            table,
            blocks: Vec::new(),
        };
        (p, rng)
    }

    /// The program's code and data, labelled `prog_<index>` and `table_<index>`.
    fn source(&self, index: usize) -> String {
        let mut s = format!(
            "# program {index}: {} seed {:#x}\n    .pushsection .data\n    .balign 16\ntable_{index}:\n",
            self.kind, self.seed
        );
        for row in self.table.chunks(8) {
            let row: Vec<String> = row.iter().map(|w| format!("{w:#x}")).collect();
            s += &format!("    .quad {}\n", row.join(", "));
        }
        s += &format!("    .popsection\nprog_{index}:\n    la x31, table_{index}\n");
        for f in 0..32 {
            s += &format!("    fld f{f}, {}(x31)\n", 256 + 8 * f);
        }
        for r in (2..31).filter(|&r| r != 4) {
            s += &format!("    ld x{r}, {}(x31)\n", 8 * r);
        }
        s += "    addi x4, x31, 512\n    fsflags zero\n    fsrmi 0\n";
        for (b, block) in self.blocks.iter().enumerate() {
            s += block;
            s += &format!("    jal x1, dump  # program {index} block {b}\n");
        }
        s
    }
}

fn int_registers(p: &mut Program, rng: &mut Rng) {
    for &r in REGS.iter().skip(1) {
        p.table[r as usize] = if rng.next().is_multiple_of(3) {
            *rng.pick(SPECIAL)
        } else {
            rng.next()
        };
    }
}

/// Integer registers the FP blocks use (conversions and moves).
const FP_XREGS: [u32; 6] = [5, 6, 7, 28, 29, 30];

fn fp_registers(p: &mut Program, rng: &mut Rng) {
    for &r in &FP_XREGS {
        p.table[r as usize] = if rng.next().is_multiple_of(2) {
            *rng.pick(SPECIAL)
        } else {
            rng.next() % 2000
        };
    }
}

/// A block of random integer, M, A (and, through the assembler, C) instructions.
fn int_block(rng: &mut Rng) -> String {
    const PER_BLOCK: usize = 12;
    let span = SCRATCH as u64 - 7;
    let mut s = String::new();
    for i in 0..PER_BLOCK {
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
            6 => format!("{} x{rd}, {}(x4)", rng.pick(LD), rng.next() % span),
            7 => format!("{} x{rs2}, {}(x4)", rng.pick(ST), rng.next() % span),
            8 => {
                let w = if rng.next().is_multiple_of(2) {
                    "w"
                } else {
                    "d"
                };
                let off = (rng.next() % (SCRATCH as u64 / 8)) * 8;
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
    s
}

/// A block of random F/D instructions, under a random rounding mode, from clear flags.
fn fp_block(rng: &mut Rng) -> String {
    const PER_BLOCK: usize = 10;
    let xr = FP_XREGS;
    let mut s = format!("    fsrmi {}\n    fsflags zero\n", rng.next() % 5);
    for _ in 0..PER_BLOCK {
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
                8 * (rng.next() % (SCRATCH as u64 / 8)),
                4 * (rng.next() % (SCRATCH as u64 / 4))
            ),
        };
        s += &format!("    {line}\n");
    }
    s
}

/// Blocks per program.
const BLOCKS: usize = 5;

/// Program `n` of a run: integer, FP, or blocks of both.
fn program(seed: u64, n: usize) -> Program {
    let kind = match n % 4 {
        0 | 1 => "integer",
        2 => "fp",
        _ => "mixed",
    };
    let (mut p, mut rng) = Program::new(program_seed(seed, n as u64), kind);
    match kind {
        "integer" => int_registers(&mut p, &mut rng),
        "fp" => fp_registers(&mut p, &mut rng),
        _ => {
            int_registers(&mut p, &mut rng);
            fp_registers(&mut p, &mut rng);
        }
    }
    for _ in 0..BLOCKS {
        let fp = match kind {
            "integer" => false,
            "fp" => true,
            _ => rng.next().is_multiple_of(2),
        };
        let block = if fp {
            fp_block(&mut rng)
        } else {
            int_block(&mut rng)
        };
        p.blocks.push(block);
    }
    p
}

/// A program of `(index, program)`s run one after the other, then exit(0).
fn batch_source<'a>(programs: impl IntoIterator<Item = (usize, &'a Program)>) -> String {
    let mut s = String::from(
        "    .data\n    .balign 16\nregs: .zero 512\n    .text\n    .globl _start\n_start:\n",
    );
    for (i, p) in programs {
        s += &p.source(i);
    }
    s += "    li a0, 0\n    li a7, 93\n    ecall\ndump:\n    la x31, regs\n";
    for r in 2..31 {
        s += &format!("    sd x{r}, {}(x31)\n", 8 * r);
    }
    for f in 0..32 {
        s += &format!("    fsd f{f}, {}(x31)\n", 256 + 8 * f);
    }
    s += r#"    frflags a0
    sd a0, 248(x31)
    li a0, 1
    mv a1, x31
    li a2, 512
    li a7, 64
    ecall
    ld a0, 80(x31)
    ld a1, 88(x31)
    ld a2, 96(x31)
    ld a7, 136(x31)
    ret
"#;
    s
}

/// The program holding `pc` in `elf`, from the `prog_<n>` symbols.
fn program_at(elf: &[u8], pc: u64) -> Option<usize> {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("isa-fault-{}.elf", std::process::id()));
    std::fs::write(&path, elf).ok()?;
    let out = std::process::Command::new("riscv64-linux-gnu-nm")
        .arg(&path)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let n = it.nth(1)?.strip_prefix("prog_")?.parse().ok()?;
            Some((addr, n))
        })
        .filter(|&(addr, _)| addr <= pc)
        .max()
        .map(|(_, n)| n)
}

/// Runs programs `first..first + programs.len()` as one ELF in qemu and in the
/// harness and compares every dump; panics naming the first program that differs.
fn check_batch(seed: u64, first: usize, programs: &[Program]) {
    let src = batch_source(programs.iter().enumerate().map(|(i, p)| (first + i, p)));
    if std::env::var("SPIN_ISA_DUMP").is_ok() {
        std::fs::write(format!("/tmp/isa-batch-{first}.S"), &src).unwrap();
    }
    let elf = compile("isa-batch", &src, "S", &["-nostdlib", "-no-pie"]);
    // Which program and block each record comes from.
    let records: Vec<(usize, usize)> = programs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (0..p.blocks.len()).map(move |b| (i, b)))
        .collect();
    let (qcode, qout) = qemu(&elf, &[]);
    assert_eq!(qcode, 0, "qemu failed on programs {first}..");
    assert_eq!(qout.len(), records.len() * RECORD, "qemu output length");

    let fail = |i: usize, what: String| -> ! {
        let p = &programs[i];
        let repro = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("isa-program-{}.S", first + i));
        std::fs::write(&repro, batch_source([(first + i, p)])).unwrap();
        panic!(
            "seed {seed:#x}: {} program {} (seed {:#x}) {what}\n\
             standalone source: {}\n",
            p.kind,
            first + i,
            p.seed,
            repro.display()
        );
    };
    let ours = match run_elf(&elf, &["random"], 100_000_000) {
        Ok(o) => o,
        Err(e) => {
            let pc = match e {
                UserError::Fault { pc, .. } => pc,
                _ => panic!("seed {seed:#x}: programs {first}..: {e}"),
            };
            match program_at(&elf, pc) {
                Some(n) if n >= first && n < first + programs.len() => {
                    fail(n - first, e.to_string())
                }
                _ => panic!("seed {seed:#x}: programs {first}..: {e}"),
            }
        }
    };
    assert_eq!(ours.exit_code, 0);
    let words = |c: &[u8]| -> Vec<u64> {
        c.chunks(8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
            .collect()
    };
    for (r, &(i, blk)) in records.iter().enumerate() {
        let (a, b) = (
            ours.stdout.get(r * RECORD..(r + 1) * RECORD),
            &qout[r * RECORD..(r + 1) * RECORD],
        );
        let Some(a) = a else {
            fail(i, format!("block {blk}: our output ends early"));
        };
        if a == b {
            continue;
        }
        let (ra, rb) = (words(a), words(b));
        let diff: Vec<String> = (0..64)
            .filter(|&i| ra[i] != rb[i])
            .map(|i| {
                let name = match i {
                    0..31 => format!("x{i}"),
                    31 => "fflags".into(),
                    _ => format!("f{}", i - 32),
                };
                format!("{name}: ours {:#x} qemu {:#x}", ra[i], rb[i])
            })
            .collect();
        fail(
            i,
            format!(
                "block {blk} differs: {diff:?}\nblock {blk}:\n{}",
                programs[i].blocks[blk]
            ),
        );
    }
    assert_eq!(ours.stdout.len(), qout.len(), "output length");
}

#[test]
fn random_sequences_match_qemu() {
    let seed = std::env::var("SPIN_ISA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    let sweep: usize = std::env::var("SPIN_ISA_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let total = PROGRAMS * sweep;
    let program = |n: usize| program(seed, n);
    // Two workers: assembling and qemu dominate, and both are single-threaded.
    // A failing batch panics in its worker; the first failure is re-raised here.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let first = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if first >= total {
                            break;
                        }
                        let programs: Vec<Program> =
                            (first..(first + BATCH).min(total)).map(program).collect();
                        if let Err(e) =
                            std::panic::catch_unwind(|| check_batch(seed, first, &programs))
                        {
                            next.store(total, std::sync::atomic::Ordering::Relaxed);
                            std::panic::resume_unwind(e);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            if let Err(e) = w.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}
