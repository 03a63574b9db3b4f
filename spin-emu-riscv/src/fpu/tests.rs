//! Special cases from the IEEE 754 and RISC-V F/D specifications, each with
//! the expected value derived from the spec text, plus a cross-check of the
//! round-to-nearest results against the host's IEEE arithmetic.

use super::*;

const RMS: [Rounding; 5] = [
    Rounding::Rne,
    Rounding::Rtz,
    Rounding::Rdn,
    Rounding::Rup,
    Rounding::Rmm,
];

const NX: u8 = Flags::NX;
const UF: u8 = Flags::UF;
const OF: u8 = Flags::OF;
const DZ: u8 = Flags::DZ;
const NV: u8 = Flags::NV;

const QNAN32: u32 = 0x7fc0_0000;
const NEG_QNAN32: u32 = 0xffc0_1234;
const SNAN32: u32 = 0x7f80_0001;
const INF32: u32 = 0x7f80_0000;
const NINF32: u32 = 0xff80_0000;
const MAX32: u32 = 0x7f7f_ffff;
const MIN_NORMAL32: u32 = 0x0080_0000;
const MIN_SUB32: u32 = 0x0000_0001;
const ONE32: u32 = 0x3f80_0000;
const NEG_ZERO32: u32 = 0x8000_0000;

const SNAN64: u64 = 0x7ff0_0000_0000_0001;
const QNAN64_PAYLOAD: u64 = 0xfff8_dead_beef_0000;
const INF64: u64 = 0x7ff0_0000_0000_0000;
const MAX64: u64 = 0x7fef_ffff_ffff_ffff;
const NEG_ZERO64: u64 = 0x8000_0000_0000_0000;

fn f32b(x: f32) -> u32 {
    x.to_bits()
}
fn f64b(x: f64) -> u64 {
    x.to_bits()
}

/// Run `f` with fresh flags and return its result with the flags it raised.
fn with_flags<R>(f: impl FnOnce(&mut Flags) -> R) -> (R, u8) {
    let mut fl = Flags::default();
    let r = f(&mut fl);
    (r, fl.0)
}

#[test]
fn rounding_from_bits() {
    for (i, rm) in RMS.iter().enumerate() {
        assert_eq!(Rounding::from_bits(i as u8), Some(*rm));
        assert_eq!(rm.bits(), i as u8);
    }
    for b in 5..=7 {
        assert_eq!(Rounding::from_bits(b), None);
    }
}

#[test]
fn flags_accumulate() {
    let mut fl = Flags::default();
    div32(ONE32, 0, Rounding::Rne, &mut fl);
    add32(ONE32, MIN_SUB32, Rounding::Rne, &mut fl);
    assert_eq!(fl.0, DZ | NX);
}

#[test]
fn nan_results_are_canonical() {
    for rm in RMS {
        // Invalid operations produce the canonical NaN and NV.
        assert_eq!(
            with_flags(|f| sub32(INF32, INF32, rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| mul32(INF32, 0, rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| div32(0, NEG_ZERO32, rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| div32(INF32, NINF32, rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| sqrt32(f32b(-1.0), rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| sqrt64(f64b(-1e-300), rm, f)),
            (CANONICAL_NAN64, NV)
        );
        // Quiet NaN operands: canonical result (no payload propagation), no flag.
        assert_eq!(
            with_flags(|f| add32(NEG_QNAN32, ONE32, rm, f)),
            (CANONICAL_NAN32, 0)
        );
        assert_eq!(
            with_flags(|f| mul64(QNAN64_PAYLOAD, 2, rm, f)),
            (CANONICAL_NAN64, 0)
        );
        assert_eq!(
            with_flags(|f| sqrt64(QNAN64_PAYLOAD, rm, f)),
            (CANONICAL_NAN64, 0)
        );
        // Signalling NaN operands: canonical result and NV.
        assert_eq!(
            with_flags(|f| add32(ONE32, SNAN32, rm, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| div64(SNAN64, 0, rm, f)),
            (CANONICAL_NAN64, NV)
        );
        assert_eq!(
            with_flags(|f| fma64(f64b(1.0), f64b(1.0), SNAN64, false, false, rm, f)),
            (CANONICAL_NAN64, NV)
        );
    }
}

#[test]
fn fused_inf_times_zero_is_invalid_even_with_quiet_nan_addend() {
    // The F chapter: fused multiply-add raises NV for inf*0 even when the
    // addend is a quiet NaN.
    for (np, na) in [(false, false), (false, true), (true, false), (true, true)] {
        assert_eq!(
            with_flags(|f| fma32(INF32, 0, QNAN32, np, na, Rounding::Rne, f)),
            (CANONICAL_NAN32, NV)
        );
        assert_eq!(
            with_flags(|f| fma64(0, INF64, QNAN64_PAYLOAD, np, na, Rounding::Rne, f)),
            (CANONICAL_NAN64, NV)
        );
    }
    // inf*x + (-inf) with the same effective signs cancels: invalid.
    assert_eq!(
        with_flags(|f| fma32(INF32, ONE32, INF32, false, true, Rounding::Rne, f)),
        (CANONICAL_NAN32, NV)
    );
}

#[test]
fn fused_sign_conventions() {
    let (two, three, five) = (f64b(2.0), f64b(3.0), f64b(5.0));
    let rm = Rounding::Rne;
    let mut f = Flags::default();
    assert_eq!(
        fma64(two, three, five, false, false, rm, &mut f),
        f64b(11.0)
    );
    assert_eq!(fma64(two, three, five, false, true, rm, &mut f), f64b(1.0));
    assert_eq!(fma64(two, three, five, true, false, rm, &mut f), f64b(-1.0));
    assert_eq!(fma64(two, three, five, true, true, rm, &mut f), f64b(-11.0));
    assert_eq!(f.0, 0);
    // An exact zero from opposite signs is +0, except -0 when rounding down.
    assert_eq!(
        fma64(two, three, f64b(6.0), false, true, Rounding::Rne, &mut f),
        0
    );
    assert_eq!(
        fma64(two, three, f64b(6.0), false, true, Rounding::Rdn, &mut f),
        NEG_ZERO64
    );
    // Single rounding: the product's low bits survive the cancellation.
    let a = f64b(1.0 + f64::EPSILON);
    let p = f64::from_bits(mul64(a, a, rm, &mut f));
    let err = fma64(a, a, f64b(p), false, true, rm, &mut f);
    assert_eq!(f64::from_bits(err), f64::EPSILON * f64::EPSILON);
}

#[test]
fn signed_zero_sums() {
    let one = f32b(1.0);
    let mone = f32b(-1.0);
    for rm in RMS {
        let want = if rm == Rounding::Rdn { NEG_ZERO32 } else { 0 };
        assert_eq!(with_flags(|f| add32(one, mone, rm, f)), (want, 0));
        assert_eq!(with_flags(|f| sub32(one, one, rm, f)), (want, 0));
        assert_eq!(with_flags(|f| add32(0, NEG_ZERO32, rm, f)), (want, 0));
        assert_eq!(
            with_flags(|f| add32(NEG_ZERO32, NEG_ZERO32, rm, f)),
            (NEG_ZERO32, 0)
        );
        assert_eq!(with_flags(|f| sqrt32(NEG_ZERO32, rm, f)), (NEG_ZERO32, 0));
        assert_eq!(
            with_flags(|f| mul64(NEG_ZERO64, f64b(3.0), rm, f)),
            (NEG_ZERO64, 0)
        );
    }
}

#[test]
fn infinities_and_division_by_zero() {
    let rm = Rounding::Rne;
    assert_eq!(with_flags(|f| div32(ONE32, 0, rm, f)), (INF32, DZ));
    assert_eq!(
        with_flags(|f| div32(ONE32, NEG_ZERO32, rm, f)),
        (NINF32, DZ)
    );
    assert_eq!(with_flags(|f| div32(INF32, 0, rm, f)), (INF32, 0));
    assert_eq!(with_flags(|f| div32(ONE32, INF32, rm, f)), (0, 0));
    assert_eq!(with_flags(|f| add32(INF32, MAX32, rm, f)), (INF32, 0));
    assert_eq!(with_flags(|f| sqrt64(INF64, rm, f)), (INF64, 0));
    assert_eq!(
        with_flags(|f| sqrt64(INF64 | NEG_ZERO64, rm, f)),
        (CANONICAL_NAN64, NV)
    );
}

#[test]
fn overflow_in_every_mode() {
    // IEEE 754 §7.4: to infinity for the nearest modes, to the largest finite
    // value when the mode rounds towards zero.
    let expect = |rm: Rounding, neg: bool| -> (bool, u8) {
        let to_inf = match rm {
            Rounding::Rne | Rounding::Rmm => true,
            Rounding::Rtz => false,
            Rounding::Rdn => neg,
            Rounding::Rup => !neg,
        };
        (to_inf, OF | NX)
    };
    for rm in RMS {
        for neg in [false, true] {
            let s32 = if neg { 0x8000_0000 } else { 0 };
            let s64 = if neg { NEG_ZERO64 } else { 0 };
            let (to_inf, flags) = expect(rm, neg);
            let want32 = s32 | if to_inf { INF32 } else { MAX32 };
            let want64 = s64 | if to_inf { INF64 } else { MAX64 };
            assert_eq!(
                with_flags(|f| mul32(MAX32 | s32, f32b(2.0), rm, f)),
                (want32, flags)
            );
            assert_eq!(
                with_flags(|f| add64(MAX64 | s64, MAX64 | s64, rm, f)),
                (want64, flags)
            );
            assert_eq!(
                with_flags(|f| f64_to_f32(f64b(1e300) | s64, rm, f)),
                (want32, flags)
            );
            assert_eq!(with_flags(|f| u64_to_f32(u64::MAX, rm, f)).1 & OF, 0);
        }
    }
    // The largest finite value plus half an ulp rounds to infinity only when
    // rounding to nearest (it is a tie, and max has an odd significand).
    let half_ulp = f32b(2f32.powi(103));
    assert_eq!(
        with_flags(|f| add32(MAX32, half_ulp, Rounding::Rne, f)),
        (INF32, OF | NX)
    );
    assert_eq!(
        with_flags(|f| add32(MAX32, half_ulp, Rounding::Rtz, f)),
        (MAX32, NX)
    );
}

#[test]
fn subnormals_and_underflow() {
    let half = f32b(0.5);
    // Exact subnormal results raise nothing: no underflow without inexact.
    assert_eq!(
        with_flags(|f| mul32(MIN_NORMAL32, half, Rounding::Rne, f)),
        (0x0040_0000, 0)
    );
    assert_eq!(
        with_flags(|f| sub32(0x0000_0003, 0x0000_0001, Rounding::Rne, f)),
        (2, 0)
    );
    // Half the smallest subnormal: a tie between 0 and the smallest subnormal.
    for (rm, want) in [
        (Rounding::Rne, 0),
        (Rounding::Rtz, 0),
        (Rounding::Rdn, 0),
        (Rounding::Rup, MIN_SUB32),
        (Rounding::Rmm, MIN_SUB32),
    ] {
        assert_eq!(
            with_flags(|f| mul32(MIN_SUB32, half, rm, f)),
            (want, UF | NX),
            "{rm:?}"
        );
    }
    // Subnormal operands are used, not flushed.
    assert_eq!(
        with_flags(|f| add32(MIN_SUB32, MIN_SUB32, Rounding::Rne, f)),
        (2, 0)
    );
    assert_eq!(
        with_flags(|f| div64(1, f64b(0.5), Rounding::Rne, f)),
        (2, 0)
    );
    assert_eq!(
        with_flags(|f| sqrt64(4, Rounding::Rne, f)),
        (f64b(2f64.powi(-536)), 0)
    );
}

#[test]
fn tininess_is_detected_after_rounding() {
    // 2^-126 * (1 - 2^-40) rounded to 24 bits with an unbounded exponent is
    // 2^-126 in RNE and RUP: not tiny, so only NX (before-rounding detection
    // would also raise UF). Rounding towards zero keeps it below 2^-126: tiny.
    let x = f64b(2f64.powi(-126) * (1.0 - 2f64.powi(-40)));
    assert_eq!(
        with_flags(|f| f64_to_f32(x, Rounding::Rne, f)),
        (MIN_NORMAL32, NX)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(x, Rounding::Rup, f)),
        (MIN_NORMAL32, NX)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(x, Rounding::Rtz, f)),
        (0x007f_ffff, UF | NX)
    );
    // 2^-126 * (1 - 2^-24) has 24 significant bits: rounding with an unbounded
    // exponent leaves it below 2^-126, so it is tiny even though the
    // subnormal rounding carries up to 2^-126.
    let y = f64b(2f64.powi(-126) * (1.0 - 2f64.powi(-24)));
    assert_eq!(
        with_flags(|f| f64_to_f32(y, Rounding::Rne, f)),
        (MIN_NORMAL32, UF | NX)
    );
}

#[test]
fn min_max() {
    let one = f32b(1.0);
    let mut f = Flags::default();
    assert_eq!(min32(0, NEG_ZERO32, &mut f), NEG_ZERO32);
    assert_eq!(min32(NEG_ZERO32, 0, &mut f), NEG_ZERO32);
    assert_eq!(max32(NEG_ZERO32, 0, &mut f), 0);
    assert_eq!(max32(0, NEG_ZERO32, &mut f), 0);
    assert_eq!(min32(QNAN32, one, &mut f), one);
    assert_eq!(max32(one, NEG_QNAN32, &mut f), one);
    assert_eq!(min32(QNAN32, NEG_QNAN32, &mut f), CANONICAL_NAN32);
    assert_eq!(f.0, 0);
    assert_eq!(with_flags(|f| min32(SNAN32, one, f)), (one, NV));
    assert_eq!(
        with_flags(|f| max64(SNAN64, SNAN64, f)),
        (CANONICAL_NAN64, NV)
    );
    assert_eq!(with_flags(|f| max32(NINF32, INF32, f)), (INF32, 0));
    assert_eq!(
        with_flags(|f| min64(f64b(-2.0), f64b(-3.0), f)),
        (f64b(-3.0), 0)
    );
}

#[test]
fn comparisons() {
    let one = f32b(1.0);
    // feq is quiet: NV only for a signalling NaN.
    assert_eq!(with_flags(|f| eq32(QNAN32, QNAN32, f)), (false, 0));
    assert_eq!(with_flags(|f| eq32(SNAN32, one, f)), (false, NV));
    assert_eq!(with_flags(|f| eq32(0, NEG_ZERO32, f)), (true, 0));
    // flt and fle signal on any NaN.
    assert_eq!(with_flags(|f| lt32(QNAN32, one, f)), (false, NV));
    assert_eq!(with_flags(|f| le64(1, QNAN64_PAYLOAD, f)), (false, NV));
    assert_eq!(with_flags(|f| lt32(NEG_ZERO32, 0, f)), (false, 0));
    assert_eq!(with_flags(|f| le32(0, NEG_ZERO32, f)), (true, 0));
    assert_eq!(
        with_flags(|f| lt32(NINF32, MIN_SUB32 | 0x8000_0000, f)),
        (true, 0)
    );
    assert_eq!(with_flags(|f| lt64(f64b(-2.0), f64b(-1.0), f)), (true, 0));
    assert_eq!(with_flags(|f| le64(f64b(-1.0), f64b(-2.0), f)), (false, 0));
}

#[test]
fn classes() {
    // The fclass bit assignment of the F chapter.
    let cases32 = [
        (NINF32, 0),
        (f32b(-1.0), 1),
        (0x8000_0001, 2),
        (NEG_ZERO32, 3),
        (0, 4),
        (MIN_SUB32, 5),
        (ONE32, 6),
        (INF32, 7),
        (SNAN32, 8),
        (NEG_QNAN32, 9),
    ];
    for (x, bit) in cases32 {
        assert_eq!(classify32(x), 1 << bit, "{x:#x}");
    }
    assert_eq!(classify64(SNAN64), 1 << 8);
    assert_eq!(classify64(QNAN64_PAYLOAD), 1 << 9);
    assert_eq!(classify64(0x000f_ffff_ffff_ffff), 1 << 5);
    assert_eq!(classify64(MAX64 | NEG_ZERO64), 1 << 1);
}

#[test]
fn float_to_int_out_of_range() {
    // The F chapter's table: NaN and too large positive give the largest
    // value, too large negative the smallest, with NV and never NX.
    let rm = Rounding::Rtz;
    assert_eq!(with_flags(|f| f32_to_i32(QNAN32, rm, f)), (i32::MAX, NV));
    assert_eq!(
        with_flags(|f| f32_to_i32(NEG_QNAN32, rm, f)),
        (i32::MAX, NV)
    );
    assert_eq!(with_flags(|f| f32_to_i32(INF32, rm, f)), (i32::MAX, NV));
    assert_eq!(with_flags(|f| f32_to_i32(NINF32, rm, f)), (i32::MIN, NV));
    assert_eq!(
        with_flags(|f| f32_to_i32(f32b(2147483648.0), rm, f)),
        (i32::MAX, NV)
    );
    assert_eq!(
        with_flags(|f| f32_to_i32(f32b(-2147483648.0), rm, f)),
        (i32::MIN, 0)
    );
    assert_eq!(with_flags(|f| f32_to_u32(QNAN32, rm, f)), (u32::MAX, NV));
    assert_eq!(with_flags(|f| f32_to_u32(NINF32, rm, f)), (0, NV));
    assert_eq!(with_flags(|f| f32_to_u32(f32b(-1.0), rm, f)), (0, NV));
    assert_eq!(
        with_flags(|f| f32_to_u64(f32b(1.9e19), rm, f)),
        (u64::MAX, NV)
    );
    assert_eq!(with_flags(|f| f32_to_i64(SNAN32, rm, f)), (i64::MAX, NV));
    assert_eq!(
        with_flags(|f| f64_to_i64(f64b(9.3e18), rm, f)),
        (i64::MAX, NV)
    );
    assert_eq!(
        with_flags(|f| f64_to_i64(f64b(-9.3e18), rm, f)),
        (i64::MIN, NV)
    );
    assert_eq!(with_flags(|f| f64_to_u64(INF64, rm, f)), (u64::MAX, NV));
    assert_eq!(
        with_flags(|f| f64_to_i32(f64b(-2147483648.9), rm, f)),
        (i32::MIN, NX)
    );
    assert_eq!(
        with_flags(|f| f64_to_i32(f64b(-2147483649.0), rm, f)),
        (i32::MIN, NV)
    );
    // Rounding decides the range check: 4294967295.5 fits only when rounded down.
    let x = f64b(4294967295.5);
    assert_eq!(
        with_flags(|f| f64_to_u32(x, Rounding::Rtz, f)),
        (u32::MAX, NX)
    );
    assert_eq!(
        with_flags(|f| f64_to_u32(x, Rounding::Rne, f)),
        (u32::MAX, NV)
    );
    // Negative values that round to zero are fine for unsigned results.
    assert_eq!(
        with_flags(|f| f32_to_u32(f32b(-0.5), Rounding::Rtz, f)),
        (0, NX)
    );
    assert_eq!(
        with_flags(|f| f32_to_u32(f32b(-0.5), Rounding::Rne, f)),
        (0, NX)
    );
    assert_eq!(
        with_flags(|f| f32_to_u32(f32b(-0.5), Rounding::Rdn, f)),
        (0, NV)
    );
    assert_eq!(
        with_flags(|f| f64_to_u64(NEG_ZERO64, Rounding::Rdn, f)),
        (0, 0)
    );
}

#[test]
fn float_to_int_rounding() {
    let cases: [(f64, [i64; 5]); 6] = [
        (2.5, [2, 2, 2, 3, 3]),
        (3.5, [4, 3, 3, 4, 4]),
        (-2.5, [-2, -2, -3, -2, -3]),
        (0.3, [0, 0, 0, 1, 0]),
        (-0.7, [-1, 0, -1, 0, -1]),
        (1e-30, [0, 0, 0, 1, 0]),
    ];
    for (x, wants) in cases {
        for (rm, want) in RMS.iter().zip(wants) {
            assert_eq!(
                with_flags(|f| f64_to_i64(f64b(x), *rm, f)),
                (want, NX),
                "{x} {rm:?}"
            );
            assert_eq!(
                with_flags(|f| f32_to_i32(f32b(x as f32), *rm, f)),
                (want as i32, NX)
            );
        }
    }
    assert_eq!(
        with_flags(|f| f64_to_i64(f64b(-7.0), Rounding::Rup, f)),
        (-7, 0)
    );
}

#[test]
fn int_to_float() {
    // 2^24 + 1 is a tie between 2^24 and 2^24 + 2 in single precision.
    let v = (1 << 24) + 1;
    let wants = [
        16777216.0f32,
        16777216.0,
        16777216.0,
        16777218.0,
        16777218.0,
    ];
    for (rm, want) in RMS.iter().zip(wants) {
        assert_eq!(with_flags(|f| i32_to_f32(v, *rm, f)), (f32b(want), NX));
        assert_eq!(with_flags(|f| i32_to_f32(-v, *rm, f)).1, NX);
    }
    assert_eq!(
        with_flags(|f| i32_to_f32(-v, Rounding::Rdn, f)),
        (f32b(-16777218.0), NX)
    );
    assert_eq!(
        with_flags(|f| u64_to_f32(u64::MAX, Rounding::Rtz, f)),
        (0x5f7f_ffff, NX)
    );
    assert_eq!(
        with_flags(|f| u64_to_f32(u64::MAX, Rounding::Rne, f)),
        (0x5f80_0000, NX)
    );
    assert_eq!(
        with_flags(|f| i64_to_f64(i64::MIN, Rounding::Rne, f)),
        (f64b(-9223372036854775808.0), 0)
    );
    assert_eq!(
        with_flags(|f| u32_to_f64(u32::MAX, Rounding::Rne, f)),
        (f64b(4294967295.0), 0)
    );
    assert_eq!(with_flags(|f| i32_to_f64(0, Rounding::Rdn, f)), (0, 0));
    assert_eq!(
        with_flags(|f| u64_to_f64((1 << 53) + 1, Rounding::Rne, f)),
        (f64b(9007199254740992.0), NX)
    );
}

#[test]
fn format_conversions() {
    assert_eq!(with_flags(|f| f32_to_f64(SNAN32, f)), (CANONICAL_NAN64, NV));
    assert_eq!(
        with_flags(|f| f32_to_f64(NEG_QNAN32, f)),
        (CANONICAL_NAN64, 0)
    );
    assert_eq!(
        with_flags(|f| f32_to_f64(MIN_SUB32, f)),
        (f64b(2f64.powi(-149)), 0)
    );
    assert_eq!(
        with_flags(|f| f32_to_f64(NINF32, f)),
        (INF64 | NEG_ZERO64, 0)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(SNAN64, Rounding::Rne, f)),
        (CANONICAL_NAN32, NV)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(NEG_ZERO64, Rounding::Rne, f)),
        (NEG_ZERO32, 0)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(1, Rounding::Rup, f)),
        (MIN_SUB32, UF | NX)
    );
    assert_eq!(
        with_flags(|f| f64_to_f32(f64b(0.1), Rounding::Rne, f)),
        (f32b(0.1), NX)
    );
}

/// xorshift64* for the host cross-check.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn round_to_nearest_matches_host_ieee_arithmetic() {
    // The host's +, -, *, / and sqrt are correctly rounded to nearest even,
    // so their results (not their flags) are a second reference.
    let mut s = 0x1234_5678_9abc_def1u64;
    let rm = Rounding::Rne;
    let mut f = Flags::default();
    for _ in 0..200_000 {
        let (a, b) = (next(&mut s), next(&mut s));
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        if x.is_nan() || y.is_nan() {
            continue;
        }
        let canon = |r: f64| {
            if r.is_nan() {
                CANONICAL_NAN64
            } else {
                r.to_bits()
            }
        };
        assert_eq!(add64(a, b, rm, &mut f), canon(x + y), "{x:e} + {y:e}");
        assert_eq!(sub64(a, b, rm, &mut f), canon(x - y), "{x:e} - {y:e}");
        assert_eq!(mul64(a, b, rm, &mut f), canon(x * y), "{x:e} * {y:e}");
        assert_eq!(div64(a, b, rm, &mut f), canon(x / y), "{x:e} / {y:e}");
        assert_eq!(sqrt64(a, rm, &mut f), canon(x.sqrt()), "sqrt {x:e}");
        let (a, b) = (a as u32, b as u32);
        let (x, y) = (f32::from_bits(a), f32::from_bits(b));
        if x.is_nan() || y.is_nan() {
            continue;
        }
        let canon = |r: f32| {
            if r.is_nan() {
                CANONICAL_NAN32
            } else {
                r.to_bits()
            }
        };
        assert_eq!(add32(a, b, rm, &mut f), canon(x + y), "{x:e} + {y:e}");
        assert_eq!(mul32(a, b, rm, &mut f), canon(x * y), "{x:e} * {y:e}");
        assert_eq!(div32(a, b, rm, &mut f), canon(x / y), "{x:e} / {y:e}");
        assert_eq!(sqrt32(a, rm, &mut f), canon(x.sqrt()), "sqrt {x:e}");
        // Rust's `as` conversions round to nearest even as well.
        let (w, z) = (next(&mut s), f64::from_bits(next(&mut s)));
        if !z.is_nan() {
            assert_eq!(
                f64_to_f32(z.to_bits(), rm, &mut f),
                (z as f32).to_bits(),
                "{z:e}"
            );
        }
        assert_eq!(u64_to_f64(w, rm, &mut f), (w as f64).to_bits());
        assert_eq!(
            i64_to_f32(w as i64, rm, &mut f),
            (w as i64 as f32).to_bits()
        );
    }
}

/// A double of moderate magnitude with a random number of significant bits,
/// so that products and sums often land exactly on or next to rounding
/// midpoints.
fn few_bits_double(s: &mut u64) -> u64 {
    let r = next(s);
    let keep = 1 + (r % 53);
    let frac = next(s) & !((1u64 << (53 - keep)) - 1) & ((1 << 52) - 1);
    let exp = 1023 - 40 + (r >> 8) % 80;
    ((r >> 63) << 63) | (exp << 52) | frac
}

#[test]
fn fma64_fast_path_matches_soft_core() {
    // The host-arithmetic path for fma.d in RNE against the integer core
    // (itself checked against qemu): random operands, few-bit operands, and
    // addends that nearly cancel the product.
    // SPIN_FPU_SWEEP=1 (as for the qemu comparison) runs 30 times as many.
    let n: u32 = if std::env::var("SPIN_FPU_SWEEP").is_ok_and(|v| v != "0" && !v.is_empty()) {
        90_000_000
    } else {
        3_000_000
    };
    let mut s = 0x0f0f_1234_5678_9abcu64;
    for i in 0..n {
        let (a, b) = if i % 2 == 0 {
            (few_bits_double(&mut s), few_bits_double(&mut s))
        } else {
            (next(&mut s), next(&mut s))
        };
        let c = match i % 5 {
            0 | 1 => {
                let p = f64::from_bits(a) * f64::from_bits(b);
                let d = next(&mut s) % 9;
                (-p).to_bits().wrapping_add(d).wrapping_sub(4)
            }
            2 => few_bits_double(&mut s),
            _ => next(&mut s),
        };
        let (np, na) = (next(&mut s) & 1 == 1, i % 3 == 0);
        let mut f1 = Flags::default();
        let mut f2 = Flags::default();
        let got = fma64(a, b, c, np, na, Rounding::Rne, &mut f1);
        let want = soft::fma::<soft::F64>(a, b, c, np, na, Rounding::Rne, &mut f2);
        assert_eq!(
            (got, f1),
            (want, f2),
            "fma64({a:#x}, {b:#x}, {c:#x}, {np}, {na})"
        );
    }
}
