use super::reductions::*;
use super::*;

/// The scalar step before it was vectorized and threaded: the bits to keep.
pub(super) fn reference_step<T: AdafactorFloat>(
    h: &AdafactorHyper,
    t: f64,
    param: &mut [T],
    grad: &[T],
    moments: Moments<'_, T>,
) {
    let numel = param.len();
    let grad = &grad[..numel];
    let one_minus_beta2 = t.powf(h.beta2_decay);
    let inv_sqrt_t = 1.0 / py_pow_half(t);
    let rho = if inv_sqrt_t < h.lr { inv_sqrt_t } else { h.lr };
    let sqrt_numel = py_pow_half(numel as f64);
    let rms = norm_torch(numel, |k| param[k]).to_f64() / sqrt_numel;
    let alpha = if rms > h.eps2 { rms } else { h.eps2 } * rho;
    let w = T::from_f64(one_minus_beta2);
    let sign = if h.maximize { -T::ONE } else { T::ONE };
    let floor = T::from_f64(h.eps1 * h.eps1);
    let rsqrt_times = |v: T, g: T| {
        let v = if v < floor { floor } else { v };
        (T::ONE / v.sqrt()) * g
    };
    let mut update: Vec<T> = Vec::with_capacity(numel);
    match moments {
        Moments::Factored {
            row_var,
            col_var,
            rows,
            cols,
        } => {
            let per = rows * cols;
            let eps1 = T::from_f64(h.eps1);
            let (n_rows, n_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
            let mut col_norms = vec![T::ZERO; cols];
            for ((g, r), c) in grad
                .chunks_exact(per)
                .zip(row_var.chunks_exact_mut(rows))
                .zip(col_var.chunks_exact_mut(cols))
            {
                // the norms of -g are those of g
                for (i, r) in r.iter_mut().enumerate() {
                    let row = &g[i * cols..(i + 1) * cols];
                    let norm = norm_torch(cols, |k| row[k]);
                    *r = lerp(*r, norm * norm / n_cols, w);
                }
                if cols == 1 {
                    // a single column is contiguous: torch reduces it as a last dimension
                    col_norms[0] = norm_torch(rows, |k| g[k]);
                } else {
                    norm_columns(g, rows, cols, &mut col_norms);
                }
                for (c, &norm) in c.iter_mut().zip(&col_norms) {
                    *c = lerp(*c, norm * norm / n_rows, w);
                }
                let mean = sum_torch(r) / n_rows;
                let mean = if mean < eps1 { eps1 } else { mean };
                for (i, &ri) in r.iter().enumerate() {
                    let row = &g[i * cols..(i + 1) * cols];
                    update.extend(
                        c.iter()
                            .zip(row)
                            .map(|(&cj, &gij)| rsqrt_times(ri * cj / mean, sign * gij)),
                    );
                }
            }
        }
        Moments::Full { variance } => {
            for (v, &g) in variance[..numel].iter_mut().zip(grad) {
                let g = sign * g;
                *v = lerp(*v, g * g, w);
                update.push(rsqrt_times(*v, g));
            }
        }
    }
    let update_rms = norm_torch(numel, |k| update[k]).to_f64() / (sqrt_numel * h.d);
    let clip = if update_rms > 1.0 { update_rms } else { 1.0 };
    let scale = T::from_f64(-alpha / clip);
    let decay = (h.weight_decay != 0.0).then(|| T::from_f64(1.0 - h.lr * h.weight_decay));
    for (p, &u) in param.iter_mut().zip(&update) {
        let q = match decay {
            Some(c) => *p * c,
            None => *p,
        };
        *p = if h.foreach {
            q + u * scale
        } else {
            u.fma(scale, q)
        };
    }
}

fn hyper() -> AdafactorHyper {
    AdafactorHyper {
        lr: 1e-2,
        beta2_decay: -0.8,
        eps1: f64::from(f32::EPSILON),
        eps2: 1e-3,
        d: 1.0,
        weight_decay: 0.0,
        maximize: false,
        foreach: false,
    }
}

/// Pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

#[test]
fn the_cascade_sum_adds_every_value_once() {
    for n in [0, 1, 3, 7, 8, 9, 31, 32, 33, 100, 513, 4096, 5000, 70_000] {
        // small integers: every order of addition gives the exact sum
        let ints: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let exact: usize = (0..n).map(|i| i % 7).sum();
        assert_eq!(sum_torch(&ints), exact as f32, "{n}");
        let x: Vec<f64> = values(n, n as u64).iter().map(|v| v.abs()).collect();
        let reference: f64 = x.iter().sum();
        assert!(
            (sum_torch(&x) - reference).abs() <= 1e-13 * reference.max(1.0),
            "{n}"
        );
    }
}

#[test]
fn the_norms_are_the_two_norm_to_rounding() {
    for n in [1, 2, 4, 5, 7, 8, 12, 13, 15, 16, 100, 1001] {
        let x = values(n, 7 * n as u64);
        let reference = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let ref32 = x32
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            (norm_torch(n, |k| x[k]) - reference).abs() <= 1e-14 * reference,
            "{n}"
        );
        assert!(
            (f64::from(norm_torch(n, |k| x32[k])) - ref32).abs() <= 1e-6 * ref32,
            "{n}"
        );
    }
    // columns of a (rows, cols) matrix
    let (rows, cols) = (9, 4);
    let g = values(rows * cols, 3);
    let mut out = vec![0.0; cols];
    norm_columns(&g, rows, cols, &mut out);
    for (j, &norm) in out.iter().enumerate() {
        let r: f64 = (0..rows)
            .map(|i| g[i * cols + j].powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - r).abs() <= 1e-14 * r);
    }
}

#[test]
fn a_rank_one_gradient_is_estimated_exactly_and_steps_by_its_sign() {
    // g = a b^T: R = a^2 mean(b^2), C = b^2 mean(a^2), so V = R C / mean(R) = g^2 and
    // U = sign(g), whose RMS is 1 = d: p moves by alpha = max(eps2, RMS(p)) min(lr, 1).
    let (rows, cols) = (5, 3);
    let a = [1.0, -2.0, 0.5, 4.0, -1.5];
    let b = [0.25, -1.0, 2.0];
    let g: Vec<f64> = (0..rows * cols)
        .map(|k| a[k / cols] * b[k % cols])
        .collect();
    let p0 = values(rows * cols, 11);
    let mut p = p0.clone();
    let (mut r, mut c) = (vec![0.0; rows], vec![0.0; cols]);
    let h = AdafactorHyper { lr: 0.1, ..hyper() };
    step(
        &h,
        1.0,
        &mut p,
        &g,
        Moments::Factored {
            row_var: &mut r,
            col_var: &mut c,
            rows,
            cols,
        },
    );
    let rms = (p0.iter().map(|v| v * v).sum::<f64>() / (rows * cols) as f64).sqrt();
    for k in 0..rows * cols {
        let want = p0[k] - rms.max(1e-3) * 0.1 * g[k].signum();
        assert!((p[k] - want).abs() < 1e-12, "{k}: {} {want}", p[k]);
    }
    let mean_b2 = b.iter().map(|v| v * v).sum::<f64>() / cols as f64;
    for i in 0..rows {
        assert!((r[i] - a[i] * a[i] * mean_b2).abs() < 1e-12);
    }
}

/// One step of a vector in plain f64 arithmetic, straight from the formulas.
fn vector_oracle(h: &AdafactorHyper, t: f64, p: &mut [f64], g: &[f64], v: &mut [f64]) {
    let n = p.len() as f64;
    let w = t.powf(h.beta2_decay);
    let rho = h.lr.min(1.0 / t.sqrt());
    let rms = (p.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let alpha = rms.max(h.eps2) * rho;
    let sign = if h.maximize { -1.0 } else { 1.0 };
    let u: Vec<f64> = (0..p.len())
        .map(|i| {
            let gi = sign * g[i];
            v[i] = (1.0 - w) * v[i] + w * gi * gi;
            gi / v[i].max(h.eps1 * h.eps1).sqrt()
        })
        .collect();
    let u_rms = (u.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    for (pi, ui) in p.iter_mut().zip(&u) {
        *pi = *pi * (1.0 - h.lr * h.weight_decay) - alpha / (u_rms / h.d).max(1.0) * ui;
    }
}

#[test]
fn vector_steps_follow_the_formulas() {
    let h = AdafactorHyper {
        lr: 0.05,
        weight_decay: 0.1,
        maximize: true,
        d: 1.2,
        ..hyper()
    };
    let n = 37;
    let mut p: Vec<f32> = values(n, 1).iter().map(|&v| v as f32).collect();
    let mut v32 = vec![0.0f32; n];
    let mut q: Vec<f64> = p.iter().map(|&x| f64::from(x)).collect();
    let mut v64 = vec![0.0f64; n];
    for t in 1..=20 {
        let g: Vec<f32> = values(n, 100 + t).iter().map(|&v| v as f32).collect();
        let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
        step(
            &h,
            t as f64,
            &mut p,
            &g,
            Moments::Full { variance: &mut v32 },
        );
        vector_oracle(&h, t as f64, &mut q, &g64, &mut v64);
    }
    for i in 0..n {
        assert!(
            (f64::from(p[i]) - q[i]).abs() < 1e-5,
            "{i}: {} {}",
            p[i],
            q[i]
        );
        assert!(
            (f64::from(v32[i]) - v64[i]).abs() < 1e-5 * v64[i].max(1e-3),
            "{i}"
        );
    }
}

#[test]
fn foreach_rounds_the_scaled_update_before_adding_it() {
    let n = 64;
    let g: Vec<f32> = values(n, 5).iter().map(|&v| v as f32).collect();
    let p0: Vec<f32> = values(n, 6).iter().map(|&v| 3.0 * v as f32).collect();
    let run = |foreach: bool| {
        let mut p = p0.clone();
        let mut v = vec![0.0f32; n];
        let h = AdafactorHyper {
            foreach,
            lr: 0.3,
            ..hyper()
        };
        step(&h, 1.0, &mut p, &g, Moments::Full { variance: &mut v });
        p
    };
    let (single, foreach) = (run(false), run(true));
    let differ = single.iter().zip(&foreach).filter(|(a, b)| a != b).count();
    assert!(differ > 0, "the two roundings never differed");
    for (a, b) in single.iter().zip(&foreach) {
        assert!((a - b).abs() <= 2.0 * f32::EPSILON * a.abs().max(1.0));
    }
}

#[test]
fn every_simd_level_and_thread_count_gives_the_scalar_steps_bits() {
    fn bits<T: AdafactorFloat>(x: &[T]) -> Vec<u64> {
        x.iter().map(|v| v.to_f64().to_bits()).collect()
    }
    fn factored<'a, T>(
        row_var: &'a mut [T],
        col_var: &'a mut [T],
        rows: usize,
        cols: usize,
    ) -> Moments<'a, T> {
        Moments::Factored {
            row_var,
            col_var,
            rows,
            cols,
        }
    }
    fn check<T: AdafactorFloat>(
        h: &AdafactorHyper,
        (batch, rows, cols): (usize, usize, usize),
        seed: u64,
    ) {
        let n = batch * rows * cols;
        let conv = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
        let p0: Vec<T> = conv(values(n, seed));
        let (mut p, mut r, mut c) = (
            p0.clone(),
            vec![T::ZERO; batch * rows],
            vec![T::ZERO; batch * cols],
        );
        let mut v = vec![T::ZERO; n];
        let mut runs: Vec<_> = crate::runtime::simd::supported()
            .into_iter()
            .flat_map(|l| [(l, false), (l, true)])
            .map(|lt| (lt, p0.clone(), r.clone(), c.clone(), p0.clone(), v.clone()))
            .collect();
        for t in 1..=3u64 {
            // a gradient with zeros (the floor) and a tiny row
            let mut g: Vec<T> = conv(values(n, seed + 10 * t));
            g[0] = T::ZERO;
            for x in g.iter_mut().take(cols.min(n)) {
                *x = *x * T::from_f64(1e-30);
            }
            let tf = t as f64;
            reference_step(h, tf, &mut p, &g, factored(&mut r, &mut c, rows, cols));
            let mut q = p0.clone();
            if t == 1 {
                reference_step(h, tf, &mut q, &g, Moments::Full { variance: &mut v });
            }
            for ((level, threaded), pp, rr, cc, pv, vv) in &mut runs {
                step_with(
                    *level,
                    *threaded,
                    h,
                    tf,
                    pp,
                    &g,
                    factored(rr, cc, rows, cols),
                );
                let what = format!("{level:?} threaded {threaded} t {t} {batch}x{rows}x{cols}");
                assert!(bits(pp) == bits(&p), "{what}");
                assert!(bits(rr) == bits(&r) && bits(cc) == bits(&c), "{what}");
                if t == 1 {
                    step_with(
                        *level,
                        *threaded,
                        h,
                        tf,
                        pv,
                        &g,
                        Moments::Full { variance: vv },
                    );
                    assert!(
                        bits(pv) == bits(&q) && bits(vv) == bits(&v),
                        "{what} (vector)"
                    );
                }
            }
        }
    }
    let _threads = crate::test_util::thread_count_lock();
    crate::runtime::parallel::set_num_threads(3).unwrap();
    // (batch, rows, cols): tails of every length, a single column and row, several
    // pieces per matrix (threaded), a batch of matrices
    let shapes = [
        (1, 37, 29),
        (1, 300, 203),
        (2, 129, 131),
        (1, 5000, 1),
        (1, 1, 4099),
        (3, 3, 13),
        (1, 70, 1100),
    ];
    let hypers = [
        hyper(),
        AdafactorHyper {
            lr: 0.3,
            weight_decay: 0.1,
            maximize: true,
            foreach: true,
            d: 0.7,
            ..hyper()
        },
    ];
    for h in &hypers {
        for (k, &shape) in shapes.iter().enumerate() {
            check::<f32>(h, shape, k as u64);
            check::<f64>(h, shape, 100 + k as u64);
        }
    }
}

#[test]
fn many_tensors_in_one_call_give_each_ones_reference_bits_stored_or_recomputed() {
    // matrices (batched, single-column, single-row), vectors; one large enough to be split
    // and small ones run whole; the update stored (threshold above every size) or computed
    // twice (threshold 0)
    fn moments<'a, T>(s: &[usize], a: &'a mut [T], b: &'a mut [T]) -> Moments<'a, T> {
        if s.len() < 2 {
            Moments::Full { variance: a }
        } else {
            let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
            Moments::Factored {
                row_var: a,
                col_var: b,
                rows,
                cols,
            }
        }
    }
    fn check<T: AdafactorFloat>(seed: u64) {
        let shapes: [&[usize]; 7] = [
            &[300, 203],
            &[2, 37, 29],
            &[5000, 1],
            &[1, 4099],
            &[17],
            &[64, 512],
            &[3],
        ];
        let conv = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
        let h = [
            hyper(),
            AdafactorHyper {
                lr: 0.3,
                weight_decay: 0.1,
                maximize: true,
                foreach: true,
                d: 0.7,
                ..hyper()
            },
        ];
        let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let states = |s: &[usize]| -> (Vec<T>, Vec<T>) {
            if s.len() < 2 {
                (vec![T::ZERO; s[0]], Vec::new())
            } else {
                let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
                let batch: usize = s[..s.len() - 2].iter().product();
                (vec![T::ZERO; batch * rows], vec![T::ZERO; batch * cols])
            }
        };
        let p0: Vec<Vec<T>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| conv(values(n, seed + i as u64)))
            .collect();
        let mut want = p0.clone();
        let mut want_state: Vec<_> = shapes.iter().map(|s| states(s)).collect();
        let mut runs: Vec<_> = crate::runtime::simd::supported()
            .into_iter()
            .flat_map(|l| {
                [
                    (l, false, 0),
                    (l, false, usize::MAX),
                    (l, true, 0),
                    (l, true, usize::MAX),
                ]
            })
            .map(|k| (k, p0.clone(), want_state.clone()))
            .collect();
        for t in 1..=3u64 {
            let grads: Vec<Vec<T>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| conv(values(n, seed + 100 * t + i as u64)))
                .collect();
            for (i, s) in shapes.iter().enumerate() {
                let (a, b) = &mut want_state[i];
                reference_step(
                    &h[i % 2],
                    t as f64,
                    &mut want[i],
                    &grads[i],
                    moments(s, a, b),
                );
            }
            for ((level, threaded, store_below), ps, st) in &mut runs {
                let tensors = ps
                    .iter_mut()
                    .zip(st.iter_mut())
                    .zip(&grads)
                    .enumerate()
                    .map(|(i, ((p, (a, b)), g))| AdafactorTensor {
                        h: h[i % 2],
                        t: t as f64,
                        param: p,
                        grad: g,
                        moments: moments(shapes[i], a, b),
                    })
                    .collect();
                step_many_with(*level, *threaded, *store_below, tensors);
                for i in 0..shapes.len() {
                    let what = format!("{level:?} {threaded} {store_below} t {t} tensor {i}");
                    assert!(ps[i] == want[i], "{what}");
                    assert!(st[i] == want_state[i], "{what} (state)");
                }
            }
        }
    }
    let _threads = crate::test_util::thread_count_lock();
    crate::runtime::parallel::set_num_threads(2).unwrap();
    check::<f32>(1);
    check::<f64>(2);
}
