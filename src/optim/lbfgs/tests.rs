use super::*;

/// Rosenbrock's function of (x0, x1) in a vector, counting evaluations.
struct Rosenbrock {
    params: Vec<f64>,
    evals: usize,
    fail_at: Option<usize>,
}

impl Objective<f64> for Rosenbrock {
    type Error = String;
    fn numel(&self) -> usize {
        self.params.len()
    }
    fn evaluate(&mut self, at: At<'_, f64>, g: &mut [f64]) -> Result<f64, String> {
        match at {
            At::Here => {}
            At::Point(x) => self.set(x)?,
            At::Moved(alpha, d) => self.add(alpha, d)?,
        }
        let x = &self.params;
        self.evals += 1;
        if Some(self.evals) == self.fail_at {
            return Err("failed".into());
        }
        let (a, b) = (x[0], x[1]);
        g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
        g[1] = 200.0 * (b - a * a);
        Ok((1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2))
    }
    fn set(&mut self, x: &[f64]) -> Result<(), String> {
        self.params.copy_from_slice(x);
        Ok(())
    }
    fn get(&mut self, x: &mut [f64]) -> Result<(), String> {
        x.copy_from_slice(&self.params);
        Ok(())
    }
    fn add(&mut self, alpha: f64, d: &[f64]) -> Result<(), String> {
        axpy(&mut self.params, alpha, d);
        Ok(())
    }
}

fn hyper(strong_wolfe: bool) -> LbfgsHyper {
    LbfgsHyper {
        lr: 1.0,
        max_iter: 20,
        max_eval: 25,
        tolerance_grad: 1e-7,
        tolerance_change: 1e-9,
        history_size: 100,
        strong_wolfe,
        maximize: false,
    }
}

#[test]
fn strong_wolfe_lbfgs_finds_the_minimum_of_rosenbrock() {
    let mut obj = Rosenbrock {
        params: vec![-1.5, 2.0],
        evals: 0,
        fail_at: None,
    };
    let mut state = LbfgsState::default();
    let first = state.step(&hyper(true), &mut obj).unwrap();
    assert_eq!(first, 2.5f64.powi(2) + 100.0 * (2.0f64 - 2.25).powi(2));
    for _ in 0..10 {
        state.step(&hyper(true), &mut obj).unwrap();
    }
    // stopped by tolerance_change on the loss, as torch stops
    let x = &obj.params;
    assert!(
        (x[0] - 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5,
        "{x:?}"
    );
    assert_eq!(state.func_evals as usize, obj.evals);
}

#[test]
fn the_history_keeps_at_most_history_size_pairs() {
    let mut obj = Rosenbrock {
        params: vec![-1.5, 2.0],
        evals: 0,
        fail_at: None,
    };
    let mut state = LbfgsState::default();
    let h = LbfgsHyper {
        history_size: 3,
        ..hyper(false)
    };
    let h = LbfgsHyper { lr: 1e-3, ..h };
    state.step(&h, &mut obj).unwrap();
    assert_eq!(state.old_dirs.len(), 3);
    assert_eq!(state.ro.len(), 3);
    assert_eq!(state.n_iter, 20);
}

/// The state's values (not its buffers' addresses).
type Snapshot = (
    u64,
    u64,
    Option<Vec<f64>>,
    Option<f64>,
    Vec<Vec<f64>>,
    Vec<Vec<f64>>,
    Vec<f64>,
    Option<f64>,
    Option<Vec<f64>>,
    Option<f64>,
);

fn snapshot(s: &LbfgsState<f64>) -> Snapshot {
    let all = |h: &VecDeque<Arc<[f64]>>| h.iter().map(|v| v.to_vec()).collect();
    (
        s.func_evals,
        s.n_iter,
        s.d.as_deref().map(<[f64]>::to_vec),
        s.t,
        all(&s.old_dirs),
        all(&s.old_stps),
        s.ro.iter().copied().collect(),
        s.h_diag,
        s.prev_flat_grad.as_deref().map(<[f64]>::to_vec),
        s.prev_loss,
    )
}

#[test]
fn a_failed_evaluation_after_the_buffers_are_reused_leaves_parameters_and_state_as_they_were() {
    let fixed = |max_iter| LbfgsHyper {
        lr: 1e-3,
        max_iter,
        history_size: 2,
        ..hyper(false)
    };
    let wolfe = LbfgsHyper {
        max_iter: 3,
        history_size: 2,
        ..hyper(true)
    };
    for h in [fixed(1), fixed(4), wolfe] {
        for fail_in in 1..=3 {
            let start = || Rosenbrock {
                params: vec![-1.5, 2.0],
                evals: 0,
                fail_at: None,
            };
            let (mut obj, mut twin) = (start(), start());
            let (mut state, mut twin_state) = (LbfgsState::default(), LbfgsState::default());
            // enough steps to fill the history and the spare buffers
            for _ in 0..6 {
                state.step(&h, &mut obj).unwrap();
                twin_state.step(&h, &mut twin).unwrap();
            }
            let (before, saved) = (obj.params.clone(), snapshot(&state));
            obj.fail_at = Some(obj.evals + fail_in);
            let failed = state.step(&h, &mut obj);
            if h.max_iter == 1 && !h.strong_wolfe && fail_in > 1 {
                // one evaluation a step: nothing to fail
                assert!(failed.is_ok());
                twin_state.step(&h, &mut twin).unwrap();
            } else {
                assert!(failed.is_err());
                assert_eq!(obj.params, before, "{h:?} {fail_in}");
                assert_eq!(snapshot(&state), saved, "{h:?} {fail_in}");
            }
            obj.fail_at = None;
            for _ in 0..3 {
                state.step(&h, &mut obj).unwrap();
                twin_state.step(&h, &mut twin).unwrap();
                assert_eq!(obj.params, twin.params, "{h:?} {fail_in}");
                assert_eq!(snapshot(&state), snapshot(&twin_state));
            }
        }
    }
}

#[test]
fn a_step_reuses_the_buffers_of_the_last_once_the_history_is_full() {
    let h = LbfgsHyper {
        lr: 1e-3,
        max_iter: 1,
        history_size: 2,
        ..hyper(false)
    };
    let mut obj = Rosenbrock {
        params: vec![-1.5, 2.0],
        evals: 0,
        fail_at: None,
    };
    let mut state = LbfgsState::default();
    for _ in 0..4 {
        state.step(&h, &mut obj).unwrap();
    }
    let buffers = |s: &LbfgsState<f64>| {
        let mut v: Vec<*const f64> = s.spare.0.iter().map(|a| a.as_ptr()).collect();
        v.extend(s.old_dirs.iter().chain(&s.old_stps).map(|a| a.as_ptr()));
        v.extend(s.d.iter().chain(&s.prev_flat_grad).map(|a| a.as_ptr()));
        v.sort();
        v
    };
    let before = buffers(&state);
    assert_eq!(before.len(), 2 * 2 + 2 + 4);
    state.step(&h, &mut obj).unwrap();
    assert_eq!(buffers(&state), before);
}

/// The two-loop recursion as separate passes (torch's order).
fn two_loop_reference(s: &LbfgsState<f32>, g: &[f32], h_diag: f32) -> (Vec<f32>, f32) {
    let m = s.old_dirs.len();
    let mut al = vec![0.0f32; m];
    let mut q: Vec<f32> = g.iter().map(|v| -v).collect();
    for i in (0..m).rev() {
        al[i] = dot(&s.old_stps[i], &q) * s.ro[i];
        axpy(&mut q, -al[i], &s.old_dirs[i]);
    }
    for v in &mut q {
        *v *= h_diag;
    }
    for (i, &al_i) in al.iter().enumerate() {
        let be_i = dot(&s.old_dirs[i], &q) * s.ro[i];
        axpy(&mut q, al_i - be_i, &s.old_stps[i]);
    }
    let gtd = dot(g, &q);
    (q, gtd)
}

#[test]
fn the_fused_two_loop_recursion_is_the_separate_passes_bit_for_bit() {
    let n = 3 * crate::runtime::parallel::CHUNK_ELEMENTS + 5;
    let vec_of = |f: f32| -> Arc<[f32]> { (0..n).map(|i| ((i as f32) * f).sin()).collect() };
    let g = vec_of(0.29);
    for m in 0..4 {
        let mut s = LbfgsState::<f32>::default();
        for k in 0..m {
            s.old_dirs.push_back(vec_of(0.1 + k as f32 * 0.07));
            s.old_stps.push_back(vec_of(0.13 + k as f32 * 0.05));
            s.ro.push_back(0.5 / (k as f32 + 1.0));
        }
        for threads in [1, 3] {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let mut q = vec![0.0f32; n];
            let gtd = s.two_loop(&mut q, &g, 0.75);
            assert_eq!((q, gtd), two_loop_reference(&s, &g, 0.75), "{m} pairs");
        }
        crate::runtime::parallel::set_num_threads(1).unwrap();
    }
}

#[test]
fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
    // f(x) = x^3 - 3x has its local minimum at 1: f(0) = 0, f'(0) = -3, f(2) = 2, f'(2) = 9.
    let m = cubic_interpolate((0.0, 0.0, -3.0), (2.0, 2.0, 9.0), None);
    assert!((m - 1.0).abs() < 1e-12, "{m}");
    assert_eq!(
        cubic_interpolate((0.0, 0.0, -3.0), (2.0, 2.0, 9.0), Some((1.5, 3.0))),
        1.5
    );
}

#[test]
fn long_dots_and_axpys_are_the_same_bits_on_any_number_of_threads() {
    let n = 5 * crate::runtime::parallel::CHUNK_ELEMENTS + 17;
    let a: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
    let b: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
    let exact: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let mut results = Vec::new();
    for threads in [1, 3] {
        crate::runtime::parallel::set_num_threads(threads).unwrap();
        let mut y = b.clone();
        axpy(&mut y, 0.5, &a);
        results.push((dot(&a, &b), abs_sum(&a), y));
    }
    crate::runtime::parallel::set_num_threads(1).unwrap();
    assert_eq!(results[0], results[1]);
    assert!((f64::from(results[0].0) - exact).abs() <= exact.abs() * 1e-7);
    assert_eq!(results[0].2[n - 1], b[n - 1] + 0.5 * a[n - 1]);
}

#[test]
fn dot_sums_in_f64() {
    let a = [1e8f32, 1.0, -1e8, 1.0];
    assert_eq!(dot(&a, &[1.0f32; 4]), 2.0);
}
