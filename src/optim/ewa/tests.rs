use super::*;
use crate::runtime::simd;

#[test]
fn ewa_of_a_constant_converges_to_it_and_bias_correction_removes_the_start_up_lag() {
    let (beta, x) = (0.9f64, 5.0f64);
    let mut v = 0.0;
    for t in 1..=3u64 {
        v = ewa(v, x, beta, 1.0 - beta);
        // Uncorrected, v_t = x * (1 - beta^t): biased low at the start.
        assert!((v - x * bias_correction(beta, t)).abs() < 1e-12);
        assert!((v / bias_correction(beta, t) - x).abs() < 1e-12);
    }
    for _ in 0..500 {
        v = ewa(v, x, beta, 1.0 - beta);
    }
    assert!((v - x).abs() < 1e-12);
}

#[test]
fn py_pow_half_is_pythons_pow_not_sqrt() {
    // Python (glibc's pow): (1 - 0.6069143337725912 ** 3) ** 0.5 == 0.8811618095130537,
    // one ulp above math.sqrt of the same value (AdamW's third step in a seed that
    // tests/test_properties.py once drew).
    let x = bias_correction(0.606_914_333_772_591_2, 3);
    assert_eq!(py_pow_half(x), 0.881_161_809_513_053_7);
    assert_eq!(x.sqrt(), 0.881_161_809_513_053_6);
}

#[test]
fn bias_correction_matches_python_pow() {
    // Python: 1 - 0.999 ** 10 == 0.009955119790251765
    assert_eq!(bias_correction(0.999, 10), 0.009_955_119_790_251_765);
}

/// Deterministic values with some spread, in `T`.
fn data<T: Float>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64(((i * 7919 + seed * 104_729) % 1999) as f64 / 999.0 - 1.0))
        .collect()
}

/// The definition, one element at a time.
fn ewa_reference<T: Float>(x: &[T], s: Series, beta: f64, corrected: bool) -> Vec<T> {
    let (b, m) = (T::from_f64(beta), T::from_f64(1.0 - beta));
    let mut out = vec![T::ZERO; x.len()];
    for o in 0..s.outer {
        for i in 0..s.inner {
            let mut v = T::ZERO;
            for t in 0..s.n {
                let at = (o * s.n + t) * s.inner + i;
                v = b * v + m * x[at];
                let c = bias_correction(beta, t as u64 + 1);
                out[at] = if corrected { v / T::from_f64(c) } else { v };
            }
        }
    }
    out
}

/// Shapes for the serial path, whole blocks on the pool, and column panels on the pool.
const SHAPES: [Series; 6] = [
    Series {
        outer: 1,
        n: 0,
        inner: 3,
    },
    Series {
        outer: 1,
        n: 7,
        inner: 1,
    },
    Series {
        outer: 3,
        n: 5,
        inner: 4,
    },
    Series {
        outer: 40_000,
        n: 3,
        inner: 1,
    },
    Series {
        outer: 2,
        n: 300,
        inner: 1_000,
    },
    Series {
        outer: 1,
        n: 70_000,
        inner: 1,
    },
];

fn check_ewa<T: Float>() {
    for s in SHAPES {
        let x: Vec<T> = data(s.len(), s.n);
        for (beta, corrected) in [(0.9, true), (0.98, false), (0.0, true), (0.5, true)] {
            let want = ewa_reference(&x, s, beta, corrected);
            for level in simd::supported() {
                let mut out = vec![T::ONE; x.len()];
                ewa_series(level, &x, &mut out, s, beta, corrected).unwrap();
                assert_eq!(out, want, "{s:?} beta={beta} {level:?}");
            }
        }
    }
}

#[test]
fn ewa_series_matches_the_definition_bit_for_bit_at_every_level() {
    check_ewa::<f32>();
    check_ewa::<f64>();
}

#[test]
fn ewa_series_refuses_bad_beta_and_lengths() {
    let s = Series::along(&[4], 0);
    let (x, mut out) = (vec![1.0f64; 4], vec![0.0; 4]);
    for beta in [1.0, -0.1, f64::NAN] {
        let e = ewa_series(simd::level(), &x, &mut out, s, beta, true).unwrap_err();
        assert!(e.to_string().starts_with("beta must be in [0, 1)"), "{e}");
    }
    let short = Series::along(&[3], 0);
    assert!(matches!(
        ewa_series(simd::level(), &x, &mut out, short, 0.9, true),
        Err(Error::Mismatch(_))
    ));
    assert_eq!(out, [0.0; 4]);
}

#[test]
fn series_along_an_axis() {
    assert_eq!(
        Series::along(&[2, 3, 4, 5], 1),
        Series {
            outer: 2,
            n: 3,
            inner: 20
        }
    );
    assert_eq!(
        Series::along(&[6], 0),
        Series {
            outer: 1,
            n: 6,
            inner: 1
        }
    );
}

/// The definition with exact sums (f64 for f32 data; an exact rational is overkill for
/// the tolerance below).
fn moving_average_reference(x: &[f64], s: Series, window: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for o in 0..s.outer {
        for i in 0..s.inner {
            for t in 0..s.n {
                let from = (t + 1).saturating_sub(window);
                let sum: f64 = (from..=t).map(|u| x[(o * s.n + u) * s.inner + i]).sum();
                out[(o * s.n + t) * s.inner + i] = sum / (t + 1 - from) as f64;
            }
        }
    }
    out
}

#[test]
fn moving_average_matches_the_definition_at_every_level() {
    for s in SHAPES.into_iter().filter(|s| s.n < 1000) {
        let x: Vec<f64> = data(s.len(), 3);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x32_as_64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        for window in [1, 2, 5, 1000] {
            let want = moving_average_reference(&x, s, window);
            let want32 = moving_average_reference(&x32_as_64, s, window);
            for level in simd::supported() {
                let mut out = vec![0.0; x.len()];
                moving_average(level, &x, &mut out, s, window).unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-13, "{s:?} window={window}: {a} vs {b}");
                }
                let mut out32 = vec![0.0f32; x.len()];
                moving_average(level, &x32, &mut out32, s, window).unwrap();
                for (a, b) in out32.iter().zip(&want32) {
                    assert!((*a as f64 - b).abs() <= 1e-7, "{a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn moving_average_keeps_nan_and_infinity_inside_their_windows() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let x = [1.0, nan, 2.0, 3.0, inf, 4.0, -inf, 5.0, 6.0, 7.0];
    let expected = [
        (2, [1.0, nan, nan, 2.5, inf, inf, -inf, -inf, 5.5, 6.5]),
        (3, [1.0, nan, nan, nan, inf, inf, nan, -inf, -inf, 6.0]),
    ];
    let mut out = [0.0; 10];
    for (window, want) in expected {
        moving_average(simd::level(), &x, &mut out, Series::along(&[10], 0), window).unwrap();
        for (a, b) in out.iter().zip(want) {
            assert!(*a == b || (a.is_nan() && b.is_nan()), "{window}: {out:?}");
        }
    }
    assert!(moving_average(simd::level(), &x, &mut out, Series::along(&[10], 0), 0).is_err());
}

#[test]
fn finite_values_whose_sum_overflows_only_affect_their_windows() {
    let x = [1e308, 1e308, 1.0, 1.0, 1.0, -1e308, -1.7e308, 2.0];
    let want = [1e308, 1e308, 5e307, 1.0, 1.0, -5e307, -1.35e308, -8.5e307];
    let mut out = [0.0; 8];
    for level in simd::supported() {
        moving_average(level, &x, &mut out, Series::along(&[8], 0), 2).unwrap();
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() <= 1e-15 * b.abs(), "{level:?}: {out:?}");
        }
        assert_eq!(&out[3..5], &[1.0, 1.0]);
    }
    let x32 = [3e38f32, 3e38, 1.0, 1.0];
    let mut out32 = [0.0f32; 4];
    moving_average(simd::level(), &x32, &mut out32, Series::along(&[4], 0), 2).unwrap();
    assert_eq!(out32, [3e38, 3e38, 1.5e38, 1.0]);
}

#[test]
fn a_long_moving_average_does_not_drift() {
    // A plain running sum loses the small values' low bits each time a 1e8 passes
    // through the window: it ends up off by about 1e-6 relative.
    let (n, window) = (200_000, 7);
    let x: Vec<f64> = data::<f64>(n, 0)
        .iter()
        .enumerate()
        .map(|(t, &v)| if t % 50 == 0 { 1e8 } else { v + 1.5 })
        .collect();
    let mut out = vec![0.0; n];
    moving_average(simd::level(), &x, &mut out, Series::along(&[n], 0), window).unwrap();
    for t in window - 1..n {
        let exact = x[t + 1 - window..=t].iter().sum::<f64>() / window as f64;
        let window_has_no_big_value = exact < 1e3;
        if window_has_no_big_value {
            assert!(
                (out[t] - exact).abs() <= 4e-16 * exact,
                "{t}: {} vs {exact}",
                out[t]
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let _threads = crate::test_util::thread_count_lock();
    let s = Series {
        outer: 3,
        n: 500,
        inner: 777,
    };
    let x: Vec<f32> = data(s.len(), 1);
    let run = |threads| {
        parallel::set_num_threads(threads).unwrap();
        let (mut e, mut m) = (vec![0.0f32; s.len()], vec![0.0f32; s.len()]);
        ewa_series(simd::level(), &x, &mut e, s, 0.95, true).unwrap();
        moving_average(simd::level(), &x, &mut m, s, 9).unwrap();
        let mut avg: Vec<f32> = data(s.len(), 2);
        let (averages, values) = (vec![SliceMut::F32(&mut avg)], vec![Slice::F32(&x)]);
        update_averages(simd::level(), averages, values, 0.99).unwrap();
        (e, m, avg)
    };
    let one = run(1);
    assert_eq!(one, run(4));
    assert_eq!(one.0, ewa_reference(&x, s, 0.95, true));
}

#[test]
fn update_averages_is_the_ewa_step_for_every_tensor() {
    let values: Vec<Vec<f64>> = [5, 0, 3 * CHUNK_ELEMENTS + 1]
        .iter()
        .map(|&n| data(n, n))
        .collect();
    let v32: Vec<f32> = data(11, 4);
    for level in simd::supported() {
        let mut avgs: Vec<Vec<f64>> = values
            .iter()
            .map(|v| v.iter().map(|x| x * 2.0).collect())
            .collect();
        let mut a32: Vec<f32> = vec![1.0; 11];
        let mut averages: Vec<SliceMut<'_>> = avgs.iter_mut().map(|a| SliceMut::F64(a)).collect();
        averages.push(SliceMut::F32(&mut a32));
        let mut slices: Vec<Slice<'_>> = values.iter().map(|v| Slice::F64(v)).collect();
        slices.push(Slice::F32(&v32));
        update_averages(level, averages, slices, 0.999).unwrap();
        for (avg, val) in avgs.iter().zip(&values) {
            for (a, v) in avg.iter().zip(val) {
                assert_eq!(*a, 0.999 * (v * 2.0) + (1.0 - 0.999) * v);
            }
        }
        for (a, v) in a32.iter().zip(&v32) {
            assert_eq!(*a, 0.999f32 * 1.0 + (1.0f64 - 0.999) as f32 * v);
        }
    }
}

#[test]
fn update_averages_checks_everything_first() {
    let (mut a, mut b) = (vec![1.0f64; 3], vec![1.0f64; 2]);
    let (va, vb) = (vec![0.0; 3], vec![0.0; 3]);
    let bad = update_averages(
        simd::level(),
        vec![SliceMut::F64(&mut a), SliceMut::F64(&mut b)],
        vec![Slice::F64(&va), Slice::F64(&vb)],
        0.5,
    );
    assert!(matches!(bad, Err(Error::Mismatch(_))));
    let e = update_averages(
        simd::level(),
        vec![SliceMut::F64(&mut a)],
        vec![Slice::F64(&va)],
        1.5,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "decay must be in [0, 1], got 1.5");
    assert_eq!(a, [1.0; 3]);
}
