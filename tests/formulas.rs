//! Every optimizer against its formula written out the way torch.optim's documentation
//! states it (optax's for Lion, the lecture's for Momentum), one element at a time in f64,
//! so that `cargo test` alone fails when a kernel breaks. The kernels fold and reorder these
//! formulas (bias corrections into the step size, `lerp` for EWAs, SIMD lanes), so the
//! comparison allows a few ulps of rounding per element, not bit equality.

use ferroptim::{
    Adadelta, Adagrad, Adam, Adamax, Asgd, Dtype, Hyper, Lion, Momentum, NAdam, Optimizer, RAdam,
    RmsProp, Rprop, Sgd, State, Tensor,
};

const STEPS: usize = 10;
const N: usize = 37; // more than one SIMD block of every level, plus a tail

fn initial_params() -> Vec<f64> {
    (0..N).map(|i| (1.3 * i as f64 + 0.4).cos()).collect()
}

/// Gradients of mixed sign and size, a few exactly zero.
fn grad(t: usize) -> Vec<f64> {
    (0..N)
        .map(|i| {
            if i % 11 == 5 {
                0.0
            } else {
                (0.37 * (i + 1) as f64 * (t + 1) as f64).sin() * (1.0 + 0.5 * (i as f64).cos())
            }
        })
        .collect()
}

/// The state of the reference implementation of one element vector.
#[derive(Default)]
struct Ref {
    t: u64,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    mu_product: f64,
    /// ASGD's step size and averaging weight for the coming step.
    eta: f64,
    mu: f64,
}

fn zeros() -> Vec<f64> {
    vec![0.0; N]
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// One step of `hyper`'s algorithm, as the documentation writes it.
#[allow(clippy::too_many_lines)]
fn reference_step(hyper: &Hyper, s: &mut Ref, p: &mut [f64], g_in: &[f64]) {
    s.t += 1;
    let t = s.t as f64;
    let first = s.t == 1;
    if first {
        s.a = zeros();
        s.b = zeros();
        s.c = zeros();
        s.mu_product = 1.0;
    }
    match *hyper {
        Hyper::Sgd(h) => {
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                g += h.weight_decay * p[i];
                if h.momentum != 0.0 {
                    let buf = &mut s.a[i];
                    *buf = if first {
                        g
                    } else {
                        h.momentum * *buf + (1.0 - h.dampening) * g
                    };
                    g = if h.nesterov {
                        g + h.momentum * *buf
                    } else {
                        *buf
                    };
                }
                p[i] -= h.lr * g;
            }
        }
        Hyper::Momentum(h) => {
            for i in 0..N {
                s.a[i] = h.beta * s.a[i] + (1.0 - h.beta) * g_in[i];
                p[i] -= h.lr * s.a[i];
            }
        }
        Hyper::RmsProp(h) => {
            for i in 0..N {
                let g = if h.maximize { -g_in[i] } else { g_in[i] } + h.weight_decay * p[i];
                s.a[i] = h.alpha * s.a[i] + (1.0 - h.alpha) * g * g;
                let avg = if h.centered {
                    s.c[i] = h.alpha * s.c[i] + (1.0 - h.alpha) * g;
                    (s.a[i] - s.c[i] * s.c[i]).sqrt() + h.eps
                } else {
                    s.a[i].sqrt() + h.eps
                };
                if h.momentum > 0.0 {
                    s.b[i] = h.momentum * s.b[i] + g / avg;
                    p[i] -= h.lr * s.b[i];
                } else {
                    p[i] -= h.lr * g / avg;
                }
            }
        }
        Hyper::Adam(h) => {
            let (bc1, bc2) = (1.0 - h.beta1.powf(t), 1.0 - h.beta2.powf(t));
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                if h.decoupled {
                    p[i] *= 1.0 - h.lr * h.weight_decay;
                } else {
                    g += h.weight_decay * p[i];
                }
                s.a[i] = h.beta1 * s.a[i] + (1.0 - h.beta1) * g;
                s.b[i] = h.beta2 * s.b[i] + (1.0 - h.beta2) * g * g;
                let v = if h.amsgrad {
                    s.c[i] = s.c[i].max(s.b[i]);
                    s.c[i]
                } else {
                    s.b[i]
                };
                let m_hat = s.a[i] / bc1;
                let v_hat = v / bc2;
                p[i] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
            }
        }
        Hyper::Adagrad(h) => {
            if first {
                s.a = vec![h.initial_accumulator_value; N];
            }
            let clr = h.lr / (1.0 + (t - 1.0) * h.lr_decay);
            for i in 0..N {
                let g = if h.maximize { -g_in[i] } else { g_in[i] } + h.weight_decay * p[i];
                s.a[i] += g * g;
                p[i] -= clr * g / (s.a[i].sqrt() + h.eps);
            }
        }
        Hyper::Adadelta(h) => {
            for i in 0..N {
                let g = if h.maximize { -g_in[i] } else { g_in[i] } + h.weight_decay * p[i];
                s.a[i] = h.rho * s.a[i] + (1.0 - h.rho) * g * g;
                let delta = (s.b[i] + h.eps).sqrt() / (s.a[i] + h.eps).sqrt() * g;
                s.b[i] = h.rho * s.b[i] + (1.0 - h.rho) * delta * delta;
                p[i] -= h.lr * delta;
            }
        }
        Hyper::Adamax(h) => {
            let clr = h.lr / (1.0 - h.beta1.powf(t));
            for i in 0..N {
                let g = if h.maximize { -g_in[i] } else { g_in[i] } + h.weight_decay * p[i];
                s.a[i] = h.beta1 * s.a[i] + (1.0 - h.beta1) * g;
                s.b[i] = (h.beta2 * s.b[i]).max(g.abs() + h.eps);
                p[i] -= clr * s.a[i] / s.b[i];
            }
        }
        Hyper::NAdam(h) => {
            let mu = h.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
            let mu_next = h.beta1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * h.momentum_decay));
            // torch keeps mu_product in a float32 tensor (the default dtype)
            s.mu_product = f64::from(s.mu_product as f32 * mu as f32);
            let bc2 = 1.0 - h.beta2.powf(t);
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                if h.decoupled {
                    p[i] *= 1.0 - h.lr * h.weight_decay;
                } else {
                    g += h.weight_decay * p[i];
                }
                s.a[i] = h.beta1 * s.a[i] + (1.0 - h.beta1) * g;
                s.b[i] = h.beta2 * s.b[i] + (1.0 - h.beta2) * g * g;
                let denom = (s.b[i] / bc2).sqrt() + h.eps;
                p[i] -= h.lr * (1.0 - mu) / (1.0 - s.mu_product) * g / denom;
                p[i] -= h.lr * mu_next / (1.0 - s.mu_product * mu_next) * s.a[i] / denom;
            }
        }
        Hyper::RAdam(h) => {
            let (bc1, bc2) = (1.0 - h.beta1.powf(t), 1.0 - h.beta2.powf(t));
            let rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
            let rho_t = rho_inf - 2.0 * t * h.beta2.powf(t) / bc2;
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                if h.decoupled {
                    p[i] *= 1.0 - h.lr * h.weight_decay;
                } else {
                    g += h.weight_decay * p[i];
                }
                s.a[i] = h.beta1 * s.a[i] + (1.0 - h.beta1) * g;
                s.b[i] = h.beta2 * s.b[i] + (1.0 - h.beta2) * g * g;
                let m_hat = s.a[i] / bc1;
                if rho_t > 5.0 {
                    let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                        .sqrt();
                    let adaptive = bc2.sqrt() / (s.b[i].sqrt() + h.eps);
                    p[i] -= h.lr * m_hat * rect * adaptive;
                } else {
                    p[i] -= h.lr * m_hat;
                }
            }
        }
        Hyper::Asgd(h) => {
            // torch.optim.ASGD's algorithm; eta and mu are kept in float32 scalars, as torch
            // keeps them.
            if first {
                s.eta = f64::from(h.lr as f32);
                s.mu = 1.0;
            }
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                g += h.weight_decay * p[i];
                p[i] *= 1.0 - h.lambd * s.eta;
                p[i] -= s.eta * g;
                s.a[i] = if s.mu == 1.0 {
                    p[i]
                } else {
                    s.a[i] + s.mu * (p[i] - s.a[i])
                };
            }
            s.eta = f64::from((h.lr / (1.0 + h.lambd * h.lr * t).powf(h.alpha)) as f32);
            s.mu = f64::from((1.0 / (t - h.t0).max(1.0)) as f32);
        }
        Hyper::Rprop(h) => {
            // torch.optim.Rprop's documented algorithm: the step size grows by etaplus while
            // g * prev > 0, shrinks by etaminus (and the step is skipped, prev set to zero)
            // when it is < 0; p -= sign(g) * step size.
            let (etaminus, etaplus) = h.etas;
            let (lo, hi) = h.step_sizes;
            if first {
                s.b = vec![h.lr; N];
            }
            for i in 0..N {
                let mut g = if h.maximize { -g_in[i] } else { g_in[i] };
                let d = g * s.a[i];
                if d > 0.0 {
                    s.b[i] = (s.b[i] * etaplus).min(hi);
                } else if d < 0.0 {
                    s.b[i] = (s.b[i] * etaminus).max(lo);
                    g = 0.0;
                }
                p[i] -= sign(g) * s.b[i];
                s.a[i] = g;
            }
        }
        Hyper::Lion(h) => {
            for i in 0..N {
                let c = h.beta1 * s.a[i] + (1.0 - h.beta1) * g_in[i];
                p[i] -= h.lr * (sign(c) + h.weight_decay * p[i]);
                s.a[i] = h.beta2 * s.a[i] + (1.0 - h.beta2) * g_in[i];
            }
        }
    }
}

/// Runs `hyper` for STEPS steps through the core and through the reference, and checks
/// that every element stays within `ulps` units in the last place of `max(|want|, 1)`
/// of the reference (in the core's dtype) after every step.
fn check(name: &str, hyper: Hyper, ulps: f64) {
    let mut reference = Ref::default();
    let mut want = initial_params();
    let mut p64 = initial_params();
    let mut p32: Vec<f32> = initial_params().iter().map(|&x| x as f32).collect();
    let mut o64 = Optimizer::new(hyper.algorithm(), &[Dtype::F64], &[N], &[0]);
    let mut o32 = Optimizer::new(hyper.algorithm(), &[Dtype::F32], &[N], &[0]);
    let valid = o64.validate(vec![hyper]).unwrap();
    let mut want32 = Ref::default();
    let mut w32: Vec<f64> = p32.iter().map(|&x| f64::from(x)).collect();
    for t in 0..STEPS {
        let g = grad(t);
        let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        let g32_wide: Vec<f64> = g32.iter().map(|&x| f64::from(x)).collect();
        reference_step(&hyper, &mut reference, &mut want, &g);
        reference_step(&hyper, &mut want32, &mut w32, &g32_wide);
        o64.step(
            vec![Tensor::F64 {
                param: &mut p64,
                grad: &g,
            }],
            &valid,
            1.0,
        )
        .unwrap();
        o32.step(
            vec![Tensor::F32 {
                param: &mut p32,
                grad: &g32,
            }],
            &valid,
            1.0,
        )
        .unwrap();
        for i in 0..N {
            let tol64 = ulps * f64::EPSILON * want[i].abs().max(1.0);
            assert!(
                (p64[i] - want[i]).abs() <= tol64,
                "{name} f64 step {} element {i}: got {}, formula {}",
                t + 1,
                p64[i],
                want[i]
            );
            let tol32 = ulps * f64::from(f32::EPSILON) * w32[i].abs().max(1.0);
            assert!(
                (f64::from(p32[i]) - w32[i]).abs() <= tol32,
                "{name} f32 step {} element {i}: got {}, formula {}",
                t + 1,
                p32[i],
                w32[i]
            );
        }
    }
}

/// A few ulps per step: the kernels round in a different order than the formula.
const ULPS: f64 = 8.0;

#[test]
fn sgd() {
    let base = Sgd {
        lr: 0.1,
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
        weight_decay: 0.0,
        maximize: false,
    };
    check("sgd", Hyper::Sgd(base), ULPS);
    check(
        "sgd weight_decay maximize",
        Hyper::Sgd(Sgd {
            weight_decay: 0.1,
            maximize: true,
            ..base
        }),
        ULPS,
    );
    check(
        "sgd momentum dampening",
        Hyper::Sgd(Sgd {
            momentum: 0.9,
            dampening: 0.5,
            ..base
        }),
        ULPS,
    );
    check(
        "sgd nesterov",
        Hyper::Sgd(Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn momentum() {
    check(
        "momentum",
        Hyper::Momentum(Momentum { lr: 0.1, beta: 0.9 }),
        ULPS,
    );
}

#[test]
fn rmsprop() {
    let base = RmsProp::TORCH;
    check("rmsprop", Hyper::RmsProp(base), ULPS);
    check(
        "rmsprop weight_decay maximize",
        Hyper::RmsProp(RmsProp {
            weight_decay: 0.1,
            maximize: true,
            ..base
        }),
        ULPS,
    );
    check(
        "rmsprop centered momentum",
        Hyper::RmsProp(RmsProp {
            weight_decay: 0.1,
            centered: true,
            momentum: 0.1,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn adam_and_adamw() {
    let base = Adam {
        lr: 0.01,
        ..Adam::TORCH
    };
    check("adam", Hyper::Adam(base), ULPS);
    check(
        "adam weight_decay maximize",
        Hyper::Adam(Adam {
            weight_decay: 0.1,
            maximize: true,
            ..base
        }),
        ULPS,
    );
    check(
        "adam amsgrad",
        Hyper::Adam(Adam {
            weight_decay: 0.1,
            amsgrad: true,
            ..base
        }),
        ULPS,
    );
    check(
        "adamw",
        Hyper::Adam(Adam {
            weight_decay: 0.1,
            decoupled: true,
            ..base
        }),
        ULPS,
    );
    check(
        "adamw amsgrad",
        Hyper::Adam(Adam {
            weight_decay: 0.1,
            decoupled: true,
            amsgrad: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn adagrad() {
    let base = Adagrad {
        lr: 0.1,
        lr_decay: 0.0,
        weight_decay: 0.0,
        initial_accumulator_value: 0.0,
        eps: 1e-10,
        maximize: false,
    };
    check("adagrad", Hyper::Adagrad(base), ULPS);
    check(
        "adagrad lr_decay initial_accumulator_value",
        Hyper::Adagrad(Adagrad {
            lr_decay: 0.5,
            weight_decay: 0.1,
            initial_accumulator_value: 0.1,
            ..base
        }),
        ULPS,
    );
    check(
        "adagrad maximize",
        Hyper::Adagrad(Adagrad {
            maximize: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn adadelta() {
    let base = Adadelta {
        lr: 1.0,
        rho: 0.9,
        eps: 1e-6,
        weight_decay: 0.0,
        maximize: false,
    };
    check("adadelta", Hyper::Adadelta(base), ULPS);
    check(
        "adadelta rho weight_decay maximize",
        Hyper::Adadelta(Adadelta {
            rho: 0.95,
            weight_decay: 0.9,
            maximize: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn adamax() {
    let base = Adamax {
        lr: 0.002,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        maximize: false,
    };
    check("adamax", Hyper::Adamax(base), ULPS);
    check(
        "adamax weight_decay maximize",
        Hyper::Adamax(Adamax {
            lr: 0.1,
            weight_decay: 0.1,
            maximize: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn nadam() {
    let base = NAdam {
        lr: 0.002,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum_decay: 0.004,
        decoupled: false,
        maximize: false,
    };
    check("nadam", Hyper::NAdam(base), ULPS);
    check(
        "nadam weight_decay momentum_decay",
        Hyper::NAdam(NAdam {
            weight_decay: 0.1,
            momentum_decay: 0.006,
            maximize: true,
            ..base
        }),
        ULPS,
    );
    check(
        "nadam decoupled",
        Hyper::NAdam(NAdam {
            weight_decay: 0.1,
            decoupled: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn radam() {
    let base = RAdam {
        lr: 0.01,
        ..RAdam::TORCH
    };
    // 10 steps cross from the unrectified (rho_t <= 5) to the rectified branch at step 6
    check("radam", Hyper::RAdam(base), ULPS);
    check(
        "radam weight_decay maximize",
        Hyper::RAdam(RAdam {
            weight_decay: 0.1,
            maximize: true,
            ..base
        }),
        ULPS,
    );
    check(
        "radam decoupled",
        Hyper::RAdam(RAdam {
            weight_decay: 0.1,
            decoupled: true,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn lion() {
    let base = Lion {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.0,
    };
    check("lion", Hyper::Lion(base), ULPS);
    check(
        "lion weight_decay",
        Hyper::Lion(Lion {
            weight_decay: 0.1,
            ..base
        }),
        ULPS,
    );
}

#[test]
fn rprop() {
    check("rprop", Hyper::Rprop(Rprop::TORCH), ULPS);
    check(
        "rprop maximize clamped",
        Hyper::Rprop(Rprop {
            lr: 0.05,
            etas: (0.3, 1.5),
            step_sizes: (0.02, 0.08),
            maximize: true,
        }),
        ULPS,
    );
}

#[test]
fn asgd() {
    check("asgd", Hyper::Asgd(Asgd::TORCH), ULPS);
    check(
        "asgd averaging weight_decay maximize",
        Hyper::Asgd(Asgd {
            lr: 0.05,
            lambd: 0.1,
            alpha: 0.5,
            t0: 3.0,
            weight_decay: 0.1,
            maximize: true,
        }),
        ULPS,
    );
}

/// ASGD's average `ax` and its scalars `eta`, `mu` (which `check` does not see) against
/// the formula, with averaging from step 3 on.
#[test]
fn asgd_average_and_scalars() {
    let hyper = Hyper::Asgd(Asgd {
        lr: 0.05,
        lambd: 0.1,
        alpha: 0.5,
        t0: 3.0,
        weight_decay: 0.0,
        maximize: false,
    });
    let mut reference = Ref::default();
    let mut want = initial_params();
    let mut p = initial_params();
    let mut o = Optimizer::new(hyper.algorithm(), &[Dtype::F64], &[N], &[0]);
    let valid = o.validate(vec![hyper]).unwrap();
    for t in 0..STEPS {
        let g = grad(t);
        reference_step(&hyper, &mut reference, &mut want, &g);
        o.step(
            vec![Tensor::F64 {
                param: &mut p,
                grad: &g,
            }],
            &valid,
            1.0,
        )
        .unwrap();
        let State::F64(s) = &o.states()[0] else {
            panic!("float64 state expected");
        };
        assert_eq!(s.scalars, [reference.eta, reference.mu], "step {}", t + 1);
        let ax = s.slots[0].as_ref().expect("ax");
        for (i, (&got, &formula)) in ax.iter().zip(&reference.a).enumerate() {
            let tol = ULPS * f64::EPSILON * formula.abs().max(1.0);
            assert!(
                (got - formula).abs() <= tol,
                "ax step {} element {i}: got {got}, formula {formula}",
                t + 1,
            );
        }
    }
}
