//! IEEE 754 arithmetic for the F and D extensions, bit-exact with RISC-V
//! hardware: correctly rounded in all five rounding modes, fflags exactly as
//! RISC-V accrues them (tininess after rounding), the canonical NaN for every
//! NaN result, subnormals supported throughout.
//!
//! Operands and results are raw bits (`u32` for single, `u64` for double);
//! NaN boxing of singles in the 64-bit registers is the CPU's business. The
//! core is pure integer code (see `soft`), so results do not depend on the
//! host FPU and the wasm32 build behaves exactly like the native one.

mod fast;
mod soft;
#[cfg(test)]
mod tests;

use soft::{F32, F64};

/// RISC-V rounding modes (the 3-bit `rm` field values 0..=4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Round to nearest, ties to even (rm = 0).
    Rne,
    /// Round towards zero (rm = 1).
    Rtz,
    /// Round down, towards negative infinity (rm = 2).
    Rdn,
    /// Round up, towards positive infinity (rm = 3).
    Rup,
    /// Round to nearest, ties to max magnitude (rm = 4).
    Rmm,
}

impl Rounding {
    /// Decode a 3-bit `rm`/`frm` value; 5, 6 and 7 (and DYN) are not a mode,
    /// so the CPU must resolve DYN and treat the reserved values as illegal.
    pub fn from_bits(bits: u8) -> Option<Rounding> {
        match bits {
            0 => Some(Rounding::Rne),
            1 => Some(Rounding::Rtz),
            2 => Some(Rounding::Rdn),
            3 => Some(Rounding::Rup),
            4 => Some(Rounding::Rmm),
            _ => None,
        }
    }

    /// The 3-bit encoding of this mode.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Accrued exception flags in the `fflags` layout; every operation ORs into it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Flags(pub u8);

impl Flags {
    /// Inexact.
    pub const NX: u8 = 1;
    /// Underflow (tiny after rounding and inexact).
    pub const UF: u8 = 2;
    /// Overflow.
    pub const OF: u8 = 4;
    /// Division by zero.
    pub const DZ: u8 = 8;
    /// Invalid operation.
    pub const NV: u8 = 16;
}

/// The single-precision canonical NaN (positive, quiet, zero payload).
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
/// The double-precision canonical NaN (positive, quiet, zero payload).
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

// ---------------------------------------------------------------- single

/// `fadd.s`.
pub fn add32(a: u32, b: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::add32(a, b, rm, fl)
}
/// `fsub.s`.
pub fn sub32(a: u32, b: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::sub32(a, b, rm, fl)
}
/// `fmul.s`.
pub fn mul32(a: u32, b: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::mul32(a, b, rm, fl)
}
/// `fdiv.s`.
pub fn div32(a: u32, b: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::div32(a, b, rm, fl)
}
/// `fsqrt.s`.
pub fn sqrt32(a: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::sqrt32(a, rm, fl)
}
/// The four fused multiply-adds: `fmadd.s` (no negation), `fmsub.s`
/// (`negate_addend`), `fnmsub.s` (`negate_product`), `fnmadd.s` (both).
/// Rounded once; inf*0 raises NV even when the addend is a quiet NaN.
pub fn fma32(
    a: u32,
    b: u32,
    c: u32,
    negate_product: bool,
    negate_addend: bool,
    rm: Rounding,
    fl: &mut Flags,
) -> u32 {
    fast::fma32(a, b, c, negate_product, negate_addend, rm, fl)
}
/// `fmin.s`: the smaller operand, the other one if just one is NaN, the
/// canonical NaN if both are; NV only for a signalling NaN.
pub fn min32(a: u32, b: u32, fl: &mut Flags) -> u32 {
    soft::minmax::<F32>(a as u64, b as u64, false, fl) as u32
}
/// `fmax.s`, the mirror of [`min32`].
pub fn max32(a: u32, b: u32, fl: &mut Flags) -> u32 {
    soft::minmax::<F32>(a as u64, b as u64, true, fl) as u32
}
/// `feq.s`: a quiet comparison (NV only for a signalling NaN).
pub fn eq32(a: u32, b: u32, fl: &mut Flags) -> bool {
    soft::eq::<F32>(a as u64, b as u64, fl)
}
/// `flt.s`: a signalling comparison (NV for any NaN).
pub fn lt32(a: u32, b: u32, fl: &mut Flags) -> bool {
    soft::lt::<F32>(a as u64, b as u64, fl)
}
/// `fle.s`: a signalling comparison (NV for any NaN).
pub fn le32(a: u32, b: u32, fl: &mut Flags) -> bool {
    soft::le::<F32>(a as u64, b as u64, fl)
}
/// `fclass.s`: the 10-bit class mask (bit 0 = -inf ... bit 9 = quiet NaN).
pub fn classify32(a: u32) -> u64 {
    soft::classify::<F32>(a as u64)
}
/// `fcvt.w.s`: NaN and +overflow give `i32::MAX`, -overflow `i32::MIN`, with NV.
pub fn f32_to_i32(a: u32, rm: Rounding, fl: &mut Flags) -> i32 {
    fast::f32_to_i32(a, rm, fl)
}
/// `fcvt.wu.s`: NaN and +overflow give `u32::MAX`, negative values that do
/// not round to zero give 0, with NV.
pub fn f32_to_u32(a: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::f32_to_u32(a, rm, fl)
}
/// `fcvt.l.s`, saturating like [`f32_to_i32`].
pub fn f32_to_i64(a: u32, rm: Rounding, fl: &mut Flags) -> i64 {
    fast::f32_to_i64(a, rm, fl)
}
/// `fcvt.lu.s`, saturating like [`f32_to_u32`].
pub fn f32_to_u64(a: u32, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::f32_to_u64(a, rm, fl)
}
/// `fcvt.s.w`.
pub fn i32_to_f32(v: i32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::i32_to_f32(v, rm, fl)
}
/// `fcvt.s.wu`.
pub fn u32_to_f32(v: u32, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::u32_to_f32(v, rm, fl)
}
/// `fcvt.s.l`.
pub fn i64_to_f32(v: i64, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::i64_to_f32(v, rm, fl)
}
/// `fcvt.s.lu`.
pub fn u64_to_f32(v: u64, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::u64_to_f32(v, rm, fl)
}

// ---------------------------------------------------------------- double

/// `fadd.d`.
pub fn add64(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::add64(a, b, rm, fl)
}
/// `fsub.d`.
pub fn sub64(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::sub64(a, b, rm, fl)
}
/// `fmul.d`.
pub fn mul64(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::mul64(a, b, rm, fl)
}
/// `fdiv.d`.
pub fn div64(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::div64(a, b, rm, fl)
}
/// `fsqrt.d`.
pub fn sqrt64(a: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::sqrt64(a, rm, fl)
}
/// The four fused multiply-adds in double precision; see [`fma32`].
pub fn fma64(
    a: u64,
    b: u64,
    c: u64,
    negate_product: bool,
    negate_addend: bool,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    fast::fma64(a, b, c, negate_product, negate_addend, rm, fl)
}
/// `fmin.d`; see [`min32`].
pub fn min64(a: u64, b: u64, fl: &mut Flags) -> u64 {
    soft::minmax::<F64>(a, b, false, fl)
}
/// `fmax.d`; see [`min32`].
pub fn max64(a: u64, b: u64, fl: &mut Flags) -> u64 {
    soft::minmax::<F64>(a, b, true, fl)
}
/// `feq.d`: a quiet comparison (NV only for a signalling NaN).
pub fn eq64(a: u64, b: u64, fl: &mut Flags) -> bool {
    soft::eq::<F64>(a, b, fl)
}
/// `flt.d`: a signalling comparison (NV for any NaN).
pub fn lt64(a: u64, b: u64, fl: &mut Flags) -> bool {
    soft::lt::<F64>(a, b, fl)
}
/// `fle.d`: a signalling comparison (NV for any NaN).
pub fn le64(a: u64, b: u64, fl: &mut Flags) -> bool {
    soft::le::<F64>(a, b, fl)
}
/// `fclass.d`: the 10-bit class mask.
pub fn classify64(a: u64) -> u64 {
    soft::classify::<F64>(a)
}
/// `fcvt.w.d`, saturating like [`f32_to_i32`].
pub fn f64_to_i32(a: u64, rm: Rounding, fl: &mut Flags) -> i32 {
    fast::f64_to_i32(a, rm, fl)
}
/// `fcvt.wu.d`, saturating like [`f32_to_u32`].
pub fn f64_to_u32(a: u64, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::f64_to_u32(a, rm, fl)
}
/// `fcvt.l.d`, saturating like [`f32_to_i32`].
pub fn f64_to_i64(a: u64, rm: Rounding, fl: &mut Flags) -> i64 {
    fast::f64_to_i64(a, rm, fl)
}
/// `fcvt.lu.d`, saturating like [`f32_to_u32`].
pub fn f64_to_u64(a: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::f64_to_u64(a, rm, fl)
}
/// `fcvt.d.w` (always exact).
pub fn i32_to_f64(v: i32, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::i32_to_f64(v, rm, fl)
}
/// `fcvt.d.wu` (always exact).
pub fn u32_to_f64(v: u32, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::u32_to_f64(v, rm, fl)
}
/// `fcvt.d.l`.
pub fn i64_to_f64(v: i64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::i64_to_f64(v, rm, fl)
}
/// `fcvt.d.lu`.
pub fn u64_to_f64(v: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    fast::u64_to_f64(v, rm, fl)
}

// ---------------------------------------------------------------- between formats

/// `fcvt.d.s`: exact, so it takes no rounding mode; NaNs become the
/// canonical NaN (NV for a signalling one).
pub fn f32_to_f64(a: u32, fl: &mut Flags) -> u64 {
    fast::f32_to_f64(a, fl)
}
/// `fcvt.s.d`.
pub fn f64_to_f32(a: u64, rm: Rounding, fl: &mut Flags) -> u32 {
    fast::f64_to_f32(a, rm, fl)
}
