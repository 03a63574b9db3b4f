//! Fast paths in front of the soft-float core.
//!
//! In round-to-nearest-even the host's `+ - * / sqrt` already give the right
//! bits: IEEE 754 requires correct rounding, x86-64 (SSE2, default MXCSR) and
//! wasm32 both provide it, and Rust never changes the host rounding mode.
//! What the host does not give is the flags, so a fast path is only taken
//! when they can be derived cheaply and exactly:
//! - every operand is finite and the result is finite, nonzero and strictly
//!   above the smallest normal, so OF, UF (tininess after rounding), DZ and NV
//!   are all clear and the sign rules for zero sums do not arise;
//! - NX is decided by an exact test (error-free transformation for sums,
//!   integer arithmetic on the significands for the rest).
//!
//! Single-precision add, sub, mul and fma in every mode go through double
//! precision rounded to odd (see `add_to_odd`), and the conversions have
//! their own exact shortcuts. Everything else (other modes, NaNs,
//! infinities, zeros, tiny or huge results) goes to the soft core, which is
//! the reference behaviour.

use super::soft::{self, F32, F64};
use super::{Flags, Rounding};

macro_rules! fast_format {
    ($fmt:ty, $float:ty, $bits:ty, $frac:expr,
     $add:ident, $sub:ident, $mul:ident, $div:ident, $sqrt:ident) => {
        /// Significand with the hidden bit, and its odd part (nonzero input).
        #[inline(always)]
        fn odd_significand(x: $bits) -> u64 {
            let frac = (x as u64) & ((1 << $frac) - 1);
            let exp_field = ((x as u64) >> $frac) & ((1 << (<$bits>::BITS - 1 - $frac)) - 1);
            let m = frac | ((exp_field != 0) as u64) << $frac;
            m >> m.trailing_zeros()
        }

        /// Both operands finite and below 2^(emax-1), so no intermediate of
        /// the exactness tests can overflow.
        #[inline(always)]
        fn moderate(a: $bits, b: $bits) -> bool {
            let lim = (<$float>::MAX / 4.0).to_bits();
            (a & !(1 << (<$bits>::BITS - 1))) < lim && (b & !(1 << (<$bits>::BITS - 1))) < lim
        }

        /// A result the fast path may return: no overflow, no underflow, no zero.
        #[inline(always)]
        fn plain(r: $float) -> bool {
            r.abs() > <$float>::MIN_POSITIVE && r.is_finite()
        }

        #[inline(always)]
        fn add_rne(a: $bits, b: $bits, fl: &mut Flags) -> Option<$bits> {
            if !moderate(a, b) {
                return None;
            }
            let (x, y) = (<$float>::from_bits(a), <$float>::from_bits(b));
            let s = x + y;
            if !plain(s) {
                return None;
            }
            // Knuth's TwoSum: err is exactly (x + y) - s in round-to-nearest.
            let bv = s - x;
            let av = s - bv;
            let err = (x - av) + (y - bv);
            if err != 0.0 {
                fl.0 |= Flags::NX;
            }
            Some(s.to_bits())
        }

        pub(crate) fn $add(a: $bits, b: $bits, rm: Rounding, fl: &mut Flags) -> $bits {
            if rm == Rounding::Rne {
                if let Some(r) = add_rne(a, b, fl) {
                    return r;
                }
            }
            slow_add(a, b, false, rm, fl)
        }

        pub(crate) fn $sub(a: $bits, b: $bits, rm: Rounding, fl: &mut Flags) -> $bits {
            if rm == Rounding::Rne {
                if let Some(r) = add_rne(a, b ^ (1 << (<$bits>::BITS - 1)), fl) {
                    return r;
                }
            }
            slow_add(a, b, true, rm, fl)
        }

        pub(crate) fn $mul(a: $bits, b: $bits, rm: Rounding, fl: &mut Flags) -> $bits {
            if rm == Rounding::Rne && moderate(a, b) {
                let p = <$float>::from_bits(a) * <$float>::from_bits(b);
                if plain(p) {
                    // With a normal result the product is exact iff the
                    // product of the odd parts fits the precision.
                    let exact = odd_significand(a)
                        .checked_mul(odd_significand(b))
                        .is_some_and(|m| m >> ($frac + 1) == 0);
                    if !exact {
                        fl.0 |= Flags::NX;
                    }
                    return p.to_bits();
                }
            }
            slow_mul(a, b, rm, fl)
        }

        pub(crate) fn $div(a: $bits, b: $bits, rm: Rounding, fl: &mut Flags) -> $bits {
            if rm == Rounding::Rne && moderate(a, b) {
                let q = <$float>::from_bits(a) / <$float>::from_bits(b);
                if plain(q) && (b << 1) != 0 {
                    // a/b = (oa/ob) * 2^k with odd oa, ob: exact iff ob divides
                    // oa (the quotient then has no more bits than oa).
                    let (oa, ob) = (odd_significand(a), odd_significand(b));
                    let exact = ob == 1 || (ob <= oa && oa % ob == 0);
                    if !exact {
                        fl.0 |= Flags::NX;
                    }
                    return q.to_bits();
                }
            }
            soft::div::<$fmt>(a as u64, b as u64, rm, fl) as $bits
        }

        pub(crate) fn $sqrt(a: $bits, rm: Rounding, fl: &mut Flags) -> $bits {
            let x = <$float>::from_bits(a);
            // A root is never tiny or huge. Subnormal operands stay on the
            // soft path: there r*r could round onto x without being exact.
            if rm == Rounding::Rne && x >= <$float>::MIN_POSITIVE && x.is_finite() {
                let r = x.sqrt();
                let or = odd_significand(r.to_bits());
                let exact = or.checked_mul(or).is_some_and(|m| m >> ($frac + 1) == 0) && r * r == x;
                if !exact {
                    fl.0 |= Flags::NX;
                }
                return r.to_bits();
            }
            soft::sqrt::<$fmt>(a as u64, rm, fl) as $bits
        }
    };
}

mod single {
    use super::*;
    fast_format!(F32, f32, u32, 23, add32, sub32, mul32, div32, sqrt32);

    fn slow_add(a: u32, b: u32, negate_b: bool, rm: Rounding, fl: &mut Flags) -> u32 {
        let b = if negate_b { b ^ 0x8000_0000 } else { b };
        if finite32(a)
            && finite32(b)
            && let Some(s) = add_to_odd(f32::from_bits(a) as f64, f32::from_bits(b) as f64)
        {
            return soft::convert::<F64, F32>(s, rm, fl) as u32;
        }
        soft::add::<F32>(a as u64, b as u64, false, rm, fl) as u32
    }

    fn slow_mul(a: u32, b: u32, rm: Rounding, fl: &mut Flags) -> u32 {
        if finite32(a) && finite32(b) {
            // 24-bit significands: the double product is exact.
            let p = f32::from_bits(a) as f64 * f32::from_bits(b) as f64;
            return soft::convert::<F64, F32>(p.to_bits(), rm, fl) as u32;
        }
        soft::mul::<F32>(a as u64, b as u64, rm, fl) as u32
    }
}
mod double {
    use super::*;
    fast_format!(F64, f64, u64, 52, add64, sub64, mul64, div64, sqrt64);

    fn slow_add(a: u64, b: u64, negate_b: bool, rm: Rounding, fl: &mut Flags) -> u64 {
        soft::add::<F64>(a, b, negate_b, rm, fl)
    }

    fn slow_mul(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
        soft::mul::<F64>(a, b, rm, fl)
    }
}

// Single precision in any rounding mode through double precision rounded to
// odd: rounding the exact value to odd at 53 bits and then to 24 bits (or
// fewer, for subnormals) in any mode gives the same result, inexactness and
// tininess as rounding the exact value directly, because 53 >= 24 + 2 (Boldo
// and Melquiond, "When double rounding is odd"). Products and sums of singles
// never leave the normal double range, so the double step has no exponent
// limits of its own.

#[inline(always)]
fn finite32(x: u32) -> bool {
    x & 0x7f80_0000 != 0x7f80_0000
}

/// `x + y` rounded to odd, as double bits; `None` for an exact zero, whose
/// sign depends on the rounding mode. Inputs must not overflow.
#[inline(always)]
fn add_to_odd(x: f64, y: f64) -> Option<u64> {
    let s = x + y;
    if s == 0.0 {
        return None;
    }
    // TwoSum: err is exactly (x + y) - s.
    let bv = s - x;
    let av = s - bv;
    let err = (x - av) + (y - bv);
    let mut bits = s.to_bits();
    if err != 0.0 && bits & 1 == 0 {
        // s is the even neighbour of the exact value: take the other one.
        if (err > 0.0) == (s > 0.0) {
            bits += 1;
        } else {
            bits -= 1;
        }
    }
    Some(bits)
}

/// `fma.s` in every mode: the product of singles is exact in double, so one
/// addition rounded to odd carries everything to the final rounding.
pub(super) fn fma32(
    a: u32,
    b: u32,
    c: u32,
    negate_product: bool,
    negate_addend: bool,
    rm: Rounding,
    fl: &mut Flags,
) -> u32 {
    if finite32(a) && finite32(b) && finite32(c) {
        let p = f32::from_bits(a) as f64 * f32::from_bits(b) as f64;
        let p = if negate_product { -p } else { p };
        let c = f32::from_bits(c) as f64;
        let c = if negate_addend { -c } else { c };
        if let Some(s) = add_to_odd(p, c) {
            return soft::convert::<F64, F32>(s, rm, fl) as u32;
        }
    }
    soft::fma::<F32>(
        a as u64,
        b as u64,
        c as u64,
        negate_product,
        negate_addend,
        rm,
        fl,
    ) as u32
}

pub(super) use double::{add64, div64, mul64, sqrt64, sub64};
pub(super) use single::{add32, div32, mul32, sqrt32, sub32};

/// Float-to-integer conversions in round-towards-zero (what C casts compile
/// to): Rust's `as` truncates, so strictly inside the destination range it
/// gives the exact RISC-V result, and NX is whether truncation changed the
/// value. At or beyond the bounds (and for NaN) the soft core decides.
macro_rules! to_int_rtz {
    ($name:ident, $float:ty, $bits:ty, $int:ty, $fmt:ty, $signed:expr) => {
        pub(super) fn $name(a: $bits, rm: Rounding, fl: &mut Flags) -> $int {
            // MIN - 1 and MAX + 1 computed in f64 are -1 (unsigned) or powers
            // of two up to rounding towards the inside of the range, so the
            // bounds are exact or conservative. The lower bound -1 for
            // unsigned lets (-1, 0) truncate to 0 with NX only, as RISC-V does.
            let lo = (<$int>::MIN as f64 - 1.0) as $float;
            let hi = (<$int>::MAX as f64 + 1.0) as $float;
            let x = <$float>::from_bits(a);
            if rm == Rounding::Rtz && x > lo && x < hi {
                let t = x as $int;
                if t as $float != x {
                    fl.0 |= Flags::NX;
                }
                return t;
            }
            soft::to_int::<$fmt>(a as u64, $signed, <$int>::BITS, rm, fl) as $int
        }
    };
}

to_int_rtz!(f32_to_i32, f32, u32, i32, F32, true);
to_int_rtz!(f32_to_u32, f32, u32, u32, F32, false);
to_int_rtz!(f32_to_i64, f32, u32, i64, F32, true);
to_int_rtz!(f32_to_u64, f32, u32, u64, F32, false);
to_int_rtz!(f64_to_i32, f64, u64, i32, F64, true);
to_int_rtz!(f64_to_u32, f64, u64, u32, F64, false);
to_int_rtz!(f64_to_i64, f64, u64, i64, F64, true);
to_int_rtz!(f64_to_u64, f64, u64, u64, F64, false);

/// Integer-to-float conversions: exact (any mode) when the magnitude fits
/// the precision, otherwise Rust's `as` (round to nearest even) in RNE, with
/// NX from converting back. Only the directed modes on wide values use the
/// soft core.
macro_rules! from_int {
    ($name:ident, $int:ty, $float:ty, $bits:ty, $prec:expr, $fmt:ty) => {
        pub(super) fn $name(v: $int, rm: Rounding, fl: &mut Flags) -> $bits {
            let r = v as $float;
            if (v as i128).unsigned_abs() >> $prec == 0 {
                return r.to_bits();
            }
            if rm == Rounding::Rne {
                // The conversion cannot overflow, and r is an integer, so
                // the comparison in i128 is exact.
                if r as i128 != v as i128 {
                    fl.0 |= Flags::NX;
                }
                return r.to_bits();
            }
            soft::from_int::<$fmt>((v as i128) < 0, (v as i128).unsigned_abs() as u64, rm, fl)
                as $bits
        }
    };
}

from_int!(i32_to_f32, i32, f32, u32, 24, F32);
from_int!(u32_to_f32, u32, f32, u32, 24, F32);
from_int!(i64_to_f32, i64, f32, u32, 24, F32);
from_int!(u64_to_f32, u64, f32, u32, 24, F32);
from_int!(i32_to_f64, i32, f64, u64, 53, F64);
from_int!(u32_to_f64, u32, f64, u64, 53, F64);
from_int!(i64_to_f64, i64, f64, u64, 53, F64);
from_int!(u64_to_f64, u64, f64, u64, 53, F64);

/// Widening is exact for every non-NaN value, subnormals included.
pub(super) fn f32_to_f64(a: u32, fl: &mut Flags) -> u64 {
    let x = f32::from_bits(a);
    if x.is_nan() {
        return soft::convert::<F32, F64>(a as u64, Rounding::Rne, fl);
    }
    (x as f64).to_bits()
}

/// Narrowing in RNE through the host when the result is a plain normal
/// single (no overflow, no tininess question).
pub(super) fn f64_to_f32(a: u64, rm: Rounding, fl: &mut Flags) -> u32 {
    let x = f64::from_bits(a);
    if rm == Rounding::Rne {
        let r = x as f32;
        if r.is_finite() && r.abs() > f32::MIN_POSITIVE {
            if r as f64 != x {
                fl.0 |= Flags::NX;
            }
            return r.to_bits();
        }
    }
    soft::convert::<F64, F32>(a, rm, fl) as u32
}

/// `fma.d`: a host-arithmetic path in RNE for operands of moderate
/// magnitude, the soft core otherwise.
pub(super) fn fma64(
    a: u64,
    b: u64,
    c: u64,
    negate_product: bool,
    negate_addend: bool,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    if rm == Rounding::Rne
        && let Some(r) = fma64_rne(a, b, c, negate_product, negate_addend, fl)
    {
        return r;
    }
    soft::fma::<F64>(a, b, c, negate_product, negate_addend, rm, fl)
}

/// Normal with an unbiased exponent in [-400, 400]: every intermediate below
/// then stays far from overflow and from the subnormal range.
#[inline(always)]
fn moderate64(x: u64) -> bool {
    ((x >> 52) & 0x7ff).wrapping_sub(1023 - 400) <= 800
}

/// `2^k` for `k` in the normal exponent range.
#[inline(always)]
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Knuth's TwoSum: `(s, e)` with `s = RN(x + y)` and `e = x + y - s` exactly.
#[inline(always)]
fn two_sum(x: f64, y: f64) -> (f64, f64) {
    let s = x + y;
    let bv = s - x;
    let av = s - bv;
    (s, (x - av) + (y - bv))
}

/// The fused multiply-add of Boldo and Melquiond ("Emulation of FMA and
/// correctly rounded sums: proved algorithms using rounding to odd", 2008):
/// with `ph + pl = a*b` exactly and `ph = RN(a*b)`, `(th, tl) = TwoSum(c, ph)`,
/// `v = RO(tl + pl)`, the result `RN(th + v)` is `RN(a*b + c)` when nothing
/// underflows or overflows. The exact product comes from integer arithmetic
/// on the significands. NX: the exact value `th + (tl + pl)` is representable
/// only if `tl + pl` is (it is tiny next to a nonzero `th`, so Sterbenz's
/// lemma would make it a difference of doubles; with `th = 0` it is `pl`),
/// and then only if the last addition is exact.
#[inline(always)]
fn fma64_rne(
    a: u64,
    b: u64,
    c: u64,
    negate_product: bool,
    negate_addend: bool,
    fl: &mut Flags,
) -> Option<u64> {
    if !(moderate64(a) && moderate64(b) && moderate64(c)) {
        return None;
    }
    const FRAC: u64 = (1 << 52) - 1;
    let ma = (a & FRAC) | (1 << 52);
    let mb = (b & FRAC) | (1 << 52);
    let p = ma as u128 * mb as u128;
    // a*b = p * 2^ep, with p in [2^104, 2^106).
    let ep = ((a >> 52) & 0x7ff) as i32 + ((b >> 52) & 0x7ff) as i32 - 2 * 1075;
    // Round p to 53 bits, nearest even, and keep the signed remainder.
    let s = 128 - 53 - p.leading_zeros();
    let hi = (p >> s) as u64;
    let rem = p as u64 & ((1 << s) - 1);
    let half = 1u64 << (s - 1);
    let up = rem > half || (rem == half && hi & 1 == 1);
    let hi = hi + up as u64;
    let lo = rem as i64 - if up { 1i64 << s } else { 0 };
    let neg_p = ((a ^ b) >> 63 != 0) ^ negate_product;
    let sign = if neg_p { -1.0 } else { 1.0 };
    let ph = sign * (hi as f64) * pow2(ep + s as i32);
    let pl = sign * (lo as f64) * pow2(ep);
    let cv = f64::from_bits(c);
    let cv = if negate_addend { -cv } else { cv };
    let (th, tl) = two_sum(cv, ph);
    let (w, werr) = two_sum(tl, pl);
    let mut vbits = w.to_bits();
    if werr != 0.0 && vbits & 1 == 0 {
        // Round to odd: step from the even neighbour to the odd one.
        if (werr > 0.0) == (w > 0.0) {
            vbits += 1;
        } else {
            vbits -= 1;
        }
    }
    let v = f64::from_bits(vbits);
    let (z, zerr) = two_sum(th, v);
    // Zero (its sign depends on the mode) and results near the subnormal
    // range are left to the soft core. Finite operands: z is never NaN.
    if z.abs() < pow2(-900) {
        return None;
    }
    if werr != 0.0 || zerr != 0.0 {
        fl.0 |= Flags::NX;
    }
    Some(z.to_bits())
}
