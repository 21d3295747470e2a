//! Batch normalization: gamma and beta in place of the bias, gradients against finite
//! differences in both modes, the whole batch's statistics, the running statistics, blocks.

use super::*;

/// A network with batch norm: `W, gamma, beta` per hidden layer, then `W_L, b_L`.
fn bn_net(sizes: Vec<usize>, hidden: Activation, output: Output, alpha: f64) -> Mlp {
    Mlp::new(sizes, hidden, output, alpha)
        .unwrap()
        .with_batch_norm(0.1, 1e-5)
        .unwrap()
}

#[test]
fn batch_norm_lays_out_gamma_and_beta_in_place_of_the_bias() {
    let net = bn_net(vec![3, 4, 5, 2], Activation::Relu, Output::Softmax, 0.0);
    assert_eq!(net.param_lens(), vec![12, 4, 4, 20, 5, 5, 10, 2]);
    assert_eq!((net.w_index(1), net.w_index(2), net.w_index(3)), (0, 3, 6));
    assert_eq!(net.stat_count(), 4);
    let plain = Mlp::new(vec![3, 2], Activation::Relu, Output::Sigmoid, 0.0).unwrap();
    assert!(plain.clone().with_batch_norm(0.1, 1e-5).is_err());
    let deep = Mlp::new(vec![3, 4, 2], Activation::Relu, Output::Sigmoid, 0.0).unwrap();
    for (momentum, eps) in [(-0.1, 1e-5), (1.5, 1e-5), (0.1, 0.0), (0.1, f64::NAN)] {
        assert!(deep.clone().with_batch_norm(momentum, eps).is_err());
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences_in_both_modes() {
    for hidden in [Activation::Tanh, Activation::Sigmoid, Activation::Identity] {
        for output in [Output::Sigmoid, Output::Softmax, Output::Identity] {
            let net = bn_net(vec![3, 4, 3, 2], hidden, output, 0.3);
            let rows = 6;
            let (mut params, x, y) = problem(&net, rows);
            let running: Vec<Vec<f64>> = (0..4)
                .map(|i| {
                    let v = values(net.sizes[i / 2 + 1], 40 + i);
                    v.iter()
                        .map(|&t| if i % 2 == 1 { 0.5 + t * t } else { t })
                        .collect()
                })
                .collect();
            let rr: Vec<&[f64]> = running.iter().map(Vec::as_slice).collect();
            for train in [true, false] {
                let mut ws = Workspace::default();
                let inputs = Inputs {
                    x: &x,
                    rows,
                    transposed: false,
                };
                let mut run = |params: &[Vec<f64>], grads: &mut [Vec<f64>]| {
                    let stats = if train {
                        Stats::Batch(None)
                    } else {
                        Stats::Running(&rr)
                    };
                    let y = Targets::Dense(&y);
                    net.loss_and_grad_with(&mut ws, params, inputs, y, grads, None, None, stats)
                        .unwrap()
                };
                let mut grads = zeros::<f64>(&net);
                run(&params, &mut grads);
                let mut scratch = zeros::<f64>(&net);
                let h = 1e-6;
                for p in 0..params.len() {
                    for i in 0..params[p].len() {
                        let old = params[p][i];
                        params[p][i] = old + h;
                        let up = run(&params, &mut scratch);
                        params[p][i] = old - h;
                        let down = run(&params, &mut scratch);
                        params[p][i] = old;
                        let fd = (up - down) / (2.0 * h);
                        assert!(
                            (fd - grads[p][i]).abs() < 1e-6 * (1.0 + fd.abs()),
                            "{hidden:?} {output:?} train {train} param {p}[{i}]: {fd} vs {}",
                            grads[p][i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batch_norm_trains_on_the_whole_batch_and_updates_the_running_statistics() {
    let _threads = crate::test_util::thread_count_lock();
    // A batch in several blocks and groups: batch norm's statistics are the batch's.
    let net = bn_net(
        vec![64, 160, 160, 10],
        Activation::Relu,
        Output::Softmax,
        0.1,
    );
    let rows = 20_000;
    let plan = net.blocks::<f32>(rows);
    assert!(
        plan.count > 2 && plan.groups > 1 && plan.groups < plan.count,
        "{plan:?}"
    );
    let (params, x, _) = problem(&net, rows);
    let params: Vec<Vec<f32>> = params
        .iter()
        .map(|p| p.iter().map(|&v| v as f32 * 0.3).collect())
        .collect();
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 10).collect();
    let run = |threads| {
        crate::runtime::parallel::set_num_threads(threads).unwrap();
        let mut grads = zeros::<f32>(&net);
        let mut running: Vec<Vec<f32>> = (0..4)
            .map(|i| vec![f32::from(u8::from(i % 2 == 1)); net.sizes[i / 2 + 1]])
            .collect();
        let mut rr: Vec<&mut [f32]> = running.iter_mut().map(Vec::as_mut_slice).collect();
        let inputs = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        let cost = net
            .loss_and_grad_with(
                &mut Workspace::default(),
                &params,
                inputs,
                Targets::Labels(&labels),
                &mut grads,
                None,
                None,
                Stats::Batch(Some(&mut rr)),
            )
            .unwrap();
        (cost, grads, running)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    // The first layer's running mean: momentum times the batch's column mean of X W1.
    let (n0, n1) = (64, 160);
    for j in [0, 77, 159] {
        let mean: f64 = (0..rows)
            .map(|i| {
                (0..n0)
                    .map(|c| f64::from(x[i * n0 + c]) * f64::from(params[0][c * n1 + j]))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / rows as f64;
        let got = f64::from(one.2[0][j]);
        assert!(
            (got - 0.1 * mean).abs() < 1e-4 * (1.0 + mean.abs()),
            "{got} vs {}",
            0.1 * mean
        );
    }
    // Inference with the running statistics is per row: blocks equal one block to rounding.
    let rs: Vec<&[f32]> = one.2.iter().map(Vec::as_slice).collect();
    let mut all = vec![0f32; rows * 10];
    let inputs = Inputs {
        x: &x,
        rows,
        transposed: false,
    };
    net.predict_with(&mut Workspace::default(), &params, &rs, inputs, &mut all)
        .unwrap();
    let mut head = vec![0f32; 10 * 10];
    let first = Inputs {
        x: &x[..10 * n0],
        rows: 10,
        transposed: false,
    };
    net.predict_with(&mut Workspace::default(), &params, &rs, first, &mut head)
        .unwrap();
    for (a, b) in head.iter().zip(&all) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn batch_norm_refuses_one_row_in_training_and_missing_statistics() {
    let net = bn_net(vec![2, 3, 1], Activation::Relu, Output::Sigmoid, 0.0);
    let (params, x, y) = problem(&net, 2);
    let mut grads = zeros::<f64>(&net);
    let one = Inputs {
        x: &x[..2],
        rows: 1,
        transposed: false,
    };
    let mut running = vec![vec![0.0; 3], vec![1.0; 3]];
    let mut rr: Vec<&mut [f64]> = running.iter_mut().map(Vec::as_mut_slice).collect();
    let r = net.loss_and_grad_with(
        &mut Workspace::default(),
        &params,
        one,
        Targets::Dense(&y[..1]),
        &mut grads,
        None,
        None,
        Stats::Batch(Some(&mut rr)),
    );
    assert!(
        matches!(r, Err(Error::Invalid(ref e)) if e.contains("more than 1")),
        "{r:?}"
    );
    assert_eq!(running, vec![vec![0.0; 3], vec![1.0; 3]]);
    let mut out = [0.0; 1];
    let r = net.predict(&mut Workspace::default(), &params, one, &mut out);
    assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
}

#[test]
fn batch_norm_in_blocks_equals_one_block_to_rounding() {
    let _threads = crate::test_util::thread_count_lock();
    for (hidden, output) in [
        (Activation::Tanh, Output::Sigmoid),
        (Activation::Relu, Output::Softmax),
        (Activation::Sigmoid, Output::Identity),
    ] {
        let net = bn_net(vec![5, 40, 24, 3], hidden, output, 0.2)
            .with_dropout(&[0.3, 0.0])
            .unwrap();
        let rows = 3001;
        assert!(net.blocks::<f64>(rows).count > 2);
        let (params, x, y) = problem(&net, rows);
        let inputs = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        let key = DropKey {
            seed: 1,
            epoch: 2,
            position: 3,
        };
        // The reference: every row in one buffer, on this thread.
        let mut buf = Buffers::default();
        buf.fit(&net, rows, false).unwrap();
        let part = inputs.part(0..rows, 5);
        net.forward_block(&mut buf, &params, part, false, Some((key, 0)), None);
        let mut want = net
            .cost_block(&mut buf, rows, Targets::Dense(&y), None, rows as f64)
            .unwrap();
        let moments = buf.moments.clone();
        let mut want_grads = zeros::<f64>(&net);
        net.backward_block(
            &mut buf,
            &params,
            part,
            &mut want_grads,
            false,
            Some((key, 0)),
            true,
        );
        want += net.penalty(&params, &mut want_grads, rows as f64);
        let mut runs = Vec::new();
        for threads in [1, 2, 3] {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let mut grads = zeros::<f64>(&net);
            let mut running: Vec<Vec<f64>> = (0..4)
                .map(|i| vec![f64::from(u8::from(i % 2 == 1)); net.sizes[i / 2 + 1]])
                .collect();
            let mut rr: Vec<&mut [f64]> = running.iter_mut().map(Vec::as_mut_slice).collect();
            let cost = net
                .loss_and_grad_with(
                    &mut Workspace::default(),
                    &params,
                    inputs,
                    Targets::Dense(&y),
                    &mut grads,
                    Some(key),
                    None,
                    Stats::Batch(Some(&mut rr)),
                )
                .unwrap();
            runs.push((cost, grads, running));
        }
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0], runs[2]);
        let (cost, grads, running) = &runs[0];
        assert!((cost - want).abs() < 1e-12 * want.abs(), "{cost} vs {want}");
        for (p, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() < 1e-11 * (1.0 + b.abs()),
                    "{hidden:?} param {p}: {a} vs {b}"
                );
            }
        }
        // The running statistics: momentum times the batch's moments (the reference's).
        for l in 1..=2 {
            let (mo, n) = (&moments[l - 1], net.sizes[l]);
            for j in 0..n {
                let mean = 0.1 * mo[j];
                let var = 0.1 * mo[n + j] / (rows - 1) as f64 + 0.9;
                assert!((running[2 * (l - 1)][j] - mean).abs() < 1e-12 * (1.0 + mean.abs()));
                assert!((running[2 * l - 1][j] - var).abs() < 1e-12 * var);
            }
        }
    }
}
