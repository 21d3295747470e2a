//! Fused single-pass update kernels: each reads every input element once, writes every
//! output element once, and allocates nothing.
//!
//! Operation order follows torch.optim's single-tensor implementations (hyper-parameters
//! rounded to the element type once per step, `-lr` and `1 - beta` computed in `f64`), and
//! the EWAs are the lecture's `beta * v + (1 - beta) * x`, so a NumPy transcription of the
//! same formulas reproduces these kernels bit for bit.

use crate::ewa::{bias_correction, ewa};
use crate::float::Float;
use crate::hyper::{self, MAX_SLOTS};
use crate::simd::multiversion;

/// Per-step constants of SGD for one tensor.
#[derive(Clone, Copy, Debug)]
pub struct SgdK<T> {
    pub neg_lr: T,
    pub maximize: bool,
    /// L2 weight decay is applied (decided on the `f64` value, as torch decides).
    pub l2: bool,
    pub weight_decay: T,
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
    pub neg_lr: T,
    pub beta: T,
    pub one_minus_beta: T,
}

/// Per-step constants of RMSprop for one tensor.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropK<T> {
    pub neg_lr: T,
    pub maximize: bool,
    pub l2: bool,
    pub weight_decay: T,
    pub alpha: T,
    pub one_minus_alpha: T,
    pub eps: T,
    /// A momentum buffer is used (`momentum > 0` in `f64`).
    pub use_momentum: bool,
    pub momentum: T,
    pub centered: bool,
}

/// Per-step constants of Adam / AdamW for one tensor.
#[derive(Clone, Copy, Debug)]
pub struct AdamK<T> {
    pub maximize: bool,
    /// L2 weight decay is added to the gradient (Adam with `weight_decay != 0`).
    pub l2: bool,
    pub weight_decay: T,
    /// `1 - lr * weight_decay` for AdamW's decoupled decay; one for Adam.
    pub decay: T,
    pub beta1: T,
    pub one_minus_beta1: T,
    pub beta2: T,
    pub one_minus_beta2: T,
    /// `-lr / (1 - beta1**t)`.
    pub neg_step_size: T,
    /// `sqrt(1 - beta2**t)`.
    pub bias_correction2_sqrt: T,
    pub eps: T,
    pub amsgrad: bool,
}

/// The step-dependent scalars of update `t` of a param group, computed in `f64` once per
/// group and step, however many tensors share them (`pow` is the costly part).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    /// Adam: `lr / (1 - beta1**t)`.
    pub step_size: f64,
    /// Adam: `(1 - beta2**t) ** 0.5`, as Python computes it in torch.
    pub bias_correction2_sqrt: f64,
}

impl StepScalars {
    pub fn new(h: &hyper::Hyper, t: u64) -> Self {
        match h {
            hyper::Hyper::Adam(h) => StepScalars {
                step_size: h.lr / bias_correction(h.beta1, t),
                bias_correction2_sqrt: bias_correction(h.beta2, t).powf(0.5),
            },
            _ => StepScalars {
                step_size: 0.0,
                bias_correction2_sqrt: 1.0,
            },
        }
    }
}

/// The constants of one tensor's update at one step.
#[derive(Clone, Copy, Debug)]
pub enum Kernel<T> {
    Sgd(SgdK<T>),
    Momentum(MomentumK<T>),
    RmsProp(RmsPropK<T>),
    Adam(AdamK<T>),
}

impl<T: Float> Kernel<T> {
    /// The constants of update number `t` (1-based). `fresh` says which state slots were
    /// just created (SGD initialises a new momentum buffer with the gradient).
    pub fn new(h: &hyper::Hyper, t: u64, fresh: [bool; MAX_SLOTS]) -> Self {
        Self::with_scalars(h, &StepScalars::new(h, t), fresh)
    }

    /// As [`Kernel::new`], with the step's scalars already computed.
    pub fn with_scalars(h: &hyper::Hyper, sc: &StepScalars, fresh: [bool; MAX_SLOTS]) -> Self {
        let f = T::from_f64;
        match *h {
            hyper::Hyper::Sgd(h) => Kernel::Sgd(SgdK {
                neg_lr: f(-h.lr),
                maximize: h.maximize,
                l2: h.weight_decay != 0.0,
                weight_decay: f(h.weight_decay),
                use_buffer: h.momentum != 0.0,
                momentum: f(h.momentum),
                one_minus_dampening: f(1.0 - h.dampening),
                nesterov: h.nesterov,
                init: fresh[0],
            }),
            hyper::Hyper::Momentum(h) => Kernel::Momentum(MomentumK {
                neg_lr: f(-h.lr),
                beta: f(h.beta),
                one_minus_beta: f(1.0 - h.beta),
            }),
            hyper::Hyper::RmsProp(h) => Kernel::RmsProp(RmsPropK {
                neg_lr: f(-h.lr),
                maximize: h.maximize,
                l2: h.weight_decay != 0.0,
                weight_decay: f(h.weight_decay),
                alpha: f(h.alpha),
                one_minus_alpha: f(1.0 - h.alpha),
                eps: f(h.eps),
                use_momentum: h.momentum > 0.0,
                momentum: f(h.momentum),
                centered: h.centered,
            }),
            hyper::Hyper::Adam(h) => {
                let decay = if h.decoupled {
                    1.0 - h.lr * h.weight_decay
                } else {
                    1.0
                };
                Kernel::Adam(AdamK {
                    maximize: h.maximize,
                    l2: !h.decoupled && h.weight_decay != 0.0,
                    weight_decay: f(h.weight_decay),
                    decay: f(decay),
                    beta1: f(h.beta1),
                    one_minus_beta1: f(1.0 - h.beta1),
                    beta2: f(h.beta2),
                    one_minus_beta2: f(1.0 - h.beta2),
                    neg_step_size: f(-sc.step_size),
                    bias_correction2_sqrt: f(sc.bias_correction2_sqrt),
                    eps: f(h.eps),
                    amsgrad: h.amsgrad,
                })
            }
        }
    }
}

/// The gradient after `maximize` and, if `l2`, weight decay: `g + weight_decay * p`.
#[inline(always)]
fn effective_grad<T: Float>(g: T, p: T, maximize: bool, l2: bool, weight_decay: T) -> T {
    let g = if maximize { -g } else { g };
    if l2 {
        g + weight_decay * p
    } else {
        g
    }
}

#[inline(always)]
fn sgd<T: Float>(k: &SgdK<T>, p: &mut [T], g: &[T]) {
    let g = &g[..p.len()];
    for (p, &g) in p.iter_mut().zip(g) {
        *p = *p + k.neg_lr * effective_grad(g, *p, k.maximize, k.l2, k.weight_decay);
    }
}

#[inline(always)]
fn sgd_momentum<T: Float>(k: &SgdK<T>, p: &mut [T], g: &[T], buf: &mut [T]) {
    let n = p.len();
    let (g, buf) = (&g[..n], &mut buf[..n]);
    for i in 0..n {
        let gi = effective_grad(g[i], p[i], k.maximize, k.l2, k.weight_decay);
        let b = if k.init {
            gi
        } else {
            ewa(buf[i], gi, k.momentum, k.one_minus_dampening)
        };
        buf[i] = b;
        let d = if k.nesterov { gi + k.momentum * b } else { b };
        p[i] = p[i] + k.neg_lr * d;
    }
}

#[inline(always)]
fn momentum<T: Float>(k: &MomentumK<T>, p: &mut [T], g: &[T], v: &mut [T]) {
    let n = p.len();
    let (g, v) = (&g[..n], &mut v[..n]);
    for i in 0..n {
        let vi = ewa(v[i], g[i], k.beta, k.one_minus_beta);
        v[i] = vi;
        p[i] = p[i] + k.neg_lr * vi;
    }
}

#[inline(always)]
fn rmsprop<T: Float, const MOMENTUM: bool, const CENTERED: bool>(
    k: &RmsPropK<T>,
    p: &mut [T],
    g: &[T],
    square_avg: &mut [T],
    buf: &mut [T],
    grad_avg: &mut [T],
) {
    let n = p.len();
    let (g, sq) = (&g[..n], &mut square_avg[..n]);
    let buf = &mut buf[..if MOMENTUM { n } else { 0 }];
    let ga = &mut grad_avg[..if CENTERED { n } else { 0 }];
    for i in 0..n {
        let gi = effective_grad(g[i], p[i], k.maximize, k.l2, k.weight_decay);
        let s = ewa(sq[i], gi * gi, k.alpha, k.one_minus_alpha);
        sq[i] = s;
        let avg = if CENTERED {
            let a = ewa(ga[i], gi, k.alpha, k.one_minus_alpha);
            ga[i] = a;
            (s - a * a).sqrt()
        } else {
            s.sqrt()
        } + k.eps;
        p[i] = if MOMENTUM {
            let b = k.momentum * buf[i] + gi / avg;
            buf[i] = b;
            p[i] + k.neg_lr * b
        } else {
            p[i] + (k.neg_lr * gi) / avg
        };
    }
}

#[inline(always)]
fn adam<T: Float, const AMSGRAD: bool>(
    k: &AdamK<T>,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let vmax = &mut vmax[..if AMSGRAD { n } else { 0 }];
    for i in 0..n {
        let gi = effective_grad(g[i], p[i], k.maximize, k.l2, k.weight_decay);
        let mi = ewa(m[i], gi, k.beta1, k.one_minus_beta1);
        let vi = ewa(v[i], gi * gi, k.beta2, k.one_minus_beta2);
        m[i] = mi;
        v[i] = vi;
        let vhat = if AMSGRAD {
            let x = vmax[i].nan_max(vi);
            vmax[i] = x;
            x
        } else {
            vi
        };
        let denom = vhat.sqrt() / k.bias_correction2_sqrt + k.eps;
        p[i] = p[i] * k.decay + (k.neg_step_size * mi) / denom;
    }
}

multiversion! {
    /// Applies one tensor's update (or a contiguous chunk of it) in place.
    ///
    /// `state` holds the slots the kernel uses, each as long as `p`; unused slots may be
    /// empty. Panics if a used slot or `g` is shorter than `p`.
    pub fn update<T: Float>(k: &Kernel<T>, p: &mut [T], g: &[T], state: [&mut [T]; MAX_SLOTS]) {
        let [s0, s1, s2] = state;
        match k {
            Kernel::Sgd(k) if !k.use_buffer => sgd(k, p, g),
            Kernel::Sgd(k) => sgd_momentum(k, p, g, s0),
            Kernel::Momentum(k) => momentum(k, p, g, s0),
            Kernel::RmsProp(k) => match (k.use_momentum, k.centered) {
                (false, false) => rmsprop::<T, false, false>(k, p, g, s0, s1, s2),
                (true, false) => rmsprop::<T, true, false>(k, p, g, s0, s1, s2),
                (false, true) => rmsprop::<T, false, true>(k, p, g, s0, s1, s2),
                (true, true) => rmsprop::<T, true, true>(k, p, g, s0, s1, s2),
            },
            Kernel::Adam(k) if k.amsgrad => adam::<T, true>(k, p, g, s0, s1, s2),
            Kernel::Adam(k) => adam::<T, false>(k, p, g, s0, s1, s2),
        }
    }
}

multiversion! {
    /// Whether every element is finite (no NaN, no infinity).
    pub fn all_finite<T: Float>(x: &[T]) -> bool {
        const BLOCK: usize = 1024;
        x.chunks(BLOCK).all(|block| {
            // Branch-free inside a block so it vectorizes; `x - x` is NaN exactly for
            // NaN and infinities.
            let mut bad = false;
            for &v in block {
                #[allow(clippy::eq_op)]
                let nonfinite = (v - v) != T::ZERO;
                bad |= nonfinite;
            }
            !bad
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Level;

    fn adam_hyper(amsgrad: bool, decoupled: bool, maximize: bool) -> hyper::Hyper {
        hyper::Hyper::Adam(hyper::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            amsgrad,
            maximize,
            decoupled,
        })
    }

    /// The Adam update written out step by step, as in torch's `_single_tensor_adam`.
    fn adam_reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64) {
        let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
        for i in 0..p.len() {
            let gi = g[i] + wd * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * (gi * gi);
            let bc1 = 1.0 - b1.powf(t as f64);
            let bc2 = 1.0 - b2.powf(t as f64);
            let denom = v[i].sqrt() / bc2.powf(0.5) + eps;
            p[i] += (-(lr / bc1) * m[i]) / denom;
        }
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        // A small deterministic generator; values in (-1, 1).
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn adam_matches_the_written_out_formula() {
        let n = 37;
        let (mut p, mut m, mut v) = (data(n, 1), vec![0.0; n], vec![0.0; n]);
        let (mut rp, mut rm, mut rv) = (p.clone(), m.clone(), v.clone());
        for t in 1..=20 {
            let g = data(n, 100 + t);
            let k = Kernel::<f64>::new(&adam_hyper(false, false, false), t, [false; 3]);
            update(Level::Scalar, &k, &mut p, &g, [&mut m, &mut v, &mut []]);
            adam_reference(&mut rp, &g, &mut rm, &mut rv, t);
        }
        assert_eq!(p, rp);
        assert_eq!(m, rm);
        assert_eq!(v, rv);
    }

    #[test]
    fn every_level_and_every_variant_gives_identical_bits() {
        let n = 1000 + 7; // a tail after the vector body
        let hypers = [
            adam_hyper(false, false, false),
            adam_hyper(true, true, true),
            hyper::Hyper::Sgd(hyper::Sgd {
                lr: 0.1,
                momentum: 0.9,
                dampening: 0.0,
                nesterov: true,
                weight_decay: 0.01,
                maximize: false,
            }),
            hyper::Hyper::Sgd(hyper::Sgd {
                lr: 0.1,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
                maximize: true,
            }),
            hyper::Hyper::Momentum(hyper::Momentum { lr: 0.1, beta: 0.9 }),
            hyper::Hyper::RmsProp(hyper::RmsProp {
                lr: 0.01,
                alpha: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
                momentum: 0.5,
                centered: true,
                maximize: false,
            }),
            hyper::Hyper::RmsProp(hyper::RmsProp {
                lr: 0.01,
                alpha: 0.9,
                eps: 1e-6,
                weight_decay: 0.1,
                momentum: 0.0,
                centered: false,
                maximize: true,
            }),
        ];
        for h in &hypers {
            let mut results: Vec<Vec<f32>> = Vec::new();
            for level in crate::simd::supported() {
                let mut p: Vec<f32> = data(n, 3).iter().map(|&x| x as f32).collect();
                let mut s: Vec<Vec<f32>> = vec![vec![0.0; n]; 3];
                for t in 1..=5u64 {
                    let g: Vec<f32> = data(n, t).iter().map(|&x| x as f32).collect();
                    let k = Kernel::<f32>::new(h, t, [t == 1; 3]);
                    let [a, b, c] = &mut s[..] else {
                        unreachable!()
                    };
                    update(level, &k, &mut p, &g, [a, b, c]);
                }
                results.push(p.iter().chain(s.concat().iter()).copied().collect());
            }
            for r in &results[1..] {
                assert!(
                    r.iter()
                        .zip(&results[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{h:?}"
                );
            }
        }
    }

    #[test]
    fn sgd_momentum_buffer_starts_as_the_first_gradient() {
        let h = hyper::Hyper::Sgd(hyper::Sgd {
            lr: 0.5,
            momentum: 0.9,
            dampening: 0.5,
            nesterov: false,
            weight_decay: 0.0,
            maximize: false,
        });
        let (mut p, mut buf) = (vec![1.0f64], vec![0.0f64]);
        let k = Kernel::new(&h, 1, [true, false, false]);
        update(
            Level::Scalar,
            &k,
            &mut p,
            &[2.0],
            [&mut buf, &mut [], &mut []],
        );
        assert_eq!((p[0], buf[0]), (0.0, 2.0));
        let k = Kernel::new(&h, 2, [false; 3]);
        update(
            Level::Scalar,
            &k,
            &mut p,
            &[2.0],
            [&mut buf, &mut [], &mut []],
        );
        // buf = 0.9 * 2 + 0.5 * 2 = 2.8; p = 0 - 0.5 * 2.8
        assert_eq!(buf[0], 0.9 * 2.0 + 0.5 * 2.0);
        assert_eq!(p[0], -0.5 * (0.9 * 2.0 + 0.5 * 2.0));
    }

    #[test]
    fn lecture_momentum_is_an_ewa_of_gradients_from_zero() {
        let h = hyper::Hyper::Momentum(hyper::Momentum { lr: 1.0, beta: 0.9 });
        let (mut p, mut v) = (vec![0.0f64], vec![0.0f64]);
        let k = Kernel::new(&h, 1, [true, false, false]);
        update(
            Level::Scalar,
            &k,
            &mut p,
            &[1.0],
            [&mut v, &mut [], &mut []],
        );
        assert!((v[0] - 0.1).abs() < 1e-15 && (p[0] + 0.1).abs() < 1e-15);
    }

    #[test]
    fn all_finite_finds_nan_and_inf_anywhere() {
        for level in crate::simd::supported() {
            let mut x = vec![1.0f32; 3001];
            assert!(all_finite(level, &x));
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, 1500, 3000] {
                    x[at] = bad;
                    assert!(!all_finite(level, &x));
                    x[at] = 1.0;
                }
            }
            assert!(all_finite::<f64>(level, &[]));
        }
    }
}
