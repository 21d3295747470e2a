//! SGD (with momentum and Nesterov), the lecture's momentum and Lion: the kernels whose
//! state is at most one momentum buffer.

use super::GradK;
use crate::numerics::float::Float;
use crate::numerics::half::Stored;
use crate::numerics::mixed::Params;
use crate::optim::ewa::ewa;

constants! {
    /// Per-step constants of SGD for one tensor.
    pub struct SgdK<T> {
        pub grad: GradK<T>,
        pub neg_lr: T,
        /// A momentum buffer is used (`momentum != 0` in `f64`).
        pub use_buffer: bool,
        pub momentum: T,
        pub one_minus_dampening: T,
        pub nesterov: bool,
        /// The momentum buffer is new: it takes the gradient, as torch's first step does.
        pub init: bool,
    }
}

constants! {
    /// Per-step constants of the lecture's momentum for one tensor.
    pub struct MomentumK<T> {
        pub grad: GradK<T>,
        pub neg_lr: T,
        pub beta: T,
        pub one_minus_beta: T,
    }
}

constants! {
    /// Per-step constants of Lion for one tensor.
    pub struct LionK<T> {
        pub scale: T,
        pub neg_lr: T,
        pub weight_decay: T,
        pub beta1: T,
        pub one_minus_beta1: T,
        pub beta2: T,
        pub one_minus_beta2: T,
    }
}

#[inline(always)]
pub(super) fn sgd<T: Float, P: Params<T>>(k: &SgdK<T>, p: P, g: &[P::Grad]) {
    let n = p.len();
    let (mut p, g) = (p.prefix(n), &g[..n]);
    for (i, g) in g.iter().enumerate() {
        let pi = p.load(i);
        p.store(i, pi + k.neg_lr * k.grad.apply(g.load(), pi));
    }
}

#[inline(always)]
pub(super) fn sgd_momentum<T: Float, P: Params<T>, S: Stored<T>>(
    k: &SgdK<T>,
    p: P,
    g: &[P::Grad],
    buf: &mut [S],
) {
    let n = p.len();
    let (mut p, g, buf) = (p.prefix(n), &g[..n], &mut buf[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let b = if k.init {
            gi
        } else {
            ewa(buf[i].load(), gi, k.momentum, k.one_minus_dampening)
        };
        buf[i] = S::store(b);
        let d = if k.nesterov { gi + k.momentum * b } else { b };
        p.store(i, pi + k.neg_lr * d);
    }
}

#[inline(always)]
pub(super) fn momentum<T: Float, P: Params<T>, S: Stored<T>>(
    k: &MomentumK<T>,
    p: P,
    g: &[P::Grad],
    v: &mut [S],
) {
    let n = p.len();
    let (mut p, g, v) = (p.prefix(n), &g[..n], &mut v[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let vi = ewa(
            v[i].load(),
            k.grad.apply(g[i].load(), pi),
            k.beta,
            k.one_minus_beta,
        );
        v[i] = S::store(vi);
        p.store(i, pi + k.neg_lr * vi);
    }
}

#[inline(always)]
pub(super) fn lion<T: Float, P: Params<T>, S: Stored<T>>(
    k: &LionK<T>,
    p: P,
    g: &[P::Grad],
    m: &mut [S],
) {
    let n = p.len();
    let (mut p, g, m) = (p.prefix(n), &g[..n], &mut m[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = g[i].load() * k.scale;
        let mi = m[i].load();
        let c = ewa(mi, gi, k.beta1, k.one_minus_beta1);
        p.store(i, pi + k.neg_lr * (c.sign() + k.weight_decay * pi));
        m[i] = S::store(ewa(mi, gi, k.beta2, k.one_minus_beta2));
    }
}

constants! {
    /// Per-step constants of Rprop for one tensor.
    pub struct RpropK<T> {
        /// Clipping scale and `maximize` (Rprop has no weight decay).
        pub grad: GradK<T>,
        pub etaminus: T,
        pub etaplus: T,
        pub step_size_min: T,
        pub step_size_max: T,
    }
}

/// torch's `clamp(x, lo, hi)`: `min(max(x, lo), hi)`, NaN for NaN.
#[inline(always)]
fn clamp<T: Float>(x: T, lo: T, hi: T) -> T {
    #[allow(clippy::eq_op)]
    let nan = x != x;
    if nan {
        x
    } else {
        let x = if x < lo { lo } else { x };
        if hi < x {
            hi
        } else {
            x
        }
    }
}

/// torch's single-tensor Rprop: the factor is `etaplus` where `g * prev > 0`, `etaminus`
/// where it is < 0 and 1 where it is 0 (NaN stays NaN); the step size is multiplied by it
/// and clamped; where the factor is `etaminus` the gradient is zeroed (no step, and no
/// sign to compare next time); `p -= sign(g) * step_size`; `prev = g`.
#[inline(always)]
pub(super) fn rprop<T: Float, P: Params<T>, S: Stored<T>>(
    k: &RpropK<T>,
    p: P,
    g: &[P::Grad],
    prev: &mut [S],
    step_size: &mut [S],
) {
    let n = p.len();
    let (mut p, g, prev, step_size) = (p.prefix(n), &g[..n], &mut prev[..n], &mut step_size[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let prod = gi * prev[i].load();
        // In torch's order: `sign[sign > 0] = etaplus; sign[sign < 0] = etaminus;
        // sign[sign == 0] = 1` (an etaminus that rounds to zero becomes 1 too).
        let mut factor = if prod > T::ZERO {
            k.etaplus
        } else if prod < T::ZERO {
            k.etaminus
        } else {
            prod
        };
        if factor == T::ZERO {
            factor = T::ONE;
        }
        let s = clamp(
            step_size[i].load() * factor,
            k.step_size_min,
            k.step_size_max,
        );
        step_size[i] = S::store(s);
        let gi = if factor == k.etaminus { T::ZERO } else { gi };
        p.store(i, pi - gi.sign() * s);
        prev[i] = S::store(gi);
    }
}

constants! {
    /// Per-step constants of ASGD for one tensor.
    pub struct AsgdK<T> {
        pub grad: GradK<T>,
        /// `1 - lambd * eta`.
        pub decay: T,
        /// `-eta`.
        pub neg_eta: T,
        /// `mu != 1` (in `f64`): `ax` moves towards `p` by `mu`; otherwise it is set to `p`.
        pub average: bool,
        pub mu: T,
    }
}

/// torch's single-tensor ASGD: `g += weight_decay * p` (the parameter before this step);
/// `p *= 1 - lambd * eta`; `p -= eta * g`; `ax += (p - ax) * mu` (or `ax = p` while
/// `mu == 1`).
#[inline(always)]
pub(super) fn asgd<T: Float, P: Params<T>, S: Stored<T>>(
    k: &AsgdK<T>,
    p: P,
    g: &[P::Grad],
    ax: &mut [S],
) {
    let n = p.len();
    let (mut p, g, ax) = (p.prefix(n), &g[..n], &mut ax[..n]);
    for i in 0..n {
        let pi = p.load(i);
        let gi = k.grad.apply(g[i].load(), pi);
        let pi = pi * k.decay;
        let pi = pi + k.neg_eta * gi;
        p.store(i, pi);
        ax[i] = S::store(if k.average {
            let a = ax[i].load();
            a + (pi - a) * k.mu
        } else {
            pi
        });
    }
}
