//! Fully-connected networks: forward pass, cost and backward pass of the lecture's networks,
//! and the epoch loop that trains them with an optimizer — all in Rust.
//!
//! Layout (examples are rows, as in the demo's `net.py` and scikit-learn's `coefs_`):
//! `X (m, n_0)`, `W_l (n_{l-1}, n_l)`, `b_l (n_l,)`, `Z_l = A_{l-1} W_l + b_l`,
//! `A_l = g(Z_l)` for hidden layers and the output activation for the last one.
//! Parameters are passed in the order `W1, b1, W2, b2, ...`.
//!
//! Matrix products go through `matrixmultiply` (runtime-dispatched AVX/FMA kernels);
//! bias and activation are one pass over each layer's output, softmax and cross-entropy
//! one pass over the last. A [`Workspace`] holds every intermediate for a given number of
//! rows and is reused from batch to batch.

mod epoch;

pub use epoch::{train_epoch, EpochData, EpochReport, StepOutcome, Timing};

use crate::error::{Error, Result};
use crate::float::Float;

/// A hidden-layer activation `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(z, 0)`.
    Relu,
    /// `z` if `z > 0` else `0.01 z` (torch's default slope).
    LeakyRelu,
    Tanh,
    /// `1 / (1 + exp(-z))`.
    Sigmoid,
    Identity,
}

/// Slope of `leaky_relu` for `z <= 0`.
pub const LEAKY_SLOPE: f64 = 0.01;

impl Activation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu,
            "tanh" => Activation::Tanh,
            "sigmoid" | "logistic" => Activation::Sigmoid,
            "identity" => Activation::Identity,
            _ => return None,
        })
    }
}

/// The output layer and its cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Sigmoid outputs, binary cross-entropy summed over outputs, mean over examples:
    /// `J = 1/m sum_i sum_k softplus(z) - y z`.
    Sigmoid,
    /// Softmax, categorical cross-entropy: `J = -1/m sum_i sum_k y_ik log p_ik`.
    Softmax,
    /// Identity, mean squared error over every element, halved (scikit-learn's
    /// `squared_loss`): `J = 1/(2 m k) sum (a - y)^2`.
    Identity,
}

impl Output {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sigmoid" | "logistic" => Output::Sigmoid,
            "softmax" => Output::Softmax,
            "identity" => Output::Identity,
            _ => return None,
        })
    }
}

/// The element arithmetic the networks need beyond [`Float`], and the matrix product.
pub trait NnFloat: Float {
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    /// `C = A B + beta C`, `A (m, k)`, `B (k, n)`, `C (m, n)` row-major with C's row stride
    /// `n`, A and B given by (row, column) strides in elements.
    ///
    /// # Safety
    /// The pointers must address matrices of these shapes and strides; C must not overlap
    /// A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
    );
}

macro_rules! impl_nn_float {
    ($t:ty, $gemm:path) => {
        impl NnFloat for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                $gemm(
                    m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, n as isize, 1,
                );
            }
        }
    };
}

impl_nn_float!(f32, matrixmultiply::sgemm);
impl_nn_float!(f64, matrixmultiply::dgemm);

/// Targets of one batch, row `i` for example `i`.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, T> {
    /// `(rows, k)` values: 0/1 (or probabilities) for sigmoid, one-hot (or probabilities)
    /// for softmax, real values for identity.
    Dense(&'a [T]),
    /// Class indices in `[0, k)` for softmax, one per row.
    Labels(&'a [i64]),
}

/// A network's shape and functions (no parameters: those live in the caller's arrays).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub sizes: Vec<usize>,
    pub hidden: Activation,
    pub output: Output,
    /// L2 penalty `alpha / 2 * sum_l ||W_l||^2 / m` (biases are not penalised).
    pub alpha: f64,
}

/// Every intermediate of a forward and backward pass over at most `rows` examples.
#[derive(Clone, Debug, Default)]
pub struct Workspace<T> {
    rows: usize,
    /// `acts[l - 1]`: `A_l`, `(rows, n_l)`, for `l = 1..=L`.
    acts: Vec<Vec<T>>,
    /// `dJ/dZ` of the layer being back-propagated, and of the one below it.
    delta: [Vec<T>; 2],
}

impl<T: NnFloat> Workspace<T> {
    /// Grows (never shrinks) the buffers to hold `rows` examples of `net`.
    pub fn fit(&mut self, net: &Mlp, rows: usize) {
        let layers = net.sizes.len() - 1;
        if self.acts.len() == layers && self.rows >= rows {
            return;
        }
        let rows = rows.max(self.rows);
        let widest = net.sizes[1..].iter().copied().max().unwrap_or(0);
        self.acts = net.sizes[1..]
            .iter()
            .map(|&n| vec![T::ZERO; rows * n])
            .collect();
        self.delta = [vec![T::ZERO; rows * widest], vec![T::ZERO; rows * widest]];
        self.rows = rows;
    }

    /// The output activations of the last forward pass (`rows` of them).
    pub fn output(&self, net: &Mlp, rows: usize) -> &[T] {
        let n = *net.sizes.last().unwrap();
        &self.acts[self.acts.len() - 1][..rows * n]
    }
}

/// A batch of inputs: `x[i * n_0 + j]` (row-major, `transposed == false`) or
/// `x[j * rows + i]` (the lecture's column layout, `transposed == true`).
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a, T> {
    pub x: &'a [T],
    pub rows: usize,
    pub transposed: bool,
}

#[inline(always)]
fn sigmoid<T: NnFloat>(z: T) -> T {
    T::ONE / (T::ONE + (-z).exp())
}

/// `softplus(z) - y z = log(1 + exp(z)) - y z`, stable for large `|z|`.
#[inline(always)]
fn bce_from_logit<T: NnFloat>(z: T, y: T) -> T {
    let pos = if z > T::ZERO { z } else { T::ZERO };
    pos - y * z + (-z.abs()).exp().ln_1p()
}

impl Mlp {
    /// Checks the shape and functions: at least one layer, every size >= 1, and at least
    /// two outputs for softmax.
    pub fn new(sizes: Vec<usize>, hidden: Activation, output: Output, alpha: f64) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::Invalid(format!(
                "layer_sizes must hold at least two sizes, each >= 1, got {sizes:?}"
            )));
        }
        if output == Output::Softmax && sizes[sizes.len() - 1] < 2 {
            return Err(Error::Invalid(
                "output='softmax' needs at least 2 output units; use output='sigmoid' for one"
                    .into(),
            ));
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::Invalid(format!(
                "alpha must be a finite number >= 0, got {alpha}"
            )));
        }
        Ok(Mlp {
            sizes,
            hidden,
            output,
            alpha,
        })
    }

    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Element counts of `W1, b1, W2, b2, ...`.
    pub fn param_lens(&self) -> Vec<usize> {
        self.sizes
            .windows(2)
            .flat_map(|w| [w[0] * w[1], w[1]])
            .collect()
    }

    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    fn check_params<P: AsRef<[T]>, T>(&self, params: &[P]) -> Result<()> {
        let lens = self.param_lens();
        if params.len() != lens.len()
            || params
                .iter()
                .zip(&lens)
                .any(|(p, &n)| p.as_ref().len() != n)
        {
            return Err(Error::Mismatch(
                "parameters do not match layer_sizes".into(),
            ));
        }
        Ok(())
    }

    /// The forward pass into `ws`: every `A_l` (the output activations last).
    pub fn forward<T: NnFloat, P: AsRef<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
    ) -> Result<()> {
        self.check_params(params)?;
        let rows = inputs.rows;
        if inputs.x.len() != rows * self.sizes[0] {
            return Err(Error::Mismatch("X does not match its row count".into()));
        }
        ws.fit(self, rows);
        let layers = self.layers();
        for l in 1..=layers {
            let (k, n) = (self.sizes[l - 1], self.sizes[l]);
            let w = params[2 * (l - 1)].as_ref();
            let b = params[2 * (l - 1) + 1].as_ref();
            let (below, rest) = ws.acts.split_at_mut(l - 1);
            let out = &mut rest[0][..rows * n];
            let (a, rsa, csa) = if l == 1 {
                let (rs, cs) = if inputs.transposed {
                    (1, rows as isize)
                } else {
                    (k as isize, 1)
                };
                (inputs.x.as_ptr(), rs, cs)
            } else {
                (below[l - 2].as_ptr(), k as isize, 1)
            };
            // SAFETY: A is (rows, k) with these strides, W (k, n) row-major, out (rows, n).
            unsafe {
                T::gemm(
                    rows,
                    k,
                    n,
                    a,
                    rsa,
                    csa,
                    w.as_ptr(),
                    n as isize,
                    1,
                    T::ZERO,
                    out.as_mut_ptr(),
                )
            };
            if l < layers {
                bias_activation(out, b, self.hidden);
            } else if self.output == Output::Sigmoid {
                // The logits stay for the cost: log(1 - p) loses them once p rounds to 1.
                let z = &mut ws.delta[1][..rows * n];
                for ((zr, pr), _) in z
                    .chunks_exact_mut(n)
                    .zip(out.chunks_exact_mut(n))
                    .zip(0..rows)
                {
                    for ((zz, p), &bb) in zr.iter_mut().zip(pr.iter_mut()).zip(b) {
                        *zz = *p + bb;
                        *p = sigmoid(*zz);
                    }
                }
            } else {
                self.output_activation(out, b);
            }
        }
        Ok(())
    }

    fn output_activation<T: NnFloat>(&self, out: &mut [T], b: &[T]) {
        match self.output {
            Output::Sigmoid => bias_activation(out, b, Activation::Sigmoid),
            Output::Identity => bias_activation(out, b, Activation::Identity),
            Output::Softmax => {
                for row in out.chunks_exact_mut(b.len()) {
                    let mut max = T::from_f64(f64::NEG_INFINITY);
                    for (z, &bb) in row.iter_mut().zip(b) {
                        *z = *z + bb;
                        max = max.nan_max(*z);
                    }
                    let mut sum = T::ZERO;
                    for z in row.iter_mut() {
                        *z = (*z - max).exp();
                        sum = sum + *z;
                    }
                    let inv = T::ONE / sum;
                    for z in row.iter_mut() {
                        *z = *z * inv;
                    }
                }
            }
        }
    }

    /// The cost of the last forward pass against `y`, and `dJ/dZ_L` into `ws.delta[0]`.
    fn output_delta<T: NnFloat>(
        &self,
        ws: &mut Workspace<T>,
        rows: usize,
        y: Targets<'_, T>,
    ) -> Result<f64> {
        let k = self.outputs();
        let a = &ws.acts[ws.acts.len() - 1][..rows * k];
        let d = &mut ws.delta[0][..rows * k];
        let inv_m = T::from_f64(1.0 / rows as f64);
        let mut cost = 0.0f64;
        match (self.output, y) {
            (Output::Softmax, Targets::Labels(labels)) => {
                if labels.len() != rows {
                    return Err(Error::Mismatch("Y does not match X's rows".into()));
                }
                for ((p, dr), &c) in a.chunks_exact(k).zip(d.chunks_exact_mut(k)).zip(labels) {
                    if c < 0 || c as usize >= k {
                        return Err(Error::Invalid(format!(
                            "Y holds class {c}, outside [0, {k}) for {k} output units"
                        )));
                    }
                    let c = c as usize;
                    for (j, (dd, &pp)) in dr.iter_mut().zip(p).enumerate() {
                        let y = if j == c { T::ONE } else { T::ZERO };
                        *dd = (pp - y) * inv_m;
                    }
                    cost -= p[c].to_f64().ln();
                }
            }
            (_, Targets::Labels(_)) => {
                return Err(Error::Invalid(
                    "integer labels need output='softmax'".into(),
                ))
            }
            (out, Targets::Dense(y)) => {
                if y.len() != rows * k {
                    return Err(Error::Mismatch("Y does not match X's rows".into()));
                }
                match out {
                    Output::Softmax => {
                        for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                            *dd = (p - t) * inv_m;
                            if t != T::ZERO {
                                cost -= t.to_f64() * p.to_f64().ln();
                            }
                        }
                    }
                    _ => {
                        let inv_mk = T::from_f64(1.0 / (rows * k) as f64);
                        for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                            let r = p - t;
                            *dd = r * inv_mk;
                            cost += 0.5 * r.to_f64() * r.to_f64();
                        }
                        return Ok(cost / (rows * k) as f64);
                    }
                }
            }
        }
        Ok(cost / rows as f64)
    }

    /// The cost `J` of a batch and its gradient `dJ/dparam` into `grads` (`W1, b1, ...`).
    ///
    /// Sigmoid outputs: the cost is computed from the logits (`softplus(z) - y z`), which
    /// stays finite when `p` rounds to 0 or 1.
    pub fn loss_and_grad<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
    ) -> Result<f64> {
        self.check_grads(grads)?;
        let cost = self.forward_cost(ws, params, inputs, y)?;
        Ok(cost + self.backward(ws, params, inputs, grads))
    }

    fn check_grads<T, G: AsMut<[T]>>(&self, grads: &mut [G]) -> Result<()> {
        let lens = self.param_lens();
        if grads.len() != lens.len()
            || grads
                .iter_mut()
                .zip(&lens)
                .any(|(g, &n)| g.as_mut().len() != n)
        {
            return Err(Error::Mismatch("gradients do not match layer_sizes".into()));
        }
        Ok(())
    }

    /// The forward pass and the data cost of a batch (no penalty), leaving `dJ/dZ_L` in the
    /// workspace for [`Mlp::backward`].
    pub fn forward_cost<T: NnFloat, P: AsRef<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
    ) -> Result<f64> {
        let rows = inputs.rows;
        if rows == 0 {
            return Err(Error::Invalid("a batch needs at least one example".into()));
        }
        self.forward(ws, params, inputs)?;
        if self.output == Output::Sigmoid {
            self.sigmoid_cost_and_delta(ws, rows, y)
        } else {
            self.output_delta(ws, rows, y)
        }
    }

    /// The gradients of the batch [`Mlp::forward_cost`] just saw, into `grads`; returns the
    /// L2 penalty `alpha/(2m) sum ||W||^2` (0 without one). The caller has checked
    /// `params` and `grads` against the network (both passes use the same `params`).
    pub fn backward<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        grads: &mut [G],
    ) -> f64 {
        let rows = inputs.rows;
        let mut cost = 0.0;
        let layers = self.layers();
        let alpha_m = self.alpha / rows as f64;
        for l in (1..=layers).rev() {
            let (k, n) = (self.sizes[l - 1], self.sizes[l]);
            let (gw, rest) = grads[2 * (l - 1)..].split_at_mut(1);
            let (gw, gb) = (gw[0].as_mut(), rest[0].as_mut());
            let [d, d_below] = &mut ws.delta;
            let d = &d[..rows * n];
            let (a, rsa, csa) = if l == 1 {
                if inputs.transposed {
                    (inputs.x.as_ptr(), rows as isize, 1)
                } else {
                    (inputs.x.as_ptr(), 1, k as isize)
                }
            } else {
                (ws.acts[l - 2].as_ptr(), 1, k as isize)
            };
            let w = params[2 * (l - 1)].as_ref();
            // dW = A^T dZ (+ alpha/m W below): A^T is (k, rows).
            // SAFETY: shapes and strides as described; gw does not overlap A or dZ.
            unsafe {
                T::gemm(
                    k,
                    rows,
                    n,
                    a,
                    rsa,
                    csa,
                    d.as_ptr(),
                    n as isize,
                    1,
                    T::ZERO,
                    gw.as_mut_ptr(),
                )
            };
            if self.alpha != 0.0 {
                let am = T::from_f64(alpha_m);
                let mut sq = 0.0f64;
                for (g, &wv) in gw.iter_mut().zip(w) {
                    *g = *g + am * wv;
                    sq += wv.to_f64() * wv.to_f64();
                }
                cost += 0.5 * alpha_m * sq;
            }
            gb.fill(T::ZERO);
            for row in d.chunks_exact(n) {
                for (g, &v) in gb.iter_mut().zip(row) {
                    *g = *g + v;
                }
            }
            if l > 1 {
                let below = &mut d_below[..rows * k];
                // dA_{l-1} = dZ_l W_l^T: W^T is (n, k) with strides (1, n).
                // SAFETY: as above; `below` is a separate buffer.
                unsafe {
                    T::gemm(
                        rows,
                        n,
                        k,
                        d.as_ptr(),
                        n as isize,
                        1,
                        w.as_ptr(),
                        1,
                        n as isize,
                        T::ZERO,
                        below.as_mut_ptr(),
                    )
                };
                activation_backward(below, &ws.acts[l - 2][..rows * k], self.hidden);
                ws.delta.swap(0, 1);
            }
        }
        cost
    }

    /// Sigmoid output: `dJ/dZ = (p - y)/m`, `J = 1/m sum bce(z, y)` from the logits the
    /// forward pass kept in `ws.delta[1]`.
    fn sigmoid_cost_and_delta<T: NnFloat>(
        &self,
        ws: &mut Workspace<T>,
        rows: usize,
        y: Targets<'_, T>,
    ) -> Result<f64> {
        let k = self.outputs();
        let y = match y {
            Targets::Dense(y) if y.len() == rows * k => y,
            Targets::Dense(_) => return Err(Error::Mismatch("Y does not match X's rows".into())),
            Targets::Labels(_) => {
                return Err(Error::Invalid(
                    "integer labels need output='softmax'".into(),
                ))
            }
        };
        let l = self.layers();
        let [d, z] = &mut ws.delta;
        let (z, d) = (&z[..rows * k], &mut d[..rows * k]);
        let p = &ws.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / rows as f64);
        let mut cost = 0.0f64;
        for (((dd, &pp), &t), &zz) in d.iter_mut().zip(p).zip(y).zip(z) {
            *dd = (pp - t) * inv_m;
            cost += bce_from_logit(zz.to_f64(), t.to_f64());
        }
        Ok(cost / rows as f64)
    }
}

/// `out[i, j] = g(out[i, j] + b[j])`, one pass.
fn bias_activation<T: NnFloat>(out: &mut [T], b: &[T], g: Activation) {
    let slope = T::from_f64(LEAKY_SLOPE);
    macro_rules! each {
        ($f:expr) => {
            for row in out.chunks_exact_mut(b.len()) {
                for (z, &bb) in row.iter_mut().zip(b) {
                    let v = *z + bb;
                    *z = $f(v);
                }
            }
        };
    }
    match g {
        Activation::Relu => each!(|v: T| if v > T::ZERO { v } else { T::ZERO }),
        Activation::LeakyRelu => each!(|v: T| if v > T::ZERO { v } else { slope * v }),
        Activation::Tanh => each!(|v: T| v.tanh()),
        Activation::Sigmoid => each!(sigmoid),
        Activation::Identity => each!(|v: T| v),
    }
}

/// `d *= g'(z)`, with `g'` written through `a = g(z)`.
fn activation_backward<T: NnFloat>(d: &mut [T], a: &[T], g: Activation) {
    let slope = T::from_f64(LEAKY_SLOPE);
    match g {
        Activation::Relu => d.iter_mut().zip(a).for_each(|(d, &a)| {
            if a <= T::ZERO {
                *d = T::ZERO
            }
        }),
        Activation::LeakyRelu => d.iter_mut().zip(a).for_each(|(d, &a)| {
            if a <= T::ZERO {
                *d = *d * slope
            }
        }),
        Activation::Tanh => d
            .iter_mut()
            .zip(a)
            .for_each(|(d, &a)| *d = *d * (T::ONE - a * a)),
        Activation::Sigmoid => d
            .iter_mut()
            .zip(a)
            .for_each(|(d, &a)| *d = *d * (a * (T::ONE - a))),
        Activation::Identity => {}
    }
}
