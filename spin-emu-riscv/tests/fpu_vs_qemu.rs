//! Differential test of `spin_emu_riscv::fpu` against real RISC-V semantics as
//! implemented by `qemu-riscv64-static`.
//!
//! The test generates a C program with one inline-assembly routine per F/D
//! instruction (set `frm` with `fsrm`, clear `fflags`, run the instruction,
//! read `fflags`), cross-compiles it statically, and feeds it binary records of
//! operands it generated from a seeded PRNG: specials, subnormals, overflow
//! and underflow boundaries, cancellations, ties and integer-range edges,
//! each in all five rounding modes. Every result and its flags must match the
//! library bit for bit.
//!
//! Environment: `SPIN_FPU_SEED` (decimal or 0x-hex) overrides the seed,
//! `SPIN_FPU_SWEEP=1` runs a much larger sweep (or `SPIN_FPU_SWEEP=<factor>`).

use spin_emu_riscv::fpu::{self, Flags, Rounding};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    /// Single in an F register.
    S,
    /// Double in an F register.
    D,
    /// 32-bit integer in an X register (results compared on the low 32 bits).
    W,
    /// 64-bit integer in an X register.
    L,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gen {
    Arith,
    Mul,
    Div,
    Fma,
    Cmp,
    ToInt,
    FromInt,
    Cvt,
}

type Eval = fn(u64, u64, u64, Rounding, &mut Flags) -> u64;

struct Op {
    name: &'static str,
    /// The instruction; ft0..ft2 (or %[a]) are the inputs, ft3 (or %[res]) the output.
    insn: &'static str,
    args: &'static [Ty],
    ret: Ty,
    generator: Gen,
    eval: Eval,
}

const RMS: [Rounding; 5] = [
    Rounding::Rne,
    Rounding::Rtz,
    Rounding::Rdn,
    Rounding::Rup,
    Rounding::Rmm,
];

macro_rules! op {
    ($name:expr, $insn:expr, [$($arg:ident),*], $ret:ident, $gen:ident, $eval:expr) => {
        Op { name: $name, insn: $insn, args: &[$(Ty::$arg),*], ret: Ty::$ret, generator: Gen::$gen, eval: $eval }
    };
}

fn ops() -> Vec<Op> {
    use fpu::*;
    vec![
        op!(
            "fadd.s",
            "fadd.s ft3, ft0, ft1",
            [S, S],
            S,
            Arith,
            |a, b, _, rm, f| add32(a as u32, b as u32, rm, f) as u64
        ),
        op!(
            "fsub.s",
            "fsub.s ft3, ft0, ft1",
            [S, S],
            S,
            Arith,
            |a, b, _, rm, f| sub32(a as u32, b as u32, rm, f) as u64
        ),
        op!(
            "fmul.s",
            "fmul.s ft3, ft0, ft1",
            [S, S],
            S,
            Mul,
            |a, b, _, rm, f| mul32(a as u32, b as u32, rm, f) as u64
        ),
        op!(
            "fdiv.s",
            "fdiv.s ft3, ft0, ft1",
            [S, S],
            S,
            Div,
            |a, b, _, rm, f| div32(a as u32, b as u32, rm, f) as u64
        ),
        op!(
            "fsqrt.s",
            "fsqrt.s ft3, ft0",
            [S],
            S,
            Arith,
            |a, _, _, rm, f| sqrt32(a as u32, rm, f) as u64
        ),
        op!(
            "fmadd.s",
            "fmadd.s ft3, ft0, ft1, ft2",
            [S, S, S],
            S,
            Fma,
            |a, b, c, rm, f| fma32(a as u32, b as u32, c as u32, false, false, rm, f) as u64
        ),
        op!(
            "fmsub.s",
            "fmsub.s ft3, ft0, ft1, ft2",
            [S, S, S],
            S,
            Fma,
            |a, b, c, rm, f| fma32(a as u32, b as u32, c as u32, false, true, rm, f) as u64
        ),
        op!(
            "fnmsub.s",
            "fnmsub.s ft3, ft0, ft1, ft2",
            [S, S, S],
            S,
            Fma,
            |a, b, c, rm, f| fma32(a as u32, b as u32, c as u32, true, false, rm, f) as u64
        ),
        op!(
            "fnmadd.s",
            "fnmadd.s ft3, ft0, ft1, ft2",
            [S, S, S],
            S,
            Fma,
            |a, b, c, rm, f| fma32(a as u32, b as u32, c as u32, true, true, rm, f) as u64
        ),
        op!(
            "fmin.s",
            "fmin.s ft3, ft0, ft1",
            [S, S],
            S,
            Cmp,
            |a, b, _, _, f| min32(a as u32, b as u32, f) as u64
        ),
        op!(
            "fmax.s",
            "fmax.s ft3, ft0, ft1",
            [S, S],
            S,
            Cmp,
            |a, b, _, _, f| max32(a as u32, b as u32, f) as u64
        ),
        op!(
            "feq.s",
            "feq.s %[res], ft0, ft1",
            [S, S],
            L,
            Cmp,
            |a, b, _, _, f| eq32(a as u32, b as u32, f) as u64
        ),
        op!(
            "flt.s",
            "flt.s %[res], ft0, ft1",
            [S, S],
            L,
            Cmp,
            |a, b, _, _, f| lt32(a as u32, b as u32, f) as u64
        ),
        op!(
            "fle.s",
            "fle.s %[res], ft0, ft1",
            [S, S],
            L,
            Cmp,
            |a, b, _, _, f| le32(a as u32, b as u32, f) as u64
        ),
        op!(
            "fclass.s",
            "fclass.s %[res], ft0",
            [S],
            L,
            Arith,
            |a, _, _, _, _| classify32(a as u32)
        ),
        op!(
            "fcvt.w.s",
            "fcvt.w.s %[res], ft0",
            [S],
            W,
            ToInt,
            |a, _, _, rm, f| f32_to_i32(a as u32, rm, f) as u32 as u64
        ),
        op!(
            "fcvt.wu.s",
            "fcvt.wu.s %[res], ft0",
            [S],
            W,
            ToInt,
            |a, _, _, rm, f| f32_to_u32(a as u32, rm, f) as u64
        ),
        op!(
            "fcvt.l.s",
            "fcvt.l.s %[res], ft0",
            [S],
            L,
            ToInt,
            |a, _, _, rm, f| f32_to_i64(a as u32, rm, f) as u64
        ),
        op!(
            "fcvt.lu.s",
            "fcvt.lu.s %[res], ft0",
            [S],
            L,
            ToInt,
            |a, _, _, rm, f| f32_to_u64(a as u32, rm, f)
        ),
        op!(
            "fcvt.s.w",
            "fcvt.s.w ft3, %[a]",
            [W],
            S,
            FromInt,
            |a, _, _, rm, f| i32_to_f32(a as u32 as i32, rm, f) as u64
        ),
        op!(
            "fcvt.s.wu",
            "fcvt.s.wu ft3, %[a]",
            [W],
            S,
            FromInt,
            |a, _, _, rm, f| u32_to_f32(a as u32, rm, f) as u64
        ),
        op!(
            "fcvt.s.l",
            "fcvt.s.l ft3, %[a]",
            [L],
            S,
            FromInt,
            |a, _, _, rm, f| i64_to_f32(a as i64, rm, f) as u64
        ),
        op!(
            "fcvt.s.lu",
            "fcvt.s.lu ft3, %[a]",
            [L],
            S,
            FromInt,
            |a, _, _, rm, f| u64_to_f32(a, rm, f) as u64
        ),
        op!(
            "fadd.d",
            "fadd.d ft3, ft0, ft1",
            [D, D],
            D,
            Arith,
            |a, b, _, rm, f| add64(a, b, rm, f)
        ),
        op!(
            "fsub.d",
            "fsub.d ft3, ft0, ft1",
            [D, D],
            D,
            Arith,
            |a, b, _, rm, f| sub64(a, b, rm, f)
        ),
        op!(
            "fmul.d",
            "fmul.d ft3, ft0, ft1",
            [D, D],
            D,
            Mul,
            |a, b, _, rm, f| mul64(a, b, rm, f)
        ),
        op!(
            "fdiv.d",
            "fdiv.d ft3, ft0, ft1",
            [D, D],
            D,
            Div,
            |a, b, _, rm, f| div64(a, b, rm, f)
        ),
        op!(
            "fsqrt.d",
            "fsqrt.d ft3, ft0",
            [D],
            D,
            Arith,
            |a, _, _, rm, f| sqrt64(a, rm, f)
        ),
        op!(
            "fmadd.d",
            "fmadd.d ft3, ft0, ft1, ft2",
            [D, D, D],
            D,
            Fma,
            |a, b, c, rm, f| fma64(a, b, c, false, false, rm, f)
        ),
        op!(
            "fmsub.d",
            "fmsub.d ft3, ft0, ft1, ft2",
            [D, D, D],
            D,
            Fma,
            |a, b, c, rm, f| fma64(a, b, c, false, true, rm, f)
        ),
        op!(
            "fnmsub.d",
            "fnmsub.d ft3, ft0, ft1, ft2",
            [D, D, D],
            D,
            Fma,
            |a, b, c, rm, f| fma64(a, b, c, true, false, rm, f)
        ),
        op!(
            "fnmadd.d",
            "fnmadd.d ft3, ft0, ft1, ft2",
            [D, D, D],
            D,
            Fma,
            |a, b, c, rm, f| fma64(a, b, c, true, true, rm, f)
        ),
        op!(
            "fmin.d",
            "fmin.d ft3, ft0, ft1",
            [D, D],
            D,
            Cmp,
            |a, b, _, _, f| min64(a, b, f)
        ),
        op!(
            "fmax.d",
            "fmax.d ft3, ft0, ft1",
            [D, D],
            D,
            Cmp,
            |a, b, _, _, f| max64(a, b, f)
        ),
        op!(
            "feq.d",
            "feq.d %[res], ft0, ft1",
            [D, D],
            L,
            Cmp,
            |a, b, _, _, f| eq64(a, b, f) as u64
        ),
        op!(
            "flt.d",
            "flt.d %[res], ft0, ft1",
            [D, D],
            L,
            Cmp,
            |a, b, _, _, f| lt64(a, b, f) as u64
        ),
        op!(
            "fle.d",
            "fle.d %[res], ft0, ft1",
            [D, D],
            L,
            Cmp,
            |a, b, _, _, f| le64(a, b, f) as u64
        ),
        op!(
            "fclass.d",
            "fclass.d %[res], ft0",
            [D],
            L,
            Arith,
            |a, _, _, _, _| classify64(a)
        ),
        op!(
            "fcvt.w.d",
            "fcvt.w.d %[res], ft0",
            [D],
            W,
            ToInt,
            |a, _, _, rm, f| f64_to_i32(a, rm, f) as u32 as u64
        ),
        op!(
            "fcvt.wu.d",
            "fcvt.wu.d %[res], ft0",
            [D],
            W,
            ToInt,
            |a, _, _, rm, f| f64_to_u32(a, rm, f) as u64
        ),
        op!(
            "fcvt.l.d",
            "fcvt.l.d %[res], ft0",
            [D],
            L,
            ToInt,
            |a, _, _, rm, f| f64_to_i64(a, rm, f) as u64
        ),
        op!(
            "fcvt.lu.d",
            "fcvt.lu.d %[res], ft0",
            [D],
            L,
            ToInt,
            |a, _, _, rm, f| f64_to_u64(a, rm, f)
        ),
        op!(
            "fcvt.d.w",
            "fcvt.d.w ft3, %[a]",
            [W],
            D,
            FromInt,
            |a, _, _, rm, f| i32_to_f64(a as u32 as i32, rm, f)
        ),
        op!(
            "fcvt.d.wu",
            "fcvt.d.wu ft3, %[a]",
            [W],
            D,
            FromInt,
            |a, _, _, rm, f| u32_to_f64(a as u32, rm, f)
        ),
        op!(
            "fcvt.d.l",
            "fcvt.d.l ft3, %[a]",
            [L],
            D,
            FromInt,
            |a, _, _, rm, f| i64_to_f64(a as i64, rm, f)
        ),
        op!(
            "fcvt.d.lu",
            "fcvt.d.lu ft3, %[a]",
            [L],
            D,
            FromInt,
            |a, _, _, rm, f| u64_to_f64(a, rm, f)
        ),
        op!(
            "fcvt.d.s",
            "fcvt.d.s ft3, ft0",
            [S],
            D,
            Cvt,
            |a, _, _, _, f| f32_to_f64(a as u32, f)
        ),
        op!(
            "fcvt.s.d",
            "fcvt.s.d ft3, ft0",
            [D],
            S,
            Cvt,
            |a, _, _, rm, f| f64_to_f32(a, rm, f) as u64
        ),
    ]
}

/// The reference program: one routine per op, dispatched on the record's op
/// index. Operands travel as raw bits through `fmv.*.x`, so the C compiler
/// never touches a floating-point value.
fn c_source(ops: &[Op]) -> String {
    let mut src = String::from(
        "#include <stdio.h>\n#include <stdint.h>\n\
         struct rec { uint32_t op, rm; uint64_t a, b, c; };\n\
         struct out { uint64_t res, flags; };\n",
    );
    let regs = ["ft0", "ft1", "ft2"];
    let names = ["a", "b", "c"];
    for (i, op) in ops.iter().enumerate() {
        let mut body = String::from("\"fsrm %[rm]\\n\" \"csrw fflags, zero\\n\" ");
        for (j, ty) in op.args.iter().enumerate() {
            match ty {
                Ty::S => write!(body, "\"fmv.w.x {}, %[{}]\\n\" ", regs[j], names[j]).unwrap(),
                Ty::D => write!(body, "\"fmv.d.x {}, %[{}]\\n\" ", regs[j], names[j]).unwrap(),
                Ty::W | Ty::L => {}
            }
        }
        write!(body, "\"{}\\n\" ", op.insn).unwrap();
        match op.ret {
            Ty::S => body.push_str("\"fmv.x.w %[res], ft3\\n\" "),
            Ty::D => body.push_str("\"fmv.x.d %[res], ft3\\n\" "),
            Ty::W | Ty::L => {}
        }
        body.push_str("\"frflags %[fl]\\n\"");
        writeln!(
            src,
            "static void op_{i}(uint64_t a, uint64_t b, uint64_t c, uint64_t rm, struct out *o) {{\n\
             \x20 uint64_t res = 0, fl = 0;\n\
             \x20 __asm__ volatile({body}\n\
             \x20   : [res] \"=&r\"(res), [fl] \"=&r\"(fl)\n\
             \x20   : [a] \"r\"(a), [b] \"r\"(b), [c] \"r\"(c), [rm] \"r\"(rm)\n\
             \x20   : \"ft0\", \"ft1\", \"ft2\", \"ft3\", \"memory\");\n\
             \x20 o->res = res; o->flags = fl;\n}}"
        )
        .unwrap();
    }
    src.push_str(
        "int main(int argc, char **argv) {\n\
         \x20 if (argc != 3) return 2;\n\
         \x20 FILE *in = fopen(argv[1], \"rb\"), *out = fopen(argv[2], \"wb\");\n\
         \x20 if (!in || !out) return 3;\n\
         \x20 struct rec r; struct out o;\n\
         \x20 while (fread(&r, sizeof r, 1, in) == 1) {\n\
         \x20   o.res = 0; o.flags = 0;\n\
         \x20   switch (r.op) {\n",
    );
    for i in 0..ops.len() {
        writeln!(src, "    case {i}: op_{i}(r.a, r.b, r.c, r.rm, &o); break;").unwrap();
    }
    src.push_str(
        "    default: return 4;\n    }\n\
         \x20   if (fwrite(&o, sizeof o, 1, out) != 1) return 5;\n  }\n\
         \x20 return fclose(out) != 0;\n}\n",
    );
    src
}

// ---------------------------------------------------------------- operands

/// xorshift64*: tiny, deterministic, good enough to spread operands.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Field layout of a format, so one generator serves both.
#[derive(Clone, Copy)]
struct Fmt {
    exp_bits: u32,
    frac_bits: u32,
}

const FS: Fmt = Fmt {
    exp_bits: 8,
    frac_bits: 23,
};
const FD: Fmt = Fmt {
    exp_bits: 11,
    frac_bits: 52,
};

impl Fmt {
    fn bias(self) -> i64 {
        (1 << (self.exp_bits - 1)) - 1
    }
    fn emask(self) -> u64 {
        (1 << self.exp_bits) - 1
    }
    fn fmask(self) -> u64 {
        (1 << self.frac_bits) - 1
    }
    fn sign(self) -> u64 {
        1 << (self.exp_bits + self.frac_bits)
    }
    fn make(self, neg: bool, e: u64, frac: u64) -> u64 {
        (if neg { self.sign() } else { 0 })
            | ((e & self.emask()) << self.frac_bits)
            | (frac & self.fmask())
    }
    fn exp_of(self, x: u64) -> i64 {
        ((x >> self.frac_bits) & self.emask()) as i64
    }
    fn specials(self) -> Vec<u64> {
        let f = self.fmask();
        let e = self.emask();
        let q = 1 << (self.frac_bits - 1);
        let one = self.bias() as u64;
        let mut v = vec![
            self.make(false, 0, 0),
            self.make(false, e, 0),
            self.make(false, e, q),
            self.make(false, e, 1),
            self.make(false, e, q >> 1),
            self.make(false, e, f),
            self.make(false, e, q | 1),
            self.make(false, 0, 1),
            self.make(false, 0, 2),
            self.make(false, 0, f),
            self.make(false, 0, q),
            self.make(false, 1, 0),
            self.make(false, 1, 1),
            self.make(false, e - 1, f),
            self.make(false, e - 1, f - 1),
            self.make(false, e - 1, 0),
            self.make(false, one, 0),
            self.make(false, one, 1),
            self.make(false, one - 1, f),
            self.make(false, one + 1, 0),
            self.make(false, one, q),
        ];
        let neg: Vec<u64> = v.iter().map(|x| x | self.sign()).collect();
        v.extend(neg);
        v
    }
    /// A small set of specials whose cross product is tested exhaustively.
    fn grid(self) -> [u64; 10] {
        let e = self.emask();
        let one = self.bias() as u64;
        let q = 1 << (self.frac_bits - 1);
        [
            self.make(false, 0, 0),
            self.make(true, 0, 0),
            self.make(false, e, 0),
            self.make(true, e, 0),
            self.make(false, e, q),
            self.make(true, e, 1),
            self.make(false, one, 0),
            self.make(true, one, 1),
            self.make(false, 0, 1),
            self.make(true, e - 1, self.fmask()),
        ]
    }
    fn random_frac(self, rng: &mut Rng) -> u64 {
        match rng.below(5) {
            0 => self.fmask() ^ (rng.next() & rng.next() & 0xff),
            1 => rng.next() & !(rng.next() >> rng.below(64)) & self.fmask(),
            2 => rng.next() >> (64 - self.frac_bits.min(rng.below(8) as u32 + 1)),
            _ => rng.next() & self.fmask(),
        }
    }
    /// A value of a random kind: specials, subnormals, near overflow, around
    /// one, few-bit significands (for ties), fully random bits.
    fn value(self, rng: &mut Rng) -> u64 {
        let neg = rng.coin();
        let e = self.emask();
        match rng.below(16) {
            0..=2 => rng.next() & (self.sign() | (self.sign() - 1)),
            3 => {
                let sp = self.specials();
                sp[rng.below(sp.len() as u64) as usize]
            }
            4 | 5 => self.make(neg, rng.below(3), self.random_frac(rng)),
            6 => self.make(neg, e - 1 - rng.below(3), self.random_frac(rng)),
            7..=11 => {
                let b = self.bias() as u64;
                self.make(neg, b - 30 + rng.below(60), self.random_frac(rng))
            }
            _ => self.make(neg, 1 + rng.below(e - 1), self.random_frac(rng)),
        }
    }
    /// A value whose exponent is `target` biased away from `x`'s, keeping
    /// results near the subnormal or overflow boundaries.
    fn with_exp(self, rng: &mut Rng, exp: i64) -> u64 {
        let exp = exp.clamp(0, self.emask() as i64 - 1) as u64;
        self.make(rng.coin(), exp, self.random_frac(rng))
    }
    fn encode(self, x: f64) -> u64 {
        if self.exp_bits == 8 {
            (x as f32).to_bits() as u64
        } else {
            x.to_bits()
        }
    }
    fn decode(self, x: u64) -> f64 {
        if self.exp_bits == 8 {
            f32::from_bits(x as u32) as f64
        } else {
            f64::from_bits(x)
        }
    }
    /// A value near a rounding boundary where underflow, tininess after
    /// rounding or overflow get decided: the smallest normal, the largest
    /// finite, or a small multiple of the smallest subnormal.
    fn boundary(self) -> [f64; 3] {
        let emin = 1 - self.bias() as i32;
        let max = self.decode(self.make(false, self.emask() - 1, self.fmask()));
        let tiny = (2f64).powi(emin - self.frac_bits as i32);
        [(2f64).powi(emin), max, tiny * 3.0]
    }
    /// `x` nudged by a few units in the last place (bits stay in the format).
    fn nudge(self, rng: &mut Rng, x: u64) -> u64 {
        let mask = self.sign() | (self.sign() - 1);
        x.wrapping_add(rng.below(7)).wrapping_sub(3) & mask
    }
    /// An operand `b` with `a op b` (op = multiply or divide) near a boundary.
    fn towards_boundary(self, rng: &mut Rng, a: u64, div: bool) -> u64 {
        let t = self.boundary()[rng.below(3) as usize];
        let av = self.decode(a).abs();
        let bv = if div { av / t } else { t / av };
        let b = self.encode(bv) | if rng.coin() { self.sign() } else { 0 };
        self.nudge(rng, b)
    }
    /// Operands for `op`.
    fn operands(self, rng: &mut Rng, g: Gen) -> [u64; 3] {
        let bias = self.bias();
        let a = self.value(rng);
        let mut b = self.value(rng);
        let mut c = self.value(rng);
        let j = rng.below(5) as i64;
        if g != Gen::ToInt && rng.below(8) == 0 {
            // Every operand special: covers the whole table of NaN, infinity
            // and zero combinations (inf*0 + qNaN in the fused ops, ...).
            let sp = self.specials();
            return [0; 3].map(|_| sp[rng.below(sp.len() as u64) as usize]);
        }
        match g {
            Gen::Cvt if self.exp_bits == 11 && rng.below(4) == 0 => {
                // Within about 2^-24 relative of the single-precision smallest
                // normal or largest finite: where tininess after rounding and
                // overflow get decided.
                let edge = [2f64.powi(-126), f32::MAX as f64][rng.below(2) as usize];
                let d = rng.below(1 << 31);
                let v = if rng.coin() {
                    edge.to_bits() - d
                } else {
                    edge.to_bits() + d
                };
                return [v | if rng.coin() { self.sign() } else { 0 }, 0, 0];
            }
            Gen::Cvt if self.exp_bits == 11 && rng.coin() => {
                // Doubles around the single-precision subnormal and overflow ranges.
                let k = if rng.coin() {
                    -152 + rng.below(30) as i64
                } else {
                    125 + rng.below(5) as i64
                };
                let v = self.make(rng.coin(), (self.bias() + k) as u64, self.random_frac(rng));
                return [v, 0, 0];
            }
            Gen::Arith | Gen::Cvt | Gen::FromInt => {
                if rng.below(3) == 0 {
                    // Close exponents: cancellation and rounding ties.
                    let ea = self.exp_of(a);
                    let flip =
                        rng.next() & rng.next() & self.fmask() >> rng.below(self.frac_bits as u64);
                    let e = (ea + j - 2).clamp(0, self.emask() as i64 - 1) as u64;
                    b = self.make(rng.coin(), e, (a ^ flip) & self.fmask());
                }
            }
            Gen::Mul => match rng.below(4) {
                3 => b = self.towards_boundary(rng, a, false),
                0 => b = self.with_exp(rng, 1 + bias - self.exp_of(a) + j - 3),
                1 => b = self.with_exp(rng, 3 * bias - self.exp_of(a) + j - 2),
                _ => {}
            },
            Gen::Div => match rng.below(4) {
                3 => b = self.towards_boundary(rng, a, true),
                0 => b = self.with_exp(rng, self.exp_of(a) + bias - 1 - j + 2),
                1 => b = self.with_exp(rng, self.exp_of(a) - bias + 1 + j - 2),
                _ => {}
            },
            Gen::Fma => match rng.below(4) {
                0 => {
                    // Addend nearly cancelling the product.
                    let p = self.decode(a) * self.decode(b);
                    let pb = self.encode(-p);
                    let d = rng.below(7).wrapping_sub(3);
                    c = pb.wrapping_add(d);
                }
                1 => b = self.with_exp(rng, 1 + bias - self.exp_of(a) + j - 3),
                2 => {
                    // Product at a boundary plus a tiny addend of either sign.
                    b = self.towards_boundary(rng, a, false);
                    c = self.make(rng.coin(), rng.below(2), self.random_frac(rng));
                }
                _ => {}
            },
            Gen::Cmp => match rng.below(4) {
                0 => b = a,
                1 => b = a ^ self.sign(),
                2 => {
                    b = a.wrapping_add(rng.below(3)).wrapping_sub(1)
                        & (self.sign() | (self.sign() - 1))
                }
                _ => {}
            },
            Gen::ToInt => {
                let v = match rng.below(4) {
                    0 => a,
                    1 => {
                        // Just around a power of two at the edge of some integer range.
                        let k = [31u64, 32, 63, 64, 0, 1, 24, 53][rng.below(8) as usize];
                        let p = self.encode((2f64).powi(k as i32));
                        let d = rng.below(5).wrapping_sub(2);
                        p.wrapping_add(d) | if rng.coin() { self.sign() } else { 0 }
                    }
                    _ => {
                        // An integer of random size plus a fraction, with many ties.
                        let n = (rng.next() >> rng.below(64)) as f64;
                        let fr = [0.0, 0.5, 0.25, 0.75, 0.5][rng.below(5) as usize];
                        let x = n + fr;
                        self.encode(if rng.coin() { -x } else { x })
                    }
                };
                return [v, 0, 0];
            }
        }
        [a, b, c]
    }
}

fn int_operand(rng: &mut Rng) -> u64 {
    let len = rng.below(65) as u32;
    let mut v = if len == 0 {
        0
    } else {
        rng.next() >> (64 - len)
    };
    if len > 25 && rng.below(3) == 0 {
        // A tie (or near tie) for 24- or 53-bit precision.
        let p = if rng.coin() || len <= 54 { 24 } else { 53 };
        let r = len - p - 1;
        v = (v | (1 << (len - 1))) & !((1u64 << r) - 1)
            | (1 << (r - 1)) ^ (rng.below(2) << (r - 1));
    }
    match rng.below(6) {
        0 => v.wrapping_neg(),
        1 => v as u32 as i32 as i64 as u64,
        2 => [
            0,
            1,
            u64::MAX,
            1 << 63,
            (1 << 63) - 1,
            1 << 31,
            (1 << 31) - 1,
            u32::MAX as u64,
        ][rng.below(8) as usize],
        _ => v,
    }
}

// ---------------------------------------------------------------- harness

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found: the FPU differential test needs riscv64-linux-gnu-gcc and \
             qemu-riscv64-static (Debian packages gcc-riscv64-linux-gnu and qemu-user-static)"
        )
    })
}

fn build_reference(dir: &Path, ops: &[Op]) -> PathBuf {
    let gcc = tool("riscv64-linux-gnu-gcc");
    let src = dir.join("fpu_ref.c");
    std::fs::write(&src, c_source(ops)).unwrap();
    let exe = dir.join("fpu_ref");
    let out = Command::new(gcc)
        .args(["-static", "-O1", "-march=rv64gc", "-mabi=lp64d", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("running riscv64-linux-gnu-gcc");
    assert!(
        out.status.success(),
        "compiling the reference program failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

struct Case {
    op: usize,
    rm: Rounding,
    a: u64,
    b: u64,
    c: u64,
}

fn generate(ops: &[Op], rng: &mut Rng, per_op: usize, with_grid: bool) -> Vec<Case> {
    let mut cases = Vec::with_capacity(ops.len() * per_op);
    for (i, op) in ops.iter().enumerate() {
        let fmt = if op.args.first() == Some(&Ty::D) {
            FD
        } else {
            FS
        };
        // The full cross product of a few specials first (the NaN, infinity
        // and zero table of each operation), then random operands.
        if with_grid && op.generator != Gen::FromInt {
            let grid = fmt.grid();
            let n = op.args.len() as u32;
            for k in 0..grid.len().pow(n) {
                let pick = |d: u32| grid[k / grid.len().pow(d) % grid.len()];
                let abc = [
                    pick(0),
                    if n > 1 { pick(1) } else { 0 },
                    if n > 2 { pick(2) } else { 0 },
                ];
                for &rm in &RMS {
                    cases.push(Case {
                        op: i,
                        rm,
                        a: abc[0],
                        b: abc[1],
                        c: abc[2],
                    });
                }
            }
        }
        for _ in 0..per_op / RMS.len() {
            let [a, b, c] = if op.generator == Gen::FromInt {
                [int_operand(rng), 0, 0]
            } else {
                fmt.operands(rng, op.generator)
            };
            for &rm in &RMS {
                cases.push(Case { op: i, rm, a, b, c });
            }
        }
    }
    cases
}

fn run_reference(qemu: &Path, exe: &Path, dir: &Path, cases: &[Case]) -> Vec<(u64, u64)> {
    let input = dir.join("cases.bin");
    let output = dir.join("results.bin");
    let mut buf = Vec::with_capacity(cases.len() * 32);
    for c in cases {
        buf.extend_from_slice(&(c.op as u32).to_le_bytes());
        buf.extend_from_slice(&(c.rm as u32).to_le_bytes());
        for v in [c.a, c.b, c.c] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::File::create(&input)
        .unwrap()
        .write_all(&buf)
        .unwrap();
    let st = Command::new(qemu)
        .arg(exe)
        .arg(&input)
        .arg(&output)
        .status()
        .expect("running qemu-riscv64-static");
    assert!(st.success(), "reference program failed under qemu: {st}");
    let data = std::fs::read(&output).unwrap();
    assert_eq!(
        data.len(),
        cases.len() * 16,
        "reference program produced a short output"
    );
    data.chunks_exact(16)
        .map(|ch| {
            (
                u64::from_le_bytes(ch[..8].try_into().unwrap()),
                u64::from_le_bytes(ch[8..].try_into().unwrap()),
            )
        })
        .collect()
}

fn width_mask(t: Ty) -> u64 {
    match t {
        Ty::S | Ty::W => 0xffff_ffff,
        Ty::D | Ty::L => u64::MAX,
    }
}

fn env_seed() -> u64 {
    match std::env::var("SPIN_FPU_SEED") {
        Ok(s) => {
            let s = s.trim();
            let r = if let Some(h) = s.strip_prefix("0x") {
                u64::from_str_radix(h, 16)
            } else {
                s.parse()
            };
            r.expect("SPIN_FPU_SEED must be a decimal or 0x-hex u64")
        }
        Err(_) => 0x5eed_f9a0_2026_1203,
    }
}

/// The work directory, removed however the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fpu_matches_qemu() {
    let qemu = tool("qemu-riscv64-static");
    let ops = ops();
    let scratch =
        Scratch(std::env::temp_dir().join(format!("spin-fpu-vs-qemu-{}", std::process::id())));
    let dir = &scratch.0;
    std::fs::create_dir_all(dir).unwrap();
    let exe = build_reference(dir, &ops);

    let seed = env_seed();
    let rounds: usize = match std::env::var("SPIN_FPU_SWEEP").ok().as_deref() {
        None | Some("") | Some("0") => 1,
        Some("1") => 200,
        Some(n) => n.parse().expect("SPIN_FPU_SWEEP must be a number"),
    };
    let per_op = 20_000;
    eprintln!(
        "fpu_vs_qemu: seed {seed:#x} (SPIN_FPU_SEED), {rounds} round(s) of {per_op} cases per op"
    );
    let mut rng = Rng(seed | 1);
    let mut total = 0usize;
    let mut failures = 0usize;
    let mut report = String::new();
    let mut per_op_fail = vec![0usize; ops.len()];
    let mut flag_seen = [0usize; 5];
    for round in 0..rounds {
        let cases = generate(&ops, &mut rng, per_op, round == 0);
        let reference = run_reference(&qemu, &exe, dir, &cases);
        for (case, &(want, want_fl)) in cases.iter().zip(&reference) {
            let op = &ops[case.op];
            let mut fl = Flags::default();
            let got = (op.eval)(case.a, case.b, case.c, case.rm, &mut fl);
            let mask = width_mask(op.ret);
            let (want, got) = (want & mask, got & mask);
            for (k, n) in flag_seen.iter_mut().enumerate() {
                *n += (want_fl >> k) as usize & 1;
            }
            if want != got || want_fl != fl.0 as u64 {
                failures += 1;
                per_op_fail[case.op] += 1;
                if per_op_fail[case.op] <= 4 {
                    writeln!(
                        report,
                        "{:10} {:?} a={:#x} b={:#x} c={:#x}: qemu {:#x} flags {:#04x}, ours {:#x} flags {:#04x}",
                        op.name, case.rm, case.a, case.b, case.c, want, want_fl, got, fl.0
                    )
                    .unwrap();
                }
            }
        }
        total += cases.len();
    }
    eprintln!(
        "fpu_vs_qemu: {total} cases over {} ops compared, {failures} mismatches",
        ops.len()
    );
    eprintln!(
        "fpu_vs_qemu: reference raised NX {} UF {} OF {} DZ {} NV {} times",
        flag_seen[0], flag_seen[1], flag_seen[2], flag_seen[3], flag_seen[4]
    );
    if failures > 0 {
        let summary: Vec<String> = ops
            .iter()
            .zip(&per_op_fail)
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| format!("{}: {n}", o.name))
            .collect();
        panic!(
            "{failures} of {total} cases differ from qemu (seed {seed:#x}); per op: {}\n{report}",
            summary.join(", ")
        );
    }
}
