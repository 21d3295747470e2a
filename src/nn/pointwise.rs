//! The element-wise passes of a network — bias + activation, the output layer, the
//! activation's derivative, the bias gradient — compiled per SIMD level
//! ([`multiversion!`]): the same source, so every level gives the same bits.
//!
//! `exp` and `ln` of float32 are Cephes-style polynomials written as plain arithmetic (no
//! `mul_add`), which the compiler vectorizes; float64 calls libm (see [`NnFloat`]).

use super::{Activation, NnFloat, LEAKY_SLOPE};
use crate::runtime::simd::multiversion;

/// `e^x` in float32 to about 1 ulp (Cephes `expf`): `x = n ln 2 + r`, `|r| <= ln 2 / 2`,
/// `e^r` by a degree-7 polynomial, times `2^n` built in the exponent bits. 0 below
/// -86.64 (where `e^x < 2.6e-38`, near the smallest normal float32), +inf above 88.72,
/// NaN for NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.722_83;
    const LO: f32 = -86.643_4;
    // 1.5 * 2^23: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(LO, HI); // NaN stays NaN
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2^(n - 1) * 2, so that n = 128 (x near HI) stays finite; n >= -125 above LO.
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((n + 126) << 23) as u32);
    let e = y * scale * 2.0;
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else {
        e
    }
}

/// `ln x` in float32 to about 1 ulp (Cephes `logf`): `x = 2^e m`, `m` in
/// `[sqrt(1/2), sqrt(2))`, `ln m` by a degree-9 polynomial in `m - 1`. Subnormal inputs are
/// scaled first; `ln 0 = -inf`, `ln(+inf) = +inf`, NaN for negative numbers and NaN.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    let e0 = ((bits >> 23) & 0xff) as i32 - 126 - if tiny { 23 } else { 0 };
    // The mantissa as a number in [0.5, 1).
    let m0 = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let low = m0 < SQRT_HALF;
    let e = (if low { e0 - 1 } else { e0 }) as f32;
    let m = if low { m0 + m0 - 1.0 } else { m0 - 1.0 };
    let z = m * m;
    let p = (((((((7.037_683_6e-2 * m - 1.151_461e-1) * m + 1.167_699_9e-1) * m
        - 1.242_014_1e-1)
        * m
        + 1.424_932_3e-1)
        * m
        - 1.666_805_7e-1)
        * m
        + 2.000_071_4e-1)
        * m
        - 2.499_999_4e-1)
        * m
        + 3.333_333e-1;
    let y = p * m * z + e * -2.121_944_4e-4 - 0.5 * z;
    let r = m + y + e * 0.693_359_4;
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x.is_nan() || x < 0.0 {
        f32::NAN
    } else if x == f32::INFINITY {
        x
    } else {
        r
    }
}

/// `ln(1 + x)` through [`ln_f32`], accurate for small `x` too (Goldberg:
/// `ln(u) x / (u - 1)` with `u = 1 + x` rounded).
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    let d = u - 1.0;
    if d == 0.0 {
        x
    } else if u == f32::INFINITY {
        u
    } else {
        ln_f32(u) * x / d
    }
}

#[inline(always)]
pub fn sigmoid<T: NnFloat>(z: T) -> T {
    T::ONE / (T::ONE + (-z).exp())
}

/// `softplus(z) - y z = log(1 + exp(z)) - y z`, stable for large `|z|`.
#[inline(always)]
pub fn bce_from_logit<T: NnFloat>(z: T, y: T) -> T {
    let pos = if z > T::ZERO { z } else { T::ZERO };
    pos - y * z + (-z.abs()).exp().ln_1p()
}

/// Runs `$body` with `$n` a constant when `$len` is 1 to 8 (narrow layers: the loop over a
/// row unrolls, and the loop over rows vectorizes), else with `$n = $len`.
macro_rules! by_width {
    ($len:expr, |$n:ident| $body:expr) => {
        match $len {
            1 => {
                const $n: usize = 1;
                $body
            }
            2 => {
                const $n: usize = 2;
                $body
            }
            3 => {
                const $n: usize = 3;
                $body
            }
            4 => {
                const $n: usize = 4;
                $body
            }
            5 => {
                const $n: usize = 5;
                $body
            }
            6 => {
                const $n: usize = 6;
                $body
            }
            7 => {
                const $n: usize = 7;
                $body
            }
            8 => {
                const $n: usize = 8;
                $body
            }
            _ => {
                #[allow(non_snake_case)]
                let $n = $len;
                $body
            }
        }
    };
}

/// `out[i, j] = f(out[i, j] + b[j])` for rows of `n = b.len()` values.
#[inline(always)]
fn each_with_bias<T: NnFloat>(out: &mut [T], b: &[T], f: impl Fn(T) -> T) {
    by_width!(b.len(), |N| {
        for row in out.chunks_exact_mut(N) {
            for (z, &bb) in row[..N].iter_mut().zip(&b[..N]) {
                *z = f(*z + bb);
            }
        }
    });
}

multiversion! {
    /// `out[i, j] = g(out[i, j] + b[j])`, one pass (`out` row-major with `b.len()` columns).
    pub fn bias_activation<T: NnFloat>(out: &mut [T], b: &[T], g: Activation) {
        let slope = T::from_f64(LEAKY_SLOPE);
        match g {
            Activation::Relu => each_with_bias(out, b, |v| if v > T::ZERO { v } else { T::ZERO }),
            Activation::LeakyRelu => {
                each_with_bias(out, b, |v| if v > T::ZERO { v } else { slope * v });
            }
            Activation::Tanh => each_with_bias(out, b, NnFloat::tanh),
            Activation::Sigmoid => each_with_bias(out, b, sigmoid),
            Activation::Identity => each_with_bias(out, b, |v| v),
        }
    }
}

multiversion! {
    /// `z = out + b` (the logits, kept for the cost) and `out = sigmoid(z)`.
    pub fn bias_sigmoid<T: NnFloat>(out: &mut [T], z: &mut [T], b: &[T]) {
        z.copy_from_slice(out);
        each_with_bias(z, b, |v| v);
        for (p, &zz) in out.iter_mut().zip(z.iter()) {
            *p = sigmoid(zz);
        }
    }
}

multiversion! {
    /// Softmax of each row of `out + b`: `p_ij = exp(z_ij - max_j z_ij) / sum_j exp(...)`.
    /// The exponentials are one pass over the whole block, so they vectorize whatever
    /// the number of classes.
    pub fn bias_softmax<T: NnFloat>(out: &mut [T], b: &[T]) {
        let k = b.len();
        for row in out.chunks_exact_mut(k) {
            let mut max = T::from_f64(f64::NEG_INFINITY);
            for (z, &bb) in row.iter_mut().zip(b) {
                *z += bb;
                max = max.nan_max(*z);
            }
            for z in row.iter_mut() {
                *z -= max;
            }
        }
        for z in out.iter_mut() {
            *z = z.exp();
        }
        for row in out.chunks_exact_mut(k) {
            let mut sum = T::ZERO;
            for &z in row.iter() {
                sum += z;
            }
            let inv = T::ONE / sum;
            for z in row.iter_mut() {
                *z *= inv;
            }
        }
    }
}

multiversion! {
    /// `d *= g'(z)`, with `g'` written through `a = g(z)`.
    pub fn activation_backward<T: NnFloat>(d: &mut [T], a: &[T], g: Activation) {
        let slope = T::from_f64(LEAKY_SLOPE);
        match g {
            Activation::Relu => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d = if a <= T::ZERO { T::ZERO } else { *d };
                }
            }
            Activation::LeakyRelu => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d = if a <= T::ZERO { *d * slope } else { *d };
                }
            }
            Activation::Tanh => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d *= T::ONE - a * a;
                }
            }
            Activation::Sigmoid => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d *= a * (T::ONE - a);
                }
            }
            Activation::Identity => {}
        }
    }
}

/// Rows the column sums add in separate chains (see [`column_sums`]).
const SUM_CHAINS: usize = 4;

/// Columns [`column_sums`] adds at once: 32 float32 are two AVX-512 registers per chain.
const SUM_TILE: usize = 32;

multiversion! {
    /// `sums[j] = sum_i d[i, j]` (the bias gradient; `d` is row-major with `sums.len()`
    /// columns). Rows `i` are added in order into chain `i mod 4`, and the chains combined
    /// as `(c0 + c1) + (c2 + c3)`: otherwise a column's sum is one chain of `rows`
    /// dependent additions. Columns are summed in tiles of up to 32 held in registers.
    pub fn column_sums<T: NnFloat>(sums: &mut [T], d: &[T]) {
        let n = sums.len();
        let mut first = 0;
        while n - first >= SUM_TILE {
            chained_sums::<T, SUM_TILE>(sums, d, first);
            first += SUM_TILE;
        }
        while n - first >= 8 {
            chained_sums::<T, 8>(sums, d, first);
            first += 8;
        }
        match n - first {
            0 => {}
            1 => chained_sums::<T, 1>(sums, d, first),
            2 => chained_sums::<T, 2>(sums, d, first),
            3 => chained_sums::<T, 3>(sums, d, first),
            4 => chained_sums::<T, 4>(sums, d, first),
            5 => chained_sums::<T, 5>(sums, d, first),
            6 => chained_sums::<T, 6>(sums, d, first),
            _ => chained_sums::<T, 7>(sums, d, first),
        }
    }
}

/// [`column_sums`] of the `N` columns from `first`, in [`SUM_CHAINS`] chains of rows.
#[inline(always)]
fn chained_sums<T: NnFloat, const N: usize>(sums: &mut [T], d: &[T], first: usize) {
    let n = sums.len();
    let add = |chain: &mut [T; N], row: &[T]| {
        for (s, &v) in chain.iter_mut().zip(&row[first..first + N]) {
            *s += v;
        }
    };
    let mut chains = [[T::ZERO; N]; SUM_CHAINS];
    let mut blocks = d.chunks_exact(SUM_CHAINS * n);
    for block in &mut blocks {
        for (chain, row) in chains.iter_mut().zip(block.chunks_exact(n)) {
            add(chain, row);
        }
    }
    for (chain, row) in chains.iter_mut().zip(blocks.remainder().chunks_exact(n)) {
        add(chain, row);
    }
    let [c0, c1, c2, c3] = chains;
    for (j, s) in sums[first..first + N].iter_mut().enumerate() {
        *s = (c0[j] + c1[j]) + (c2[j] + c3[j]);
    }
}

multiversion! {
    /// Sigmoid outputs: `d = (p - y) / m` and, in place of the logits `z`, each element's
    /// binary cross-entropy `softplus(z) - y z`.
    pub fn sigmoid_delta_and_terms<T: NnFloat>(d: &mut [T], z: &mut [T], p: &[T], y: &[T], inv_m: T) {
        for (((dd, zz), &pp), &t) in d.iter_mut().zip(z.iter_mut()).zip(p).zip(y) {
            *dd = (pp - t) * inv_m;
            *zz = bce_from_logit(*zz, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulps_of_libm() {
        let mut worst = 0;
        for i in 0..=200_000 {
            let x = -86.6 + (88.7 + 86.6) * i as f32 / 200_000.0;
            let want = (f64::from(x)).exp() as f32;
            worst = worst.max(ulps(exp_f32(x), want));
        }
        assert!(worst <= 2, "worst {worst} ulps");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_two_ulps_of_libm() {
        let mut worst = 0;
        for i in 1..=200_000 {
            for x in [i as f32 / 100_000.0, i as f32 * 1e-38, i as f32 * 1e30] {
                let want = (f64::from(x)).ln() as f32;
                worst = worst.max(ulps(ln_f32(x), want));
            }
        }
        assert!(worst <= 2, "worst {worst} ulps");
        assert_eq!(ln_f32(1.0), 0.0);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan());
        for x in [1e-10f32, 1e-5, 0.3, 1.0, 1e10] {
            let want = (f64::from(x)).ln_1p() as f32;
            assert!(ulps(ln_1p_f32(x), want) <= 2, "ln_1p({x})");
        }
    }

    #[test]
    fn every_simd_level_gives_the_same_bits() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect();
        let b: Vec<f32> = (0..10).map(|i| i as f32 * 0.1).collect();
        let run = |level| {
            let mut soft = x.clone();
            bias_softmax(level, &mut soft, &b);
            let mut sig = x.clone();
            bias_activation(level, &mut sig, &b, Activation::Sigmoid);
            (soft, sig)
        };
        let levels = crate::runtime::simd::supported();
        let first = run(levels[0]);
        for &l in &levels[1..] {
            assert_eq!(run(l), first, "{l:?}");
        }
    }

    #[test]
    fn column_sums_add_rows_in_four_chains_at_every_width() {
        for (rows, n) in [
            (64, 1),
            (7, 2),
            (1, 5),
            (13, 8),
            (64, 9),
            (3, 40),
            (9, 32),
            (517, 75),
        ] {
            let d: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.4)
                .collect();
            let mut want = vec![0.0f32; n];
            for j in 0..n {
                let mut chains = [0.0f32; 4];
                for i in 0..rows {
                    chains[i % 4] += d[i * n + j];
                }
                want[j] = (chains[0] + chains[1]) + (chains[2] + chains[3]);
            }
            for level in crate::runtime::simd::supported() {
                let mut sums = vec![f32::NAN; n];
                column_sums(level, &mut sums, &d);
                assert_eq!(sums, want, "{rows}x{n} at {level:?}");
            }
        }
    }
}
