//! RMSprop, Adagrad and Adadelta: a step divided by the root of a running average (or
//! sum) of squared gradients.

use super::GradK;
use crate::numerics::float::Float;
use crate::numerics::half::Stored;
use crate::numerics::mixed::Params;
use crate::optim::ewa::{ewa, ewa_sq};

constants! {
    /// Per-step constants of RMSprop for one tensor.
    pub struct RmsPropK<T> {
        pub grad: GradK<T>,
        pub neg_lr: T,
        pub alpha: T,
        pub one_minus_alpha: T,
        pub eps: T,
        /// A momentum buffer is used (`momentum > 0` in `f64`).
        pub use_momentum: bool,
        pub momentum: T,
        pub centered: bool,
    }
}

constants! {
    /// Per-step constants of Adagrad for one tensor.
    pub struct AdagradK<T> {
        pub grad: GradK<T>,
        /// `-lr / (1 + (t - 1) * lr_decay)`.
        pub neg_clr: T,
        pub eps: T,
    }
}

constants! {
    /// Per-step constants of Adadelta for one tensor.
    pub struct AdadeltaK<T> {
        pub grad: GradK<T>,
        pub neg_lr: T,
        pub rho: T,
        pub one_minus_rho: T,
        pub eps: T,
    }
}

#[inline(always)]
pub(super) fn rmsprop<
    T: Float,
    P: Params<T>,
    S: Stored<T>,
    const MOMENTUM: bool,
    const CENTERED: bool,
>(
    k: &RmsPropK<T>,
    p: P,
    g: &[P::Grad],
    square_avg: &mut [S],
    buf: &mut [S],
    grad_avg: &mut [S],
) {
    let n = p.len();
    let (mut p, g, sq) = (p.prefix(n), &g[..n], &mut square_avg[..n]);
    let buf = &mut buf[..if MOMENTUM { n } else { 0 }];
    let ga = &mut grad_avg[..if CENTERED { n } else { 0 }];
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let s = ewa_sq(sq[i].load(), gi, k.alpha, k.one_minus_alpha);
        sq[i] = S::store(s);
        let avg = if CENTERED {
            let a = ewa(ga[i].load(), gi, k.alpha, k.one_minus_alpha);
            ga[i] = S::store(a);
            (s - a * a).sqrt()
        } else {
            s.sqrt()
        } + k.eps;
        let pi = if MOMENTUM {
            let b = k.momentum * buf[i].load() + gi / avg;
            buf[i] = S::store(b);
            pi + k.neg_lr * b
        } else {
            pi + (k.neg_lr * gi) / avg
        };
        p.store(i, pi);
    }
}

#[inline(always)]
pub(super) fn adagrad<T: Float, P: Params<T>, S: Stored<T>>(
    k: &AdagradK<T>,
    p: P,
    g: &[P::Grad],
    sum: &mut [S],
) {
    let n = p.len();
    let (mut p, g, sum) = (p.prefix(n), &g[..n], &mut sum[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let s = sum[i].load() + gi * gi;
        sum[i] = S::store(s);
        p.store(i, pi + (k.neg_clr * gi) / (s.sqrt() + k.eps));
    }
}

#[inline(always)]
pub(super) fn adadelta<T: Float, P: Params<T>, S: Stored<T>>(
    k: &AdadeltaK<T>,
    p: P,
    g: &[P::Grad],
    sq: &mut [S],
    acc: &mut [S],
) {
    let n = p.len();
    let (mut p, g, sq, acc) = (p.prefix(n), &g[..n], &mut sq[..n], &mut acc[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let s = ewa_sq(sq[i].load(), gi, k.rho, k.one_minus_rho);
        sq[i] = S::store(s);
        let a = acc[i].load();
        let delta = (a + k.eps).sqrt() / (s + k.eps).sqrt() * gi;
        acc[i] = S::store(ewa_sq(a, delta, k.rho, k.one_minus_rho));
        p.store(i, pi + k.neg_lr * delta);
    }
}
