//! Fused single-pass update kernels: each reads every input element once, writes every
//! output element once, and allocates nothing.
//!
//! Operation order follows torch.optim's single-tensor implementations (hyper-parameters
//! rounded to the element type once per step, scalars such as `-lr / (1 - beta1**t)`
//! computed in `f64` as Python computes them), and the EWAs are the lecture's
//! `beta * v + (1 - beta) * x`, so a NumPy transcription of the same formulas reproduces
//! these kernels bit for bit.

use crate::numerics::float::Float;
use crate::numerics::half::Stored;
use crate::numerics::mixed::Params;
use crate::optim::ewa::{bias_correction, ewa, ewa_sq, py_pow_half};
use crate::optim::hyper::{Hyper, MAX_SCALARS, MAX_SLOTS};
use crate::optim::subnormal::{Wide32, Widen};
use crate::runtime::simd::multiversion;

/// Defines a kernel's per-step constants: the struct, and its [`Widen`] to [`Wide32`] field by
/// field for the subnormal path (a field left out does not compile), so that path needs no
/// line per optimizer.
macro_rules! constants {
    (
        $(#[$meta:meta])*
        pub struct $name:ident<T> { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name<T> { $($(#[$fmeta])* pub $field: $ty,)* }

        impl $crate::optim::subnormal::Widen for $name<f32> {
            type Wide = $name<$crate::optim::subnormal::Wide32>;
            fn widen(self) -> Self::Wide {
                $name { $($field: self.$field.widen()),* }
            }
        }
    };
}

mod adam;
mod adaptive;
mod sgd;

// Each family's constants (public) and kernels (to the dispatch below): a new optimizer's
// kernel needs no import line here.
#[allow(clippy::wildcard_imports)]
pub use {adam::*, adaptive::*, sgd::*};

constants! {
    /// How every kernel turns the raw gradient into the one it uses: scaled by the clipping
    /// coefficient, negated if `maximize`, plus `weight_decay * p` if L2 decay applies (the
    /// decision is taken on the `f64` value, as torch takes it).
    pub struct GradK<T> {
        pub scale: T,
        pub maximize: bool,
        pub l2: bool,
        pub weight_decay: T,
    }
}

impl<T: Float> GradK<T> {
    fn new(scale: f64, maximize: bool, weight_decay: f64) -> Self {
        GradK {
            scale: T::from_f64(scale),
            maximize,
            l2: weight_decay != 0.0,
            weight_decay: T::from_f64(weight_decay),
        }
    }

    #[inline(always)]
    fn apply(&self, g: T, p: T) -> T {
        let g = g * self.scale;
        let g = if self.maximize { -g } else { g };
        if self.l2 {
            g + self.weight_decay * p
        } else {
            g
        }
    }
}

constants! {
    /// The two EWAs the Adam family keeps, and the decoupled decay applied before them.
    pub struct MomentsK<T> {
        pub grad: GradK<T>,
        /// `1 - lr * weight_decay` for decoupled (AdamW-style) decay; one otherwise.
        pub decay: T,
        pub beta1: T,
        pub one_minus_beta1: T,
        pub beta2: T,
        pub one_minus_beta2: T,
    }
}

impl<T: Float> MomentsK<T> {
    /// Decays `p`, then updates `m` (EWA of gradients) and `v` (EWA of squared gradients);
    /// returns the decayed parameter, the gradient and the new moments.
    #[inline(always)]
    fn update(&self, p: T, g: T, m: T, v: T) -> (T, T, T, T) {
        let p = p * self.decay;
        let g = self.grad.apply(g, p);
        let m = ewa(m, g, self.beta1, self.one_minus_beta1);
        let v = ewa_sq(v, g, self.beta2, self.one_minus_beta2);
        (p, g, m, v)
    }
}

/// The scalars of update `t` of a param group that take a `pow` to compute, in `f64`, once
/// per group and step however many tensors share them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepScalars {
    None,
    /// Adam: `lr / (1 - beta1**t)` and `(1 - beta2**t) ** 0.5`.
    Adam {
        step_size: f64,
        bias_correction2_sqrt: f64,
    },
    /// Adagrad: `lr / (1 + (t - 1) * lr_decay)`; Adamax: `lr / (1 - beta1**t)`.
    Clr(f64),
    /// NAdam: the momentum coefficients of this step and the next, and `1 - beta2**t`.
    NAdam {
        mu: f64,
        mu_next: f64,
        bias_correction2: f64,
    },
    /// RAdam: the bias corrections and the rectification term (if `rho_t > 5`).
    RAdam {
        bias_correction1: f64,
        bias_correction2_sqrt: f64,
        rect: Option<f64>,
    },
}

impl StepScalars {
    pub fn new(h: &Hyper, t: u64) -> Self {
        let tf = t as f64;
        match h {
            Hyper::Adam(h) => StepScalars::Adam {
                step_size: h.lr / bias_correction(h.beta1, t),
                bias_correction2_sqrt: py_pow_half(bias_correction(h.beta2, t)),
            },
            Hyper::Adagrad(h) => StepScalars::Clr(h.lr / (1.0 + (tf - 1.0) * h.lr_decay)),
            Hyper::Adamax(h) => StepScalars::Clr(h.lr / bias_correction(h.beta1, t)),
            Hyper::NAdam(h) => {
                let mu = |t: f64| h.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
                StepScalars::NAdam {
                    mu: mu(tf),
                    mu_next: mu(tf + 1.0),
                    bias_correction2: bias_correction(h.beta2, t),
                }
            }
            Hyper::RAdam(h) => {
                let bc2 = bias_correction(h.beta2, t);
                let rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
                let rho_t = rho_inf - 2.0 * tf * h.beta2.powf(tf) / bc2;
                let rect = (rho_t > 5.0).then(|| {
                    py_pow_half(
                        (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t),
                    )
                });
                StepScalars::RAdam {
                    bias_correction1: bias_correction(h.beta1, t),
                    bias_correction2_sqrt: py_pow_half(bc2),
                    rect,
                }
            }
            _ => StepScalars::None,
        }
    }
}

/// What a tensor contributes to its kernel's constants besides the group's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct TensorScalars {
    /// The gradient's clipping coefficient (1 without clipping).
    pub grad_scale: f64,
    /// Which state slots were just created (SGD starts a new buffer at the gradient).
    pub fresh: [bool; MAX_SLOTS],
    /// The tensor's scalar state (`TensorState::scalars`) as this step reads it: NAdam's
    /// `mu_product` after this step's update (torch keeps it as a float32 scalar); ASGD's
    /// `eta` and `mu` as the previous step left them.
    pub scalars: [f64; MAX_SCALARS],
}

impl<T: Float> Kernel<T> {
    /// The constants of update number `t` (1-based) without clipping; see [`Kernel::build`].
    pub fn new(h: &Hyper, t: u64, fresh: [bool; MAX_SLOTS]) -> Self {
        let ts = TensorScalars {
            grad_scale: 1.0,
            fresh,
            scalars: [1.0; MAX_SCALARS],
        };
        Self::build(h, &StepScalars::new(h, t), &ts)
    }

    /// The constants of one tensor's update from its group's hyper-parameters, the step's
    /// scalars and the tensor's own.
    pub fn build(h: &Hyper, sc: &StepScalars, ts: &TensorScalars) -> Self {
        let f = T::from_f64;
        let s = ts.grad_scale;
        // AdamW-style decoupled decay multiplies the parameter; L2 decay adds to the gradient.
        let moments = |lr: f64, (beta1, beta2): (f64, f64), wd: f64, decoupled: bool, maximize| {
            let (decay, l2) = if decoupled {
                (f(1.0 - lr * wd), 0.0)
            } else {
                (T::ONE, wd)
            };
            MomentsK {
                grad: GradK::new(s, maximize, l2),
                decay,
                beta1: f(beta1),
                one_minus_beta1: f(1.0 - beta1),
                beta2: f(beta2),
                one_minus_beta2: f(1.0 - beta2),
            }
        };
        match (*h, *sc) {
            (Hyper::Sgd(h), _) => Kernel::Sgd(SgdK {
                grad: GradK::new(s, h.maximize, h.weight_decay),
                neg_lr: f(-h.lr),
                use_buffer: h.momentum != 0.0,
                momentum: f(h.momentum),
                one_minus_dampening: f(1.0 - h.dampening),
                nesterov: h.nesterov,
                init: ts.fresh[0],
            }),
            (Hyper::Momentum(h), _) => Kernel::Momentum(MomentumK {
                grad: GradK::new(s, false, 0.0),
                neg_lr: f(-h.lr),
                beta: f(h.beta),
                one_minus_beta: f(1.0 - h.beta),
            }),
            (Hyper::RmsProp(h), _) => Kernel::RmsProp(RmsPropK {
                grad: GradK::new(s, h.maximize, h.weight_decay),
                neg_lr: f(-h.lr),
                alpha: f(h.alpha),
                one_minus_alpha: f(1.0 - h.alpha),
                eps: f(h.eps),
                use_momentum: h.momentum > 0.0,
                momentum: f(h.momentum),
                centered: h.centered,
            }),
            (
                Hyper::Adam(h),
                StepScalars::Adam {
                    step_size,
                    bias_correction2_sqrt,
                },
            ) => {
                // torch's `m / (sqrt(v) / c + eps) * lr / bc1` with numerator and denominator
                // multiplied by c = sqrt(1 - beta2**t): the same value up to rounding, one
                // division per element instead of two (Kingma & Ba's efficient form).
                Kernel::Adam(AdamK {
                    moments: moments(
                        h.lr,
                        (h.beta1, h.beta2),
                        h.weight_decay,
                        h.decoupled,
                        h.maximize,
                    ),
                    neg_step_size: f(-(step_size * bias_correction2_sqrt)),
                    eps: f(h.eps * bias_correction2_sqrt),
                    amsgrad: h.amsgrad,
                })
            }
            (Hyper::Adagrad(h), StepScalars::Clr(clr)) => Kernel::Adagrad(AdagradK {
                grad: GradK::new(s, h.maximize, h.weight_decay),
                neg_clr: f(-clr),
                eps: f(h.eps),
            }),
            (Hyper::Adadelta(h), _) => Kernel::Adadelta(AdadeltaK {
                grad: GradK::new(s, h.maximize, h.weight_decay),
                neg_lr: f(-h.lr),
                rho: f(h.rho),
                one_minus_rho: f(1.0 - h.rho),
                eps: f(h.eps),
            }),
            (Hyper::Adamax(h), StepScalars::Clr(clr)) => Kernel::Adamax(AdamaxK {
                grad: GradK::new(s, h.maximize, h.weight_decay),
                beta1: f(h.beta1),
                one_minus_beta1: f(1.0 - h.beta1),
                beta2: f(h.beta2),
                eps: f(h.eps),
                neg_clr: f(-clr),
            }),
            (
                Hyper::NAdam(h),
                StepScalars::NAdam {
                    mu,
                    mu_next,
                    bias_correction2,
                },
            ) => {
                let mp = ts.scalars[0];
                Kernel::NAdam(NAdamK {
                    moments: moments(
                        h.lr,
                        (h.beta1, h.beta2),
                        h.weight_decay,
                        h.decoupled,
                        h.maximize,
                    ),
                    bias_correction2: f(bias_correction2),
                    eps: f(h.eps),
                    grad_coef: f(-h.lr * (1.0 - mu) / (1.0 - mp)),
                    momentum_coef: f(-h.lr * mu_next / (1.0 - mp * mu_next)),
                })
            }
            (
                Hyper::RAdam(h),
                StepScalars::RAdam {
                    bias_correction1,
                    bias_correction2_sqrt,
                    rect,
                },
            ) => Kernel::RAdam(RAdamK {
                moments: moments(
                    h.lr,
                    (h.beta1, h.beta2),
                    h.weight_decay,
                    h.decoupled,
                    h.maximize,
                ),
                lr: f(h.lr),
                bias_correction1: f(bias_correction1),
                bias_correction2_sqrt: f(bias_correction2_sqrt),
                eps: f(h.eps),
                rectified: rect.is_some(),
                rect: f(rect.unwrap_or(0.0)),
            }),
            (Hyper::Lion(h), _) => Kernel::Lion(LionK {
                scale: f(s),
                neg_lr: f(-h.lr),
                weight_decay: f(h.weight_decay),
                beta1: f(h.beta1),
                one_minus_beta1: f(1.0 - h.beta1),
                beta2: f(h.beta2),
                one_minus_beta2: f(1.0 - h.beta2),
            }),
            (Hyper::Rprop(h), _) => Kernel::Rprop(RpropK {
                grad: GradK::new(s, h.maximize, 0.0),
                etaminus: f(h.etas.0),
                etaplus: f(h.etas.1),
                step_size_min: f(h.step_sizes.0),
                step_size_max: f(h.step_sizes.1),
            }),
            (Hyper::Asgd(h), _) => {
                // torch reads eta with `.item()`: a Python float, used in f64 as torch does.
                let [eta, mu] = ts.scalars;
                Kernel::Asgd(AsgdK {
                    grad: GradK::new(s, h.maximize, h.weight_decay),
                    decay: f(1.0 - h.lambd * eta),
                    neg_eta: f(-eta),
                    average: mu != 1.0,
                    mu: f(mu),
                })
            }
            (h, sc) => unreachable!("step scalars {sc:?} do not belong to {h:?}"),
        }
    }
}

/// Defines, from one line per kernel (`Variant(Constants) => call`, where the call gets
/// the constants as `k`, the parameter as `p`, the gradient as `g` and the state slots as
/// `s0, s1, s2`), the [`Kernel`] enum, its [`Widen`] for the subnormal path and
/// [`update`]'s dispatch. The kernels under `wide` keep a second moment: with float16 state
/// (`S::WIDE` false) they are not compiled, and panic.
macro_rules! kernels {
    (
        |$k:ident, $p:ident, $g:ident, [$s0:ident, $s1:ident, $s2:ident]|
        narrow { $($nv:ident($nk:ident) => $ncall:expr;)* }
        wide { $($wv:ident($wk:ident) => $wcall:expr;)* }
    ) => {
        /// The constants of one tensor's update at one step.
        #[derive(Clone, Copy, Debug)]
        pub enum Kernel<T> {
            $($nv($nk<T>),)*
            $($wv($wk<T>),)*
        }

        impl Widen for Kernel<f32> {
            type Wide = Kernel<Wide32>;
            fn widen(self) -> Kernel<Wide32> {
                match self {
                    $(Kernel::$nv(k) => Kernel::$nv(k.widen()),)*
                    $(Kernel::$wv(k) => Kernel::$wv(k.widen()),)*
                }
            }
        }

        multiversion! {
            /// Applies one tensor's update (or a contiguous chunk of it) in place: the
            /// parameter through `p` (see [`Params`]), its state in `S` (each value widened
            /// to `T` on load and rounded once on store).
            ///
            /// `state` holds the slots the kernel uses, each as long as `p`; unused slots may
            /// be empty. Panics if a used slot or `g` is shorter than `p`. With float16 state
            /// (`S::WIDE` false) only the kernels without a second moment are compiled; the
            /// others panic.
            pub fn update<T: Float, P: Params<T>, S: Stored<T>>(
                kernel: &Kernel<T>,
                $p: P,
                $g: &[P::Grad],
                state: [&mut [S]; MAX_SLOTS],
            ) {
                let [$s0, $s1, $s2] = state;
                match kernel {
                    $(Kernel::$nv($k) => $ncall,)*
                    _ if !S::WIDE => panic!("{} state for {kernel:?}", S::ELEM.name()),
                    $(Kernel::$wv($k) => $wcall,)*
                }
            }
        }
    };
}

kernels! {
    |k, p, g, [s0, s1, s2]|
    narrow {
        Sgd(SgdK) => if k.use_buffer { sgd_momentum(k, p, g, s0) } else { sgd(k, p, g) };
        Momentum(MomentumK) => momentum(k, p, g, s0);
        Lion(LionK) => lion(k, p, g, s0);
        Adamax(AdamaxK) => adamax(k, p, g, s0, s1);
        Rprop(RpropK) => rprop(k, p, g, s0, s1);
        Asgd(AsgdK) => asgd(k, p, g, s0);
    }
    wide {
        RmsProp(RmsPropK) => match (k.use_momentum, k.centered) {
            (false, false) => rmsprop::<T, P, S, false, false>(k, p, g, s0, s1, s2),
            (true, false) => rmsprop::<T, P, S, true, false>(k, p, g, s0, s1, s2),
            (false, true) => rmsprop::<T, P, S, false, true>(k, p, g, s0, s1, s2),
            (true, true) => rmsprop::<T, P, S, true, true>(k, p, g, s0, s1, s2),
        };
        Adam(AdamK) => if k.amsgrad {
            adam::<T, P, S, true>(k, p, g, s0, s1, s2);
        } else {
            adam::<T, P, S, false>(k, p, g, s0, s1, s2);
        };
        Adagrad(AdagradK) => adagrad(k, p, g, s0);
        Adadelta(AdadeltaK) => adadelta(k, p, g, s0, s1);
        NAdam(NAdamK) => nadam(k, p, g, s0, s1);
        RAdam(RAdamK) => radam(k, p, g, s0, s1);
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
mod tests;
