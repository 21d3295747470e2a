//! Batch normalization's kernels ([`super::BatchNorm`]): the batch's moments, the
//! normalization fused with `gamma`, its backward pass and the running statistics' update.
//! Reductions run over the rows in order, in f64: the same bits at every thread count.

use super::NnFloat;
use crate::runtime::simd::{multiversion, Level};

/// The column means and sums of squared deviations of `z` (`(rows, n)` row-major, `n =
/// moments.len() / 2`) into `moments = [mean, sum (z - mean)^2]`, both in f64, the rows
/// added in order (two passes: the deviations from the exact mean, as torch's CPU kernel).
pub(super) fn batch_moments<T: NnFloat>(level: Level, z: &[T], moments: &mut [f64]) {
    let n = moments.len() / 2;
    let (mean, ssd) = moments.split_at_mut(n);
    column_sums_f64(level, z, mean);
    let rows = z.len() / n.max(1);
    for m in mean.iter_mut() {
        *m /= rows as f64;
    }
    deviation_sums(level, z, mean, 1.0, ssd);
}

/// One block's `moments = [sum_i z[i, j], sum_i (z[i, j] - mean_j)^2]` in f64, `mean_j` the
/// block's own column mean (merged over the blocks by `Mlp::merge_moments`).
pub(super) fn block_moments<T: NnFloat>(level: Level, z: &[T], moments: &mut [f64]) {
    let n = moments.len() / 2;
    let (sum, ssd) = moments.split_at_mut(n);
    column_sums_f64(level, z, sum);
    let rows = (z.len() / n.max(1)) as f64;
    deviation_sums(level, z, sum, 1.0 / rows, ssd);
}

multiversion! {
    /// `sums[j] = sum_i z[i, j]` in f64, the rows in order (`n = sums.len()` columns).
    pub fn column_sums_f64<T: NnFloat>(z: &[T], sums: &mut [f64]) {
        sums.fill(0.0);
        let n = sums.len();
        for row in z.chunks_exact(n) {
            let row = &row[..n];
            for j in 0..n {
                sums[j] += row[j].to_f64();
            }
        }
    }
}

multiversion! {
    /// `ssd[j] = sum_i (z[i, j] - mean[j] * scale)^2` in f64, the rows in order.
    pub fn deviation_sums<T: NnFloat>(z: &[T], mean: &[f64], scale: f64, ssd: &mut [f64]) {
        ssd.fill(0.0);
        let n = ssd.len();
        let mean = &mean[..n];
        for row in z.chunks_exact(n) {
            let row = &row[..n];
            for j in 0..n {
                let d = row[j].to_f64() - mean[j] * scale;
                ssd[j] += d * d;
            }
        }
    }
}

/// `norms[..2n] = [mu, 1 / sqrt(var + eps)]` rounded to `T`, from the batch's `moments` of
/// `rows` rows (`var = ssd / rows`, the biased variance), computed in f64.
pub(super) fn batch_norms<T: NnFloat>(moments: &[f64], rows: usize, eps: f64, norms: &mut [T]) {
    let n = moments.len() / 2;
    let (mu, inv) = norms[..2 * n].split_at_mut(n);
    for j in 0..n {
        mu[j] = T::from_f64(moments[j]);
        inv[j] = T::from_f64(1.0 / (moments[n + j] / rows as f64 + eps).sqrt());
    }
}

/// `norms[..2n] = [running_mean, 1 / sqrt(running_var + eps)]` (the inverse root in f64, rounded
/// once to `T`).
pub(super) fn running_norms<T: NnFloat>(mean: &[T], var: &[T], eps: f64, norms: &mut [T]) {
    let n = mean.len();
    let (mu, inv) = norms[..2 * n].split_at_mut(n);
    mu.copy_from_slice(mean);
    for (i, &v) in inv.iter_mut().zip(var) {
        *i = T::from_f64(1.0 / (v.to_f64() + eps).sqrt());
    }
}

multiversion! {
    /// For each row of `z` (`n = gamma.len()` columns): `xhat = (z - mu) * inv` into `xhat`
    /// and `z = gamma * xhat` (the caller adds `beta` with the activation's pass).
    pub fn normalize_rows<T: NnFloat>(z: &mut [T], xhat: &mut [T], norms: &[T], gamma: &[T]) {
        let n = gamma.len();
        let (mu, inv) = (&norms[..n], &norms[n..2 * n]);
        for (zr, xr) in z.chunks_exact_mut(n).zip(xhat.chunks_exact_mut(n)) {
            let (zr, xr) = (&mut zr[..n], &mut xr[..n]);
            for j in 0..n {
                let v = (zr[j] - mu[j]) * inv[j];
                xr[j] = v;
                zr[j] = gamma[j] * v;
            }
        }
    }
}

/// `dgamma = sum_i d_i xhat_i`, `dbeta = sum_i d_i` over the rows of `d` (`n =
/// dgamma.len()` columns), summed in f64 in row order into `acc = [dgamma, dbeta]` (`2 n`
/// values) and rounded once to `T`.
pub(super) fn affine_grads<T: NnFloat>(
    level: Level,
    d: &[T],
    xhat: &[T],
    acc: &mut [f64],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let n = dgamma.len();
    affine_sums(level, d, xhat, acc);
    for j in 0..n {
        dgamma[j] = T::from_f64(acc[j]);
        dbeta[j] = T::from_f64(acc[n + j]);
    }
}

multiversion! {
    /// `acc = [sum_i d_i xhat_i, sum_i d_i]` in f64, the rows in order (`n = acc.len() / 2`).
    pub fn affine_sums<T: NnFloat>(d: &[T], xhat: &[T], acc: &mut [f64]) {
        let n = acc.len() / 2;
        let (g, b) = acc.split_at_mut(n);
        let (g, b) = (&mut g[..n], &mut b[..n]);
        g.fill(0.0);
        b.fill(0.0);
        for (dr, xr) in d.chunks_exact(n).zip(xhat.chunks_exact(n)) {
            let (dr, xr) = (&dr[..n], &xr[..n]);
            for j in 0..n {
                let dv = dr[j].to_f64();
                b[j] += dv;
                g[j] += dv * xr[j].to_f64();
            }
        }
    }
}

/// The factors of [`normalize_backward_rows`] into `norms[2n..5n]` (`norms` holding `[mu,
/// inv]` first), from `sums = [dgamma, dbeta]` in f64 (each rounded to `T` first, as the
/// gradients are): `f = gamma inv`, and in training `dbeta / m`, `dgamma / m` (in f64,
/// rounded once), else zeros.
pub(super) fn backward_factors<T: NnFloat>(
    norms: &mut [T],
    gamma: &[T],
    sums: &[f64],
    rows: usize,
    train: bool,
) {
    let n = gamma.len();
    let (head, rest) = norms.split_at_mut(2 * n);
    let inv = &head[n..];
    let (f, rest) = rest.split_at_mut(n);
    let (mb, mg) = rest.split_at_mut(n);
    let inv_m = 1.0 / rows as f64;
    let mean = |s: f64| T::from_f64(T::from_f64(s).to_f64() * inv_m);
    for j in 0..n {
        f[j] = gamma[j] * inv[j];
        (mb[j], mg[j]) = if train {
            (mean(sums[n + j]), mean(sums[j]))
        } else {
            (T::ZERO, T::ZERO)
        };
    }
}

multiversion! {
    /// `dZ` from `dZ~` (`d`, in place, rows of `n` columns) with the factors of
    /// [`backward_factors`] (`norms`, `5 n` values): `dZ = f (d - dbeta / m - xhat dgamma /
    /// m)` — in inference (fixed statistics) the two means are 0 and `dZ = gamma inv d`.
    pub fn normalize_backward_rows<T: NnFloat>(d: &mut [T], xhat: &[T], norms: &[T]) {
        let n = norms.len() / 5;
        let f = &norms[2 * n..3 * n];
        let mb = &norms[3 * n..4 * n];
        let mg = &norms[4 * n..];
        for (dr, xr) in d.chunks_exact_mut(n).zip(xhat.chunks_exact(n)) {
            let (dr, xr) = (&mut dr[..n], &xr[..n]);
            for j in 0..n {
                dr[j] = f[j] * (dr[j] - mb[j] - xr[j] * mg[j]);
            }
        }
    }
}

/// The running statistics moved towards a batch of `rows >= 2` rows' `moments`:
/// `mean = momentum mu + (1 - momentum) mean`, `var = momentum ssd / (rows - 1) + (1 -
/// momentum) var`, in f64, rounded once to `T` (torch's `BatchNorm1d`).
pub(super) fn update_running<T: NnFloat>(
    mean: &mut [T],
    var: &mut [T],
    moments: &[f64],
    rows: usize,
    momentum: f64,
) {
    let n = mean.len();
    let unbias = (rows - 1) as f64;
    for j in 0..n {
        mean[j] = T::from_f64(momentum * moments[j] + (1.0 - momentum) * mean[j].to_f64());
        var[j] =
            T::from_f64(momentum * (moments[n + j] / unbias) + (1.0 - momentum) * var[j].to_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Level = Level::SCALAR;

    /// A (5, 3) batch with distinct columns.
    fn batch() -> Vec<f64> {
        (0..15)
            .map(|i| ((i * 37) % 11) as f64 * 0.3 - 1.1 + (i % 3) as f64)
            .collect()
    }

    #[test]
    fn moments_are_the_mean_and_biased_variance() {
        let z = batch();
        let mut mo = vec![0.0; 6];
        batch_moments(L, &z, &mut mo);
        for j in 0..3 {
            let col: Vec<f64> = (0..5).map(|i| z[i * 3 + j]).collect();
            let mean = col.iter().sum::<f64>() / 5.0;
            let ssd: f64 = col.iter().map(|v| (v - mean) * (v - mean)).sum();
            assert!((mo[j] - mean).abs() < 1e-14);
            assert!((mo[3 + j] - ssd).abs() < 1e-12);
        }
    }

    #[test]
    fn normalized_columns_have_mean_0_and_variance_1() {
        let z = batch();
        let mut mo = vec![0.0; 6];
        batch_moments(L, &z, &mut mo);
        let mut norms = vec![0.0; 15];
        batch_norms(&mo, 5, 0.0, &mut norms);
        let (mut out, mut xhat) = (z.clone(), vec![0.0; 15]);
        normalize_rows(L, &mut out, &mut xhat, &norms, &[2.0, 1.0, -1.0]);
        for j in 0..3 {
            let col: Vec<f64> = (0..5).map(|i| xhat[i * 3 + j]).collect();
            let mean = col.iter().sum::<f64>() / 5.0;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 5.0;
            assert!(mean.abs() < 1e-14 && (var - 1.0).abs() < 1e-12);
        }
        assert_eq!(out[0], 2.0 * xhat[0]);
        assert_eq!(out[2], -xhat[2]);
    }

    /// The training backward pass against centred differences of `sum(c * bn(z))`.
    #[test]
    fn backward_matches_finite_differences() {
        let z = batch();
        let (gamma, beta) = ([1.5, -0.5, 0.7], [0.1, 0.2, -0.3]);
        let c: Vec<f64> = (0..15)
            .map(|i| ((i * 13) % 7) as f64 * 0.25 - 0.8)
            .collect();
        let f = |z: &[f64]| -> f64 {
            let mut mo = vec![0.0; 6];
            batch_moments(L, z, &mut mo);
            let mut norms = vec![0.0; 15];
            batch_norms(&mo, 5, 1e-5, &mut norms);
            let (mut out, mut xhat) = (z.to_vec(), vec![0.0; 15]);
            normalize_rows(L, &mut out, &mut xhat, &norms, &gamma);
            (out.iter().enumerate())
                .map(|(i, v)| c[i] * (v + beta[i % 3]))
                .sum()
        };
        let mut mo = vec![0.0; 6];
        batch_moments(L, &z, &mut mo);
        let mut norms = vec![0.0; 15];
        batch_norms(&mo, 5, 1e-5, &mut norms);
        let (mut out, mut xhat) = (z.clone(), vec![0.0; 15]);
        normalize_rows(L, &mut out, &mut xhat, &norms, &gamma);
        let (mut dg, mut db) = (vec![0.0; 3], vec![0.0; 3]);
        affine_grads(L, &c, &xhat, &mut mo, &mut dg, &mut db);
        let mut d = c.clone();
        backward_factors(&mut norms, &gamma, &mo, 5, true);
        normalize_backward_rows(L, &mut d, &xhat, &norms);
        let h = 1e-6;
        for i in 0..15 {
            let (mut p, mut m) = (z.clone(), z.clone());
            p[i] += h;
            m[i] -= h;
            let approx = (f(&p) - f(&m)) / (2.0 * h);
            assert!((approx - d[i]).abs() < 1e-7, "dz[{i}] {} vs {approx}", d[i]);
        }
        for j in 0..3 {
            let want_b: f64 = (0..5).map(|i| c[i * 3 + j]).sum();
            assert!((db[j] - want_b).abs() < 1e-14);
        }
    }

    #[test]
    fn running_statistics_follow_torch() {
        let z = batch();
        let mut mo = vec![0.0; 6];
        batch_moments(L, &z, &mut mo);
        let (mut mean, mut var) = (vec![0.0f32; 3], vec![1.0f32; 3]);
        update_running(&mut mean, &mut var, &mo, 5, 0.1);
        for j in 0..3 {
            assert_eq!(mean[j], (0.1 * mo[j]) as f32);
            assert_eq!(var[j], (0.1 * (mo[3 + j] / 4.0) + 0.9) as f32);
        }
    }

    /// Every kernel gives the same bits at every SIMD level the CPU runs (widths around the
    /// vector lengths, float32 and float64).
    #[test]
    fn every_level_gives_the_same_bits() {
        use crate::runtime::simd::Isa;
        fn run<T: NnFloat>(level: Level, n: usize) -> Vec<Vec<f64>> {
            let rows = 37;
            let z: Vec<T> = (0..rows * n)
                .map(|i| T::from_f64(((i * 7919) % 1013) as f64 * 0.01 - 4.0))
                .collect();
            let gamma: Vec<T> = (0..n).map(|j| T::from_f64(0.5 + j as f64 * 0.1)).collect();
            let mut mo = vec![0.0; 2 * n];
            batch_moments(level, &z, &mut mo);
            let mut norms = vec![T::ZERO; 5 * n];
            batch_norms(&mo, rows, 1e-5, &mut norms);
            let (mut out, mut xhat) = (z.clone(), vec![T::ZERO; rows * n]);
            normalize_rows(level, &mut out, &mut xhat, &norms, &gamma);
            let (mut dg, mut db) = (vec![T::ZERO; n], vec![T::ZERO; n]);
            let mut acc = vec![0.0; 2 * n];
            affine_grads(level, &z, &xhat, &mut acc, &mut dg, &mut db);
            backward_factors(&mut norms, &gamma, &acc, rows, true);
            let mut d = z.clone();
            normalize_backward_rows(level, &mut d, &xhat, &norms);
            let f = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
            vec![mo, f(&out), f(&xhat), acc, f(&d)]
        }
        for n in [1, 3, 8, 16, 17, 33] {
            let base32 = run::<f32>(Level::SCALAR, n);
            let base64 = run::<f64>(Level::SCALAR, n);
            for level in Isa::ALL.into_iter().filter_map(Isa::level) {
                assert_eq!(run::<f32>(level, n), base32, "{level:?} {n}");
                assert_eq!(run::<f64>(level, n), base64, "{level:?} {n}");
            }
        }
    }
}
