//! The passes over one block of rows: forward (products, bias, batch norm, activation,
//! dropout), the cost and its delta at the output, and backward layer by layer.

use super::gemm::{by_row_blocks, matmul};
use super::model::Part;
use super::norm::{
    affine_grads, backward_factors, batch_moments, batch_norms, normalize_backward_rows,
    normalize_rows, running_norms,
};
use super::pointwise::{
    activation_backward, bias_activation, bias_sigmoid, bias_softmax, column_sums,
    sigmoid_delta_and_terms,
};
use super::workspace::Buffers;
use super::{Activation, DropKey, Mlp, NnFloat, Output, Targets};
use crate::error::{Error, Result};
use crate::runtime::simd::multiversion;

/// `v *= mask / keep_prob` for the rows of hidden layer `l` in `block` (`n` units a row,
/// the first being row `row0` of the batch): the mask of [`Mlp::keep`], `keep_prob = 1 -
/// rate`; a dropped value becomes `v * 0`.
pub(super) fn dropout_rows<T: NnFloat>(
    block: &mut [T],
    n: usize,
    key: DropKey,
    l: usize,
    row0: usize,
    rate: f64,
) {
    let scale: T = Mlp::keep_scale(rate);
    let level = crate::runtime::simd::level();
    let threshold = Mlp::keep_threshold(rate);
    for (i, row) in block.chunks_exact_mut(n).enumerate() {
        dropout_row(level, row, key.row_key(l, row0 + i), threshold, scale);
    }
}

multiversion! {
    /// One row of [`dropout_rows`]: unit `j` kept when [`Mlp::keep`]'s 53 bits are at least
    /// `threshold` ([`Mlp::keep_threshold`], the same test in integers), vectorized over
    /// the units.
    fn dropout_row<T: NnFloat>(row: &mut [T], row_key: u64, threshold: u64, scale: T) {
        use crate::data::permutation::{mix, GAMMA};
        for (j, v) in row.iter_mut().enumerate() {
            let h = mix(row_key ^ (j as u64).wrapping_add(1).wrapping_mul(GAMMA));
            *v *= if (h >> 11) >= threshold { scale } else { T::ZERO };
        }
    }
}

impl Mlp {
    /// The forward pass of one block into `buf`: every `A_l` (the output activations last;
    /// sigmoid's logits in `buf.delta[1]`). The caller has checked the shapes. With
    /// `drop = (key, first row)`, the hidden layers with a dropout rate keep their
    /// activations in `buf.kept` and pass on `A_l * mask / keep_prob` (the block's rows
    /// being the batch's from `first row` on). Batch-normalized layers normalize with
    /// `running` (`[mean_1, var_1, ...]`), or with the block's own statistics when None
    /// (training: the block is the whole batch), keeping `xhat` and the factors in `buf`.
    pub(super) fn forward_block<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        par: bool,
        drop: Option<(DropKey, usize)>,
        running: Option<&[&[T]]>,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        for l in 1..=self.layers() {
            self.forward_product(buf, params, x, l, par);
            if let (true, Some(bn)) = (self.norm(l), self.batch_norm) {
                let (nb, mo) = (&mut buf.norms[l - 1], &mut buf.moments[l - 1]);
                if let Some(r) = running {
                    running_norms(r[2 * (l - 1)], r[2 * l - 1], bn.eps, nb);
                } else {
                    batch_moments(level, &buf.acts[l - 1][..rows * self.sizes[l]], mo);
                    batch_norms(mo, rows, bn.eps, nb);
                }
            }
            self.forward_finish(buf, params, rows, l, par, drop);
        }
    }

    /// `Z_l = A_{l-1} W_l` of one block (the rows of `x`) into `buf.acts[l - 1]`.
    pub(super) fn forward_product<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        l: usize,
        par: bool,
    ) {
        let rows = x.rows;
        let (k, n) = (self.sizes[l - 1], self.sizes[l]);
        let w = params[self.w_index(l)].as_ref();
        let (below, rest) = buf.acts.split_at_mut(l - 1);
        let out = &mut rest[0][..rows * n];
        let (a, sa) = if l == 1 {
            (x.x.as_ptr(), x.strides)
        } else {
            (below[l - 2].as_ptr(), (k as isize, 1))
        };
        // SAFETY: A is (rows, k) with these strides, W (k, n) row-major, out (rows, n).
        unsafe {
            matmul::<T>(
                (rows, k, n),
                a,
                sa,
                w.as_ptr(),
                (n as isize, 1),
                out.as_mut_ptr(),
                par,
            );
        };
    }

    /// Layer `l` of one block of `rows` rows after its product: a hidden layer's batch norm
    /// (with the `mu` and `1 / sqrt(var + eps)` in `buf.norms[l - 1]`), bias (or beta),
    /// activation and dropout (`drop` as for [`Mlp::forward_block`]); the output layer's
    /// activation.
    pub(super) fn forward_finish<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        rows: usize,
        l: usize,
        par: bool,
        drop: Option<(DropKey, usize)>,
    ) {
        let level = crate::runtime::simd::level();
        let layers = self.layers();
        let n = self.sizes[l];
        let (wi, normed) = (self.w_index(l), self.norm(l));
        // The bias, or beta after gamma.
        let b = params[wi + 1 + usize::from(normed)].as_ref();
        let out = &mut buf.acts[l - 1][..rows * n];
        let (mut xhat_at, mut norms, mut gamma): (usize, &[T], &[T]) = (0, &[], &[]);
        if normed {
            xhat_at = buf.xhat[l - 1].as_mut_ptr() as usize;
            (norms, gamma) = (&buf.norms[l - 1], params[wi + 1].as_ref());
        }
        let rate = if l < layers { self.rate(l) } else { 0.0 };
        let kept = match drop {
            Some(_) if rate > 0.0 => buf.kept[l - 1].as_mut_ptr() as usize,
            _ => 0,
        };
        match self.output {
            _ if l < layers => by_row_blocks(out, n, par, |at, block| {
                if xhat_at != 0 {
                    // SAFETY: `xhat` holds `rows * n` values; the blocks are disjoint.
                    let xhat = unsafe {
                        std::slice::from_raw_parts_mut((xhat_at as *mut T).add(at), block.len())
                    };
                    normalize_rows(level, block, xhat, norms, gamma);
                }
                bias_activation(level, block, b, self.activation(l));
                if let (Some((key, row0)), true) = (drop, kept != 0) {
                    // SAFETY: `kept` holds `rows * n` values; the blocks are disjoint.
                    let kept = unsafe {
                        std::slice::from_raw_parts_mut((kept as *mut T).add(at), block.len())
                    };
                    kept.copy_from_slice(block);
                    dropout_rows(block, n, key, l, row0 + at / n, rate);
                }
            }),
            // The logits stay for the cost: log(1 - p) loses them once p rounds to 1.
            Output::Sigmoid => bias_sigmoid(level, out, &mut buf.delta[1][..rows * n], b),
            Output::Softmax => bias_softmax(level, out, b),
            Output::Identity | Output::Huber => {
                bias_activation(level, out, b, Activation::Identity);
            }
            Output::Poisson => {
                // The logits stay for the cost: log(exp(z)) loses them once exp(z)
                // rounds to 0 or infinity.
                bias_activation(level, out, b, Activation::Identity);
                let z = &mut buf.delta[1][..rows * n];
                z.copy_from_slice(out);
                for v in out.iter_mut() {
                    *v = v.exp();
                }
            }
        }
    }

    /// The cost of the last forward pass in `buf` (`rows` of a batch of `m` rows, or of
    /// weights summing to `m`) against `y`: the block's share of the batch's mean cost, and
    /// of `dJ/dZ_L` into `buf.delta[0]`; with `w`, the block's rows' weights multiply each
    /// row's cost and `dJ/dZ_L` (see [`Mlp::cost_and_grad`]).
    pub(super) fn cost_block<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let cost = match self.output {
            Output::Sigmoid => self.sigmoid_cost_and_delta(buf, rows, y, w, m)?,
            Output::Poisson => self.poisson_cost_and_delta(buf, rows, y, w, m)?,
            _ => self.output_delta(buf, rows, y, w, m)?,
        };
        // Weights summing to 0: no cost, and (1/m infinite) no gradient.
        if m == 0.0 {
            buf.delta[0][..rows * self.outputs()].fill(T::ZERO);
            return Ok(0.0);
        }
        Ok(cost)
    }

    /// [`Mlp::cost_block`] for softmax, identity and Huber outputs.
    fn output_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let a = &buf.acts[buf.acts.len() - 1][..rows * k];
        let d = &mut buf.delta[0][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        // Row i's weight (1 without weights: the same bits as none).
        let wt = |i: usize| w.map_or(T::ONE, |w| w[i]);
        let mut cost = 0.0f64;
        match (self.output, y) {
            (Output::Softmax, Targets::Labels(labels)) => {
                for (i, ((p, dr), &c)) in
                    (a.chunks_exact(k).zip(d.chunks_exact_mut(k)).zip(labels)).enumerate()
                {
                    if c < 0 || c as usize >= k {
                        return Err(Error::Invalid(format!(
                            "Y holds class {c}, outside [0, {k}) for {k} output units"
                        )));
                    }
                    let c = c as usize;
                    let f = inv_m * wt(i);
                    for (j, (dd, &pp)) in dr.iter_mut().zip(p).enumerate() {
                        let y = if j == c { T::ONE } else { T::ZERO };
                        *dd = (pp - y) * f;
                    }
                    cost -= wt(i).to_f64() * p[c].ln().to_f64();
                }
            }
            (_, Targets::Labels(_)) => {
                return Err(Error::Invalid(
                    "integer labels need output='softmax'".into(),
                ))
            }
            (out, Targets::Dense(y)) => {
                let rows_of = a
                    .chunks_exact(k)
                    .zip(d.chunks_exact_mut(k))
                    .zip(y.chunks_exact(k));
                if out == Output::Softmax {
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_m * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            *dd = (p - t) * f;
                            if t != T::ZERO {
                                cost -= wi * (t.to_f64() * p.ln().to_f64());
                            }
                        }
                    }
                } else if out == Output::Huber {
                    let inv_mk = T::from_f64(1.0 / (m * k as f64));
                    let (delta, df) = (T::from_f64(self.huber_delta), self.huber_delta);
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_mk * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            let r = p - t;
                            let (g, h) = if r < delta && T::ZERO - r < delta {
                                (r, 0.5 * r.to_f64() * r.to_f64())
                            } else {
                                let g = if r > T::ZERO { delta } else { -delta };
                                (g, df * (r.to_f64().abs() - 0.5 * df))
                            };
                            *dd = g * f;
                            cost += wi * h;
                        }
                    }
                    return Ok(cost / (m * k as f64));
                } else {
                    let inv_mk = T::from_f64(1.0 / (m * k as f64));
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_mk * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            let r = p - t;
                            *dd = r * f;
                            cost += wi * (0.5 * r.to_f64() * r.to_f64());
                        }
                    }
                    return Ok(cost / (m * k as f64));
                }
            }
        }
        Ok(cost / m)
    }

    /// Adds `alpha/m W` to each `dW` and returns the penalty `alpha/(2m) sum ||W||^2` (`m`
    /// the rows, or the sum of the weights; none for 0).
    pub(super) fn penalty<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        params: &[P],
        grads: &mut [G],
        rows: f64,
    ) -> f64 {
        if self.alpha == 0.0 || rows == 0.0 {
            return 0.0;
        }
        let alpha_m = self.alpha / rows;
        let am = T::from_f64(alpha_m);
        let mut cost = 0.0;
        for l in (1..=self.layers()).rev() {
            let wi = self.w_index(l);
            let (gw, w) = (grads[wi].as_mut(), params[wi].as_ref());
            let mut sq = 0.0f64;
            for (g, &wv) in gw.iter_mut().zip(w) {
                *g += am * wv;
                sq += wv.to_f64() * wv.to_f64();
            }
            cost += 0.5 * alpha_m * sq;
        }
        cost
    }

    /// The data part of the gradient of one block (the rows of `x`, which the last
    /// [`Mlp::forward_block`] and [`Mlp::cost_block`] into `buf` saw), into `grads`.
    /// `drop` as given to that forward pass; `train` when it normalized with the batch's
    /// statistics ([`Mlp::cost_and_grad`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_block<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        grads: &mut [G],
        par: bool,
        drop: Option<(DropKey, usize)>,
        train: bool,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        for l in (1..=self.layers()).rev() {
            self.backward_layer(buf, params, x, grads, l, par, drop);
            if l == 1 {
                break;
            }
            if self.norm(l - 1) {
                let k = self.sizes[l - 1];
                let wb = self.w_index(l - 1);
                let (gg, gbeta) = grads[wb + 1..wb + 3].split_at_mut(1);
                let (gg, gbeta) = (gg[0].as_mut(), gbeta[0].as_mut());
                let below = &mut buf.delta[1][..rows * k];
                let xhat = &buf.xhat[l - 2][..rows * k];
                affine_grads(level, below, xhat, &mut buf.moments[l - 2], gg, gbeta);
                let gamma = params[wb + 1].as_ref();
                backward_factors(
                    &mut buf.norms[l - 2],
                    gamma,
                    &buf.moments[l - 2],
                    rows,
                    train,
                );
                let norms = &buf.norms[l - 2];
                by_row_blocks(below, k, par, |at, block| {
                    normalize_backward_rows(level, block, &xhat[at..at + block.len()], norms);
                });
            }
            buf.delta.swap(0, 1);
        }
    }

    /// Layer `l`'s share of [`Mlp::backward_block`]: from `dZ_l` in `buf.delta[0]`, `dW_l =
    /// A_{l-1}^T dZ_l` (and `db_l`, without batch norm) into `grads`, and for `l > 1` `dZ~_{l-1}
    /// = dZ_l W_l^T`, through dropout and `g'`, into `buf.delta[1]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_layer<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        grads: &mut [G],
        l: usize,
        par: bool,
        drop: Option<(DropKey, usize)>,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        let (k, n) = (self.sizes[l - 1], self.sizes[l]);
        let wi = self.w_index(l);
        let (gw, rest) = grads[wi..].split_at_mut(1);
        let (gw, gb) = (gw[0].as_mut(), rest[0].as_mut());
        let [d, d_below] = &mut buf.delta;
        let d = &d[..rows * n];
        // A^T is (k, rows): A's strides swapped.
        let (a, (rsa, csa)) = if l == 1 {
            (x.x.as_ptr(), x.strides)
        } else {
            (buf.acts[l - 2].as_ptr(), (k as isize, 1))
        };
        let w = params[wi].as_ref();
        // dW = A^T dZ.
        // SAFETY: shapes and strides as described; gw does not overlap A or dZ.
        unsafe {
            matmul::<T>(
                (k, rows, n),
                a,
                (csa, rsa),
                d.as_ptr(),
                (n as isize, 1),
                gw.as_mut_ptr(),
                par,
            );
        };
        if !self.norm(l) {
            column_sums(level, gb, d);
        }
        if l == 1 {
            return;
        }
        let below = &mut d_below[..rows * k];
        // dA_{l-1} = dZ_l W_l^T: W^T is (n, k) with strides (1, n).
        // SAFETY: as above; `below` is a separate buffer.
        unsafe {
            matmul::<T>(
                (rows, n, k),
                d.as_ptr(),
                (n as isize, 1),
                w.as_ptr(),
                (1, n as isize),
                below.as_mut_ptr(),
                par,
            );
        };
        let rate = self.rate(l - 1);
        let dropped = drop.filter(|_| rate > 0.0);
        // g'(Z) from the activations before dropout.
        let a = match dropped {
            Some(_) => &buf.kept[l - 2][..rows * k],
            None => &buf.acts[l - 2][..rows * k],
        };
        by_row_blocks(below, k, par, |at, block| {
            if let Some((key, row0)) = dropped {
                dropout_rows(block, k, key, l - 1, row0 + at / k, rate);
            }
            let g = self.activation(l - 1);
            activation_backward(level, block, &a[at..at + block.len()], g);
        });
    }

    /// Sigmoid output: `dJ/dZ = (p - y)/m`, `J = 1/m sum bce(z, y)` from the logits the
    /// forward pass kept in `buf.delta[1]`.
    fn sigmoid_cost_and_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let Targets::Dense(y) = y else {
            return Err(Error::Invalid(
                "integer labels need output='softmax'".into(),
            ));
        };
        let l = self.layers();
        let [d, z] = &mut buf.delta;
        let (z, d) = (&mut z[..rows * k], &mut d[..rows * k]);
        let p = &buf.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        sigmoid_delta_and_terms(crate::runtime::simd::level(), d, z, p, y, inv_m);
        if let Some(w) = w {
            for ((dr, zr), &wi) in d.chunks_exact_mut(k).zip(z.chunks_exact_mut(k)).zip(w) {
                for v in dr.iter_mut().chain(zr.iter_mut()) {
                    *v *= wi;
                }
            }
        }
        Ok(z.iter().map(|t| t.to_f64()).sum::<f64>() / m)
    }

    /// Poisson output ([`Output::Poisson`]): `dJ/dZ = (a - y)/m`, `J = 1/m sum (y (log y -
    /// z) - y + exp(z))` from the logits the forward pass kept in `buf.delta[1]`, each
    /// term in f64; with `w`, each row's terms and `dJ/dZ` times its weight. A target
    /// below 0 is an error.
    fn poisson_cost_and_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let Targets::Dense(y) = y else {
            return Err(Error::Invalid(
                "integer labels need output='softmax'".into(),
            ));
        };
        if let Some(&t) = y[..rows * k].iter().find(|&&t| {
            t.partial_cmp(&T::ZERO)
                .is_none_or(std::cmp::Ordering::is_lt)
        }) {
            return Err(Error::Invalid(format!(
                "Y holds {}; the Poisson loss needs targets >= 0",
                t.to_f64()
            )));
        }
        let l = self.layers();
        let [d, z] = &mut buf.delta;
        let (z, d) = (&z[..rows * k], &mut d[..rows * k]);
        let a = &buf.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        let mut cost = 0.0f64;
        for (i, (((dr, zr), ar), yr)) in d
            .chunks_exact_mut(k)
            .zip(z.chunks_exact(k))
            .zip(a.chunks_exact(k))
            .zip(y.chunks_exact(k))
            .enumerate()
        {
            let wi = w.map_or(T::ONE, |w| w[i]);
            let f = inv_m * wi;
            let mut row = 0.0f64;
            for (((dd, &zz), &aa), &t) in dr.iter_mut().zip(zr).zip(ar).zip(yr) {
                *dd = (aa - t) * f;
                let (t, zz) = (t.to_f64(), zz.to_f64());
                let xlogy = if t > 0.0 { t * (t.ln() - zz) } else { 0.0 };
                row += xlogy - t + aa.to_f64();
            }
            cost += wi.to_f64() * row;
        }
        Ok(cost / m)
    }
}
