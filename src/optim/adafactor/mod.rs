//! Adafactor as torch.optim.Adafactor runs it on the CPU (`_single_tensor_adafactor`; the
//! foreach path differs only in how the last update is rounded, see [`AdafactorHyper`]).
//!
//! For a parameter with two or more dimensions `(..., m, n)` the second moment is kept
//! factored: a row EWA `R (..., m, 1)` of the mean squared gradient over each row and a
//! column EWA `C (..., 1, n)` over each column, so the state is `m + n` numbers per matrix
//! instead of `m n`; the full second moment is estimated as `R C / max(mean(R), eps1)`.
//! Vectors and scalars keep the unfactored EWA `V`.
//!
//! torch's results depend on how its CPU kernels reduce: the reductions here reproduce
//! them (built for AVX2, torch's kernel level on x86 machines without AVX-512): `norm_torch`
//! (`vector_norm` over a contiguous run), `norm_columns` (over a strided dimension) and
//! [`sum_torch`] (`sum` / `mean`, torch's cascade sum), and the element-wise steps use torch's
//! fused multiply-adds (`lerp_`, `add_(alpha=)`). `norm_torch` and `norm_columns`, the
//! readable forms, are kept for the tests; the step's kernels compute the same sums, in the
//! same order, vectorized and split across threads where the order allows. Where those reductions split their work
//! across threads (a reduced run of 32768 elements or more), torch's sums depend on its
//! thread count, and ours agree to float rounding.
//!
//! The step is here; [`reductions`] holds torch's sums and norms in its order, `kernels` the
//! element-wise passes compiled per SIMD level.

use crate::numerics::float::Float;
use crate::optim::ewa::py_pow_half;
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, Level};

mod kernels;
mod reductions;
#[cfg(test)]
mod tests;

use kernels::{
    apply_kernel, cols_kernel, full_kernel, norm_kernel, rows_cols_kernel, rows_kernel,
    update_rows_kernel,
};
pub use reductions::sum_torch;

/// Hyper-parameters of one step, checked by the caller (Python owns their ranges).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdafactorHyper {
    /// `lr`: the cap of the relative step size `rho_t = min(lr, 1/sqrt(t))` and the
    /// coefficient of the decoupled weight decay.
    pub lr: f64,
    /// `beta2_decay` (`<= 0`): the EWAs' weight of the new value is `t ** beta2_decay`.
    pub beta2_decay: f64,
    /// `eps1`, resolved: torch's `None` is the parameter dtype's machine epsilon, which the
    /// caller picks as torch does.
    pub eps1: f64,
    /// `eps2`: the floor of the parameter RMS that scales the step.
    pub eps2: f64,
    /// `d` (`>= 1`): the update is scaled down so that its RMS is at most `d`.
    pub d: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// torch's foreach path: the update scaled and rounded, then added
    /// (`_foreach_mul_`, `_foreach_add_`); otherwise added with one fused multiply-add
    /// (`add_(update, alpha=)`), as the single-tensor path (torch's default) does.
    pub foreach: bool,
}

/// The parameter types, with the lane count of torch's AVX2 `Vectorized<T>` and the fused
/// multiply-add its vectorized kernels use.
pub trait AdafactorFloat: Float {
    /// Elements per 256-bit vector: 8 float32, 4 float64.
    const LANES: usize;
    /// `self * a + b`, rounded once.
    fn fma(self, a: Self, b: Self) -> Self;
}

impl AdafactorFloat for f32 {
    const LANES: usize = 8;
    #[inline(always)]
    fn fma(self, a: f32, b: f32) -> f32 {
        self.mul_add(a, b)
    }
}

impl AdafactorFloat for f64 {
    const LANES: usize = 4;
    #[inline(always)]
    fn fma(self, a: f64, b: f64) -> f64 {
        self.mul_add(a, b)
    }
}

/// The second-moment state of one parameter.
pub enum Moments<'a, T> {
    /// A parameter of shape `(..., rows, cols)`: `row_var` holds `(..., rows)`, `col_var`
    /// `(..., cols)`, both C-ordered.
    Factored {
        row_var: &'a mut [T],
        col_var: &'a mut [T],
        rows: usize,
        cols: usize,
    },
    /// A vector or scalar: `variance` has the parameter's size.
    Full { variance: &'a mut [T] },
}

/// torch's `start.lerp_(end, w)` on CPU: `start + w (end - start)` for `|w| < 0.5`, else
/// `end + (w - 1) (end - start)`, each one fused multiply-add.
#[inline(always)]
pub(crate) fn lerp<T: AdafactorFloat>(start: T, end: T, w: T) -> T {
    if w.abs() < T::from_f64(0.5) {
        w.fma(end - start, start)
    } else {
        (w - T::ONE).fma(end - start, end)
    }
}

/// The first phase's independent pieces of work.
enum Reduce<'a, T> {
    /// `||p||`, written to the cell.
    Norm(&'a [T], &'a mut T),
    /// Whole rows of one matrix and their row EWAs.
    Rows(&'a [T], &'a mut [T]),
    /// One matrix and a block of its column EWAs, from column `usize`.
    Cols(&'a [T], usize, &'a mut [T]),
    /// One whole matrix (`cols > 1`), its row and column EWAs, in one pass (unthreaded).
    Both(&'a [T], &'a mut [T], &'a mut [T]),
    /// A single-column matrix (its column is contiguous) and its column EWA.
    Column(&'a [T], &'a mut T),
}

/// The Adafactor update of one parameter, in place, at step `t` (torch's float32 step
/// counter after its increment, `t >= 1`):
///
/// ```text
/// g      = -grad if maximize else grad
/// w      = t ** beta2_decay                      (1 - beta2_t)
/// rho    = min(lr, 1 / sqrt(t))
/// alpha  = max(eps2, ||p|| / sqrt(numel)) rho    (from p before the decay)
/// p      = p (1 - lr weight_decay)
/// factored:  R = lerp(R, mean(g^2, last dim), w);  C = lerp(C, mean(g^2, dim -2), w)
///            V = R C / max(mean(R over rows), eps1)
/// else:      V = lerp(V, g^2, w)
/// U      = g / sqrt(max(V, eps1^2))              (rsqrt, then times g)
/// p      = p - alpha / max(1, ||U|| / (sqrt(numel) d)) U
/// ```
///
/// with torch's roundings (see the module). `param` and `grad` have the same length. Large
/// parameters are split across the thread pool; every element and every reduction is
/// computed in one order whatever the thread count and SIMD level, so the bits are the same.
pub fn step<T: AdafactorFloat>(
    h: &AdafactorHyper,
    t: f64,
    param: &mut [T],
    grad: &[T],
    moments: Moments<'_, T>,
) {
    let threaded = parallel::worth_threads(param.len());
    step_with(simd::level(), threaded, h, t, param, grad, moments);
}

/// [`step`] at a given SIMD level, on the pool's threads when `threaded`.
pub(crate) fn step_with<T: AdafactorFloat>(
    level: Level,
    threaded: bool,
    h: &AdafactorHyper,
    t: f64,
    param: &mut [T],
    grad: &[T],
    moments: Moments<'_, T>,
) {
    let numel = param.len();
    let grad = &grad[..numel];
    let one_minus_beta2 = t.powf(h.beta2_decay);
    let inv_sqrt_t = 1.0 / py_pow_half(t);
    let rho = if inv_sqrt_t < h.lr { inv_sqrt_t } else { h.lr };
    let sqrt_numel = py_pow_half(numel as f64);
    let w = T::from_f64(one_minus_beta2);
    let sign = if h.maximize { -T::ONE } else { T::ONE };
    let floor = T::from_f64(h.eps1 * h.eps1);
    let mut param_norm = T::ZERO;
    // written below before it is read: no pass to zero it
    let mut update: Vec<T> = Vec::with_capacity(numel);
    let spare = &mut update.spare_capacity_mut()[..numel];
    match moments {
        Moments::Factored {
            row_var,
            col_var,
            rows,
            cols,
        } => {
            let per = rows * cols;
            assert!(
                per > 0
                    && numel.is_multiple_of(per)
                    && row_var.len() == numel / per * rows
                    && col_var.len() == numel / per * cols,
                "a (..., {rows}, {cols}) parameter cannot have {numel} elements, {} row and {} column averages",
                row_var.len(),
                col_var.len()
            );
            let eps1 = T::from_f64(h.eps1);
            let (n_rows, n_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
            // rows per piece and column blocks: about CHUNK_ELEMENTS elements each
            let rows_per = (CHUNK_ELEMENTS / cols.max(1)).max(1);
            let col_block = if threaded {
                let blocks = (rows * cols).div_ceil(CHUNK_ELEMENTS).max(1);
                cols.div_ceil(blocks).next_multiple_of(16).max(64)
            } else {
                cols.max(1)
            };
            let mut work = vec![Reduce::Norm(&*param, &mut param_norm)];
            for ((g, r), c) in grad
                .chunks_exact(per)
                .zip(row_var.chunks_exact_mut(rows))
                .zip(col_var.chunks_exact_mut(cols))
            {
                // the norms of -g are those of g
                if !threaded && cols > 1 {
                    work.push(Reduce::Both(g, r, c));
                    continue;
                }
                for (i, r) in r.chunks_mut(rows_per).enumerate() {
                    let first = i * rows_per * cols;
                    work.push(Reduce::Rows(&g[first..first + r.len() * cols], r));
                }
                if cols == 1 {
                    work.push(Reduce::Column(g, &mut c[0]));
                } else {
                    for (b, c) in c.chunks_mut(col_block).enumerate() {
                        work.push(Reduce::Cols(g, b * col_block, c));
                    }
                }
            }
            parallel::run_each(work, threaded, |piece| match piece {
                Reduce::Norm(x, out) => *out = norm_kernel(level, x),
                Reduce::Rows(g, r) => rows_kernel(level, g, cols, r, n_cols, w),
                Reduce::Both(g, r, c) => rows_cols_kernel(level, g, cols, r, c, n_rows, n_cols, w),
                Reduce::Cols(g, first, c) => cols_kernel(level, g, cols, first, c, n_rows, w),
                Reduce::Column(g, c) => {
                    // a single column is contiguous: torch reduces it as a last dimension
                    let norm = norm_kernel(level, g);
                    *c = lerp(*c, norm * norm / n_rows, w);
                }
            });
            let mut pieces = Vec::new();
            for (((g, r), c), u) in grad
                .chunks_exact(per)
                .zip(row_var.chunks_exact(rows))
                .zip(col_var.chunks_exact(cols))
                .zip(spare.chunks_exact_mut(per))
            {
                let mean = sum_torch(r) / n_rows;
                let mean = if mean < eps1 { eps1 } else { mean };
                for ((g, r), u) in g
                    .chunks(rows_per * cols)
                    .zip(r.chunks(rows_per))
                    .zip(u.chunks_mut(rows_per * cols))
                {
                    pieces.push((g, r, c, u, mean));
                }
            }
            parallel::run_each(pieces, threaded, |(g, r, c, u, mean)| {
                update_rows_kernel(level, g, r, c, u, mean, floor, sign);
            });
        }
        Moments::Full { variance } => {
            let pieces: Vec<_> = grad
                .chunks(CHUNK_ELEMENTS)
                .zip(variance[..numel].chunks_mut(CHUNK_ELEMENTS))
                .zip(spare.chunks_mut(CHUNK_ELEMENTS))
                .collect();
            parallel::run_each(pieces, threaded, |((g, v), u)| {
                full_kernel(level, g, v, u, w, floor, sign);
            });
            param_norm = norm_kernel(level, param);
        }
    }
    // SAFETY: the pieces above cover `spare[..numel]` (whole matrices of `per` elements,
    // or chunks of every element), and each kernel writes every element of its piece.
    unsafe { update.set_len(numel) };
    let rms = param_norm.to_f64() / sqrt_numel;
    let alpha = if rms > h.eps2 { rms } else { h.eps2 } * rho;
    let update_rms = norm_kernel(level, &update).to_f64() / (sqrt_numel * h.d);
    let clip = if update_rms > 1.0 { update_rms } else { 1.0 };
    let scale = T::from_f64(-alpha / clip);
    let decay = (h.weight_decay != 0.0).then(|| T::from_f64(1.0 - h.lr * h.weight_decay));
    let pieces: Vec<_> = param
        .chunks_mut(CHUNK_ELEMENTS)
        .zip(update.chunks(CHUNK_ELEMENTS))
        .collect();
    parallel::run_each(pieces, threaded, |(p, u)| {
        apply_kernel(level, p, u, scale, decay, h.foreach);
    });
}
