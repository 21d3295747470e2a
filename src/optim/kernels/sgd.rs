//! SGD (with momentum and Nesterov), the lecture's momentum and Lion: the kernels whose
//! state is at most one momentum buffer.

use super::GradK;
use crate::numerics::float::Float;
use crate::numerics::half::Stored;
use crate::numerics::mixed::Params;
use crate::optim::ewa::ewa;

/// Per-step constants of SGD for one tensor.
#[derive(Clone, Copy, Debug)]
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

/// Per-step constants of the lecture's momentum for one tensor.
#[derive(Clone, Copy, Debug)]
pub struct MomentumK<T> {
    pub grad: GradK<T>,
    pub neg_lr: T,
    pub beta: T,
    pub one_minus_beta: T,
}

/// Per-step constants of Lion for one tensor.
#[derive(Clone, Copy, Debug)]
pub struct LionK<T> {
    pub scale: T,
    pub neg_lr: T,
    pub weight_decay: T,
    pub beta1: T,
    pub one_minus_beta1: T,
    pub beta2: T,
    pub one_minus_beta2: T,
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
