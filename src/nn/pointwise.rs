//! The element-wise passes of a network — bias + activation, the output layer, the
//! activation's derivative, the bias gradient — compiled per SIMD level
//! ([`multiversion!`]): the same source, so every level gives the same bits.
//!
//! `exp`, `ln`, `ln_1p` and `tanh` are the branch-free polynomials of [`math`](super::math)
//! for float32 and float64 (through [`NnFloat`]), which the compiler vectorizes inside
//! these loops: no pass calls libm.

use super::{Activation, NnFloat, LEAKY_SLOPE};
use crate::runtime::simd::multiversion;

/// `1 / (1 + e^{-z})`: 0 once `e^{-z}` overflows, 1 once it is below half an ulp of 1.
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

/// Rows of a softmax with fewer classes than [`SOFTMAX_LANES`] reduced side by side: each
/// row's max and sum is one chain of `k` steps, so several rows keep the core busy.
const SOFTMAX_ROWS: usize = 8;

/// From this many classes each row's max and sum are taken in this many interleaved chains
/// (class `j` in chain `j mod 16`), which vectorize; the chains are combined in a fixed order.
const SOFTMAX_LANES: usize = 16;

multiversion! {
    /// Softmax of each row of `out + b`: `p_ij = exp(z_ij - max_j z_ij) / sum_j exp(...)`.
    /// The exponentials are one pass over the whole block, so they vectorize whatever the
    /// number of classes; the rows' max and sum are taken [`SOFTMAX_ROWS`] rows at a time
    /// (each row in class order) below [`SOFTMAX_LANES`] classes, in 16 chains per row from
    /// there.
    pub fn bias_softmax<T: NnFloat>(out: &mut [T], b: &[T]) {
        let k = b.len();
        if k < SOFTMAX_LANES {
            let mut tiles = out.chunks_exact_mut(SOFTMAX_ROWS * k);
            for tile in &mut tiles {
                narrow_shift::<T, SOFTMAX_ROWS>(tile, b);
            }
            for row in tiles.into_remainder().chunks_exact_mut(k) {
                narrow_shift::<T, 1>(row, b);
            }
        } else {
            for row in out.chunks_exact_mut(k) {
                wide_shift(row, b);
            }
        }
        for z in out.iter_mut() {
            *z = z.exp();
        }
        if k < SOFTMAX_LANES {
            let mut tiles = out.chunks_exact_mut(SOFTMAX_ROWS * k);
            for tile in &mut tiles {
                narrow_scale::<T, SOFTMAX_ROWS>(tile, k);
            }
            for row in tiles.into_remainder().chunks_exact_mut(k) {
                narrow_scale::<T, 1>(row, k);
            }
        } else {
            for row in out.chunks_exact_mut(k) {
                wide_scale(row);
            }
        }
    }
}

/// `z = z + b`, then `z -= max_j z_j`, for `R` rows of `b.len()` classes in `tile`.
#[inline(always)]
fn narrow_shift<T: NnFloat, const R: usize>(tile: &mut [T], b: &[T]) {
    let k = b.len();
    let mut max = [T::from_f64(f64::NEG_INFINITY); R];
    for (j, &bb) in b.iter().enumerate() {
        for (r, m) in max.iter_mut().enumerate() {
            let z = &mut tile[r * k + j];
            *z += bb;
            *m = m.nan_max(*z);
        }
    }
    for (row, &m) in tile.chunks_exact_mut(k).zip(&max) {
        for z in row {
            *z -= m;
        }
    }
}

/// `p = e / sum_j e_j` for `R` rows of `k` classes in `tile`, each sum in class order.
#[inline(always)]
fn narrow_scale<T: NnFloat, const R: usize>(tile: &mut [T], k: usize) {
    let mut sum = [T::ZERO; R];
    for j in 0..k {
        for (r, s) in sum.iter_mut().enumerate() {
            *s += tile[r * k + j];
        }
    }
    for (row, &s) in tile.chunks_exact_mut(k).zip(&sum) {
        let inv = T::ONE / s;
        for z in row {
            *z *= inv;
        }
    }
}

/// [`narrow_shift`] of one row of at least [`SOFTMAX_LANES`] classes, the max in 16 chains.
#[inline(always)]
fn wide_shift<T: NnFloat>(row: &mut [T], b: &[T]) {
    let mut lanes = [T::from_f64(f64::NEG_INFINITY); SOFTMAX_LANES];
    let mut zs = row.chunks_exact_mut(SOFTMAX_LANES);
    let mut bs = b.chunks_exact(SOFTMAX_LANES);
    for (zc, bc) in (&mut zs).zip(&mut bs) {
        for ((z, &bb), m) in zc.iter_mut().zip(bc).zip(&mut lanes) {
            *z += bb;
            *m = m.nan_max(*z);
        }
    }
    for ((z, &bb), m) in zs
        .into_remainder()
        .iter_mut()
        .zip(bs.remainder())
        .zip(&mut lanes)
    {
        *z += bb;
        *m = m.nan_max(*z);
    }
    let max = lanes.iter().fold(lanes[0], |m, &l| m.nan_max(l));
    for z in row.iter_mut() {
        *z -= max;
    }
}

/// [`narrow_scale`] of one row of at least [`SOFTMAX_LANES`] classes: class `j` is added
/// into chain `j mod 16`, the chains combined pairwise (`(c0 + c8) + (c4 + c12)`, ...).
#[inline(always)]
fn wide_scale<T: NnFloat>(row: &mut [T]) {
    let mut lanes = [T::ZERO; SOFTMAX_LANES];
    let mut chunks = row.chunks_exact(SOFTMAX_LANES);
    for c in &mut chunks {
        for (s, &e) in lanes.iter_mut().zip(c) {
            *s += e;
        }
    }
    for (s, &e) in lanes.iter_mut().zip(chunks.remainder()) {
        *s += e;
    }
    let mut width = SOFTMAX_LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    let inv = T::ONE / lanes[0];
    for z in row.iter_mut() {
        *z *= inv;
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

    use crate::runtime::simd::Level;

    /// Values that reach every branch of every function: ordinary ones, large magnitudes
    /// (both saturations of exp and tanh), values near 0, subnormals of either type, ±0,
    /// ±inf and NaN.
    fn awkward<T: NnFloat>(n: usize) -> Vec<T> {
        let special = [
            0.0,
            -0.0,
            1e-40,
            -3e-42,
            1e-310,
            -5e-324,
            1e-20,
            -1e-8,
            0.624,
            -0.626,
            20.0,
            -20.0,
            90.0,
            -90.0,
            710.0,
            -710.0,
            1e30,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        (0..n)
            .map(|i| {
                if i % 5 == 0 {
                    special[(i / 5) % special.len()]
                } else {
                    ((i * 7919) % 2003) as f64 * 0.013 - 13.0
                }
            })
            .map(T::from_f64)
            .collect()
    }

    multiversion! {
        /// `x = f(x)` for the elementary function `which` (0 `exp`, 1 `ln`, 2 `ln_1p`, 3 `tanh`).
        fn elementary<T: NnFloat>(xs: &mut [T], which: u8) {
            match which {
                0 => xs.iter_mut().for_each(|x| *x = x.exp()),
                1 => xs.iter_mut().for_each(|x| *x = x.ln()),
                2 => xs.iter_mut().for_each(|x| *x = x.ln_1p()),
                _ => xs.iter_mut().for_each(|x| *x = x.tanh()),
            }
        }
    }

    /// Every element-wise pass of a network at `level` on `x` (rows of `k` values): each
    /// activation and its derivative, softmax, sigmoid with the cross-entropy terms, the
    /// bias gradient, and the elementary functions.
    fn every_pass<T: NnFloat>(level: Level, x: &[T], k: usize) -> Vec<Vec<T>> {
        let b: Vec<T> = (0..k).map(|j| T::from_f64(j as f64 * 0.3 - 1.0)).collect();
        let mut outs = Vec::new();
        for (_, g) in Activation::ALL {
            let mut a = x.to_vec();
            bias_activation(level, &mut a, &b, g);
            let mut d: Vec<T> = x.iter().rev().copied().collect();
            activation_backward(level, &mut d, &a, g);
            outs.extend([a, d]);
        }
        let mut soft = x.to_vec();
        bias_softmax(level, &mut soft, &b);
        let (mut p, mut z) = (x.to_vec(), vec![T::ZERO; x.len()]);
        bias_sigmoid(level, &mut p, &mut z, &b);
        let y: Vec<T> = (0..x.len())
            .map(|i| T::from_f64((i % 3) as f64 * 0.5))
            .collect();
        let mut d = vec![T::ZERO; x.len()];
        sigmoid_delta_and_terms(level, &mut d, &mut z, &p, &y, T::from_f64(0.01));
        let mut sums = vec![T::ZERO; k];
        column_sums(level, &mut sums, x);
        outs.extend([soft, p, d, z, sums]);
        for which in 0..4 {
            let mut e = x.to_vec();
            elementary(level, &mut e, which);
            outs.push(e);
        }
        outs
    }

    /// The bits of every output, each NaN as one canonical NaN: IEEE 754 leaves a NaN
    /// result's sign and payload open, and the optimizer folds them differently per level
    /// (sigmoid of a NaN came out +NaN at one level and -NaN at another at opt-level 1).
    fn bits<T: NnFloat>(outs: &[Vec<T>]) -> Vec<Vec<u64>> {
        outs.iter()
            .map(|o| {
                o.iter()
                    .map(|v| v.to_f64())
                    .map(|v| if v.is_nan() { f64::NAN } else { v }.to_bits())
                    .collect()
            })
            .collect()
    }

    fn same_bits_at_every_level<T: NnFloat>() {
        let levels = crate::runtime::simd::supported();
        for k in [1, 2, 3, 7, 10, 15, 16, 17, 100, 1000] {
            let x = awkward::<T>(k * 37);
            let first = bits(&every_pass(levels[0], &x, k));
            for &l in &levels[1..] {
                let other = bits(&every_pass(l, &x, k));
                for (i, (a, b)) in first.iter().zip(&other).enumerate() {
                    assert_eq!(a, b, "pass {i}, {k} classes, {l:?}");
                }
            }
        }
    }

    #[test]
    fn every_pass_gives_the_same_bits_at_every_simd_level_float32() {
        same_bits_at_every_level::<f32>();
    }

    #[test]
    fn every_pass_gives_the_same_bits_at_every_simd_level_float64() {
        same_bits_at_every_level::<f64>();
    }

    /// Softmax reduces narrow rows side by side and wide rows in 16 chains: the result is a
    /// distribution equal to a plain per-row evaluation within a few ulps, bit for bit below
    /// 16 classes (the same order of additions).
    #[test]
    fn softmax_matches_a_per_row_evaluation_at_every_width() {
        for k in [2, 3, 10, 15, 16, 17, 31, 100, 1000, 3001] {
            let rows = 13;
            let x: Vec<f64> = (0..rows * k)
                .map(|i| ((i * 7919) % 1013) as f64 * 0.03 - 15.0)
                .collect();
            let b: Vec<f64> = (0..k).map(|j| j as f64 * 1e-3).collect();
            let mut want = x.clone();
            for row in want.chunks_exact_mut(k) {
                for (z, bb) in row.iter_mut().zip(&b) {
                    *z += bb;
                }
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z));
                let mut sum = 0.0;
                for z in row.iter_mut() {
                    *z = (*z - max).exp();
                    sum += *z;
                }
                for z in row.iter_mut() {
                    *z /= sum;
                }
            }
            for level in crate::runtime::simd::supported() {
                let mut got = x.clone();
                bias_softmax(level, &mut got, &b);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 8.0 * f64::EPSILON * w,
                        "{k} classes, {i}: {g} {w}"
                    );
                }
                for row in got.chunks_exact(k) {
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                }
                let mut got32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                bias_softmax(level, &mut got32, &b32);
                if k < SOFTMAX_LANES {
                    // Per row in class order, as before rows were taken side by side.
                    let mut one: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                    for row in one.chunks_exact_mut(k) {
                        narrow_shift::<f32, 1>(row, &b32);
                        for z in row.iter_mut() {
                            *z = NnFloat::exp(*z);
                        }
                        narrow_scale::<f32, 1>(row, k);
                    }
                    assert_eq!(got32, one, "{k} classes");
                }
            }
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
