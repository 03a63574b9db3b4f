//! The soft-float core, generic over the binary interchange format.
//!
//! Both formats share one implementation: operands are raw bits widened to
//! `u64`, finite values are unpacked to `sig * 2^exp` with an integer
//! significand, the arithmetic is done exactly (or with a sticky bit far below
//! the rounding point) in `u128`, and [`round_pack`] is the single place where
//! rounding, overflow, underflow and inexact are decided.

use super::{Flags, Rounding};

/// A binary interchange format described by its field widths.
pub(crate) trait Format {
    /// Width of the biased exponent field.
    const EXP_BITS: u32;
    /// Width of the trailing significand field (precision minus one).
    const FRAC_BITS: u32;

    const BIAS: i32 = (1 << (Self::EXP_BITS - 1)) - 1;
    const EMIN: i32 = 1 - Self::BIAS;
    const EMAX: i32 = Self::BIAS;
    const SIGN: u64 = 1 << (Self::EXP_BITS + Self::FRAC_BITS);
    const MASK: u64 = (Self::SIGN << 1).wrapping_sub(1);
    const FRAC_MASK: u64 = (1 << Self::FRAC_BITS) - 1;
    const INF: u64 = ((1 << Self::EXP_BITS) - 1) << Self::FRAC_BITS;
    const QUIET: u64 = 1 << (Self::FRAC_BITS - 1);
    const CANONICAL_NAN: u64 = Self::INF | Self::QUIET;
    const MAX_FINITE: u64 = Self::INF - 1;
}

/// IEEE 754 binary32.
pub(crate) struct F32;
/// IEEE 754 binary64.
pub(crate) struct F64;

impl Format for F32 {
    const EXP_BITS: u32 = 8;
    const FRAC_BITS: u32 = 23;
}
impl Format for F64 {
    const EXP_BITS: u32 = 11;
    const FRAC_BITS: u32 = 52;
}

/// The class of an operand as far as the arithmetic cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Zero,
    Finite,
    Inf,
    Nan,
}

/// An unpacked operand. For `Finite`, the value is `sig * 2^exp` with `sig`
/// normalised to `[2^FRAC_BITS, 2^(FRAC_BITS+1))`, subnormals included, so the
/// arithmetic never needs to special-case them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unpacked {
    pub sign: bool,
    pub kind: Kind,
    pub exp: i32,
    pub sig: u64,
}

/// Split raw bits into sign, kind and (for finite values) a normalised
/// significand and exponent.
#[inline]
pub(crate) fn unpack<T: Format>(bits: u64) -> Unpacked {
    let sign = bits & T::SIGN != 0;
    let e = ((bits >> T::FRAC_BITS) & ((1 << T::EXP_BITS) - 1)) as i32;
    let frac = bits & T::FRAC_MASK;
    let emax_field = (1 << T::EXP_BITS) - 1;
    if e == emax_field {
        let kind = if frac == 0 { Kind::Inf } else { Kind::Nan };
        return Unpacked {
            sign,
            kind,
            exp: 0,
            sig: 0,
        };
    }
    if e == 0 {
        if frac == 0 {
            return Unpacked {
                sign,
                kind: Kind::Zero,
                exp: 0,
                sig: 0,
            };
        }
        let shift = frac.leading_zeros() - (63 - T::FRAC_BITS);
        return Unpacked {
            sign,
            kind: Kind::Finite,
            exp: T::EMIN - T::FRAC_BITS as i32 - shift as i32,
            sig: frac << shift,
        };
    }
    Unpacked {
        sign,
        kind: Kind::Finite,
        exp: e - T::BIAS - T::FRAC_BITS as i32,
        sig: frac | (1 << T::FRAC_BITS),
    }
}

/// Any NaN, quiet or signalling.
#[inline]
pub(crate) fn is_nan<T: Format>(bits: u64) -> bool {
    bits & !T::SIGN & T::MASK > T::INF
}

/// A NaN with the quiet bit clear (RISC-V uses the IEEE 754-2008 convention).
#[inline]
pub(crate) fn is_snan<T: Format>(bits: u64) -> bool {
    is_nan::<T>(bits) && bits & T::QUIET == 0
}

#[inline]
fn sign_bit<T: Format>(neg: bool) -> u64 {
    if neg { T::SIGN } else { 0 }
}

/// The canonical NaN, raising NV when any of the operands that reached the NaN
/// path is signalling (RISC-V never propagates payloads).
#[inline]
fn nan_result<T: Format>(ops: &[u64], fl: &mut Flags) -> u64 {
    if ops.iter().any(|&x| is_snan::<T>(x)) {
        fl.0 |= Flags::NV;
    }
    T::CANONICAL_NAN
}

#[inline]
fn invalid<T: Format>(fl: &mut Flags) -> u64 {
    fl.0 |= Flags::NV;
    T::CANONICAL_NAN
}

/// Shift right, ORing every bit shifted out into the least significant bit.
/// Callers only use this where that bit lies strictly below the round bit, so
/// the rounding decision is the same as with the exact value.
#[inline]
pub(crate) fn shr_jam(x: u128, d: u32) -> u128 {
    if d == 0 {
        x
    } else if d >= 128 {
        (x != 0) as u128
    } else {
        (x >> d) | ((x & ((1u128 << d) - 1)) != 0) as u128
    }
}

/// [`shr_jam`] on 64 bits.
#[inline]
fn shr_jam64(x: u64, d: u32) -> u64 {
    if d == 0 {
        x
    } else if d >= 64 {
        (x != 0) as u64
    } else {
        (x >> d) | ((x & ((1u64 << d) - 1)) != 0) as u64
    }
}

/// Divide `sig` by `2^shift` and round to an integer in mode `rm` (the sign
/// only matters for the directed modes). Returns the rounded magnitude and
/// whether anything was discarded.
#[inline]
pub(crate) fn round_shift(sig: u128, shift: i32, neg: bool, rm: Rounding) -> (u128, bool) {
    if shift <= 0 {
        return (sig << (-shift) as u32, false);
    }
    let s = shift as u32;
    if s > 128 {
        // Strictly below half an ulp and not zero.
        let up = match rm {
            Rounding::Rdn => neg,
            Rounding::Rup => !neg,
            _ => false,
        };
        return (up as u128, sig != 0);
    }
    let (kept, rem) = if s == 128 {
        (0, sig)
    } else {
        (sig >> s, sig & ((1u128 << s) - 1))
    };
    let half = 1u128 << (s - 1);
    let up = match rm {
        Rounding::Rne => rem > half || (rem == half && kept & 1 == 1),
        Rounding::Rtz => false,
        Rounding::Rdn => rem != 0 && neg,
        Rounding::Rup => rem != 0 && !neg,
        Rounding::Rmm => rem >= half,
    };
    (kept + up as u128, rem != 0)
}

/// [`round_shift`] for a significand with its top bit at 63, discarding at
/// least two bits. Working in `u64` keeps the hot rounding path out of
/// multi-word arithmetic.
#[inline(always)]
fn round_shift64(sig: u64, shift: u32, neg: bool, rm: Rounding) -> (u64, bool) {
    let (kept, inexact, above_half, at_half) = if shift < 64 {
        let rem = sig & ((1u64 << shift) - 1);
        let half = 1u64 << (shift - 1);
        (sig >> shift, rem != 0, rem > half, rem == half)
    } else if shift == 64 {
        (0, true, sig > 1 << 63, sig == 1 << 63)
    } else {
        (0, true, false, false)
    };
    let up = match rm {
        Rounding::Rne => above_half || (at_half && kept & 1 == 1),
        Rounding::Rtz => false,
        Rounding::Rdn => inexact && neg,
        Rounding::Rup => inexact && !neg,
        Rounding::Rmm => above_half || at_half,
    };
    (kept + up as u64, inexact)
}

/// Round `(-1)^neg * sig * 2^exp` (sig != 0) to the format and pack it, with
/// all five modes and the NX/UF/OF flags (tininess detected after rounding).
#[inline]
pub(crate) fn round_pack<T: Format>(
    neg: bool,
    exp: i32,
    sig: u128,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    let lz = sig.leading_zeros();
    if lz >= 64 {
        round_pack64::<T>(neg, exp, sig as u64, rm, fl)
    } else {
        // Bit 0 of the result is a sticky bit, and rounding never looks at
        // fewer than 11 bits below the kept ones, so jamming is exact.
        let sh = 64 - lz;
        round_pack64::<T>(neg, exp + sh as i32, shr_jam(sig, sh) as u64, rm, fl)
    }
}

/// [`round_pack`] for a significand that fits in 64 bits.
pub(crate) fn round_pack64<T: Format>(
    neg: bool,
    exp: i32,
    sig: u64,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    debug_assert!(sig != 0);
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    let exp = exp - lz as i32;
    let frac = T::FRAC_BITS as i32;
    let e = exp + 63;
    // Exponent of the result's ulp: the normal one, clamped at the subnormal quantum.
    let q = (e - frac).max(T::EMIN - frac);
    let (m, inexact) = round_shift64(sig, (q - exp) as u32, neg, rm);
    // Biased exponent minus one, plus the significand with its hidden bit: a
    // carry out of the significand (or from the largest subnormal into the
    // smallest normal) lands in the exponent field by itself.
    let bits = if e > T::EMAX {
        T::INF
    } else {
        (((q + frac + T::BIAS - 1) as u64) << T::FRAC_BITS) + m
    };
    if bits >= T::INF {
        fl.0 |= Flags::OF | Flags::NX;
        let to_inf = match rm {
            Rounding::Rne | Rounding::Rmm => true,
            Rounding::Rtz => false,
            Rounding::Rdn => neg,
            Rounding::Rup => !neg,
        };
        let mag = if to_inf { T::INF } else { T::MAX_FINITE };
        return sign_bit::<T>(neg) | mag;
    }
    if inexact {
        fl.0 |= Flags::NX;
        if e < T::EMIN {
            // Tiny unless rounding to full precision with an unbounded
            // exponent would have carried up to the smallest normal.
            let tiny = e < T::EMIN - 1 || {
                let (m2, _) = round_shift64(sig, (63 - frac) as u32, neg, rm);
                m2 >> (T::FRAC_BITS + 1) == 0
            };
            if tiny {
                fl.0 |= Flags::UF;
            }
        }
    }
    sign_bit::<T>(neg) | bits
}

#[inline]
fn zero<T: Format>(neg: bool) -> u64 {
    sign_bit::<T>(neg)
}

/// Sign of an exact zero sum of operands with different signs.
#[inline]
fn zero_sum_sign(rm: Rounding) -> bool {
    rm == Rounding::Rdn
}

/// Add two finite nonzero values given as `(neg, exp, sig)` with their
/// significands' top bits at the same position (leaving headroom for the
/// carry), then round.
#[inline]
fn add_aligned<T: Format>(
    mut a: (bool, i32, u128),
    mut b: (bool, i32, u128),
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    if a.1 < b.1 {
        core::mem::swap(&mut a, &mut b);
    }
    let d = (a.1 - b.1) as u32;
    let bs = shr_jam(b.2, d);
    if a.0 == b.0 {
        return round_pack::<T>(a.0, a.1, a.2 + bs, rm, fl);
    }
    let (neg, mag) = if a.2 >= bs {
        (a.0, a.2 - bs)
    } else {
        (b.0, bs - a.2)
    };
    if mag == 0 {
        return zero::<T>(zero_sum_sign(rm));
    }
    round_pack::<T>(neg, a.1, mag, rm, fl)
}

/// `a + b`, or `a - b` when `negate_b`.
pub(crate) fn add<T: Format>(a: u64, b: u64, negate_b: bool, rm: Rounding, fl: &mut Flags) -> u64 {
    let ua = unpack::<T>(a);
    let mut ub = unpack::<T>(b);
    ub.sign ^= negate_b;
    if ua.kind == Kind::Nan || ub.kind == Kind::Nan {
        return nan_result::<T>(&[a, b], fl);
    }
    match (ua.kind, ub.kind) {
        (Kind::Inf, Kind::Inf) if ua.sign != ub.sign => invalid::<T>(fl),
        (Kind::Inf, _) => sign_bit::<T>(ua.sign) | T::INF,
        (_, Kind::Inf) => sign_bit::<T>(ub.sign) | T::INF,
        (Kind::Zero, Kind::Zero) => zero::<T>(if ua.sign == ub.sign {
            ua.sign
        } else {
            zero_sum_sign(rm)
        }),
        (Kind::Zero, _) => (b & !T::SIGN) | sign_bit::<T>(ub.sign),
        (_, Kind::Zero) => a,
        _ => {
            // Top bits at 62 (bit 63 takes the carry): at least 10 zero bits
            // below keep a shift by 0 or 1 exact, which is where cancellation
            // can be large; after a longer shift at most one bit cancels, so
            // the round bit stays far above the sticky bit 0.
            let sh = 62 - T::FRAC_BITS;
            let (mut x, mut y) = (ua, ub);
            if x.exp < y.exp {
                core::mem::swap(&mut x, &mut y);
            }
            let xs = x.sig << sh;
            let ys = shr_jam64(y.sig << sh, (x.exp - y.exp) as u32);
            let exp = x.exp - sh as i32;
            if x.sign == y.sign {
                return round_pack64::<T>(x.sign, exp, xs + ys, rm, fl);
            }
            let (neg, mag) = if xs >= ys {
                (x.sign, xs - ys)
            } else {
                (y.sign, ys - xs)
            };
            if mag == 0 {
                return zero::<T>(zero_sum_sign(rm));
            }
            round_pack64::<T>(neg, exp, mag, rm, fl)
        }
    }
}

/// `a * b`.
pub(crate) fn mul<T: Format>(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    let ua = unpack::<T>(a);
    let ub = unpack::<T>(b);
    let neg = ua.sign ^ ub.sign;
    if ua.kind == Kind::Nan || ub.kind == Kind::Nan {
        return nan_result::<T>(&[a, b], fl);
    }
    match (ua.kind, ub.kind) {
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf) => invalid::<T>(fl),
        (Kind::Inf, _) | (_, Kind::Inf) => sign_bit::<T>(neg) | T::INF,
        (Kind::Zero, _) | (_, Kind::Zero) => zero::<T>(neg),
        _ => round_pack::<T>(
            neg,
            ua.exp + ub.exp,
            ua.sig as u128 * ub.sig as u128,
            rm,
            fl,
        ),
    }
}

/// `a / b`.
pub(crate) fn div<T: Format>(a: u64, b: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    let ua = unpack::<T>(a);
    let ub = unpack::<T>(b);
    let neg = ua.sign ^ ub.sign;
    if ua.kind == Kind::Nan || ub.kind == Kind::Nan {
        return nan_result::<T>(&[a, b], fl);
    }
    match (ua.kind, ub.kind) {
        (Kind::Inf, Kind::Inf) | (Kind::Zero, Kind::Zero) => invalid::<T>(fl),
        (Kind::Inf, _) => sign_bit::<T>(neg) | T::INF,
        (_, Kind::Inf) => zero::<T>(neg),
        (Kind::Zero, _) => zero::<T>(neg),
        (_, Kind::Zero) => {
            fl.0 |= Flags::DZ;
            sign_bit::<T>(neg) | T::INF
        }
        _ => {
            // Dividend's top bit at 126: the quotient keeps at least 74 - FRAC
            // bits below the result's precision, and the remainder becomes a
            // sticky bit well below the round bit.
            let k = 126 - T::FRAC_BITS;
            let num = (ua.sig as u128) << k;
            let den = ub.sig as u128;
            let q = num / den;
            let r = num - q * den;
            let q = q | (r != 0) as u128;
            round_pack::<T>(neg, ua.exp - k as i32 - ub.exp, q, rm, fl)
        }
    }
}

/// Integer square root (floor) of a `u128`.
#[inline]
fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    // The host estimate is only a starting point; one Newton step and the
    // final corrections make the result exact whatever the estimate's error.
    let mut r = (n as f64).sqrt() as u128;
    if r == 0 {
        r = 1;
    }
    r = (r + n / r) >> 1;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

/// Square root; -0 stays -0, any other negative operand is invalid.
pub(crate) fn sqrt<T: Format>(a: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    let ua = unpack::<T>(a);
    match ua.kind {
        Kind::Nan => nan_result::<T>(&[a], fl),
        Kind::Zero => a,
        _ if ua.sign => invalid::<T>(fl),
        Kind::Inf => a,
        Kind::Finite => {
            let (mut sig, mut exp) = (ua.sig as u128, ua.exp);
            if exp & 1 != 0 {
                sig <<= 1;
                exp -= 1;
            }
            // sig < 2^(FRAC+2); an even shift puts it just under 2^126 so the
            // root has about 63 bits.
            let sh = (124 - T::FRAC_BITS) & !1;
            let n = sig << sh;
            let r = isqrt(n);
            let r = r | (r * r != n) as u128;
            round_pack::<T>(false, (exp - sh as i32) / 2, r, rm, fl)
        }
    }
}

/// `(+/-)(a * b) (+/-) c` with a single rounding.
pub(crate) fn fma<T: Format>(
    a: u64,
    b: u64,
    c: u64,
    negate_product: bool,
    negate_addend: bool,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    let ua = unpack::<T>(a);
    let ub = unpack::<T>(b);
    let mut uc = unpack::<T>(c);
    let pneg = ua.sign ^ ub.sign ^ negate_product;
    uc.sign ^= negate_addend;
    let inf_zero = matches!(
        (ua.kind, ub.kind),
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf)
    );
    // RISC-V raises NV for inf*0 even when the addend is a quiet NaN.
    if inf_zero {
        return invalid::<T>(fl);
    }
    if ua.kind == Kind::Nan || ub.kind == Kind::Nan || uc.kind == Kind::Nan {
        return nan_result::<T>(&[a, b, c], fl);
    }
    if ua.kind == Kind::Inf || ub.kind == Kind::Inf {
        if uc.kind == Kind::Inf && uc.sign != pneg {
            return invalid::<T>(fl);
        }
        return sign_bit::<T>(pneg) | T::INF;
    }
    if uc.kind == Kind::Inf {
        return sign_bit::<T>(uc.sign) | T::INF;
    }
    if ua.kind == Kind::Zero || ub.kind == Kind::Zero {
        if uc.kind == Kind::Zero {
            return zero::<T>(if pneg == uc.sign {
                pneg
            } else {
                zero_sum_sign(rm)
            });
        }
        return (c & !T::SIGN) | sign_bit::<T>(uc.sign);
    }
    let prod = ua.sig as u128 * ub.sig as u128;
    let pexp = ua.exp + ub.exp;
    if uc.kind == Kind::Zero {
        return round_pack::<T>(pneg, pexp, prod, rm, fl);
    }
    // Both top bits at 125: two bits of headroom, and the product's 2*P bits
    // (or the addend's P bits) stay exact under a shift by 0 or 1.
    let lz = prod.leading_zeros() - 2;
    let p3 = (pneg, pexp - lz as i32, prod << lz);
    let csh = 125 - T::FRAC_BITS;
    let c3 = (uc.sign, uc.exp - csh as i32, (uc.sig as u128) << csh);
    add_aligned::<T>(p3, c3, rm, fl)
}

/// RISC-V fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber, -0 < +0).
pub(crate) fn minmax<T: Format>(a: u64, b: u64, max: bool, fl: &mut Flags) -> u64 {
    let an = is_nan::<T>(a);
    let bn = is_nan::<T>(b);
    if is_snan::<T>(a) || is_snan::<T>(b) {
        fl.0 |= Flags::NV;
    }
    match (an, bn) {
        (true, true) => T::CANONICAL_NAN,
        (true, false) => b,
        (false, true) => a,
        _ => {
            let a_lt_b = order_key::<T>(a) < order_key::<T>(b);
            if a_lt_b != max { a } else { b }
        }
    }
}

/// A key whose unsigned order is the numeric order of non-NaN values, with
/// -0 below +0.
#[inline]
fn order_key<T: Format>(x: u64) -> u64 {
    if x & T::SIGN != 0 {
        !x & T::MASK
    } else {
        x | T::SIGN
    }
}

#[inline]
fn both_zero<T: Format>(a: u64, b: u64) -> bool {
    (a | b) & !T::SIGN & T::MASK == 0
}

/// Quiet equality.
pub(crate) fn eq<T: Format>(a: u64, b: u64, fl: &mut Flags) -> bool {
    if is_nan::<T>(a) || is_nan::<T>(b) {
        if is_snan::<T>(a) || is_snan::<T>(b) {
            fl.0 |= Flags::NV;
        }
        return false;
    }
    a == b || both_zero::<T>(a, b)
}

/// Signalling less-than.
pub(crate) fn lt<T: Format>(a: u64, b: u64, fl: &mut Flags) -> bool {
    if is_nan::<T>(a) || is_nan::<T>(b) {
        fl.0 |= Flags::NV;
        return false;
    }
    !both_zero::<T>(a, b) && order_key::<T>(a) < order_key::<T>(b)
}

/// Signalling less-or-equal.
pub(crate) fn le<T: Format>(a: u64, b: u64, fl: &mut Flags) -> bool {
    if is_nan::<T>(a) || is_nan::<T>(b) {
        fl.0 |= Flags::NV;
        return false;
    }
    both_zero::<T>(a, b) || order_key::<T>(a) <= order_key::<T>(b)
}

/// The `fclass` one-hot mask.
pub(crate) fn classify<T: Format>(a: u64) -> u64 {
    let neg = a & T::SIGN != 0;
    let mag = a & !T::SIGN & T::MASK;
    let bit = if mag > T::INF {
        if a & T::QUIET != 0 { 9 } else { 8 }
    } else if mag == T::INF {
        if neg { 0 } else { 7 }
    } else if mag == 0 {
        if neg { 3 } else { 4 }
    } else if mag < (1 << T::FRAC_BITS) {
        if neg { 2 } else { 5 }
    } else if neg {
        1
    } else {
        6
    };
    1 << bit
}

/// Convert to an integer of `width` bits (32 or 64), signed or not, returning
/// the result's two's complement bits in the low `width` bits.
pub(crate) fn to_int<T: Format>(
    a: u64,
    signed: bool,
    width: u32,
    rm: Rounding,
    fl: &mut Flags,
) -> u64 {
    let umax: u128 = (1u128 << width) - 1;
    let (max_pos, min_neg): (u128, u128) = if signed {
        ((1u128 << (width - 1)) - 1, 1u128 << (width - 1))
    } else {
        (umax, 0)
    };
    let ua = unpack::<T>(a);
    // Out of range and NaN saturate and raise NV only, never NX.
    let saturate = |neg: bool, fl: &mut Flags| -> u64 {
        fl.0 |= Flags::NV;
        let mag = if neg { min_neg } else { max_pos };
        let v = if neg { mag.wrapping_neg() } else { mag };
        (v & umax) as u64
    };
    match ua.kind {
        Kind::Nan => saturate(false, fl),
        Kind::Inf => saturate(ua.sign, fl),
        Kind::Zero => 0,
        Kind::Finite => {
            if ua.exp > 64 {
                return saturate(ua.sign, fl);
            }
            let (mag, inexact) = round_shift(ua.sig as u128, -ua.exp, ua.sign, rm);
            let limit = if ua.sign { min_neg } else { max_pos };
            if mag > limit {
                return saturate(ua.sign, fl);
            }
            if inexact {
                fl.0 |= Flags::NX;
            }
            let v = if ua.sign { mag.wrapping_neg() } else { mag };
            (v & umax) as u64
        }
    }
}

/// Convert the integer `(-1)^neg * mag` to the format.
pub(crate) fn from_int<T: Format>(neg: bool, mag: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    if mag == 0 {
        return 0;
    }
    round_pack64::<T>(neg, 0, mag, rm, fl)
}

/// Convert between formats; NaNs become the target's canonical NaN.
pub(crate) fn convert<S: Format, D: Format>(a: u64, rm: Rounding, fl: &mut Flags) -> u64 {
    let ua = unpack::<S>(a);
    match ua.kind {
        Kind::Nan => {
            nan_result::<S>(&[a], fl);
            D::CANONICAL_NAN
        }
        Kind::Inf => sign_bit::<D>(ua.sign) | D::INF,
        Kind::Zero => zero::<D>(ua.sign),
        Kind::Finite => round_pack64::<D>(ua.sign, ua.exp, ua.sig, rm, fl),
    }
}
