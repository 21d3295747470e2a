use super::*;
use crate::optim::hyper;

fn adam(lr: f64) -> Hyper {
    Hyper::Adam(hyper::Adam {
        lr,
        ..hyper::Adam::TORCH
    })
}

fn values(n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f64 / 500.0 - 1.0) * scale)
        .collect()
}

/// Runs `steps` steps over mixed-dtype tensors; returns parameters and state.
fn train(lens: &[usize], steps: u64) -> (Vec<f32>, Vec<f64>, Vec<State>) {
    let dtypes: Vec<Dtype> = (0..lens.len())
        .map(|i| if i % 2 == 0 { Dtype::F32 } else { Dtype::F64 })
        .collect();
    let groups: Vec<usize> = (0..lens.len()).map(|i| i % 2).collect();
    let mut opt = Optimizer::new(Algorithm::Adam, &dtypes, lens, &groups);
    let mut p32: Vec<Vec<f32>> = Vec::new();
    let mut p64: Vec<Vec<f64>> = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        if i % 2 == 0 {
            p32.push(values(n, 1.0).iter().map(|&x| x as f32).collect());
        } else {
            p64.push(values(n, 1.0));
        }
    }
    for t in 0..steps {
        let g64: Vec<Vec<f64>> = lens.iter().map(|&n| values(n, 0.1 + t as f64)).collect();
        let g32: Vec<Vec<f32>> = g64
            .iter()
            .map(|g| g.iter().map(|&x| x as f32).collect())
            .collect();
        let (mut i32_, mut i64_) = (p32.iter_mut(), p64.iter_mut());
        let tensors = (0..lens.len())
            .map(|i| {
                if i % 2 == 0 {
                    Tensor::F32 {
                        param: i32_.next().unwrap(),
                        grad: &g32[i],
                    }
                } else {
                    Tensor::F64 {
                        param: i64_.next().unwrap(),
                        grad: &g64[i],
                    }
                }
            })
            .collect();
        let hypers = opt.validate(vec![adam(1e-2), adam(1e-3)]).unwrap();
        opt.step(tensors, &hypers, 1.0).unwrap();
    }
    (p32.concat(), p64.concat(), opt.states)
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let _threads = crate::test_util::thread_count_lock();
    // Large enough to be split into chunks and run in parallel.
    let lens = [3 * CHUNK_ELEMENTS + 5, 100, 2 * CHUNK_ELEMENTS, 0, 1];
    crate::runtime::parallel::set_num_threads(1).unwrap();
    let one = train(&lens, 3);
    crate::runtime::parallel::set_num_threads(4).unwrap();
    let four = train(&lens, 3);
    assert_eq!(one, four);
    assert!(one.2.iter().all(|s| s.step() == 3));
}

#[test]
fn a_failed_step_changes_nothing() {
    let mut opt = Optimizer::new(Algorithm::Adam, &[Dtype::F64], &[2], &[0]);
    let mut p = vec![1.0, 2.0];
    let g = [0.5, 0.5];
    let before = opt.states.clone();
    let bad = opt.validate(vec![adam(-1.0)]);
    assert!(matches!(bad, Err(Error::Hyper { name: "lr", .. })));
    let hypers = opt.validate(vec![adam(0.1)]).unwrap();
    let short = opt.step(
        vec![Tensor::F64 {
            param: &mut p,
            grad: &g[..1],
        }],
        &hypers,
        1.0,
    );
    assert!(matches!(short, Err(Error::Mismatch(_))));
    assert_eq!(
        (p.as_slice(), &opt.states),
        ([1.0, 2.0].as_slice(), &before)
    );
}

#[test]
fn a_token_is_checked_for_its_optimizer_and_set_lr_checks_the_new_lr() {
    fn tensors<'a>(p: &'a mut [f64], g: &'a [f64]) -> Vec<Tensor<'a>> {
        vec![Tensor::F64 { param: p, grad: g }]
    }
    let mut opt = Optimizer::new(Algorithm::Adam, &[Dtype::F64], &[2], &[1]);
    let (mut p, g) = (vec![1.0, 2.0], vec![0.5, 0.5]);
    assert!(matches!(
        opt.validate(vec![adam(0.1)]),
        Err(Error::Mismatch(_))
    ));
    let sgd = Optimizer::new(Algorithm::Sgd, &[Dtype::F64], &[2], &[0]);
    let other = sgd
        .validate(vec![Hyper::Sgd(hyper::Sgd::from_values(
            0.1,
            &[
                hyper::Value::Number(0.0),
                hyper::Value::Number(0.0),
                hyper::Value::Flag(false),
                hyper::Value::Number(0.0),
                hyper::Value::Flag(false),
            ],
        ))])
        .unwrap();
    assert!(matches!(
        opt.step(tensors(&mut p, &g), &other, 1.0),
        Err(Error::Mismatch(_))
    ));
    let mut hypers = opt.validate(vec![adam(0.1), adam(0.1)]).unwrap();
    let err = hypers.set_lr(1, f64::NAN).unwrap_err();
    assert!(matches!(
        err,
        Error::Hyper {
            group: 1,
            name: "lr",
            ..
        }
    ));
    assert_eq!(hypers.hypers()[1], adam(0.1), "a refused lr is not set");
    hypers.set_lr(1, 0.0).unwrap();
    opt.step(tensors(&mut p, &g), &hypers, 1.0).unwrap();
    assert_eq!(p, [1.0, 2.0], "lr 0 leaves the parameter as it is");
    assert_eq!(opt.states()[0].step(), 1);
}

#[test]
fn a_state_that_cannot_be_allocated_is_an_error_naming_it() {
    let mut s = TensorState::<f32>::new();
    let err = s
        .allocate::<f32>(&adam(1e-3), 1 << 60, false, "parameter 'W'")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "could not allocate {} bytes for the state 'exp_avg' of parameter 'W'",
            4u64 << 60
        )
    );
    assert_eq!(s, TensorState::new());
}

#[test]
fn the_step_count_does_not_wrap() {
    let mut opt = Optimizer::new(Algorithm::Adam, &[Dtype::F64], &[2], &[0])
        .with_names(vec!["parameter 'W'".into()]);
    let mut state = TensorState::<f64>::new();
    state.step = u64::MAX;
    opt.set_states(vec![State::F64(state)]).unwrap();
    let before = opt.states.clone();
    let (mut p, g) = (vec![1.0, 2.0], vec![0.5, 0.5]);
    let hypers = opt.validate(vec![adam(1e-3)]).unwrap();
    let err = opt
        .step(
            vec![Tensor::F64 {
                param: &mut p,
                grad: &g,
            }],
            &hypers,
            1.0,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("step count of parameter 'W'"),
        "{err}"
    );
    assert_eq!(
        (p.as_slice(), &opt.states),
        ([1.0, 2.0].as_slice(), &before)
    );
}

#[test]
fn storage_checks_name_the_option_and_the_reason() {
    let st = |param, state, master| Storage {
        param,
        state,
        master,
    };
    let err = |s: Storage, a| s.check(a).unwrap_err().to_string();
    assert!(err(st(Elem::F32, Elem::F16, false), Algorithm::Adam)
        .contains("state_dtype='float16' cannot hold the second moment 'exp_avg_sq'"));
    assert!(err(st(Elem::F64, Elem::Bf16, false), Algorithm::Sgd)
        .contains("float64 parameters keep float64 state"));
    assert!(err(st(Elem::F32, Elem::F32, true), Algorithm::Sgd).contains("master_weights"));
    for a in [
        Algorithm::Sgd,
        Algorithm::Momentum,
        Algorithm::Adamax,
        Algorithm::Lion,
    ] {
        assert!(st(Elem::Bf16, Elem::F16, true).check(a).is_ok());
    }
}

#[test]
fn master_weights_are_made_from_the_parameter_and_released_on_failure() {
    let storage = [Storage {
        param: Elem::Bf16,
        state: Elem::Bf16,
        master: true,
    }];
    let mut opt = Optimizer::with_storage(Algorithm::Adam, &storage, &[3], &[0]).unwrap();
    let mut p: Vec<Bf16> = [1.0f32, -2.0, 0.5].map(Bf16::from_f32).to_vec();
    let g = vec![Bf16::from_f32(0.25); 3];
    let hypers = opt.validate(vec![adam(1e-4)]).unwrap();
    opt.step(
        vec![Tensor::Bf16 {
            param: &mut p,
            grad: &g,
        }],
        &hypers,
        1.0,
    )
    .unwrap();
    let master = opt.states()[0].master().unwrap().to_vec();
    // 1 - 1e-4 is 1 in bfloat16: the parameter keeps its value, the master moves.
    assert_eq!(p[0], Bf16::from_f32(1.0));
    assert!(master[0] < 1.0 && master[0] > 0.9998);
    assert!(p.iter().zip(&master).all(|(p, &m)| *p == Bf16::from_f32(m)));

    let mut s = State::new(Elem::F32);
    let err = s.allocate(&adam(1e-3), 1 << 60, true, "parameter 'W'");
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("master weights of parameter 'W'"));
    assert_eq!(s, State::new(Elem::F32));
    let mut s = TensorState::<f32>::new();
    assert!(s.allocate::<f32>(&adam(1e-3), 1 << 40, true, "W").is_err());
    assert!(s.master.is_none() && s.slots.iter().all(Option::is_none));
}

#[test]
fn first_nonfinite_names_the_tensor() {
    let (mut a, mut b) = (vec![0.0f32; 10], vec![0.0f64; 70_000]);
    let ga = vec![1.0f32; 10];
    let mut gb = vec![1.0f64; 70_000];
    gb[69_999] = f64::NAN;
    let tensors = vec![
        Tensor::F32 {
            param: &mut a,
            grad: &ga,
        },
        Tensor::F64 {
            param: &mut b,
            grad: &gb,
        },
    ];
    assert_eq!(first_nonfinite(&tensors), Some(1));
}
