//! Fully-connected networks: forward pass, cost and backward pass of the lecture's networks,
//! and the epoch loop that trains them with an optimizer — all in Rust.
//!
//! Layout (examples are rows, as in the demo's `net.py` and scikit-learn's `coefs_`):
//! `X (m, n_0)`, `W_l (n_{l-1}, n_l)`, `b_l (n_l,)`, `Z_l = A_{l-1} W_l + b_l`,
//! `A_l = g(Z_l)` for hidden layers and the output activation for the last one.
//! Parameters are passed in the order `W1, b1, W2, b2, ...`.
//!
//! Matrix products go through faer (runtime-dispatched AVX2/AVX-512 kernels), large ones
//! cut into tiles of C by shape alone and spread over the pool; mid-sized batches are
//! computed in two halves of rows side by side ([`Mlp::halves`]);
//! bias and activation are one pass over each layer's output, softmax and cross-entropy
//! one pass over the last. A [`Workspace`] holds every intermediate for a given number of
//! rows and is reused from batch to batch.

mod epoch;
mod math;
mod pointwise;

pub use epoch::{train_epoch, EpochData, EpochReport, StepOutcome, Timing};

use crate::error::{try_filled, Error, Result};
use crate::float::Float;
use pointwise::{
    activation_backward, bias_activation, bias_sigmoid, bias_softmax, column_sums,
    sigmoid_delta_and_terms,
};

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

/// The element arithmetic the networks need beyond [`Float`]: `exp`, `ln`, `ln_1p` and
/// `tanh` of both types are the branch-free polynomials of [`math`] (within 1.5 ulp), which
/// vectorize inside the multiversioned passes and give the same bits at every SIMD level:
/// no libm call per element.
pub trait NnFloat: Float + faer::traits::ComplexField {
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    /// `nano-gemm`'s `C = A B` (faer's own path for small products), C row-major `(m, n)`
    /// with row stride `ldc`.
    ///
    /// # Safety
    /// As [`gemm`].
    unsafe fn small_gemm(
        shape: (usize, usize, usize),
        a: *const Self,
        sa: (isize, isize),
        b: *const Self,
        sb: (isize, isize),
        c: *mut Self,
        ldc: usize,
    );
}

/// nano-gemm sums a product whose C is not column-major in depth blocks of this many
/// (64); up to it, a product is computed as its transpose with the same result.
const SMALL_GEMM_DEPTH: usize = 64;

macro_rules! small_gemm {
    ($execute:path) => {
        unsafe fn small_gemm(
            (m, k, n): (usize, usize, usize),
            a: *const Self,
            sa: (isize, isize),
            b: *const Self,
            sb: (isize, isize),
            c: *mut Self,
            ldc: usize,
        ) {
            if k <= SMALL_GEMM_DEPTH {
                // C^T = B^T A^T: C row-major is C^T column-major, which nano-gemm writes in
                // place (no copy of C through a buffer). Each element is the same chain of
                // multiply-adds over the depth as below (one depth block), so the same bits.
                return $execute(
                    n,
                    m,
                    k,
                    c,
                    1,
                    ldc as isize,
                    b,
                    sb.1,
                    sb.0,
                    a,
                    sa.1,
                    sa.0,
                    0.0,
                    1.0,
                    false,
                    false,
                );
            }
            // dst = 0 * dst + 1 * A B.
            $execute(
                m,
                n,
                k,
                c,
                ldc as isize,
                1,
                a,
                sa.0,
                sa.1,
                b,
                sb.0,
                sb.1,
                0.0,
                1.0,
                false,
                false,
            );
        }
    };
}

impl NnFloat for f32 {
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        math::ln_f32(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        math::ln_1p_f32(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        math::tanh_f32(self)
    }
    small_gemm!(nano_gemm::planless::execute_f32);
}

impl NnFloat for f64 {
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f64(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        math::ln_f64(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        math::ln_1p_f64(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        math::tanh_f64(self)
    }
    small_gemm!(nano_gemm::planless::execute_f64);
}

/// `C = A B` through faer (runtime-dispatched AVX2/AVX-512 kernels; small products by its
/// `nano-gemm`), sequential: `A (m, k)` and `B (k, n)` given by (row, column) strides
/// in elements, C row-major with row stride `ldc`.
///
/// # Safety
/// The pointers must address matrices of these shapes and strides; C must not overlap
/// A or B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    c: *mut T,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k <= SMALL_MULS {
        return T::small_gemm((m, k, n), a, (rsa, csa), b, (rsb, csb), c, ldc);
    }
    let a = faer::MatRef::<T>::from_raw_parts(a, m, k, rsa, csa);
    let b = faer::MatRef::<T>::from_raw_parts(b, k, n, rsb, csb);
    let c = faer::MatMut::<T>::from_raw_parts_mut(c, m, n, ldc as isize, 1);
    faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, T::ONE, faer::Par::Seq);
}

/// Products of at most this many multiply-adds go straight to `nano-gemm` (faer's own
/// threshold for it; faer would first try its matrix-vector kernels, slower at this size).
const SMALL_MULS: usize = 16 * 16 * 16;

/// Products of at least twice this many multiply-adds (about 5 us of one core) are cut
/// into tiles of C.
const TILE_MIN_MULS: usize = 1 << 18;
/// The most tiles a product is cut into.
const MAX_TILES: usize = 16;
/// Tiles are at least this many rows and columns (where C has them).
const TILE_MIN_SIDE: usize = 128;

/// How C `(m, n)` of a product with inner size `k` is cut into tiles: `(rows, columns)`
/// per tile. A function of the shape alone, never of the thread count: each tile is the
/// same faer call whichever thread runs it, so results do not depend on the thread count.
fn tiles(m: usize, k: usize, n: usize) -> (usize, usize) {
    let want = (m * k * n / TILE_MIN_MULS).clamp(1, MAX_TILES);
    let row_blocks = want.min(m.div_ceil(TILE_MIN_SIDE));
    let col_blocks = (want / row_blocks).min(n.div_ceil(TILE_MIN_SIDE)).max(1);
    let round = |len: usize, blocks: usize| len.div_ceil(blocks).div_ceil(16) * 16;
    (round(m, row_blocks).min(m), round(n, col_blocks).min(n))
}

/// `C = A B` as [`gemm`] with C row-major `(m, n)`, cut into the [`tiles`] of its shape,
/// computed on the pool when there are several.
///
/// # Safety
/// As [`gemm`].
unsafe fn matmul<T: NnFloat>(
    shape: (usize, usize, usize),
    a: *const T,
    sa: (isize, isize),
    b: *const T,
    sb: (isize, isize),
    c: *mut T,
) {
    let (m, k, n) = shape;
    let (tr, tc) = tiles(m, k, n);
    if tr >= m && tc >= n {
        return gemm(shape, a, sa, b, sb, c, n);
    }
    let (row_tiles, col_tiles) = (m.div_ceil(tr), n.div_ceil(tc));
    let (a, b, c) = (a as usize, b as usize, c as usize);
    let tile = |t: usize| {
        let (r0, c0) = ((t / col_tiles) * tr, (t % col_tiles) * tc);
        let (rows, cols) = (tr.min(m - r0), tc.min(n - c0));
        let a = (a as *const T).wrapping_offset(r0 as isize * sa.0);
        let b = (b as *const T).wrapping_offset(c0 as isize * sb.1);
        let c = (c as *mut T).wrapping_add(r0 * n + c0);
        // SAFETY: the tiles of C are disjoint; A and B are read only.
        unsafe { gemm((rows, k, cols), a, sa, b, sb, c, n) };
    };
    let count = row_tiles * col_tiles;
    if crate::parallel::num_threads() < 2 {
        (0..count).for_each(tile);
    } else {
        crate::parallel::for_each_index(count, &tile);
    }
}

/// Element-wise passes over at least twice this many values are cut into blocks of whole
/// rows of about this many, spread over the pool.
const ROW_BLOCK_ELEMENTS: usize = 1 << 15;

/// Runs `f(first, block)` on blocks of whole rows of `out` (`n` values per row; `first` is
/// the block's first element), on the pool when it has several threads and `out` is large.
/// For element-wise passes, whose results do not depend on the cut.
fn by_row_blocks<T: NnFloat>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let len = out.len();
    if len < 2 * ROW_BLOCK_ELEMENTS || crate::parallel::num_threads() < 2 {
        return f(0, out);
    }
    let block = (ROW_BLOCK_ELEMENTS / n.max(1)).max(1) * n;
    let at = out.as_mut_ptr() as usize;
    crate::parallel::for_each_index(len.div_ceil(block), &|i| {
        let first = i * block;
        let end = (first + block).min(len);
        // SAFETY: the blocks are disjoint parts of `out`, borrowed mutably for this call.
        let part =
            unsafe { std::slice::from_raw_parts_mut((at as *mut T).add(first), end - first) };
        f(first, part);
    });
}

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
    /// The second half of a batch computed in two halves (see [`Mlp::halves`]).
    half: Option<Box<Half<T>>>,
}

/// The second half's own workspace and gradients.
type Half<T> = (Workspace<T>, Vec<Vec<T>>);

impl<T: NnFloat> Workspace<T> {
    /// Grows (never shrinks) the buffers to hold `rows` examples of `net`: one activation
    /// per layer (`rows * n_l` values) and two deltas of the widest layer.
    ///
    /// # Errors
    /// `OutOfMemory` naming the buffer and the row count, the workspace left empty.
    pub fn fit(&mut self, net: &Mlp, rows: usize) -> Result<()> {
        let layers = net.sizes.len() - 1;
        if self.acts.len() == layers && self.rows >= rows {
            return Ok(());
        }
        let rows = rows.max(self.rows);
        // The old buffers go first, so their memory is there for the new ones.
        *self = Workspace::default();
        let buffer = |width: usize, what: String| {
            try_filled(rows.saturating_mul(width), T::ZERO, || {
                format!("{what} of {rows} rows")
            })
        };
        let widest = net.sizes[1..].iter().copied().max().unwrap_or(0);
        let acts = net.sizes[1..]
            .iter()
            .enumerate()
            .map(|(l, &n)| buffer(n, format!("the activations A{}", l + 1)))
            .collect::<Result<_>>()?;
        let delta = || buffer(widest, "a backward-pass delta".to_string());
        *self = Workspace {
            rows,
            acts,
            delta: [delta()?, delta()?],
            half: None,
        };
        Ok(())
    }

    /// Takes out the second half's workspace, sized for `rows`, and gradients (made on
    /// first use); the caller puts it back.
    ///
    /// # Errors
    /// `OutOfMemory` as [`Workspace::fit`].
    fn take_half(&mut self, net: &Mlp, rows: usize) -> Result<Box<Half<T>>> {
        let mut half = if let Some(h) = self.half.take() {
            h
        } else {
            let grads = net
                .param_len_iter()
                .map(|n| try_filled(n, T::ZERO, || "the second half's gradients".to_string()))
                .collect::<Result<_>>()?;
            Box::new((Workspace::default(), grads))
        };
        half.0.fit(net, rows)?;
        Ok(half)
    }

    /// The output activations of the last forward pass (`rows` of them).
    ///
    /// # Panics
    /// If the workspace was not sized for `net` (see [`Workspace::fit`]).
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

impl<T> Inputs<'_, T> {
    /// Rows `..at` and `at..` of row-major inputs with `n` columns.
    fn split(self, at: usize, n: usize) -> (Self, Self) {
        let (x0, x1) = self.x.split_at(at * n);
        let part = |x, rows| Inputs {
            x,
            rows,
            transposed: false,
        };
        (part(x0, at), part(x1, self.rows - at))
    }
}

impl<T> Targets<'_, T> {
    /// Rows `..at` and `at..` (`k` values per row when dense).
    fn split(self, at: usize, k: usize) -> (Self, Self) {
        match self {
            Targets::Dense(y) => {
                let (a, b) = y.split_at(at * k);
                (Targets::Dense(a), Targets::Dense(b))
            }
            Targets::Labels(y) => {
                let (a, b) = y.split_at(at);
                (Targets::Labels(a), Targets::Labels(b))
            }
        }
    }

    /// Whether there are `rows` targets of `k` values (or labels).
    fn fits(&self, rows: usize, k: usize) -> bool {
        match self {
            Targets::Dense(y) => y.len() == rows * k,
            Targets::Labels(y) => y.len() == rows,
        }
    }
}

/// Batches whose forward products take at least this many multiply-adds are computed in
/// two halves of rows, side by side on the pool (see [`Mlp::halves`]).
const HALVES_MIN_MULS: usize = 1 << 17;

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
        self.param_len_iter().collect()
    }

    fn param_len_iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.sizes.windows(2).flat_map(|w| [w[0] * w[1], w[1]])
    }

    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    fn check_params<P: AsRef<[T]>, T>(&self, params: &[P]) -> Result<()> {
        // Checked once per batch: no allocation.
        if params.len() != 2 * self.layers()
            || params
                .iter()
                .zip(self.param_len_iter())
                .any(|(p, n)| p.as_ref().len() != n)
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
        ws.fit(self, rows)?;
        let level = crate::simd::level();
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
                matmul::<T>(
                    (rows, k, n),
                    a,
                    (rsa, csa),
                    w.as_ptr(),
                    (n as isize, 1),
                    out.as_mut_ptr(),
                );
            };
            match self.output {
                _ if l < layers => by_row_blocks(out, n, |_, block| {
                    bias_activation(level, block, b, self.hidden);
                }),
                // The logits stay for the cost: log(1 - p) loses them once p rounds to 1.
                Output::Sigmoid => bias_sigmoid(level, out, &mut ws.delta[1][..rows * n], b),
                Output::Softmax => bias_softmax(level, out, b),
                Output::Identity => bias_activation(level, out, b, Activation::Identity),
            }
        }
        Ok(())
    }

    /// The cost of the last forward pass (`rows` of a batch of `m`) against `y`, and
    /// `dJ/dZ_L` into `ws.delta[0]`.
    fn output_delta<T: NnFloat>(
        &self,
        ws: &mut Workspace<T>,
        rows: usize,
        y: Targets<'_, T>,
        m: usize,
    ) -> Result<f64> {
        let k = self.outputs();
        let a = &ws.acts[ws.acts.len() - 1][..rows * k];
        let d = &mut ws.delta[0][..rows * k];
        let inv_m = T::from_f64(1.0 / m as f64);
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
                    cost -= p[c].ln().to_f64();
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
                if out == Output::Softmax {
                    for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                        *dd = (p - t) * inv_m;
                        if t != T::ZERO {
                            cost -= t.to_f64() * p.ln().to_f64();
                        }
                    }
                } else {
                    let inv_mk = T::from_f64(1.0 / (m * k) as f64);
                    for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                        let r = p - t;
                        *dd = r * inv_mk;
                        cost += 0.5 * r.to_f64() * r.to_f64();
                    }
                    return Ok(cost / (m * k) as f64);
                }
            }
        }
        Ok(cost / m as f64)
    }

    /// The cost `J` of a batch and its gradient `dJ/dparam` into `grads` (`W1, b1, ...`).
    ///
    /// Sigmoid outputs: the cost is computed from the logits (`softplus(z) - y z`), which
    /// stays finite when `p` rounds to 0 or 1.
    pub fn loss_and_grad<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
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
        // Checked once per batch: no allocation.
        if grads.len() != 2 * self.layers()
            || grads
                .iter_mut()
                .zip(self.param_len_iter())
                .any(|(g, n)| g.as_mut().len() != n)
        {
            return Err(Error::Mismatch("gradients do not match layer_sizes".into()));
        }
        Ok(())
    }

    /// Where a batch of `rows` is cut into two halves computed side by side, if it is:
    /// when its forward products take at least [`HALVES_MIN_MULS`] multiply-adds, its
    /// inputs are row-major, and each half is small enough that nothing in it is spread
    /// over the pool again (no product cut into tiles, no element-wise pass into blocks).
    /// The gradient is then the first half's plus the second's. A function of the shape
    /// alone, so results do not depend on the thread count.
    pub fn halves(&self, rows: usize, transposed: bool) -> Option<usize> {
        let first = rows.div_ceil(2);
        let muls: usize = self.sizes.windows(2).map(|w| w[0] * w[1]).sum();
        let small = self.sizes.windows(2).all(|w| {
            first.saturating_mul(w[0] * w[1]) < 2 * TILE_MIN_MULS
                && first.saturating_mul(w[1]) < 2 * ROW_BLOCK_ELEMENTS
        });
        (!transposed && rows >= 2 && rows.saturating_mul(muls) >= HALVES_MIN_MULS && small)
            .then_some(first)
    }

    /// The forward pass and the data cost of a batch (no penalty), leaving `dJ/dZ_L` in the
    /// workspace for [`Mlp::backward`].
    pub fn forward_cost<T: NnFloat, P: AsRef<[T]> + Sync>(
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
        let Some(at) = self.halves(rows, inputs.transposed) else {
            return self.forward_cost_rows(ws, params, inputs, y, rows);
        };
        if inputs.x.len() != rows * self.sizes[0] {
            return Err(Error::Mismatch("X does not match its row count".into()));
        }
        if !y.fits(rows, self.outputs()) {
            return Err(Error::Mismatch("Y does not match X's rows".into()));
        }
        let mut half = ws.take_half(self, rows - at)?;
        let (x0, x1) = inputs.split(at, self.sizes[0]);
        let (y0, y1) = y.split(at, self.outputs());
        let (c0, c1) = crate::parallel::join(
            || self.forward_cost_rows(ws, params, x0, y0, rows),
            || self.forward_cost_rows(&mut half.0, params, x1, y1, rows),
        );
        ws.half = Some(half);
        Ok(c0? + c1?)
    }

    /// [`Mlp::forward_cost`] of the rows of `inputs`, part of a batch of `m` rows: the
    /// part's share of the batch's mean cost, and of `dJ/dZ_L`.
    fn forward_cost_rows<T: NnFloat, P: AsRef<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        m: usize,
    ) -> Result<f64> {
        self.forward(ws, params, inputs)?;
        if self.output == Output::Sigmoid {
            self.sigmoid_cost_and_delta(ws, inputs.rows, y, m)
        } else {
            self.output_delta(ws, inputs.rows, y, m)
        }
    }

    /// The gradients of the batch [`Mlp::forward_cost`] just saw, into `grads`; returns the
    /// L2 penalty `alpha/(2m) sum ||W||^2` (0 without one). The caller has checked
    /// `params` and `grads` against the network (both passes use the same `params`).
    ///
    /// # Panics
    /// If the batch was computed in halves ([`Mlp::halves`]) and `forward_cost` was not
    /// called for it.
    pub fn backward<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        grads: &mut [G],
    ) -> f64 {
        let rows = inputs.rows;
        if let Some(at) = self.halves(rows, inputs.transposed) {
            let mut half = ws
                .half
                .take()
                .expect("forward_cost computed this batch in halves");
            let (x0, x1) = inputs.split(at, self.sizes[0]);
            crate::parallel::join(
                || self.backward_rows(ws, params, x0, grads),
                || self.backward_rows(&mut half.0, params, x1, &mut half.1),
            );
            for (g, h) in grads.iter_mut().zip(&half.1) {
                for (a, &b) in g.as_mut().iter_mut().zip(h) {
                    *a += b;
                }
            }
            ws.half = Some(half);
        } else {
            self.backward_rows(ws, params, inputs, grads);
        }
        self.penalty(params, grads, rows)
    }

    /// Adds `alpha/m W` to each `dW` and returns the penalty `alpha/(2m) sum ||W||^2`.
    fn penalty<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        params: &[P],
        grads: &mut [G],
        rows: usize,
    ) -> f64 {
        if self.alpha == 0.0 {
            return 0.0;
        }
        let alpha_m = self.alpha / rows as f64;
        let am = T::from_f64(alpha_m);
        let mut cost = 0.0;
        for l in (1..=self.layers()).rev() {
            let (gw, w) = (grads[2 * (l - 1)].as_mut(), params[2 * (l - 1)].as_ref());
            let mut sq = 0.0f64;
            for (g, &wv) in gw.iter_mut().zip(w) {
                *g += am * wv;
                sq += wv.to_f64() * wv.to_f64();
            }
            cost += 0.5 * alpha_m * sq;
        }
        cost
    }

    /// The data part of [`Mlp::backward`] for the rows of `inputs` (those the last
    /// `forward_cost_rows` into `ws` saw), into `grads`.
    fn backward_rows<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        grads: &mut [G],
    ) {
        let rows = inputs.rows;
        let layers = self.layers();
        let level = crate::simd::level();
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
            // dW = A^T dZ: A^T is (k, rows).
            // SAFETY: shapes and strides as described; gw does not overlap A or dZ.
            unsafe {
                matmul::<T>(
                    (k, rows, n),
                    a,
                    (rsa, csa),
                    d.as_ptr(),
                    (n as isize, 1),
                    gw.as_mut_ptr(),
                );
            };
            column_sums(level, gb, d);
            if l > 1 {
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
                    );
                };
                let a = &ws.acts[l - 2][..rows * k];
                by_row_blocks(below, k, |at, block| {
                    activation_backward(level, block, &a[at..at + block.len()], self.hidden);
                });
                ws.delta.swap(0, 1);
            }
        }
    }

    /// Sigmoid output: `dJ/dZ = (p - y)/m`, `J = 1/m sum bce(z, y)` from the logits the
    /// forward pass kept in `ws.delta[1]`.
    fn sigmoid_cost_and_delta<T: NnFloat>(
        &self,
        ws: &mut Workspace<T>,
        rows: usize,
        y: Targets<'_, T>,
        m: usize,
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
        let (z, d) = (&mut z[..rows * k], &mut d[..rows * k]);
        let p = &ws.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / m as f64);
        sigmoid_delta_and_terms(crate::simd::level(), d, z, p, y, inv_m);
        Ok(z.iter().map(|t| t.to_f64()).sum::<f64>() / m as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i + 1) * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    fn problem(net: &Mlp, rows: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
        let params = net
            .param_lens()
            .iter()
            .enumerate()
            .map(|(i, &n)| values(n, i + 1).iter().map(|v| v * 0.7).collect())
            .collect();
        let x = values(rows * net.sizes[0], 99);
        let k = net.outputs();
        let y = values(rows * k, 7)
            .iter()
            .enumerate()
            .map(|(i, v)| match net.output {
                // Softmax targets are distributions: one-hot rows.
                Output::Softmax => f64::from(u8::from(i % k == (i / k) % k)),
                _ => f64::from(u8::from(*v > 0.0)),
            })
            .collect();
        (params, x, y)
    }

    fn cost(
        net: &Mlp,
        ws: &mut Workspace<f64>,
        params: &[Vec<f64>],
        x: &[f64],
        y: &[f64],
        rows: usize,
    ) -> f64 {
        let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
        let inputs = Inputs {
            x,
            rows,
            transposed: false,
        };
        net.loss_and_grad(ws, params, inputs, Targets::Dense(y), &mut grads)
            .unwrap()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for hidden in [Activation::Tanh, Activation::Sigmoid, Activation::Identity] {
            for output in [Output::Sigmoid, Output::Softmax, Output::Identity] {
                let net = Mlp::new(vec![3, 4, 2], hidden, output, 0.3).unwrap();
                let rows = 5;
                let (mut params, x, y) = problem(&net, rows);
                let mut ws = Workspace::default();
                let mut grads: Vec<Vec<f64>> =
                    net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
                let inputs = Inputs {
                    x: &x,
                    rows,
                    transposed: false,
                };
                net.loss_and_grad(&mut ws, &params, inputs, Targets::Dense(&y), &mut grads)
                    .unwrap();
                let h = 1e-6;
                for p in 0..params.len() {
                    for i in 0..params[p].len() {
                        let old = params[p][i];
                        params[p][i] = old + h;
                        let up = cost(&net, &mut ws, &params, &x, &y, rows);
                        params[p][i] = old - h;
                        let down = cost(&net, &mut ws, &params, &x, &y, rows);
                        params[p][i] = old;
                        let fd = (up - down) / (2.0 * h);
                        assert!(
                            (fd - grads[p][i]).abs() < 1e-6 * (1.0 + fd.abs()),
                            "{hidden:?} {output:?} param {p}[{i}]: {fd} vs {}",
                            grads[p][i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiled_products_do_not_depend_on_the_thread_count() {
        // A^T given by strides, as the backward pass passes it.
        let (m, k, n) = (300, 200, 280);
        let a: Vec<f32> = values(m * k, 1).iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = values(k * n, 2).iter().map(|&v| v as f32).collect();
        let run = |threads| {
            crate::parallel::set_num_threads(threads).unwrap();
            let mut c = vec![0f32; m * n];
            // SAFETY: shapes as given, C separate.
            unsafe {
                matmul::<f32>(
                    (m, k, n),
                    a.as_ptr(),
                    (1, m as isize),
                    b.as_ptr(),
                    (n as isize, 1),
                    c.as_mut_ptr(),
                );
            };
            c
        };
        let (tr, tc) = tiles(m, k, n);
        assert!(tr < m && tc < n, "the product is cut into tiles both ways");
        let one = run(1);
        for (i, j) in [(0, 0), (m - 1, n - 1), (137, 211)] {
            let exact: f64 = (0..k)
                .map(|p| f64::from(a[p * m + i]) * f64::from(b[p * n + j]))
                .sum();
            assert!((f64::from(one[i * n + j]) - exact).abs() < 1e-3 * (1.0 + exact.abs()));
        }
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        // Wide enough for tiled products and element-wise passes in blocks of rows.
        let net = Mlp::new(
            vec![64, 160, 160, 10],
            Activation::Relu,
            Output::Softmax,
            0.1,
        )
        .unwrap();
        let rows = 700;
        let (params, x, _) = problem(&net, rows);
        let params: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|&v| v as f32 * 0.3).collect())
            .collect();
        let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let labels: Vec<i64> = (0..rows as i64).map(|i| i % 10).collect();
        assert!(rows * 160 >= 2 * ROW_BLOCK_ELEMENTS);
        let run = |threads| {
            crate::parallel::set_num_threads(threads).unwrap();
            let mut grads: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let cost = net
                .loss_and_grad(
                    &mut Workspace::default(),
                    &params,
                    inputs,
                    Targets::Labels(&labels),
                    &mut grads,
                )
                .unwrap();
            (cost, grads)
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn a_batch_in_halves_equals_the_whole_batch_to_rounding_at_every_thread_count() {
        for output in [Output::Sigmoid, Output::Softmax, Output::Identity] {
            let net = Mlp::new(vec![2, 32, 32, 3], Activation::Relu, output, 0.2).unwrap();
            let rows = 515;
            assert_eq!(net.halves(rows, false), Some(258));
            assert_eq!(net.halves(rows, true), None);
            let (params, x, y) = problem(&net, rows);
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let zeros =
                || -> Vec<Vec<f64>> { net.param_lens().iter().map(|&n| vec![0.0; n]).collect() };
            // The whole batch at once: the private passes, without the split.
            let mut ws = Workspace::default();
            let mut whole = zeros();
            let y_all = Targets::Dense(&y[..]);
            let mut want = net
                .forward_cost_rows(&mut ws, &params, inputs, y_all, rows)
                .unwrap();
            net.backward_rows(&mut ws, &params, inputs, &mut whole);
            want += net.penalty(&params, &mut whole, rows);
            let run = |threads| {
                crate::parallel::set_num_threads(threads).unwrap();
                let mut grads = zeros();
                let mut ws = Workspace::default();
                let cost = net
                    .loss_and_grad(&mut ws, &params, inputs, Targets::Dense(&y), &mut grads)
                    .unwrap();
                assert!(ws.half.is_some(), "computed in halves");
                (cost, grads)
            };
            let one = run(1);
            let (cost, grads) = &one;
            assert!(
                (cost - want).abs() <= 1e-12 * want.abs(),
                "{output:?}: {cost} vs {want}"
            );
            for (g, w) in grads.iter().flatten().zip(whole.iter().flatten()) {
                assert!(
                    (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                    "{output:?}: {g} vs {w}"
                );
            }
            assert_eq!(one, run(2));
            assert_eq!(one, run(3));
        }
    }

    #[test]
    fn tiles_cover_c_and_depend_only_on_the_shape() {
        assert_eq!(tiles(64, 2, 5), (64, 5));
        assert_eq!(tiles(256, 32, 32), (256, 32));
        for (m, k, n) in [
            (1024, 256, 256),
            (256, 1024, 10),
            (64, 1024, 256),
            (1000, 64, 300),
        ] {
            let (tr, tc) = tiles(m, k, n);
            let count = m.div_ceil(tr) * n.div_ceil(tc);
            assert!(
                count > 1 && count <= MAX_TILES,
                "{m}x{k}x{n}: {count} tiles"
            );
        }
    }

    #[test]
    fn labels_out_of_range_are_an_error() {
        let net = Mlp::new(vec![2, 3], Activation::Relu, Output::Softmax, 0.0).unwrap();
        let params = vec![vec![0.1f64; 6], vec![0.0; 3]];
        let mut grads = vec![vec![0.0f64; 6], vec![0.0; 3]];
        let x = [1.0, 2.0];
        let inputs = Inputs {
            x: &x,
            rows: 1,
            transposed: false,
        };
        let r = net.loss_and_grad(
            &mut Workspace::default(),
            &params,
            inputs,
            Targets::Labels(&[3]),
            &mut grads,
        );
        assert!(matches!(r, Err(Error::Invalid(_))));
        assert!(Mlp::new(vec![2, 1], Activation::Relu, Output::Softmax, 0.0).is_err());
    }
}
