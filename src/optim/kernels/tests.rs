use super::*;
use crate::numerics::mixed::Direct;
use crate::optim::hyper;
use crate::runtime::simd::Level;

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

/// The Adam update written out step by step: torch's formula with the bias
/// corrections folded into the step size and eps.
fn adam_reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64) {
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
    for i in 0..p.len() {
        let gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + ((1.0 - b2) * gi) * gi;
        let bc1 = 1.0 - b1.powf(t as f64);
        let c = crate::optim::ewa::py_pow_half(1.0 - b2.powf(t as f64));
        p[i] += (-(lr / bc1 * c) * m[i]) / (v[i].sqrt() + eps * c);
    }
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    // A small deterministic generator; values in (-1, 1).
    let mut s = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
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
        update(
            Level::SCALAR,
            &k,
            Direct(&mut p),
            &g,
            [&mut m, &mut v, &mut []],
        );
        adam_reference(&mut rp, &g, &mut rm, &mut rv, t);
    }
    assert_eq!(p, rp);
    assert_eq!(m, rm);
    assert_eq!(v, rv);
}

#[test]
fn float32_second_moments_of_huge_gradients_stay_finite_as_in_torch() {
    // (1 - beta) * (g * g) overflows float32 for |g| >= 1.9e19; torch's
    // ((1 - beta) * g) * g does not until |g| ~ 1e21 (beta2 = 0.999) or 1.8e20 (0.99).
    let hypers = [
        adam_hyper(false, false, false),
        adam_hyper(false, true, false),
        hyper::Hyper::RmsProp(hyper::RmsProp {
            lr: 0.01,
            alpha: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }),
        hyper::Hyper::Adadelta(hyper::Adadelta {
            lr: 1.0,
            rho: 0.999,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }),
        hyper::Hyper::NAdam(hyper::NAdam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 0.004,
            decoupled: false,
            maximize: false,
        }),
    ];
    for h in &hypers {
        for level in crate::runtime::simd::supported() {
            let (mut p, mut s0, mut s1) = ([1.0f32, 2.0], [0.0f32; 2], [0.0f32; 2]);
            let mut s2 = [0.0f32; 2];
            let mut mu_product = 1.0;
            // A huge gradient moves the parameter, as in torch, and then ordinary ones
            // find a finite state (inf in v would freeze the parameter for good).
            for (t, g) in [(1, [1e20f32, -1e20]), (2, [1.0, -1.0]), (3, [1.0, -1.0])] {
                let sc = StepScalars::new(h, t);
                if let StepScalars::NAdam { mu, .. } = sc {
                    mu_product *= mu;
                }
                let ts = TensorScalars {
                    grad_scale: 1.0,
                    fresh: [t == 1; 3],
                    scalars: [mu_product, 1.0],
                };
                let k = Kernel::<f32>::build(h, &sc, &ts);
                let before = p;
                update(level, &k, Direct(&mut p), &g, [&mut s0, &mut s1, &mut s2]);
                let state = [s0, s1, s2];
                assert!(
                    state.iter().flatten().all(|x| x.is_finite()),
                    "{h:?} at {level:?}, step {t}: state {state:?}"
                );
                assert!(p.iter().all(|x| x.is_finite()), "{h:?}: p = {p:?}");
                // NAdam's `sqrt(v / (1 - beta2**t))` overflows in torch too (|g| > 1.8e19).
                if t == 1 && !matches!(h, hyper::Hyper::NAdam(_)) {
                    assert!(
                        p[0] < before[0] && p[1] > before[1],
                        "{h:?} at {level:?}, step {t}: {before:?} -> {p:?}"
                    );
                }
            }
        }
    }
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
        hyper::Hyper::Adagrad(hyper::Adagrad {
            lr: 0.01,
            lr_decay: 0.01,
            weight_decay: 0.1,
            initial_accumulator_value: 0.1,
            eps: 1e-10,
            maximize: false,
        }),
        hyper::Hyper::Adadelta(hyper::Adadelta {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: true,
        }),
        hyper::Hyper::Adamax(hyper::Adamax {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            maximize: false,
        }),
        hyper::Hyper::NAdam(hyper::NAdam {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            momentum_decay: 4e-3,
            decoupled: true,
            maximize: false,
        }),
        hyper::Hyper::RAdam(hyper::RAdam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            maximize: true,
        }),
        hyper::Hyper::Lion(hyper::Lion {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.1,
        }),
    ];
    for h in &hypers {
        let mut results: Vec<Vec<f32>> = Vec::new();
        for level in crate::runtime::simd::supported() {
            let mut p: Vec<f32> = data(n, 3).iter().map(|&x| x as f32).collect();
            let mut s: Vec<Vec<f32>> = vec![vec![0.0; n]; 3];
            for t in 1..=8u64 {
                let g: Vec<f32> = data(n, t).iter().map(|&x| x as f32).collect();
                let k = Kernel::<f32>::new(h, t, [t == 1; 3]);
                let [a, b, c] = &mut s[..] else {
                    unreachable!()
                };
                update(level, &k, Direct(&mut p), &g, [a, b, c]);
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
        Level::SCALAR,
        &k,
        Direct(&mut p),
        &[2.0],
        [&mut buf, &mut [], &mut []],
    );
    assert_eq!((p[0], buf[0]), (0.0, 2.0));
    let k = Kernel::new(&h, 2, [false; 3]);
    update(
        Level::SCALAR,
        &k,
        Direct(&mut p),
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
        Level::SCALAR,
        &k,
        Direct(&mut p),
        &[1.0],
        [&mut v, &mut [], &mut []],
    );
    assert!((v[0] - 0.1).abs() < 1e-15 && (p[0] + 0.1).abs() < 1e-15);
}

#[test]
fn radam_switches_to_the_rectified_update_once_the_variance_is_tractable() {
    let h = hyper::Hyper::RAdam(hyper::RAdam::TORCH);
    // rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t) exceeds 5 from t = 6 with beta2 = 0.999.
    let rect = |t| match StepScalars::new(&h, t) {
        StepScalars::RAdam { rect, .. } => rect,
        other => panic!("{other:?}"),
    };
    assert!(rect(5).is_none());
    assert!(rect(6).is_some_and(|r| r > 0.0 && r < 1.0));
}

#[test]
fn lion_steps_by_the_sign_and_zero_stays_zero() {
    let h = hyper::Hyper::Lion(hyper::Lion {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.0,
    });
    let (mut p, mut m) = (vec![1.0f64, 1.0, 1.0], vec![0.0f64; 3]);
    let k = Kernel::new(&h, 1, [true, false, false]);
    update(
        Level::SCALAR,
        &k,
        Direct(&mut p),
        &[3.0, -1e-9, 0.0],
        [&mut m, &mut [], &mut []],
    );
    assert_eq!(p, vec![0.9, 1.1, 1.0]);
    assert_eq!(m[0], (1.0 - 0.99) * 3.0);
}

#[test]
fn all_finite_finds_nan_and_inf_anywhere() {
    for level in crate::runtime::simd::supported() {
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
