//! L-BFGS as torch.optim.LBFGS runs it: the two-loop recursion over a limited history of
//! steps and gradient changes, a fixed step or the strong-Wolfe line search with cubic
//! interpolation (minFunc's, ported by torch), and torch's stopping rules.
//!
//! The objective is a callback ([`Objective`]): the core hands it flat parameters and gets the
//! loss and flat gradient back, so the core knows nothing of Python. Vectors are in the
//! parameter type `T` (torch computes in the parameter dtype); dot products are summed in
//! `f64` and rounded once to `T` (torch's are `T` reductions in its own order, so the two
//! differ by `T`'s rounding of a sum, not by more); the loss and the line search's scalars are
//! `f64`, as torch's are Python floats.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use crate::numerics::float::Float;
use crate::runtime::parallel::{for_each_index, worth_threads, CHUNK_ELEMENTS};

/// Hyper-parameters of one step, checked by the caller (Python owns their ranges).
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsHyper {
    /// Step length of each iteration (the line search's first trial), >= 0.
    pub lr: f64,
    /// Iterations per step, >= 1.
    pub max_iter: u64,
    /// Objective evaluations per step, >= 1.
    pub max_eval: u64,
    /// Stop when every gradient element is at most this in magnitude.
    pub tolerance_grad: f64,
    /// Stop when the loss or every element of a step changes by less than this.
    pub tolerance_change: f64,
    /// Number of (step, gradient change) pairs kept, >= 1.
    pub history_size: usize,
    /// The strong-Wolfe line search instead of a fixed step of `lr`.
    pub strong_wolfe: bool,
    /// Maximize the objective (the loss and gradient are negated).
    pub maximize: bool,
}

/// The state torch keeps (under its names) between steps; `None` before the first iteration.
#[derive(Clone, Debug, Default)]
pub struct LbfgsState<T> {
    pub func_evals: u64,
    pub n_iter: u64,
    /// The last search direction.
    pub d: Option<Vec<T>>,
    /// The last step length.
    pub t: Option<f64>,
    /// Gradient changes `y`, oldest first (shared, so a step can work on a cheap copy).
    pub old_dirs: VecDeque<Arc<[T]>>,
    /// Steps `s = t d`, oldest first.
    pub old_stps: VecDeque<Arc<[T]>>,
    /// `1 / (y . s)` of each pair.
    pub ro: VecDeque<T>,
    /// The initial inverse-Hessian scale `(y . s) / (y . y)` of the newest pair.
    pub h_diag: Option<T>,
    pub prev_flat_grad: Option<Vec<T>>,
    pub prev_loss: Option<f64>,
}

/// The function being minimized, as the caller evaluates it.
pub trait Objective<T> {
    type Error;
    /// Sets the parameters to `x` (flat, in parameter order), evaluates the objective there
    /// and returns the loss, the flat gradient written into `grad`.
    fn evaluate(&mut self, x: &[T], grad: &mut [T]) -> Result<f64, Self::Error>;
    /// Sets the parameters to `x`.
    fn set(&mut self, x: &[T]) -> Result<(), Self::Error>;
}

/// `f(range)` summed over the fixed chunks of `0..n` ([`CHUNK_ELEMENTS`] each), in chunk
/// order: on the pool's threads for large `n`, the same bits on any number of threads.
fn chunked_sum(n: usize, f: &(dyn Fn(Range<usize>) -> f64 + Sync)) -> f64 {
    let chunks = n.div_ceil(CHUNK_ELEMENTS);
    if chunks <= 1 {
        return f(0..n);
    }
    let mut parts = vec![0.0f64; chunks];
    let at = parts.as_mut_ptr() as usize;
    let work = |i: usize| {
        let v = f(i * CHUNK_ELEMENTS..((i + 1) * CHUNK_ELEMENTS).min(n));
        // SAFETY: each index writes its own element of `parts`, which outlives the call.
        unsafe { *(at as *mut f64).add(i) = v };
    };
    if worth_threads(n) {
        for_each_index(chunks, &work);
    } else {
        (0..chunks).for_each(work);
    }
    parts.iter().sum()
}

/// `sum a_i b_i` of equal-length slices in f64 over eight lanes.
fn dot_f64<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let ((ca, ta), (cb, tb)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..8 {
            acc[k] += x[k].to_f64() * y[k].to_f64();
        }
    }
    for (k, (x, y)) in ta.iter().zip(tb).enumerate() {
        acc[k] += x.to_f64() * y.to_f64();
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// `sum a_i b_i`, summed in f64 (eight lanes per chunk, chunks in order), rounded once to `T`.
pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    T::from_f64(chunked_sum(n, &|r| dot_f64(&a[r.clone()], &b[r])))
}

/// `max |a_i|` (NaN if any element is NaN, as torch's `abs().max()`); 0 for no elements.
/// Chunks on the pool's threads for large `a`; a maximum does not depend on the order.
fn abs_max<T: Float>(a: &[T]) -> T {
    let n = a.len();
    let chunks = n.div_ceil(CHUNK_ELEMENTS);
    let mut parts = vec![T::ZERO; chunks.max(1)];
    fill(&mut parts, |c| {
        a[c * CHUNK_ELEMENTS..((c + 1) * CHUNK_ELEMENTS).min(n)]
            .iter()
            .fold(T::ZERO, |m, &x| m.nan_max(x.abs()))
    });
    parts.iter().fold(T::ZERO, |m, &x| m.nan_max(x))
}

/// `sum |a_i|`, summed in f64, rounded once to `T`.
fn abs_sum<T: Float>(a: &[T]) -> T {
    T::from_f64(chunked_sum(a.len(), &|r| {
        a[r].iter().map(|x| x.abs().to_f64()).sum()
    }))
}

/// `y += alpha x` (torch's `y.add_(x, alpha=alpha)`), on the pool's threads for large `y`.
fn axpy<T: Float>(y: &mut [T], alpha: T, x: &[T]) {
    let n = y.len().min(x.len());
    chunks_mut(&mut y[..n], |r, part| {
        for (y, &x) in part.iter_mut().zip(&x[r]) {
            *y = *y + alpha * x;
        }
    });
}

/// `f(range, part)` over the fixed chunks of `out` ([`CHUNK_ELEMENTS`] each, `part` the
/// chunk `out[range]`), on the pool's threads for large `out`. For element-wise work: the
/// same bits on any number of threads.
fn chunks_mut<T: Send>(out: &mut [T], f: impl Fn(Range<usize>, &mut [T]) + Sync) {
    let n = out.len();
    if !worth_threads(n) {
        return f(0..n, out);
    }
    let at = out.as_mut_ptr() as usize;
    for_each_index(n.div_ceil(CHUNK_ELEMENTS), &|c| {
        let r = c * CHUNK_ELEMENTS..((c + 1) * CHUNK_ELEMENTS).min(n);
        // SAFETY: the chunks are disjoint parts of `out`, borrowed mutably for this call.
        let part = unsafe { std::slice::from_raw_parts_mut((at as *mut T).add(r.start), r.len()) };
        f(r, part);
    });
}

/// `out[i] = f(i)` for every element of `out` (see [`chunks_mut`]).
fn fill<T: Send>(out: &mut [T], f: impl Fn(usize) -> T + Sync) {
    chunks_mut(out, |r, part| {
        for (o, i) in part.iter_mut().zip(r) {
            *o = f(i);
        }
    });
}

/// A new vector of `n` elements `f(i)` (see [`fill`]).
fn filled<T: Float>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut v = vec![T::ZERO; n];
    fill(&mut v, f);
    v
}

/// `dst = src`, on the pool's threads for large slices (the binding writes the parameters
/// with it).
pub fn copy<T: Copy + Send + Sync>(dst: &mut [T], src: &[T]) {
    fill(&mut dst[..src.len()], |i| src[i]);
}

/// `out = x + t d`: the trial point of a step of length `t`.
fn trial<T: Float>(out: &mut [T], x: &[T], t: f64, d: &[T]) {
    let t = T::from_f64(t);
    fill(out, |i| x[i] + t * d[i]);
}

/// The minimizer of the cubic through `(x1, f1)` and `(x2, f2)` with slopes `g1`, `g2`,
/// clamped to `bounds` (the interval between the points when None); the middle of the
/// bounds when the cubic has no minimum (torch's `_cubic_interpolate`).
pub fn cubic_interpolate(
    (x1, f1, g1): (f64, f64, f64),
    (x2, f2, g2): (f64, f64, f64),
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        // Python's min(max(min_pos, lo), hi): a NaN min_pos compares false and is kept.
        let m = if lo > min_pos { lo } else { min_pos };
        if hi < m {
            hi
        } else {
            m
        }
    } else {
        f64::midpoint(lo, hi)
    }
}

/// Evaluations of the objective along `d` from `x`, counting them and applying `maximize`.
struct Line<'a, T, O> {
    obj: &'a mut O,
    x: &'a [T],
    d: &'a [T],
    point: Vec<T>,
    maximize: bool,
}

impl<T: Float, O: Objective<T>> Line<'_, T, O> {
    /// The loss and gradient at `x + t d` (into `grad`).
    fn at(&mut self, t: f64, grad: &mut [T]) -> Result<f64, O::Error> {
        trial(&mut self.point, self.x, t, self.d);
        eval(self.obj, &self.point, grad, self.maximize)
    }
}

fn eval<T: Float, O: Objective<T>>(
    obj: &mut O,
    x: &[T],
    grad: &mut [T],
    maximize: bool,
) -> Result<f64, O::Error> {
    let loss = obj.evaluate(x, grad)?;
    if maximize {
        for g in &mut *grad {
            *g = -*g;
        }
        return Ok(-loss);
    }
    Ok(loss)
}

/// What the line search found: the loss and gradient at `x + t d`, `t`, and its evaluations.
struct Found<T> {
    loss: f64,
    grad: Vec<T>,
    t: f64,
    evals: u64,
}

/// A point of the line search: `(t, loss, gradient, directional derivative)`.
type Point<T> = (f64, f64, Vec<T>, f64);

/// torch's `_strong_wolfe` (c1 = 1e-4, c2 = 0.9): bracketing, then zooming by cubic
/// interpolation, at most `max_ls` evaluations after the first.
#[allow(clippy::too_many_arguments)]
fn strong_wolfe<T: Float, O: Objective<T>>(
    line: &mut Line<'_, T, O>,
    mut t: f64,
    f: f64,
    g: &[T],
    gtd: f64,
    tolerance_change: f64,
    max_ls: i64,
) -> Result<Found<T>, O::Error> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let d_norm = abs_max(line.d).to_f64();
    let mut g_new = vec![T::ZERO; g.len()];
    let mut f_new = line.at(t, &mut g_new)?;
    let mut evals = 1u64;
    let mut gtd_new = dot(&g_new, line.d).to_f64();

    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.to_vec(), gtd);
    let mut done = false;
    let mut ls_iter: i64 = 0;
    // bracket[k] = (t, f, g, gtd)
    let mut found: Option<Vec<Point<T>>> = None;
    while ls_iter < max_ls {
        if f_new > f + C1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) {
            found = Some(vec![
                (t_prev, f_prev, std::mem::take(&mut g_prev), gtd_prev),
                (t, f_new, std::mem::take(&mut g_new), gtd_new),
            ]);
            break;
        }
        if gtd_new.abs() <= -C2 * gtd {
            found = Some(vec![(t, f_new, std::mem::take(&mut g_new), gtd_new)]);
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            found = Some(vec![
                (t_prev, f_prev, std::mem::take(&mut g_prev), gtd_prev),
                (t, f_new, std::mem::take(&mut g_new), gtd_new),
            ]);
            break;
        }
        let min_step = t + 0.01 * (t - t_prev);
        let max_step = t * 10.0;
        let tmp = t;
        t = cubic_interpolate(
            (t_prev, f_prev, gtd_prev),
            (t, f_new, gtd_new),
            Some((min_step, max_step)),
        );
        t_prev = tmp;
        f_prev = f_new;
        std::mem::swap(&mut g_prev, &mut g_new);
        gtd_prev = gtd_new;
        f_new = line.at(t, &mut g_new)?;
        evals += 1;
        gtd_new = dot(&g_new, line.d).to_f64();
        ls_iter += 1;
    }
    // No bracket found in max_ls evaluations (ls_iter == max_ls): torch leaves the gtd
    // entries of this one unset, as the zoom below does not run.
    let mut bracket =
        found.unwrap_or_else(|| vec![(0.0, f, g.to_vec(), f64::NAN), (t, f_new, g_new, f64::NAN)]);

    let order = |b: &[Point<T>]| {
        if b[0].1 <= b[b.len() - 1].1 {
            (0, 1)
        } else {
            (1, 0)
        }
    };
    let (mut low, mut high) = order(&bracket);
    let mut insuf_progress = false;
    while !done && ls_iter < max_ls {
        let (b0, b1) = (bracket[0].0, bracket[1].0);
        if (b1 - b0).abs() * d_norm < tolerance_change {
            break;
        }
        let mut t = cubic_interpolate(
            (bracket[0].0, bracket[0].1, bracket[0].3),
            (bracket[1].0, bracket[1].1, bracket[1].3),
            None,
        );
        let (bmax, bmin) = (b0.max(b1), b0.min(b1));
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            if insuf_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() {
                    bmax - eps
                } else {
                    bmin + eps
                };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        let mut g_new = vec![T::ZERO; g.len()];
        let f_new = line.at(t, &mut g_new)?;
        evals += 1;
        let gtd_new = dot(&g_new, line.d).to_f64();
        ls_iter += 1;

        if f_new > f + C1 * t * gtd || f_new >= bracket[low].1 {
            bracket[high] = (t, f_new, g_new, gtd_new);
            (low, high) = order(&bracket);
        } else {
            if gtd_new.abs() <= -C2 * gtd {
                done = true;
            } else if gtd_new * (bracket[high].0 - bracket[low].0) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = (t, f_new, g_new, gtd_new);
        }
    }
    let (t, loss, grad, _) = bracket.swap_remove(low);
    Ok(Found {
        loss,
        grad,
        t,
        evals,
    })
}

impl<T: Float> LbfgsState<T> {
    /// One `step(closure)` of torch's LBFGS from the parameters `x` (flat, parameter order),
    /// which hold the final parameters afterwards, as does the objective (`set`). Returns the
    /// loss at `x` before the step (of the objective, not negated under `maximize`).
    ///
    /// If an evaluation fails, the objective's parameters are set back to `x`, which is
    /// unchanged, and so is this state: the step is all or nothing.
    pub fn step<O: Objective<T>>(
        &mut self,
        h: &LbfgsHyper,
        x: &mut [T],
        obj: &mut O,
    ) -> Result<f64, O::Error> {
        // a copy to work on (the history is shared, the vectors copied on the pool)
        let dup = |v: &Option<Vec<T>>| v.as_deref().map(|v| filled(v.len(), |i| v[i]));
        let mut state = LbfgsState {
            d: dup(&self.d),
            prev_flat_grad: dup(&self.prev_flat_grad),
            old_dirs: self.old_dirs.clone(),
            old_stps: self.old_stps.clone(),
            ro: self.ro.clone(),
            ..*self
        };
        let mut work = filled(x.len(), |i| x[i]);
        match state.run(h, &mut work, obj) {
            Ok(loss) => {
                obj.set(&work)?;
                copy(x, &work);
                *self = state;
                Ok(loss)
            }
            Err(e) => {
                obj.set(x)?;
                Err(e)
            }
        }
    }

    fn run<O: Objective<T>>(
        &mut self,
        h: &LbfgsHyper,
        x: &mut [T],
        obj: &mut O,
    ) -> Result<f64, O::Error> {
        let n = x.len();
        let mut flat_grad = vec![T::ZERO; n];
        let first = eval(obj, x, &mut flat_grad, h.maximize)?;
        let orig_loss = if h.maximize { -first } else { first };
        let mut loss = first;
        let mut current_evals = 1u64;
        self.func_evals += 1;
        let tol_grad = T::from_f64(h.tolerance_grad);
        if abs_max(&flat_grad) <= tol_grad {
            return Ok(orig_loss);
        }
        let mut d = self.d.take().unwrap_or_default();
        let mut t = self.t.unwrap_or(0.0);
        let mut h_diag = self.h_diag.unwrap_or(T::ONE);
        let mut prev_flat_grad = self.prev_flat_grad.take();
        let mut prev_loss = self.prev_loss;

        let mut n_iter = 0u64;
        while n_iter < h.max_iter {
            n_iter += 1;
            self.n_iter += 1;
            if self.n_iter == 1 {
                d = filled(n, |i| -flat_grad[i]);
                self.old_dirs.clear();
                self.old_stps.clear();
                self.ro.clear();
                h_diag = T::ONE;
            } else {
                let prev = prev_flat_grad.as_deref().unwrap_or(&[]);
                let tt = T::from_f64(t);
                let y: Arc<[T]> = filled(n, |i| flat_grad[i] - prev[i]).into();
                let s: Arc<[T]> = filled(n, |i| d[i] * tt).into();
                let ys = dot(&y, &s);
                if ys > T::from_f64(1e-10) {
                    // torch pops one pair when full (`==`); `>=` also trims a loaded longer history.
                    while !self.old_dirs.is_empty() && self.old_dirs.len() >= h.history_size {
                        self.old_dirs.pop_front();
                        self.old_stps.pop_front();
                        self.ro.pop_front();
                    }
                    h_diag = ys / dot(&y, &y);
                    self.old_dirs.push_back(y);
                    self.old_stps.push_back(s);
                    self.ro.push_back(T::ONE / ys);
                }
                // the two-loop recursion: d = -H g
                let num_old = self.old_dirs.len();
                let mut al = vec![T::ZERO; num_old];
                let mut q: Vec<T> = filled(n, |i| -flat_grad[i]);
                for i in (0..num_old).rev() {
                    al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
                    axpy(&mut q, -al[i], &self.old_dirs[i]);
                }
                chunks_mut(&mut q, |_, part| {
                    for v in part {
                        *v = *v * h_diag;
                    }
                });
                for (i, &al_i) in al.iter().enumerate() {
                    let be_i = dot(&self.old_dirs[i], &q) * self.ro[i];
                    axpy(&mut q, al_i - be_i, &self.old_stps[i]);
                }
                d = q;
            }
            match prev_flat_grad.as_mut() {
                Some(p) if p.len() == n => copy(p, &flat_grad),
                _ => prev_flat_grad = Some(filled(n, |i| flat_grad[i])),
            }
            prev_loss = Some(loss);

            t = if self.n_iter == 1 {
                let inv = T::ONE / abs_sum(&flat_grad);
                if inv < T::ONE {
                    (inv * T::from_f64(h.lr)).to_f64()
                } else {
                    h.lr
                }
            } else {
                h.lr
            };
            let gtd = dot(&flat_grad, &d);
            if gtd > T::from_f64(-h.tolerance_change) {
                break;
            }

            let mut ls_func_evals = 0u64;
            let opt_cond;
            if h.strong_wolfe {
                let max_ls = h.max_eval as i64 - current_evals as i64;
                let found = {
                    let mut line = Line {
                        obj: &mut *obj,
                        x: &*x,
                        d: &d,
                        point: vec![T::ZERO; n],
                        maximize: h.maximize,
                    };
                    strong_wolfe(
                        &mut line,
                        t,
                        loss,
                        &flat_grad,
                        gtd.to_f64(),
                        h.tolerance_change,
                        max_ls,
                    )?
                };
                loss = found.loss;
                flat_grad = found.grad;
                t = found.t;
                ls_func_evals = found.evals;
                axpy(x, T::from_f64(t), &d);
                opt_cond = abs_max(&flat_grad) <= tol_grad;
            } else {
                axpy(x, T::from_f64(t), &d);
                // no evaluation after the last iteration (torch: no use in a stochastic setting)
                if n_iter == h.max_iter {
                    opt_cond = false;
                } else {
                    loss = eval(obj, x, &mut flat_grad, h.maximize)?;
                    opt_cond = abs_max(&flat_grad) <= tol_grad;
                    ls_func_evals = 1;
                }
            }
            current_evals += ls_func_evals;
            self.func_evals += ls_func_evals;

            if n_iter == h.max_iter || current_evals >= h.max_eval || opt_cond {
                break;
            }
            let tt = T::from_f64(t);
            if d.iter().fold(T::ZERO, |m, &v| m.nan_max((v * tt).abs()))
                <= T::from_f64(h.tolerance_change)
            {
                break;
            }
            if (loss - prev_loss.unwrap_or(f64::NAN)).abs() < h.tolerance_change {
                break;
            }
        }
        self.d = Some(d);
        self.t = Some(t);
        self.h_diag = Some(h_diag);
        self.prev_flat_grad = prev_flat_grad;
        self.prev_loss = prev_loss;
        Ok(orig_loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock's function of (x0, x1) in a vector, counting evaluations.
    struct Rosenbrock {
        params: Vec<f64>,
        evals: usize,
        fail_at: Option<usize>,
    }

    impl Objective<f64> for Rosenbrock {
        type Error = String;
        fn evaluate(&mut self, x: &[f64], g: &mut [f64]) -> Result<f64, String> {
            self.params.copy_from_slice(x);
            self.evals += 1;
            if Some(self.evals) == self.fail_at {
                return Err("failed".into());
            }
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            Ok((1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2))
        }
        fn set(&mut self, x: &[f64]) -> Result<(), String> {
            self.params.copy_from_slice(x);
            Ok(())
        }
    }

    fn hyper(strong_wolfe: bool) -> LbfgsHyper {
        LbfgsHyper {
            lr: 1.0,
            max_iter: 20,
            max_eval: 25,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            strong_wolfe,
            maximize: false,
        }
    }

    #[test]
    fn strong_wolfe_lbfgs_finds_the_minimum_of_rosenbrock() {
        let mut obj = Rosenbrock {
            params: vec![-1.5, 2.0],
            evals: 0,
            fail_at: None,
        };
        let mut x = obj.params.clone();
        let mut state = LbfgsState::default();
        let first = state.step(&hyper(true), &mut x, &mut obj).unwrap();
        assert_eq!(first, 2.5f64.powi(2) + 100.0 * (2.0f64 - 2.25).powi(2));
        for _ in 0..10 {
            state.step(&hyper(true), &mut x, &mut obj).unwrap();
        }
        // stopped by tolerance_change on the loss, as torch stops
        assert!(
            (x[0] - 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5,
            "{x:?}"
        );
        assert_eq!(obj.params, x);
        assert_eq!(state.func_evals as usize, obj.evals);
    }

    #[test]
    fn the_history_keeps_at_most_history_size_pairs() {
        let mut obj = Rosenbrock {
            params: vec![-1.5, 2.0],
            evals: 0,
            fail_at: None,
        };
        let mut x = obj.params.clone();
        let mut state = LbfgsState::default();
        let h = LbfgsHyper {
            history_size: 3,
            ..hyper(false)
        };
        let h = LbfgsHyper { lr: 1e-3, ..h };
        state.step(&h, &mut x, &mut obj).unwrap();
        assert_eq!(state.old_dirs.len(), 3);
        assert_eq!(state.ro.len(), 3);
        assert_eq!(state.n_iter, 20);
    }

    #[test]
    fn a_failed_evaluation_leaves_parameters_and_state_as_they_were() {
        let mut obj = Rosenbrock {
            params: vec![-1.5, 2.0],
            evals: 0,
            fail_at: None,
        };
        let mut x = obj.params.clone();
        let mut state = LbfgsState::default();
        state.step(&hyper(true), &mut x, &mut obj).unwrap();
        let (before, n_iter, evals) = (x.clone(), state.n_iter, state.func_evals);
        obj.fail_at = Some(obj.evals + 3);
        assert!(state.step(&hyper(true), &mut x, &mut obj).is_err());
        assert_eq!((x.clone(), obj.params.clone()), (before.clone(), before));
        assert_eq!((state.n_iter, state.func_evals), (n_iter, evals));
    }

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
        // f(x) = x^3 - 3x has its local minimum at 1: f(0) = 0, f'(0) = -3, f(2) = 2, f'(2) = 9.
        let m = cubic_interpolate((0.0, 0.0, -3.0), (2.0, 2.0, 9.0), None);
        assert!((m - 1.0).abs() < 1e-12, "{m}");
        assert_eq!(
            cubic_interpolate((0.0, 0.0, -3.0), (2.0, 2.0, 9.0), Some((1.5, 3.0))),
            1.5
        );
    }

    #[test]
    fn long_dots_and_axpys_are_the_same_bits_on_any_number_of_threads() {
        let n = 5 * CHUNK_ELEMENTS + 17;
        let a: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let mut results = Vec::new();
        for threads in [1, 3] {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let mut y = b.clone();
            axpy(&mut y, 0.5, &a);
            results.push((dot(&a, &b), abs_sum(&a), y));
        }
        crate::runtime::parallel::set_num_threads(1).unwrap();
        assert_eq!(results[0], results[1]);
        assert!((f64::from(results[0].0) - exact).abs() <= exact.abs() * 1e-7);
        assert_eq!(results[0].2[n - 1], b[n - 1] + 0.5 * a[n - 1]);
    }

    #[test]
    fn dot_sums_in_f64() {
        let a = [1e8f32, 1.0, -1e8, 1.0];
        assert_eq!(dot(&a, &[1.0f32; 4]), 2.0);
    }
}
