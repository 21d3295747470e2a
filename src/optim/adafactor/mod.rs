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
    apply_kernel, apply_rows_kernel, cols_kernel, full_kernel, norm_kernel, rows_kernel,
    update_and_norm_kernel, update_norm_kernel, update_rows_kernel, whole_kernel,
};
pub use reductions::sum_torch;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// One parameter of a multi-tensor step ([`step_many`]): its hyper-parameters, its step
/// count `t` (torch's float32 counter after its increment, `t >= 1`), the parameter, its
/// gradient (same length) and its state.
pub struct AdafactorTensor<'a, T> {
    pub h: AdafactorHyper,
    pub t: f64,
    pub param: &'a mut [T],
    pub grad: &'a [T],
    pub moments: Moments<'a, T>,
}

/// Parameters from this many elements up do not store their update: its RMS is taken in a
/// pass that computes it without writing it, and the last pass computes it again (the same
/// operations, so the same bits). 24 bytes per float32 element instead of 32 (more for
/// the write-allocate of the stored update), for twice the update's arithmetic: worth it
/// once the tensors leave the caches.
pub const STORE_UPDATE_BELOW: usize = 1 << 20;

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
    step_many(vec![AdafactorTensor {
        h: *h,
        t,
        param,
        grad,
        moments,
    }]);
}

/// [`step`] at a given SIMD level, on the pool's threads when `threaded`.
#[cfg(test)]
pub(crate) fn step_with<T: AdafactorFloat>(
    level: Level,
    threaded: bool,
    h: &AdafactorHyper,
    t: f64,
    param: &mut [T],
    grad: &[T],
    moments: Moments<'_, T>,
) {
    let tensor = AdafactorTensor {
        h: *h,
        t,
        param,
        grad,
        moments,
    };
    step_many_with(level, threaded, STORE_UPDATE_BELOW, vec![tensor]);
}

/// [`step`] of every tensor, in three passes shared by all of them: the results are those
/// of one [`step`] per tensor, bit for bit, at any thread count and SIMD level.
///
/// 1. `||p||` and the second-moment EWAs (row and column EWAs, or `V` and the stored
///    update of a vector); a matrix of at most a quarter of a thread's share of the
///    elements is one task (one pass over its gradient), a larger one is split into row
///    and column pieces;
/// 2. the stored factored updates (with their norms where the parameter is one task);
/// 3. the other update norms, one task per parameter (its sum runs in one order): of the
///    stored updates, or (parameters of [`STORE_UPDATE_BELOW`] elements or more, factored)
///    of the update computed without storing it; then `p = p (1 - lr weight_decay) - scale
///    U`, the update read or computed again, each piece starting once its parameter's
///    norm is known (while other norms are still being computed).
pub fn step_many<T: AdafactorFloat>(tensors: Vec<AdafactorTensor<'_, T>>) {
    let total: usize = tensors.iter().map(|t| t.param.len()).sum();
    let threaded = total >= PARALLEL_MIN && parallel::worth_threads(total);
    step_many_with(simd::level(), threaded, STORE_UPDATE_BELOW, tensors);
}

/// Steps from this many elements up share the pool's threads (four times the element-wise
/// kernels' threshold): a step hands the pool three dependent passes, each waking its
/// workers. Measured on a 2-CPU machine shared with other work (load 3), the 85K-element
/// set of benches/compare.py (six tensors) took 72 us a step on one thread and 87 us on two.
const PARALLEL_MIN: usize = 4 * parallel::PARALLEL_MIN_ELEMENTS;

/// One tensor's scalars and its results between the passes.
struct Plan<'a, T> {
    h: AdafactorHyper,
    rho: f64,
    sqrt_numel: f64,
    w: T,
    sign: T,
    floor: T,
    param: &'a mut [T],
    grad: &'a [T],
    moments: Moments<'a, T>,
    /// One task in the first pass, rather than pieces.
    whole: bool,
    /// The update is written to `update` (vectors, and parameters below the threshold).
    store: bool,
    update: Vec<T>,
    /// `max(mean(R over rows), eps1)` of each matrix.
    means: Vec<T>,
    param_norm: T,
    update_norm: T,
}

/// The first pass's independent pieces of work.
enum Reduce<'a, T> {
    /// `||p||`, written to the cell.
    Norm(&'a [T], &'a mut T),
    /// Whole rows of one matrix (rows of `usize`) and their row EWAs.
    Rows(&'a [T], usize, &'a mut [T], T, T),
    /// One matrix (rows of `usize`) and a block of its column EWAs, from column `usize`.
    Cols(&'a [T], usize, usize, &'a mut [T], T, T),
    /// A single-column matrix (its column is contiguous) and its column EWA.
    Column(&'a [T], &'a mut T, T, T),
    /// A whole factored tensor on one thread: the parameter, its gradient, (rows, cols) and
    /// `w`; its norm's cell, then each matrix's row and column EWAs.
    #[allow(clippy::type_complexity)]
    Whole(
        &'a [T],
        &'a [T],
        (usize, usize),
        T,
        &'a mut T,
        &'a mut [T],
        &'a mut [T],
    ),
    /// A piece of a vector: `V` and the update.
    Full(&'a [T], &'a mut [T], &'a mut [MaybeUninit<T>], T, T, T),
}

/// The second pass's pieces.
enum Second<'a, T> {
    /// Whole rows of one matrix's update, stored: the gradient's rows, their `R`, the
    /// matrix's `C` and mean, the update's rows.
    Update(&'a [T], &'a [T], &'a [T], T, &'a mut [MaybeUninit<T>], T, T),
    /// A whole factored parameter's update, stored, and its norm: the gradient, `R`, `C`,
    /// the means, (rows, cols), floor, sign, the update's cells and the norm's.
    #[allow(clippy::type_complexity)]
    UpdateAndNorm(
        &'a [T],
        &'a [T],
        &'a [T],
        &'a [T],
        (usize, usize),
        T,
        T,
        &'a mut [MaybeUninit<T>],
        &'a mut T,
    ),
}

/// The last pass's pieces: `p = p decay + u scale`.
enum Apply<'a, T> {
    /// With the stored update.
    Stored(&'a mut [T], &'a [T]),
    /// Whole rows of one matrix, the update computed again: the gradient's rows, their
    /// `R`, the matrix's `C` and mean.
    Rows(&'a mut [T], &'a [T], &'a [T], &'a [T], T),
}

/// [`step_many`] at a given SIMD level, on the pool's threads when `threaded`, storing the
/// update of parameters below `store_below` elements.
pub(crate) fn step_many_with<T: AdafactorFloat>(
    level: Level,
    threaded: bool,
    store_below: usize,
    tensors: Vec<AdafactorTensor<'_, T>>,
) {
    let total: usize = tensors.iter().map(|t| t.param.len()).sum();
    let threads = if threaded {
        parallel::num_threads().max(1)
    } else {
        1
    };

    let mut plans: Vec<Plan<'_, T>> = tensors
        .into_iter()
        .map(|x| {
            let AdafactorTensor {
                h,
                t,
                param,
                grad,
                moments,
            } = x;
            let numel = param.len();
            let grad = &grad[..numel];
            let inv_sqrt_t = 1.0 / py_pow_half(t);
            let factored = match &moments {
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
                    true
                }
                Moments::Full { variance } => {
                    assert!(variance.len() >= numel, "variance has fewer elements than the parameter");
                    false
                }
            };
            let store = !factored || numel < store_below;
            Plan {
                h,
                rho: if inv_sqrt_t < h.lr { inv_sqrt_t } else { h.lr },
                sqrt_numel: py_pow_half(numel as f64),
                w: T::from_f64(t.powf(h.beta2_decay)),
                sign: if h.maximize { -T::ONE } else { T::ONE },
                floor: T::from_f64(h.eps1 * h.eps1),
                param,
                grad,
                moments,
                whole: !threaded || numel * 4 * threads <= total,
                store,
                // written below before it is read: no pass to zero it
                update: Vec::with_capacity(if store { numel } else { 0 }),
                means: Vec::new(),
                param_norm: T::ZERO,
                update_norm: T::ZERO,
            }
        })
        .collect();

    // 1. the parameter norms and the second moments
    let mut work = Vec::new();
    for plan in &mut plans {
        let Plan {
            w,
            sign,
            floor,
            param,
            grad,
            moments,
            whole,
            update,
            param_norm,
            ..
        } = plan;
        let (w, sign, floor, grad) = (*w, *sign, *floor, *grad);
        let numel = param.len();
        match moments {
            Moments::Factored {
                row_var,
                col_var,
                rows,
                cols,
            } => {
                let (rows, cols) = (*rows, *cols);
                let (n_rows, n_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
                if *whole {
                    work.push(Reduce::Whole(
                        param,
                        grad,
                        (rows, cols),
                        w,
                        param_norm,
                        row_var,
                        col_var,
                    ));
                    continue;
                }
                work.push(Reduce::Norm(param, param_norm));
                // rows per piece and column blocks: about CHUNK_ELEMENTS elements each
                let rows_per = (CHUNK_ELEMENTS / cols.max(1)).max(1);
                let blocks = (rows * cols).div_ceil(CHUNK_ELEMENTS).max(1);
                let col_block = cols.div_ceil(blocks).next_multiple_of(16).max(64);
                let per = rows * cols;
                for ((g, r), c) in grad
                    .chunks_exact(per)
                    .zip(row_var.chunks_exact_mut(rows))
                    .zip(col_var.chunks_exact_mut(cols))
                {
                    // the norms of -g are those of g
                    for (i, r) in r.chunks_mut(rows_per).enumerate() {
                        let first = i * rows_per * cols;
                        work.push(Reduce::Rows(
                            &g[first..first + r.len() * cols],
                            cols,
                            r,
                            n_cols,
                            w,
                        ));
                    }
                    if cols == 1 {
                        work.push(Reduce::Column(g, &mut c[0], n_rows, w));
                    } else {
                        for (b, c) in c.chunks_mut(col_block).enumerate() {
                            work.push(Reduce::Cols(g, cols, b * col_block, c, n_rows, w));
                        }
                    }
                }
            }
            Moments::Full { variance } => {
                work.push(Reduce::Norm(param, param_norm));
                let spare = &mut update.spare_capacity_mut()[..numel];
                for ((g, v), u) in grad
                    .chunks(CHUNK_ELEMENTS)
                    .zip(variance[..numel].chunks_mut(CHUNK_ELEMENTS))
                    .zip(spare.chunks_mut(CHUNK_ELEMENTS))
                {
                    work.push(Reduce::Full(g, v, u, w, floor, sign));
                }
            }
        }
    }
    parallel::run_each(work, threaded, |piece| match piece {
        Reduce::Norm(x, out) => *out = norm_kernel(level, x),
        Reduce::Rows(g, cols, r, n_cols, w) => rows_kernel(level, g, cols, r, n_cols, w),
        Reduce::Cols(g, cols, first, c, n_rows, w) => {
            cols_kernel(level, g, cols, first, c, n_rows, w);
        }
        Reduce::Column(g, c, n_rows, w) => column(level, g, c, n_rows, w),
        Reduce::Whole(p, g, (rows, cols), w, norm, r, c) => {
            let (n_rows, n_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
            *norm = whole_kernel(level, p, g, rows, cols, r, c, n_rows, n_cols, w);
        }
        Reduce::Full(g, v, u, w, floor, sign) => full_kernel(level, g, v, u, w, floor, sign),
    });

    // the means of R, and the vectors' updates, all written
    for plan in &mut plans {
        match &plan.moments {
            Moments::Factored { row_var, rows, .. } => {
                let eps1 = T::from_f64(plan.h.eps1);
                let n_rows = T::from_f64(*rows as f64);
                plan.means = row_var
                    .chunks_exact(*rows)
                    .map(|r| {
                        let mean = sum_torch(r) / n_rows;
                        if mean < eps1 {
                            eps1
                        } else {
                            mean
                        }
                    })
                    .collect();
            }
            Moments::Full { .. } => {
                let numel = plan.param.len();
                // SAFETY: the `Full` pieces above covered `spare[..numel]` and each wrote
                // every element of its piece.
                unsafe { plan.update.set_len(numel) };
            }
        }
    }

    // 2. the stored factored updates (whole parameters with their norms)
    let mut work = Vec::new();
    for plan in &mut plans {
        let Plan {
            sign,
            floor,
            grad,
            moments,
            whole,
            store,
            update,
            means,
            update_norm,
            param,
            ..
        } = plan;
        let (sign, floor, grad) = (*sign, *floor, *grad);
        let Moments::Factored {
            row_var,
            col_var,
            rows,
            cols,
        } = moments
        else {
            continue;
        };
        let (rows, cols) = (*rows, *cols);
        if !*store {
            continue;
        }
        let spare = &mut update.spare_capacity_mut()[..param.len()];
        if *whole {
            let shape = (rows, cols);
            work.push(Second::UpdateAndNorm(
                grad,
                row_var,
                col_var,
                means,
                shape,
                floor,
                sign,
                spare,
                update_norm,
            ));
            continue;
        }
        for (u, g, r, c, mean) in row_pieces(spare, grad, row_var, col_var, means, (rows, cols)) {
            work.push(Second::Update(g, r, c, mean, u, floor, sign));
        }
    }
    if !work.is_empty() {
        parallel::run_each(work, threaded, |piece| second(level, piece));
    }

    // 3. the other update norms, each followed by its parameter's scale, then the updates
    // of the parameters, each piece waiting for its scale: the norm tasks come first, so a
    // piece only waits for a task already running
    let ready: Vec<Ready> = plans.iter().map(|_| Ready::default()).collect();
    let mut norms = Vec::new();
    let mut applies = Vec::new();
    for (i, plan) in plans.iter_mut().enumerate() {
        let numel = plan.param.len();
        let h = plan.h;
        let scale = ScaleOf {
            eps2: h.eps2,
            d: h.d,
            rho: plan.rho,
            sqrt_numel: plan.sqrt_numel,
            param_norm: plan.param_norm.to_f64(),
        };
        let decay = (h.weight_decay != 0.0).then(|| T::from_f64(1.0 - h.lr * h.weight_decay));
        let k = (decay, h.foreach, plan.floor, plan.sign);
        let factored = matches!(plan.moments, Moments::Factored { .. });
        if plan.store && factored {
            // SAFETY: the `Update` pieces above, or the one `UpdateAndNorm` task, covered
            // `spare[..numel]` (whole matrices) and wrote every element.
            unsafe { plan.update.set_len(numel) };
        }
        let Plan {
            param,
            grad,
            moments,
            whole,
            store,
            update,
            means,
            update_norm,
            floor,
            sign,
            ..
        } = plan;
        match moments {
            Moments::Factored {
                row_var,
                col_var,
                rows,
                cols,
            } if !*store => {
                let (rows, cols) = (*rows, *cols);
                let (row_var, col_var, means, grad) = (&**row_var, &**col_var, &**means, *grad);
                norms.push(Last::Norm(
                    i,
                    scale,
                    NormOf::Computed(grad, row_var, col_var, means, (rows, cols), *floor, *sign),
                ));
                for (p, g, r, c, mean) in
                    row_pieces(param, grad, row_var, col_var, means, (rows, cols))
                {
                    applies.push(Last::Apply(i, k, Apply::Rows(p, g, r, c, mean)));
                }
            }
            _ => {
                if factored && *whole {
                    // its norm came with the update
                    ready[i].publish(scale.of(update_norm.to_f64()));
                } else {
                    norms.push(Last::Norm(i, scale, NormOf::Stored(update)));
                }
                for (p, u) in param
                    .chunks_mut(CHUNK_ELEMENTS)
                    .zip(update.chunks(CHUNK_ELEMENTS))
                {
                    applies.push(Last::Apply(i, k, Apply::Stored(p, u)));
                }
            }
        }
    }
    norms.append(&mut applies);
    parallel::run_each(norms, threaded, |piece| match piece {
        Last::Norm(i, scale, of) => {
            let norm = match of {
                NormOf::Stored(u) => norm_kernel(level, u),
                NormOf::Computed(g, r, c, means, (rows, cols), floor, sign) => {
                    update_norm_kernel(level, g, r, c, means, rows, cols, floor, sign)
                }
            };
            ready[i].publish(scale.of(norm.to_f64()));
        }
        Last::Apply(i, (decay, foreach, floor, sign), piece) => {
            let scale = T::from_f64(ready[i].wait());
            match piece {
                Apply::Stored(p, u) => apply_kernel(level, p, u, scale, decay, foreach),
                Apply::Rows(p, g, r, c, mean) => {
                    apply_rows_kernel(level, p, g, r, c, mean, floor, sign, scale, decay, foreach);
                }
            }
        }
    });
}

/// What a parameter's scale is computed from besides its update's norm.
#[derive(Clone, Copy)]
struct ScaleOf {
    eps2: f64,
    d: f64,
    rho: f64,
    sqrt_numel: f64,
    param_norm: f64,
}

impl ScaleOf {
    /// `-alpha / max(1, ||U|| / (sqrt(numel) d))`, `alpha = max(eps2, ||p|| / sqrt(numel))
    /// rho`.
    fn of(self, update_norm: f64) -> f64 {
        let rms = self.param_norm / self.sqrt_numel;
        let alpha = if rms > self.eps2 { rms } else { self.eps2 } * self.rho;
        let update_rms = update_norm / (self.sqrt_numel * self.d);
        let clip = if update_rms > 1.0 { update_rms } else { 1.0 };
        -alpha / clip
    }
}

/// A parameter's scale, published by the task that computed its update's norm to the pieces
/// that wait for it.
#[derive(Default)]
struct Ready {
    set: AtomicBool,
    scale: AtomicU64,
}

impl Ready {
    fn publish(&self, scale: f64) {
        self.scale.store(scale.to_bits(), Ordering::Relaxed);
        self.set.store(true, Ordering::Release);
    }

    /// The scale, once published (by a task that is already running: see the last pass).
    fn wait(&self) -> f64 {
        let mut spins = 0u32;
        while !self.set.load(Ordering::Acquire) {
            if spins < 1 << 12 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        f64::from_bits(self.scale.load(Ordering::Relaxed))
    }
}

/// How a norm task gets the update.
enum NormOf<'a, T> {
    /// Stored.
    Stored(&'a [T]),
    /// Computed, not stored: the gradient, `R`, `C`, the means, (rows, cols), floor, sign.
    #[allow(clippy::type_complexity)]
    Computed(&'a [T], &'a [T], &'a [T], &'a [T], (usize, usize), T, T),
}

/// The last pass's items: the update norms of parameter `usize`, then the pieces of the
/// updates with `(decay, foreach, floor, sign)`.
enum Last<'a, T> {
    Norm(usize, ScaleOf, NormOf<'a, T>),
    #[allow(clippy::type_complexity)]
    Apply(usize, (Option<T>, bool, T, T), Apply<'a, T>),
}

/// Each matrix of a factored parameter `(..., rows, cols)` cut into pieces of whole rows
/// (about [`CHUNK_ELEMENTS`] each): the piece of `out` (one element per gradient element),
/// the gradient's rows, their row EWAs, the matrix's column EWAs and its mean.
#[allow(clippy::type_complexity)]
fn row_pieces<'a, T: Copy, O>(
    out: &'a mut [O],
    grad: &'a [T],
    row_var: &'a [T],
    col_var: &'a [T],
    means: &'a [T],
    (rows, cols): (usize, usize),
) -> impl Iterator<Item = (&'a mut [O], &'a [T], &'a [T], &'a [T], T)> {
    let per = rows * cols;
    let rows_per = (CHUNK_ELEMENTS / cols).max(1);
    out.chunks_exact_mut(per)
        .zip(grad.chunks_exact(per))
        .zip(row_var.chunks_exact(rows))
        .zip(col_var.chunks_exact(cols))
        .zip(means)
        .flat_map(move |((((o, g), r), c), &mean)| {
            o.chunks_mut(rows_per * cols)
                .zip(g.chunks(rows_per * cols))
                .zip(r.chunks(rows_per))
                .map(move |((o, g), r)| (o, g, r, c, mean))
        })
}

/// A single-column matrix's column EWA (its column is contiguous: torch reduces it as a
/// last dimension).
fn column<T: AdafactorFloat>(level: Level, g: &[T], c: &mut T, n_rows: T, w: T) {
    let norm = norm_kernel(level, g);
    *c = lerp(*c, norm * norm / n_rows, w);
}

fn second<T: AdafactorFloat>(level: Level, piece: Second<'_, T>) {
    match piece {
        Second::Update(g, r, c, mean, u, floor, sign) => {
            update_rows_kernel(level, g, r, c, u, mean, floor, sign);
        }
        Second::UpdateAndNorm(g, r, c, means, (rows, cols), floor, sign, u, out) => {
            *out = update_and_norm_kernel(level, g, r, c, means, rows, cols, u, floor, sign);
        }
    }
}
