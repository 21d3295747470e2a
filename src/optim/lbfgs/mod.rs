//! L-BFGS as torch.optim.LBFGS runs it: the two-loop recursion over a limited history of
//! steps and gradient changes, a fixed step or the strong-Wolfe line search with cubic
//! interpolation (minFunc's, ported by torch), and torch's stopping rules.
//!
//! The objective is a callback ([`Objective`]): the parameters live with it; the core moves
//! them (to a point, or along a direction) and gets the loss and flat gradient back, so the
//! core knows nothing of Python. A step allocates nothing once the history is full: it
//! writes into buffers earlier steps left ([`LbfgsState`]), and the two-loop recursion
//! takes one pass per update ([`kernels`]: each update fused with the next dot product, the
//! same sums as separate passes). Vectors are in the
//! parameter type `T` (torch computes in the parameter dtype); dot products are summed in
//! `f64` and rounded once to `T` (torch's are `T` reductions in its own order, so the two
//! differ by `T`'s rounding of a sum, not by more); the loss and the line search's scalars are
//! `f64`, as torch's are Python floats.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::numerics::float::Float;

mod kernels;

use kernels::{abs_max, abs_max_scaled, abs_sum, dot, pair, trial, update_dot, Update};
pub use kernels::{axpy, copy};

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
///
/// The vectors are shared (`Arc`): a step works on a copy of the state that shares them,
/// writes what it computes into buffers of its own, and replaces the state only when it
/// succeeds. Buffers the state no longer needs are kept (up to [`SPARE_BUFFERS`]) and reused
/// by the next steps, so a step allocates nothing once the history is full.
#[derive(Clone, Debug, Default)]
pub struct LbfgsState<T> {
    pub func_evals: u64,
    pub n_iter: u64,
    /// The last search direction.
    pub d: Option<Arc<[T]>>,
    /// The last step length.
    pub t: Option<f64>,
    /// Gradient changes `y`, oldest first.
    pub old_dirs: VecDeque<Arc<[T]>>,
    /// Steps `s = t d`, oldest first.
    pub old_stps: VecDeque<Arc<[T]>>,
    /// `1 / (y . s)` of each pair.
    pub ro: VecDeque<T>,
    /// The initial inverse-Hessian scale `(y . s) / (y . y)` of the newest pair.
    pub h_diag: Option<T>,
    pub prev_flat_grad: Option<Arc<[T]>>,
    pub prev_loss: Option<f64>,
    /// Buffers of earlier steps, for the next ones (not part of the state proper).
    spare: Spare<T>,
}

/// At most this many unused buffers are kept between steps: the four a one-iteration step
/// writes (the gradient, `y`, `s` and the direction), and the start point and the working
/// point of a longer one.
pub const SPARE_BUFFERS: usize = 6;

/// Vectors no longer in use, to be written over.
#[derive(Clone, Debug, Default)]
struct Spare<T>(Vec<Arc<[T]>>);

impl<T: Float> Spare<T> {
    /// A buffer of `n` elements of no particular value, used by nothing else.
    fn take(&mut self, n: usize) -> Arc<[T]> {
        while let Some(mut a) = self.0.pop() {
            if a.len() == n && Arc::get_mut(&mut a).is_some() {
                return a;
            }
        }
        vec![T::ZERO; n].into()
    }

    /// Keeps `a` for reuse if nothing else uses it (otherwise only drops this reference).
    fn give(&mut self, mut a: Arc<[T]>) {
        if self.0.len() < SPARE_BUFFERS && Arc::get_mut(&mut a).is_some() {
            self.0.push(a);
        }
    }

    /// Keeps the vectors of `s` that nothing else uses (`s` is dropped).
    fn give_state(&mut self, s: LbfgsState<T>) {
        let vectors = s.d.into_iter().chain(s.prev_flat_grad);
        for a in vectors.chain(s.old_dirs).chain(s.old_stps) {
            self.give(a);
        }
    }
}

/// A buffer from [`Spare::take`], to write into.
fn mine<T>(a: &mut Arc<[T]>) -> &mut [T] {
    Arc::get_mut(a).expect("a step writes only into buffers it took for itself")
}

/// Where [`Objective::evaluate`] evaluates: the parameters as they are, set to a point, or
/// moved along a direction (all or nothing: if the move fails, they are unchanged).
#[derive(Clone, Copy, Debug)]
pub enum At<'a, T> {
    /// The current parameters.
    Here,
    /// `params = x`.
    Point(&'a [T]),
    /// `params += alpha d`.
    Moved(T, &'a [T]),
}

/// The function being minimized, as the caller evaluates it. The parameters live with the
/// caller; the core reads them, moves them and evaluates the objective at them.
pub trait Objective<T> {
    type Error;
    /// The number of parameter elements.
    fn numel(&self) -> usize;
    /// Evaluates the objective at `at` (the parameters moved there first); returns the
    /// loss, the flat gradient (in parameter order) written into `grad`.
    fn evaluate(&mut self, at: At<'_, T>, grad: &mut [T]) -> Result<f64, Self::Error>;
    /// Sets the parameters to `x`.
    fn set(&mut self, x: &[T]) -> Result<(), Self::Error>;
    /// Reads the parameters into `x`.
    fn get(&mut self, x: &mut [T]) -> Result<(), Self::Error>;
    /// `params += alpha d`, all or nothing: an error leaves the parameters unchanged.
    fn add(&mut self, alpha: T, d: &[T]) -> Result<(), Self::Error>;
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
    point: Arc<[T]>,
    maximize: bool,
    spare: &'a mut Spare<T>,
}

impl<T: Float, O: Objective<T>> Line<'_, T, O> {
    /// The loss and gradient at `x + t d` (the parameters are set there).
    fn at(&mut self, t: f64) -> Result<(f64, Arc<[T]>), O::Error> {
        trial(mine(&mut self.point), self.x, t, self.d);
        let mut g = self.spare.take(self.x.len());
        let f = eval(
            self.obj,
            At::Point(&self.point),
            mine(&mut g),
            self.maximize,
        )?;
        Ok((f, g))
    }
}

/// The loss and gradient (into `grad`) at `at`, negated under `maximize`.
fn eval<T: Float, O: Objective<T>>(
    obj: &mut O,
    at: At<'_, T>,
    grad: &mut [T],
    maximize: bool,
) -> Result<f64, O::Error> {
    let loss = obj.evaluate(at, grad)?;
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
    grad: Arc<[T]>,
    t: f64,
    evals: u64,
}

/// A point of the line search: `(t, loss, gradient, directional derivative)`.
type Point<T> = (f64, f64, Arc<[T]>, f64);

/// torch's `_strong_wolfe` (c1 = 1e-4, c2 = 0.9): bracketing, then zooming by cubic
/// interpolation, at most `max_ls` evaluations after the first.
#[allow(clippy::too_many_arguments)]
fn strong_wolfe<T: Float, O: Objective<T>>(
    line: &mut Line<'_, T, O>,
    mut t: f64,
    f: f64,
    g: &Arc<[T]>,
    gtd: f64,
    tolerance_change: f64,
    max_ls: i64,
) -> Result<Found<T>, O::Error> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let d_norm = abs_max(line.d).to_f64();
    let (mut f_new, mut g_new) = line.at(t)?;
    let mut evals = 1u64;
    let mut gtd_new = dot(&g_new, line.d).to_f64();

    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.clone(), gtd);
    let mut done = false;
    let mut ls_iter: i64 = 0;
    // bracket[k] = (t, f, g, gtd)
    let mut found: Option<Vec<Point<T>>> = None;
    while ls_iter < max_ls {
        if f_new > f + C1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) {
            found = Some(vec![
                (t_prev, f_prev, g_prev.clone(), gtd_prev),
                (t, f_new, g_new.clone(), gtd_new),
            ]);
            break;
        }
        if gtd_new.abs() <= -C2 * gtd {
            found = Some(vec![(t, f_new, g_new.clone(), gtd_new)]);
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            found = Some(vec![
                (t_prev, f_prev, g_prev.clone(), gtd_prev),
                (t, f_new, g_new.clone(), gtd_new),
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
        gtd_prev = gtd_new;
        let (f, g) = line.at(t)?;
        line.spare.give(std::mem::replace(
            &mut g_prev,
            std::mem::replace(&mut g_new, g),
        ));
        f_new = f;
        evals += 1;
        gtd_new = dot(&g_new, line.d).to_f64();
        ls_iter += 1;
    }
    // No bracket found in max_ls evaluations (ls_iter == max_ls): torch leaves the gtd
    // entries of this one unset, as the zoom below does not run.
    let mut bracket = found.unwrap_or_else(|| {
        vec![
            (0.0, f, g.clone(), f64::NAN),
            (t, f_new, g_new.clone(), f64::NAN),
        ]
    });
    line.spare.give(g_prev);
    line.spare.give(g_new);

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
        let (f_new, g_new) = line.at(t)?;
        evals += 1;
        let gtd_new = dot(&g_new, line.d).to_f64();
        ls_iter += 1;

        let old = if f_new > f + C1 * t * gtd || f_new >= bracket[low].1 {
            let old = std::mem::replace(&mut bracket[high], (t, f_new, g_new, gtd_new));
            (low, high) = order(&bracket);
            old
        } else {
            if gtd_new.abs() <= -C2 * gtd {
                done = true;
            } else if gtd_new * (bracket[high].0 - bracket[low].0) >= 0.0 {
                let kept = bracket[low].clone();
                line.spare
                    .give(std::mem::replace(&mut bracket[high], kept).2);
            }
            std::mem::replace(&mut bracket[low], (t, f_new, g_new, gtd_new))
        };
        line.spare.give(old.2);
    }
    let (t, loss, grad, _) = bracket.swap_remove(low);
    for p in bracket {
        line.spare.give(p.2);
    }
    Ok(Found {
        loss,
        grad,
        t,
        evals,
    })
}

/// Where the parameters are during a step, and what puts them back if it fails.
struct Here<T> {
    /// The parameters before the step, once a step is about to move them and evaluate
    /// the objective again.
    x0: Option<Arc<[T]>>,
    /// The core's copy of the point (the line search keeps one; fixed steps move the
    /// parameters themselves).
    x: Option<Arc<[T]>>,
    /// Whether the parameters may differ from `x0`.
    moved: bool,
}

impl<T: Float> LbfgsState<T> {
    /// One `step(closure)` of torch's LBFGS from the objective's current parameters, which
    /// hold the final parameters afterwards. Returns the loss before the step (of the
    /// objective, not negated under `maximize`).
    ///
    /// If an evaluation (or moving the parameters) fails, the parameters are set back to
    /// their values before the step (where the step had moved them), and this state is
    /// unchanged: the step is all or nothing.
    pub fn step<O: Objective<T>>(&mut self, h: &LbfgsHyper, obj: &mut O) -> Result<f64, O::Error> {
        // a copy that shares the vectors; new ones come from the spare buffers
        let mut work = LbfgsState {
            d: self.d.clone(),
            prev_flat_grad: self.prev_flat_grad.clone(),
            old_dirs: self.old_dirs.clone(),
            old_stps: self.old_stps.clone(),
            ro: self.ro.clone(),
            spare: std::mem::take(&mut self.spare),
            ..*self
        };
        let mut here = Here {
            x0: None,
            x: None,
            moved: false,
        };
        let result = work.run(h, obj, &mut here);
        let mut spare = std::mem::take(&mut work.spare);
        let result = match result {
            Ok(loss) => {
                let old = std::mem::replace(self, work);
                spare.give_state(old);
                Ok(loss)
            }
            Err(e) => {
                spare.give_state(work);
                match (here.moved, &here.x0) {
                    (true, Some(x0)) => obj.set(x0).and(Err(e)),
                    _ => Err(e),
                }
            }
        };
        for a in here.x0.into_iter().chain(here.x) {
            spare.give(a);
        }
        self.spare = spare;
        result
    }

    /// `x0` (and `x` if `copy`) read from the parameters, if not yet.
    fn save_start<O: Objective<T>>(
        &mut self,
        obj: &mut O,
        here: &mut Here<T>,
        n: usize,
        with_copy: bool,
    ) -> Result<(), O::Error> {
        if here.x0.is_none() {
            let mut x0 = self.spare.take(n);
            obj.get(mine(&mut x0))?;
            here.x0 = Some(x0);
        }
        if with_copy && here.x.is_none() {
            let mut x = self.spare.take(n);
            if let Some(x0) = &here.x0 {
                copy(mine(&mut x), x0);
            }
            here.x = Some(x);
        }
        Ok(())
    }

    fn run<O: Objective<T>>(
        &mut self,
        h: &LbfgsHyper,
        obj: &mut O,
        here: &mut Here<T>,
    ) -> Result<f64, O::Error> {
        let n = obj.numel();
        let mut flat_grad = self.spare.take(n);
        let first = eval(obj, At::Here, mine(&mut flat_grad), h.maximize)?;
        let orig_loss = if h.maximize { -first } else { first };
        let mut loss = first;
        let mut current_evals = 1u64;
        self.func_evals += 1;
        let tol_grad = T::from_f64(h.tolerance_grad);
        if abs_max(&flat_grad) <= tol_grad {
            self.spare.give(flat_grad);
            return Ok(orig_loss);
        }
        let mut d = self.d.take();
        let mut t = self.t.unwrap_or(0.0);
        let mut h_diag = self.h_diag.unwrap_or(T::ONE);
        let mut prev_flat_grad = self.prev_flat_grad.take();
        let mut prev_loss = self.prev_loss;

        let mut n_iter = 0u64;
        while n_iter < h.max_iter {
            n_iter += 1;
            self.n_iter += 1;
            let mut q = self.spare.take(n);
            let gtd;
            match (&d, &prev_flat_grad) {
                (Some(old_d), Some(prev)) if self.n_iter != 1 => {
                    let (mut y, mut s) = (self.spare.take(n), self.spare.take(n));
                    let [ys, yy] = pair(
                        mine(&mut y),
                        mine(&mut s),
                        &flat_grad,
                        prev,
                        old_d,
                        T::from_f64(t),
                    );
                    let ys = T::from_f64(ys);
                    if ys > T::from_f64(1e-10) {
                        // torch pops one pair when full (`==`); `>=` also trims a loaded longer history.
                        while !self.old_dirs.is_empty() && self.old_dirs.len() >= h.history_size {
                            self.old_dirs.pop_front();
                            self.old_stps.pop_front();
                            self.ro.pop_front();
                        }
                        h_diag = ys / T::from_f64(yy);
                        self.old_dirs.push_back(y);
                        self.old_stps.push_back(s);
                        self.ro.push_back(T::ONE / ys);
                    } else {
                        self.spare.give(y);
                        self.spare.give(s);
                    }
                    gtd = self.two_loop(mine(&mut q), &flat_grad, h_diag);
                }
                _ => {
                    // the first iteration (a state always has `d` and `prev_flat_grad` after one)
                    gtd = T::from_f64(update_dot(
                        mine(&mut q),
                        &flat_grad,
                        &flat_grad,
                        Update::Neg,
                    ));
                    self.old_dirs.clear();
                    self.old_stps.clear();
                    self.ro.clear();
                    h_diag = T::ONE;
                }
            }
            if let Some(old) = d.replace(q) {
                self.spare.give(old);
            }
            if let Some(old) = prev_flat_grad.replace(flat_grad.clone()) {
                self.spare.give(old);
            }
            let d = d.as_deref().unwrap_or(&[]);
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
            if gtd > T::from_f64(-h.tolerance_change) {
                break;
            }

            let mut ls_func_evals = 0u64;
            let opt_cond;
            if h.strong_wolfe {
                let max_ls = h.max_eval as i64 - current_evals as i64;
                self.save_start(obj, here, n, true)?;
                here.moved = true;
                let x = here.x.as_mut().map(mine).unwrap_or_default();
                let found = {
                    let mut line = Line {
                        obj: &mut *obj,
                        x: &*x,
                        d,
                        point: self.spare.take(n),
                        maximize: h.maximize,
                        spare: &mut self.spare,
                    };
                    let found = strong_wolfe(
                        &mut line,
                        t,
                        loss,
                        &flat_grad,
                        gtd.to_f64(),
                        h.tolerance_change,
                        max_ls,
                    )?;
                    let point = line.point;
                    line.spare.give(point);
                    found
                };
                loss = found.loss;
                flat_grad = found.grad;
                t = found.t;
                ls_func_evals = found.evals;
                axpy(x, T::from_f64(t), d);
                opt_cond = abs_max(&flat_grad) <= tol_grad;
            } else if n_iter == h.max_iter {
                // no evaluation after the last iteration (torch: no use in a stochastic setting)
                if here.x.is_some() {
                    axpy(
                        here.x.as_mut().map(mine).unwrap_or_default(),
                        T::from_f64(t),
                        d,
                    );
                } else {
                    obj.add(T::from_f64(t), d)?;
                    here.moved = true;
                }
                opt_cond = false;
            } else {
                self.save_start(obj, here, n, false)?;
                here.moved = true;
                flat_grad = self.spare.take(n);
                let at = At::Moved(T::from_f64(t), d);
                loss = eval(obj, at, mine(&mut flat_grad), h.maximize)?;
                opt_cond = abs_max(&flat_grad) <= tol_grad;
                ls_func_evals = 1;
            }
            current_evals += ls_func_evals;
            self.func_evals += ls_func_evals;

            if n_iter == h.max_iter || current_evals >= h.max_eval || opt_cond {
                break;
            }
            if abs_max_scaled(d, T::from_f64(t)) <= T::from_f64(h.tolerance_change) {
                break;
            }
            if (loss - prev_loss.unwrap_or(f64::NAN)).abs() < h.tolerance_change {
                break;
            }
        }
        // the line search's point is the parameters' only where it kept its own copy
        if let Some(x) = &here.x {
            obj.set(x)?;
        }
        self.d = d;
        self.t = Some(t);
        self.h_diag = Some(h_diag);
        self.prev_flat_grad = prev_flat_grad;
        self.prev_loss = prev_loss;
        Ok(orig_loss)
    }

    /// The direction `d = -H g` by the two-loop recursion over the history, written into
    /// `q`; returns `g . d`. Each pass updates `q` and takes the dot product the next
    /// update needs (torch's separate passes, the same arithmetic in the same order).
    fn two_loop(&self, q: &mut [T], g: &[T], h_diag: T) -> T {
        let (dirs, stps, ro) = (&self.old_dirs, &self.old_stps, &self.ro);
        let m = dirs.len();
        if m == 0 {
            return T::from_f64(update_dot(q, g, g, Update::NegScale(h_diag)));
        }
        let mut al = vec![T::ZERO; m];
        // q = -g, and the newest step's dot product with it
        let mut sum = update_dot(q, g, &stps[m - 1], Update::Neg);
        for i in (0..m).rev() {
            al[i] = T::from_f64(sum) * ro[i];
            sum = if i > 0 {
                update_dot(q, &dirs[i], &stps[i - 1], Update::Axpy(-al[i]))
            } else {
                // the last update of the first loop, then q = H_diag q
                update_dot(q, &dirs[0], &dirs[0], Update::AxpyScale(-al[0], h_diag))
            };
        }
        for (i, &al_i) in al.iter().enumerate() {
            let be_i = T::from_f64(sum) * ro[i];
            let next: &[T] = if i + 1 < m { &dirs[i + 1] } else { g };
            sum = update_dot(q, &stps[i], next, Update::Axpy(al_i - be_i));
        }
        T::from_f64(sum)
    }
}

#[cfg(test)]
mod tests;
