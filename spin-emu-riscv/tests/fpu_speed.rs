//! Nanoseconds per operation of the FPU library, natively, without a benchmark
//! framework. Ignored by default (timings mean nothing in a loaded debug run):
//! `cargo test -p spin-emu-riscv --release --test fpu_speed -- --ignored --nocapture`.

use spin_emu_riscv::fpu::{self, Flags, Rounding};
use std::hint::black_box;
use std::time::Instant;

/// Operands as the guest would mostly see them: finite doubles of moderate
/// magnitude with random significands, both signs.
fn operands(n: usize, mut s: u64) -> Vec<u64> {
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let exp = 1023 - 20 + (r >> 52) % 40;
            (r & (1 << 63)) | (exp << 52) | (r & ((1 << 52) - 1))
        })
        .collect()
}

fn measure(
    name: &str,
    a: &[u64],
    b: &[u64],
    c: &[u64],
    f: impl Fn(u64, u64, u64, &mut Flags) -> u64,
) {
    // Many short runs, keeping the best: on a shared machine the minimum is
    // the run that was not preempted.
    let reps = 16;
    let mut best = f64::INFINITY;
    for _ in 0..100 {
        let mut fl = Flags::default();
        let mut acc = 0u64;
        let t = Instant::now();
        for _ in 0..reps {
            for i in 0..a.len() {
                acc ^= f(black_box(a[i]), black_box(b[i]), black_box(c[i]), &mut fl);
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / (reps * a.len()) as f64;
        black_box((acc, fl));
        best = best.min(ns);
    }
    println!("{name:8} {best:6.2} ns/op");
}

#[test]
#[ignore]
fn fpu_ns_per_op() {
    let n = 4096;
    let (a, b, c) = (operands(n, 1), operands(n, 2), operands(n, 3));
    let rm = Rounding::Rne;
    measure("add64", &a, &b, &c, |x, y, _, f| fpu::add64(x, y, rm, f));
    measure("mul64", &a, &b, &c, |x, y, _, f| fpu::mul64(x, y, rm, f));
    measure("div64", &a, &b, &c, |x, y, _, f| fpu::div64(x, y, rm, f));
    measure("sqrt64", &a, &b, &c, |x, _, _, f| {
        fpu::sqrt64(x & !(1 << 63), rm, f)
    });
    measure("fma64", &a, &b, &c, |x, y, z, f| {
        fpu::fma64(x, y, z, false, false, rm, f)
    });
    measure("add32", &a, &b, &c, |x, y, _, f| {
        fpu::add32((x >> 32) as u32, (y >> 32) as u32, rm, f) as u64
    });
    measure("mul32", &a, &b, &c, |x, y, _, f| {
        fpu::mul32((x >> 32) as u32, (y >> 32) as u32, rm, f) as u64
    });
    measure("div32", &a, &b, &c, |x, y, _, f| {
        fpu::div32((x >> 32) as u32, (y >> 32) as u32, rm, f) as u64
    });
    measure("add64rtz", &a, &b, &c, |x, y, _, f| {
        fpu::add64(x, y, Rounding::Rtz, f)
    });
    measure("mul64rdn", &a, &b, &c, |x, y, _, f| {
        fpu::mul64(x, y, Rounding::Rdn, f)
    });
    measure("fma64+", &a, &b, &c, |x, y, z, f| {
        fpu::fma64(
            x & !(1 << 63),
            y & !(1 << 63),
            z & !(1 << 63),
            false,
            false,
            rm,
            f,
        )
    });
    measure("fma32", &a, &b, &c, |x, y, z, f| {
        fpu::fma32(
            (x >> 32) as u32,
            (y >> 32) as u32,
            (z >> 32) as u32,
            false,
            false,
            rm,
            f,
        ) as u64
    });
    measure("d2w rtz", &a, &b, &c, |x, _, _, f| {
        fpu::f64_to_i32(x, Rounding::Rtz, f) as u64
    });
    measure("d2l rtz", &a, &b, &c, |x, _, _, f| {
        fpu::f64_to_i64(x, Rounding::Rtz, f) as u64
    });
    measure("w2d", &a, &b, &c, |x, _, _, f| {
        fpu::i32_to_f64(x as i32, rm, f)
    });
    measure("l2d", &a, &b, &c, |x, _, _, f| {
        fpu::i64_to_f64(x as i64 >> 12, rm, f)
    });
    measure("s2d", &a, &b, &c, |x, _, _, f| {
        fpu::f32_to_f64((x >> 32) as u32, f)
    });
    measure("d2s", &a, &b, &c, |x, _, _, f| {
        fpu::f64_to_f32(x, rm, f) as u64
    });
    measure("lt64", &a, &b, &c, |x, y, _, f| fpu::lt64(x, y, f) as u64);
    measure("min64", &a, &b, &c, |x, y, _, f| fpu::min64(x, y, f));
}
