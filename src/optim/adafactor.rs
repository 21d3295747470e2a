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

use crate::numerics::float::Float;
use crate::optim::ewa::py_pow_half;
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, multiversion, Level};
use std::mem::MaybeUninit;

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

/// torch's 2-norm of `n` contiguous values `x(0), ..., x(n-1)` (its `vector_norm` over a
/// contiguous last dimension, `binary_kernel_reduce_lastdim`): whole vectors summed lane-wise
/// (`acc += x * x`, the product rounded), the lanes added in order, then the remaining
/// elements added to that sum one by one — a first block of four with the product rounded,
/// the rest with a fused multiply-add (how the compiler built torch's scalar tail) — and
/// the square root taken.
#[cfg(test)]
#[inline(always)]
pub fn norm_torch<T: AdafactorFloat>(n: usize, x: impl Fn(usize) -> T) -> T {
    let lanes = T::LANES;
    let body = n - n % lanes;
    let mut acc = [T::ZERO; 8];
    for start in (0..body).step_by(lanes) {
        for (l, a) in acc[..lanes].iter_mut().enumerate() {
            let v = x(start + l);
            *a = *a + v * v;
        }
    }
    let mut s = acc[0];
    for &a in &acc[1..lanes] {
        s = s + a;
    }
    let rounded = if n - body >= 4 { body + 4 } else { body };
    for k in body..rounded {
        let v = x(k);
        s = s + v * v;
    }
    for k in rounded..n {
        let v = x(k);
        s = v.fma(v, s);
    }
    s.sqrt()
}

/// torch's 2-norms of the columns of a row-major `(rows, cols)` matrix with `cols > 1`
/// (`vector_norm(dim=-2)`, the generic `binary_kernel_reduce`): each column summed in order,
/// `acc + x * x` with the product rounded; written to `out[..cols]`.
#[cfg(test)]
pub fn norm_columns<T: AdafactorFloat>(g: &[T], rows: usize, cols: usize, out: &mut [T]) {
    let out = &mut out[..cols];
    out.fill(T::ZERO);
    for row in g[..rows * cols].chunks_exact(cols) {
        for (a, &v) in out.iter_mut().zip(row) {
            *a = *a + v * v;
        }
    }
    for a in out {
        *a = a.sqrt();
    }
}

/// `ceil(log2(x))` as torch's `utils::CeilLog2` (1 for `x <= 2`).
fn ceil_log2(x: usize) -> u32 {
    if x <= 2 {
        1
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// torch's `multi_row_sum` over `R` interleaved accumulators of `W` lanes: `size` rows,
/// row `i` contributing `load(i, k)` to accumulator `k`, summed in up to four levels of
/// chunks so that only partial sums of similar size meet.
fn multi_row_sum<T: Float, const R: usize, const W: usize>(
    size: usize,
    load: impl Fn(usize, usize) -> [T; W],
) -> [[T; W]; R] {
    const LEVELS: usize = 4;
    let add = |a: &mut [T; W], b: [T; W]| a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
    let power = (ceil_log2(size) / LEVELS as u32).max(4);
    let step = 1usize << power;
    let mask = step - 1;
    let mut acc = [[[T::ZERO; W]; R]; LEVELS];
    let mut i = 0;
    while i + step <= size {
        for _ in 0..step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                add(a, load(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(j);
            for (u, l) in upper[0].iter_mut().zip(lower[j - 1].iter_mut()) {
                add(u, *l);
                *l = [T::ZERO; W];
            }
            if i & (mask << (j as u32 * power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            add(a, load(i, k));
        }
        i += 1;
    }
    let (first, rest) = acc.split_at_mut(1);
    for level in rest.iter() {
        for (a, &u) in first[0].iter_mut().zip(level) {
            add(a, u);
        }
    }
    first[0]
}

/// torch's `row_sum`: `size` values `load(i)` (of `W` lanes) summed by four interleaved
/// [`multi_row_sum`] accumulators, the leftover values added to the first, then the four
/// accumulators added in order.
fn row_sum<T: Float, const W: usize>(size: usize, load: impl Fn(usize) -> [T; W]) -> [T; W] {
    const ILP: usize = 4;
    let whole = size / ILP;
    let mut partial = multi_row_sum::<T, ILP, W>(whole, |i, k| load(i * ILP + k));
    let add = |a: &mut [T; W], b: [T; W]| a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
    for i in whole * ILP..size {
        add(&mut partial[0], load(i));
    }
    for k in 1..ILP {
        let p = partial[k];
        add(&mut partial[0], p);
    }
    partial[0]
}

/// torch's `sum` of contiguous values (its cascade sum, `SumKernel.cpp`): runs of at least
/// one vector are summed as vectors (`row_sum` over whole vectors, then the leftover
/// elements, then the lanes, in that order); shorter runs element by element.
pub fn sum_torch<T: AdafactorFloat>(x: &[T]) -> T {
    let lanes = T::LANES;
    if x.len() < lanes {
        return row_sum::<T, 1>(x.len(), |i| [x[i]])[0];
    }
    let vectors = x.len() / lanes;
    let acc = row_sum::<T, 8>(vectors, |v| {
        let mut lane = [T::ZERO; 8];
        lane[..lanes].copy_from_slice(&x[v * lanes..(v + 1) * lanes]);
        lane
    });
    let mut total = T::ZERO;
    for &v in &x[vectors * lanes..] {
        total = total + v;
    }
    for &a in &acc[..lanes] {
        total = total + a;
    }
    T::ZERO + total
}

/// The lane sums of torch's `norm_torch` over the whole vectors of `K` runs of one
/// length `body` (a multiple of `L`): `acc[k][l]` sums `x_k(s + l)^2` over the vectors in
/// order, the product rounded. `K` runs at once keep `K` addition chains in flight.
#[inline(always)]
fn lane_sums<T: Float, const L: usize, const K: usize>(xs: [&[T]; K], body: usize) -> [[T; L]; K] {
    let xs = xs.map(|x| &x[..body]);
    let mut acc = [[T::ZERO; L]; K];
    let mut s = 0;
    while s + L <= body {
        for (a, x) in acc.iter_mut().zip(&xs) {
            let v: &[T; L] = x[s..s + L].try_into().expect("L values");
            for (a, &v) in a.iter_mut().zip(v) {
                *a = *a + v * v;
            }
        }
        s += L;
    }
    acc
}

/// `norm_torch`'s end: the lanes added in order, then the tail of `x` past `body`.
#[inline(always)]
fn finish_norm<T: AdafactorFloat>(acc: &[T], x: &[T], body: usize) -> T {
    let mut s = acc[0];
    for &a in &acc[1..] {
        s = s + a;
    }
    let n = x.len();
    let rounded = if n - body >= 4 { body + 4 } else { body };
    for &v in &x[body..rounded] {
        s = s + v * v;
    }
    for &v in &x[rounded..] {
        s = v.fma(v, s);
    }
    s.sqrt()
}

/// `norm_torch` of the contiguous `x`, the same bits, vectorized.
#[inline(always)]
fn norm_of<T: AdafactorFloat>(x: &[T]) -> T {
    let body = x.len() - x.len() % T::LANES;
    if T::LANES == 8 {
        let [acc] = lane_sums::<T, 8, 1>([x], body);
        finish_norm(&acc, x, body)
    } else {
        let [acc] = lane_sums::<T, 4, 1>([x], body);
        finish_norm(&acc, x, body)
    }
}

/// `norm_torch` of every row of the row-major `g` (rows of `cols`), four rows at a time;
/// with `col_acc`, each row's squares are also added to it (`acc_j + g_ij^2`, the rows in
/// order, as `norm_columns` sums), so one pass over `g` gives both.
#[inline(always)]
fn row_norms_of<T: AdafactorFloat, const L: usize>(
    g: &[T],
    cols: usize,
    out: &mut [T],
    mut col_acc: Option<&mut [T]>,
) {
    let body = cols - cols % L;
    let mut add_columns = |x: &[T]| {
        if let Some(acc) = col_acc.as_deref_mut() {
            for (a, &v) in acc.iter_mut().zip(x) {
                *a = *a + v * v;
            }
        }
    };
    let mut quads = g.chunks_exact(4 * cols);
    let mut outs = out.chunks_exact_mut(4);
    for (q, o) in (&mut quads).zip(&mut outs) {
        let rows = [0, 1, 2, 3].map(|k| &q[k * cols..(k + 1) * cols]);
        let acc = lane_sums::<T, L, 4>(rows, body);
        for ((o, a), x) in o.iter_mut().zip(&acc).zip(rows) {
            *o = finish_norm(a, x, body);
            add_columns(x);
        }
    }
    for (x, o) in quads
        .remainder()
        .chunks_exact(cols)
        .zip(outs.into_remainder())
    {
        let [acc] = lane_sums::<T, L, 1>([x], body);
        *o = finish_norm(&acc, x, body);
        add_columns(x);
    }
}

multiversion! {
    /// `norm_torch` of the contiguous `x`.
    fn norm_kernel<T: AdafactorFloat>(x: &[T]) -> T {
        norm_of(x)
    }
}

multiversion! {
    /// The row EWA of whole rows of one matrix: `r = lerp(r, ||row||^2 / cols, w)`.
    fn rows_kernel<T: AdafactorFloat>(g: &[T], cols: usize, r: &mut [T], n_cols: T, w: T) {
        let mut norms = vec![T::ZERO; r.len()];
        if T::LANES == 8 {
            row_norms_of::<T, 8>(g, cols, &mut norms, None);
        } else {
            row_norms_of::<T, 4>(g, cols, &mut norms, None);
        }
        for (r, &norm) in r.iter_mut().zip(&norms) {
            *r = lerp(*r, norm * norm / n_cols, w);
        }
    }
}

multiversion! {
    /// The row and column EWAs of one whole matrix (`cols > 1`) in one pass over it:
    /// `rows_kernel` and `cols_kernel` at once, the same sums.
    #[allow(clippy::too_many_arguments)]
    fn rows_cols_kernel<T: AdafactorFloat>(g: &[T], cols: usize, r: &mut [T], c: &mut [T], n_rows: T, n_cols: T, w: T) {
        let mut norms = vec![T::ZERO; r.len()];
        let mut acc = vec![T::ZERO; cols];
        if T::LANES == 8 {
            row_norms_of::<T, 8>(g, cols, &mut norms, Some(&mut acc));
        } else {
            row_norms_of::<T, 4>(g, cols, &mut norms, Some(&mut acc));
        }
        for (r, &norm) in r.iter_mut().zip(&norms) {
            *r = lerp(*r, norm * norm / n_cols, w);
        }
        for (c, &a) in c.iter_mut().zip(&acc) {
            let norm = a.sqrt();
            *c = lerp(*c, norm * norm / n_rows, w);
        }
    }
}

multiversion! {
    /// The column EWA of the columns `first..first + c.len()` of the row-major `g` (`rows`
    /// of `cols > 1`): `norm_columns` each, then `c = lerp(c, ||col||^2 / rows, w)`.
    fn cols_kernel<T: AdafactorFloat>(g: &[T], cols: usize, first: usize, c: &mut [T], n_rows: T, w: T) {
        let width = c.len();
        let mut acc = vec![T::ZERO; width];
        for row in g.chunks_exact(cols) {
            for (a, &v) in acc.iter_mut().zip(&row[first..first + width]) {
                *a = *a + v * v;
            }
        }
        for (c, &a) in c.iter_mut().zip(&acc) {
            let norm = a.sqrt();
            *c = lerp(*c, norm * norm / n_rows, w);
        }
    }
}

multiversion! {
    /// The factored update of whole rows: `u_ij = g_ij / sqrt(max(r_i c_j / mean, floor))`
    /// (rsqrt, then times `sign g_ij`).
    #[allow(clippy::too_many_arguments)]
    fn update_rows_kernel<T: AdafactorFloat>(g: &[T], r: &[T], c: &[T], u: &mut [MaybeUninit<T>], mean: T, floor: T, sign: T) {
        let cols = c.len();
        for ((u, g), &ri) in u.chunks_exact_mut(cols).zip(g.chunks_exact(cols)).zip(r) {
            for ((u, &cj), &gij) in u.iter_mut().zip(c).zip(g) {
                let v = ri * cj / mean;
                let v = if v < floor { floor } else { v };
                u.write((T::ONE / v.sqrt()) * (sign * gij));
            }
        }
    }
}

multiversion! {
    /// The unfactored EWA and update: `V = lerp(V, g^2, w)`, `u = g / sqrt(max(V, floor))`.
    fn full_kernel<T: AdafactorFloat>(g: &[T], v: &mut [T], u: &mut [MaybeUninit<T>], w: T, floor: T, sign: T) {
        let n = u.len();
        let (g, v) = (&g[..n], &mut v[..n]);
        for ((u, v), &g) in u.iter_mut().zip(v.iter_mut()).zip(g) {
            let g = sign * g;
            *v = lerp(*v, g * g, w);
            let s = if *v < floor { floor } else { *v };
            u.write((T::ONE / s.sqrt()) * g);
        }
    }
}

multiversion! {
    /// `p = p decay + u scale`: one fused multiply-add, or (foreach) the product rounded.
    fn apply_kernel<T: AdafactorFloat>(p: &mut [T], u: &[T], scale: T, decay: Option<T>, foreach: bool) {
        let u = &u[..p.len()];
        for (p, &u) in p.iter_mut().zip(u) {
            let q = match decay {
                Some(c) => *p * c,
                None => *p,
            };
            *p = if foreach { q + u * scale } else { u.fma(scale, q) };
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar step before it was vectorized and threaded: the bits to keep.
    pub(super) fn reference_step<T: AdafactorFloat>(
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
        let rms = norm_torch(numel, |k| param[k]).to_f64() / sqrt_numel;
        let alpha = if rms > h.eps2 { rms } else { h.eps2 } * rho;
        let w = T::from_f64(one_minus_beta2);
        let sign = if h.maximize { -T::ONE } else { T::ONE };
        let floor = T::from_f64(h.eps1 * h.eps1);
        let rsqrt_times = |v: T, g: T| {
            let v = if v < floor { floor } else { v };
            (T::ONE / v.sqrt()) * g
        };
        let mut update: Vec<T> = Vec::with_capacity(numel);
        match moments {
            Moments::Factored {
                row_var,
                col_var,
                rows,
                cols,
            } => {
                let per = rows * cols;
                let eps1 = T::from_f64(h.eps1);
                let (n_rows, n_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
                let mut col_norms = vec![T::ZERO; cols];
                for ((g, r), c) in grad
                    .chunks_exact(per)
                    .zip(row_var.chunks_exact_mut(rows))
                    .zip(col_var.chunks_exact_mut(cols))
                {
                    // the norms of -g are those of g
                    for (i, r) in r.iter_mut().enumerate() {
                        let row = &g[i * cols..(i + 1) * cols];
                        let norm = norm_torch(cols, |k| row[k]);
                        *r = lerp(*r, norm * norm / n_cols, w);
                    }
                    if cols == 1 {
                        // a single column is contiguous: torch reduces it as a last dimension
                        col_norms[0] = norm_torch(rows, |k| g[k]);
                    } else {
                        norm_columns(g, rows, cols, &mut col_norms);
                    }
                    for (c, &norm) in c.iter_mut().zip(&col_norms) {
                        *c = lerp(*c, norm * norm / n_rows, w);
                    }
                    let mean = sum_torch(r) / n_rows;
                    let mean = if mean < eps1 { eps1 } else { mean };
                    for (i, &ri) in r.iter().enumerate() {
                        let row = &g[i * cols..(i + 1) * cols];
                        update.extend(
                            c.iter()
                                .zip(row)
                                .map(|(&cj, &gij)| rsqrt_times(ri * cj / mean, sign * gij)),
                        );
                    }
                }
            }
            Moments::Full { variance } => {
                for (v, &g) in variance[..numel].iter_mut().zip(grad) {
                    let g = sign * g;
                    *v = lerp(*v, g * g, w);
                    update.push(rsqrt_times(*v, g));
                }
            }
        }
        let update_rms = norm_torch(numel, |k| update[k]).to_f64() / (sqrt_numel * h.d);
        let clip = if update_rms > 1.0 { update_rms } else { 1.0 };
        let scale = T::from_f64(-alpha / clip);
        let decay = (h.weight_decay != 0.0).then(|| T::from_f64(1.0 - h.lr * h.weight_decay));
        for (p, &u) in param.iter_mut().zip(&update) {
            let q = match decay {
                Some(c) => *p * c,
                None => *p,
            };
            *p = if h.foreach {
                q + u * scale
            } else {
                u.fma(scale, q)
            };
        }
    }

    fn hyper() -> AdafactorHyper {
        AdafactorHyper {
            lr: 1e-2,
            beta2_decay: -0.8,
            eps1: f64::from(f32::EPSILON),
            eps2: 1e-3,
            d: 1.0,
            weight_decay: 0.0,
            maximize: false,
            foreach: false,
        }
    }

    /// Pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_cascade_sum_adds_every_value_once() {
        for n in [0, 1, 3, 7, 8, 9, 31, 32, 33, 100, 513, 4096, 5000, 70_000] {
            // small integers: every order of addition gives the exact sum
            let ints: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
            let exact: usize = (0..n).map(|i| i % 7).sum();
            assert_eq!(sum_torch(&ints), exact as f32, "{n}");
            let x: Vec<f64> = values(n, n as u64).iter().map(|v| v.abs()).collect();
            let reference: f64 = x.iter().sum();
            assert!(
                (sum_torch(&x) - reference).abs() <= 1e-13 * reference.max(1.0),
                "{n}"
            );
        }
    }

    #[test]
    fn the_norms_are_the_two_norm_to_rounding() {
        for n in [1, 2, 4, 5, 7, 8, 12, 13, 15, 16, 100, 1001] {
            let x = values(n, 7 * n as u64);
            let reference = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let ref32 = x32
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (norm_torch(n, |k| x[k]) - reference).abs() <= 1e-14 * reference,
                "{n}"
            );
            assert!(
                (f64::from(norm_torch(n, |k| x32[k])) - ref32).abs() <= 1e-6 * ref32,
                "{n}"
            );
        }
        // columns of a (rows, cols) matrix
        let (rows, cols) = (9, 4);
        let g = values(rows * cols, 3);
        let mut out = vec![0.0; cols];
        norm_columns(&g, rows, cols, &mut out);
        for (j, &norm) in out.iter().enumerate() {
            let r: f64 = (0..rows)
                .map(|i| g[i * cols + j].powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((norm - r).abs() <= 1e-14 * r);
        }
    }

    #[test]
    fn a_rank_one_gradient_is_estimated_exactly_and_steps_by_its_sign() {
        // g = a b^T: R = a^2 mean(b^2), C = b^2 mean(a^2), so V = R C / mean(R) = g^2 and
        // U = sign(g), whose RMS is 1 = d: p moves by alpha = max(eps2, RMS(p)) min(lr, 1).
        let (rows, cols) = (5, 3);
        let a = [1.0, -2.0, 0.5, 4.0, -1.5];
        let b = [0.25, -1.0, 2.0];
        let g: Vec<f64> = (0..rows * cols)
            .map(|k| a[k / cols] * b[k % cols])
            .collect();
        let p0 = values(rows * cols, 11);
        let mut p = p0.clone();
        let (mut r, mut c) = (vec![0.0; rows], vec![0.0; cols]);
        let h = AdafactorHyper { lr: 0.1, ..hyper() };
        step(
            &h,
            1.0,
            &mut p,
            &g,
            Moments::Factored {
                row_var: &mut r,
                col_var: &mut c,
                rows,
                cols,
            },
        );
        let rms = (p0.iter().map(|v| v * v).sum::<f64>() / (rows * cols) as f64).sqrt();
        for k in 0..rows * cols {
            let want = p0[k] - rms.max(1e-3) * 0.1 * g[k].signum();
            assert!((p[k] - want).abs() < 1e-12, "{k}: {} {want}", p[k]);
        }
        let mean_b2 = b.iter().map(|v| v * v).sum::<f64>() / cols as f64;
        for i in 0..rows {
            assert!((r[i] - a[i] * a[i] * mean_b2).abs() < 1e-12);
        }
    }

    /// One step of a vector in plain f64 arithmetic, straight from the formulas.
    fn vector_oracle(h: &AdafactorHyper, t: f64, p: &mut [f64], g: &[f64], v: &mut [f64]) {
        let n = p.len() as f64;
        let w = t.powf(h.beta2_decay);
        let rho = h.lr.min(1.0 / t.sqrt());
        let rms = (p.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        let alpha = rms.max(h.eps2) * rho;
        let sign = if h.maximize { -1.0 } else { 1.0 };
        let u: Vec<f64> = (0..p.len())
            .map(|i| {
                let gi = sign * g[i];
                v[i] = (1.0 - w) * v[i] + w * gi * gi;
                gi / v[i].max(h.eps1 * h.eps1).sqrt()
            })
            .collect();
        let u_rms = (u.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        for (pi, ui) in p.iter_mut().zip(&u) {
            *pi = *pi * (1.0 - h.lr * h.weight_decay) - alpha / (u_rms / h.d).max(1.0) * ui;
        }
    }

    #[test]
    fn vector_steps_follow_the_formulas() {
        let h = AdafactorHyper {
            lr: 0.05,
            weight_decay: 0.1,
            maximize: true,
            d: 1.2,
            ..hyper()
        };
        let n = 37;
        let mut p: Vec<f32> = values(n, 1).iter().map(|&v| v as f32).collect();
        let mut v32 = vec![0.0f32; n];
        let mut q: Vec<f64> = p.iter().map(|&x| f64::from(x)).collect();
        let mut v64 = vec![0.0f64; n];
        for t in 1..=20 {
            let g: Vec<f32> = values(n, 100 + t).iter().map(|&v| v as f32).collect();
            let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
            step(
                &h,
                t as f64,
                &mut p,
                &g,
                Moments::Full { variance: &mut v32 },
            );
            vector_oracle(&h, t as f64, &mut q, &g64, &mut v64);
        }
        for i in 0..n {
            assert!(
                (f64::from(p[i]) - q[i]).abs() < 1e-5,
                "{i}: {} {}",
                p[i],
                q[i]
            );
            assert!(
                (f64::from(v32[i]) - v64[i]).abs() < 1e-5 * v64[i].max(1e-3),
                "{i}"
            );
        }
    }

    #[test]
    fn foreach_rounds_the_scaled_update_before_adding_it() {
        let n = 64;
        let g: Vec<f32> = values(n, 5).iter().map(|&v| v as f32).collect();
        let p0: Vec<f32> = values(n, 6).iter().map(|&v| 3.0 * v as f32).collect();
        let run = |foreach: bool| {
            let mut p = p0.clone();
            let mut v = vec![0.0f32; n];
            let h = AdafactorHyper {
                foreach,
                lr: 0.3,
                ..hyper()
            };
            step(&h, 1.0, &mut p, &g, Moments::Full { variance: &mut v });
            p
        };
        let (single, foreach) = (run(false), run(true));
        let differ = single.iter().zip(&foreach).filter(|(a, b)| a != b).count();
        assert!(differ > 0, "the two roundings never differed");
        for (a, b) in single.iter().zip(&foreach) {
            assert!((a - b).abs() <= 2.0 * f32::EPSILON * a.abs().max(1.0));
        }
    }

    #[test]
    fn every_simd_level_and_thread_count_gives_the_scalar_steps_bits() {
        fn bits<T: AdafactorFloat>(x: &[T]) -> Vec<u64> {
            x.iter().map(|v| v.to_f64().to_bits()).collect()
        }
        fn factored<'a, T>(
            row_var: &'a mut [T],
            col_var: &'a mut [T],
            rows: usize,
            cols: usize,
        ) -> Moments<'a, T> {
            Moments::Factored {
                row_var,
                col_var,
                rows,
                cols,
            }
        }
        fn check<T: AdafactorFloat>(
            h: &AdafactorHyper,
            (batch, rows, cols): (usize, usize, usize),
            seed: u64,
        ) {
            let n = batch * rows * cols;
            let conv = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
            let p0: Vec<T> = conv(values(n, seed));
            let (mut p, mut r, mut c) = (
                p0.clone(),
                vec![T::ZERO; batch * rows],
                vec![T::ZERO; batch * cols],
            );
            let mut v = vec![T::ZERO; n];
            let mut runs: Vec<_> = crate::runtime::simd::supported()
                .into_iter()
                .flat_map(|l| [(l, false), (l, true)])
                .map(|lt| (lt, p0.clone(), r.clone(), c.clone(), p0.clone(), v.clone()))
                .collect();
            for t in 1..=3u64 {
                // a gradient with zeros (the floor) and a tiny row
                let mut g: Vec<T> = conv(values(n, seed + 10 * t));
                g[0] = T::ZERO;
                for x in g.iter_mut().take(cols.min(n)) {
                    *x = *x * T::from_f64(1e-30);
                }
                let tf = t as f64;
                reference_step(h, tf, &mut p, &g, factored(&mut r, &mut c, rows, cols));
                let mut q = p0.clone();
                if t == 1 {
                    reference_step(h, tf, &mut q, &g, Moments::Full { variance: &mut v });
                }
                for ((level, threaded), pp, rr, cc, pv, vv) in &mut runs {
                    step_with(
                        *level,
                        *threaded,
                        h,
                        tf,
                        pp,
                        &g,
                        factored(rr, cc, rows, cols),
                    );
                    let what = format!("{level:?} threaded {threaded} t {t} {batch}x{rows}x{cols}");
                    assert!(bits(pp) == bits(&p), "{what}");
                    assert!(bits(rr) == bits(&r) && bits(cc) == bits(&c), "{what}");
                    if t == 1 {
                        step_with(
                            *level,
                            *threaded,
                            h,
                            tf,
                            pv,
                            &g,
                            Moments::Full { variance: vv },
                        );
                        assert!(
                            bits(pv) == bits(&q) && bits(vv) == bits(&v),
                            "{what} (vector)"
                        );
                    }
                }
            }
        }
        let _threads = crate::test_util::thread_count_lock();
        crate::runtime::parallel::set_num_threads(3).unwrap();
        // (batch, rows, cols): tails of every length, a single column and row, several
        // pieces per matrix (threaded), a batch of matrices
        let shapes = [
            (1, 37, 29),
            (1, 300, 203),
            (2, 129, 131),
            (1, 5000, 1),
            (1, 1, 4099),
            (3, 3, 13),
            (1, 70, 1100),
        ];
        let hypers = [
            hyper(),
            AdafactorHyper {
                lr: 0.3,
                weight_decay: 0.1,
                maximize: true,
                foreach: true,
                d: 0.7,
                ..hyper()
            },
        ];
        for h in &hypers {
            for (k, &shape) in shapes.iter().enumerate() {
                check::<f32>(h, shape, k as u64);
                check::<f64>(h, shape, 100 + k as u64);
            }
        }
    }
}
