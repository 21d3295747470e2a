//! The Adam family: Adam / AdamW (and `AMSGrad`), Adamax, NAdam and RAdam, each an EWA of the
//! gradients and one of their squares (or, for Adamax, of their magnitude).

use super::{GradK, MomentsK};
use crate::numerics::float::Float;
use crate::numerics::half::Stored;
use crate::numerics::mixed::Params;
use crate::optim::ewa::ewa;

constants! {
    /// Per-step constants of Adam / AdamW for one tensor.
    pub struct AdamK<T> {
        pub moments: MomentsK<T>,
        /// `-lr * sqrt(1 - beta2**t) / (1 - beta1**t)`.
        pub neg_step_size: T,
        /// `eps * sqrt(1 - beta2**t)`.
        pub eps: T,
        pub amsgrad: bool,
    }
}

constants! {
    /// Per-step constants of Adamax for one tensor.
    pub struct AdamaxK<T> {
        pub grad: GradK<T>,
        pub beta1: T,
        pub one_minus_beta1: T,
        pub beta2: T,
        pub eps: T,
        /// `-lr / (1 - beta1**t)`.
        pub neg_clr: T,
    }
}

constants! {
    /// Per-step constants of NAdam for one tensor.
    pub struct NAdamK<T> {
        pub moments: MomentsK<T>,
        /// `1 - beta2**t`.
        pub bias_correction2: T,
        pub eps: T,
        /// `-lr * (1 - mu_t) / (1 - mu_product_t)`, the gradient's coefficient.
        pub grad_coef: T,
        /// `-lr * mu_{t+1} / (1 - mu_product_t * mu_{t+1})`, the momentum's coefficient.
        pub momentum_coef: T,
    }
}

constants! {
    /// Per-step constants of RAdam for one tensor.
    pub struct RAdamK<T> {
        pub moments: MomentsK<T>,
        pub lr: T,
        /// `1 - beta1**t`.
        pub bias_correction1: T,
        /// `sqrt(1 - beta2**t)`.
        pub bias_correction2_sqrt: T,
        pub eps: T,
        /// The variance rectification term, when the variance is tractable (`rho_t > 5`).
        pub rectified: bool,
        pub rect: T,
    }
}

#[inline(always)]
pub(super) fn adam<T: Float, P: Params<T>, S: Stored<T>, const AMSGRAD: bool>(
    k: &AdamK<T>,
    p: P,
    g: &[P::Grad],
    m: &mut [S],
    v: &mut [S],
    vmax: &mut [S],
) {
    let n = p.len();
    let (mut p, g, m, v) = (p.prefix(n), &g[..n], &mut m[..n], &mut v[..n]);
    let vmax = &mut vmax[..if AMSGRAD { n } else { 0 }];
    for i in 0..n {
        let (pi, _, mi, vi) = k
            .moments
            .update(p.load(i), g[i].load(), m[i].load(), v[i].load());
        m[i] = S::store(mi);
        v[i] = S::store(vi);
        let vhat = if AMSGRAD {
            let x = vmax[i].load().nan_max(vi);
            vmax[i] = S::store(x);
            x
        } else {
            vi
        };
        p.store(i, pi + (k.neg_step_size * mi) / (vhat.sqrt() + k.eps));
    }
}

#[inline(always)]
pub(super) fn adamax<T: Float, P: Params<T>, S: Stored<T>>(
    k: &AdamaxK<T>,
    p: P,
    g: &[P::Grad],
    m: &mut [S],
    u: &mut [S],
) {
    let n = p.len();
    let (mut p, g, m, u) = (p.prefix(n), &g[..n], &mut m[..n], &mut u[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let mi = ewa(m[i].load(), gi, k.beta1, k.one_minus_beta1);
        m[i] = S::store(mi);
        let ui = (u[i].load() * k.beta2).nan_max(gi.abs() + k.eps);
        u[i] = S::store(ui);
        p.store(i, pi + (k.neg_clr * mi) / ui);
    }
}

#[inline(always)]
pub(super) fn nadam<T: Float, P: Params<T>, S: Stored<T>>(
    k: &NAdamK<T>,
    p: P,
    g: &[P::Grad],
    m: &mut [S],
    v: &mut [S],
) {
    let n = p.len();
    let (mut p, g, m, v) = (p.prefix(n), &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let (pi, gi, mi, vi) = k
            .moments
            .update(p.load(i), g[i].load(), m[i].load(), v[i].load());
        m[i] = S::store(mi);
        v[i] = S::store(vi);
        let denom = (vi / k.bias_correction2).sqrt() + k.eps;
        let pi = pi + (k.grad_coef * gi) / denom;
        p.store(i, pi + (k.momentum_coef * mi) / denom);
    }
}

#[inline(always)]
pub(super) fn radam<T: Float, P: Params<T>, S: Stored<T>>(
    k: &RAdamK<T>,
    p: P,
    g: &[P::Grad],
    m: &mut [S],
    v: &mut [S],
) {
    let n = p.len();
    let (mut p, g, m, v) = (p.prefix(n), &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let (pi, _, mi, vi) = k
            .moments
            .update(p.load(i), g[i].load(), m[i].load(), v[i].load());
        m[i] = S::store(mi);
        v[i] = S::store(vi);
        let corrected = mi / k.bias_correction1;
        let u = if k.rectified {
            let adaptive = k.bias_correction2_sqrt / (vi.sqrt() + k.eps);
            corrected * k.lr * adaptive * k.rect
        } else {
            corrected * k.lr
        };
        p.store(i, pi - u);
    }
}
