//! The networks' tests: gradients against finite differences, products and batches in
//! blocks against one block, at every thread count.

use super::gemm::{matmul, tiles, MAX_TILES, ROW_BLOCK_ELEMENTS};
use super::workspace::{Blocks, Buffers, MAX_GROUPS};
use super::*;
use crate::error::Error;

fn values(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i + 1) * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0)
        .collect()
}

fn problem(net: &Mlp, rows: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let params = net
        .param_lens()
        .iter()
        .enumerate()
        .map(|(i, &n)| values(n, i + 1).iter().map(|v| v * 0.7).collect())
        .collect();
    let x = values(rows * net.sizes[0], 99);
    let k = net.outputs();
    let y = values(rows * k, 7)
        .iter()
        .enumerate()
        .map(|(i, v)| match net.output {
            // Softmax targets are distributions: one-hot rows.
            Output::Softmax => f64::from(u8::from(i % k == (i / k) % k)),
            _ => f64::from(u8::from(*v > 0.0)),
        })
        .collect();
    (params, x, y)
}

fn cost(
    net: &Mlp,
    ws: &mut Workspace<f64>,
    params: &[Vec<f64>],
    x: &[f64],
    y: &[f64],
    rows: usize,
) -> f64 {
    let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
    let inputs = Inputs {
        x,
        rows,
        transposed: false,
    };
    net.loss_and_grad(ws, params, inputs, Targets::Dense(y), &mut grads)
        .unwrap()
}

#[test]
fn gradients_match_finite_differences() {
    for hidden in [Activation::Tanh, Activation::Sigmoid, Activation::Identity] {
        for output in Output::ALL.map(|(_, o)| o) {
            // A threshold between the residuals: both sides of Huber's.
            let net = Mlp::new(vec![3, 4, 2], hidden, output, 0.3)
                .unwrap()
                .with_huber_delta(0.4)
                .unwrap();
            let rows = 5;
            let (mut params, x, y) = problem(&net, rows);
            let mut ws = Workspace::default();
            let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            net.loss_and_grad(&mut ws, &params, inputs, Targets::Dense(&y), &mut grads)
                .unwrap();
            let h = 1e-6;
            for p in 0..params.len() {
                for i in 0..params[p].len() {
                    let old = params[p][i];
                    params[p][i] = old + h;
                    let up = cost(&net, &mut ws, &params, &x, &y, rows);
                    params[p][i] = old - h;
                    let down = cost(&net, &mut ws, &params, &x, &y, rows);
                    params[p][i] = old;
                    let fd = (up - down) / (2.0 * h);
                    assert!(
                        (fd - grads[p][i]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{hidden:?} {output:?} param {p}[{i}]: {fd} vs {}",
                        grads[p][i]
                    );
                }
            }
        }
    }
}

#[test]
fn tiled_products_do_not_depend_on_the_thread_count() {
    let _threads = crate::test_util::thread_count_lock();
    // A^T given by strides, as the backward pass passes it.
    let (m, k, n) = (300, 200, 280);
    let a: Vec<f32> = values(m * k, 1).iter().map(|&v| v as f32).collect();
    let b: Vec<f32> = values(k * n, 2).iter().map(|&v| v as f32).collect();
    let run = |threads| {
        crate::runtime::parallel::set_num_threads(threads).unwrap();
        let mut c = vec![0f32; m * n];
        // SAFETY: shapes as given, C separate.
        unsafe {
            matmul::<f32>(
                (m, k, n),
                a.as_ptr(),
                (1, m as isize),
                b.as_ptr(),
                (n as isize, 1),
                c.as_mut_ptr(),
                true,
            );
        };
        c
    };
    let (tr, tc) = tiles(m, k, n);
    assert!(tr < m && tc < n, "the product is cut into tiles both ways");
    let one = run(1);
    for (i, j) in [(0, 0), (m - 1, n - 1), (137, 211)] {
        let exact: f64 = (0..k)
            .map(|p| f64::from(a[p * m + i]) * f64::from(b[p * n + j]))
            .sum();
        assert!((f64::from(one[i * n + j]) - exact).abs() < 1e-3 * (1.0 + exact.abs()));
    }
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    let _threads = crate::test_util::thread_count_lock();
    // Wide enough for tiled products and element-wise passes in blocks of rows.
    let net = Mlp::new(
        vec![64, 160, 160, 10],
        Activation::Relu,
        Output::Softmax,
        0.1,
    )
    .unwrap();
    let rows = 700;
    let (params, x, _) = problem(&net, rows);
    let params: Vec<Vec<f32>> = params
        .iter()
        .map(|p| p.iter().map(|&v| v as f32 * 0.3).collect())
        .collect();
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 10).collect();
    assert!(rows * 160 >= 2 * ROW_BLOCK_ELEMENTS);
    let run = |threads| {
        crate::runtime::parallel::set_num_threads(threads).unwrap();
        let mut grads: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
        let inputs = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        let cost = net
            .loss_and_grad(
                &mut Workspace::default(),
                &params,
                inputs,
                Targets::Labels(&labels),
                &mut grads,
            )
            .unwrap();
        (cost, grads)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

/// The zeroed gradients of `net`.
fn zeros<T: NnFloat>(net: &Mlp) -> Vec<Vec<T>> {
    net.zero_grads("test").unwrap()
}

/// A batch computed as one block, whatever its size: the block-level passes over one
/// buffer of every row, on this thread. The cost (penalty included), the gradients and
/// the outputs.
fn one_block<T: NnFloat>(
    net: &Mlp,
    params: &[Vec<T>],
    inputs: Inputs<'_, T>,
    y: Targets<'_, T>,
) -> (f64, Vec<Vec<T>>, Vec<T>) {
    let rows = inputs.rows;
    let mut buf = Buffers::default();
    buf.fit(net, rows, false).unwrap();
    let x = inputs.part(0..rows, net.sizes[0]);
    net.forward_block(&mut buf, params, x, false, None, None);
    let out = buf.acts[net.layers() - 1][..rows * net.outputs()].to_vec();
    let mut cost = net
        .cost_block(&mut buf, rows, y, None, rows as f64)
        .unwrap();
    let mut grads = zeros(net);
    let train = net.batch_norm.is_some();
    net.backward_block(&mut buf, params, x, &mut grads, false, None, train);
    cost += net.penalty(params, &mut grads, rows as f64);
    (cost, grads, out)
}

/// `(cost, grads, outputs)` of `loss_and_grad` and `predict` at `threads` threads in a
/// fresh workspace, with the data cost of `forward_cost` checked against
/// `cost_and_grad`'s, bit for bit.
fn blocked(
    net: &Mlp,
    params: &[Vec<f64>],
    inputs: Inputs<'_, f64>,
    y: Targets<'_, f64>,
    threads: usize,
) -> (f64, Vec<Vec<f64>>, Vec<f64>) {
    crate::runtime::parallel::set_num_threads(threads).unwrap();
    let mut ws = Workspace::default();
    let mut grads = zeros(net);
    let (cost, penalty) = net
        .cost_and_grad(
            &mut ws,
            params,
            inputs,
            y,
            &mut grads,
            None,
            None,
            None,
            Stats::Batch(None),
        )
        .unwrap();
    let data = net.forward_cost(&mut ws, params, inputs, y).unwrap();
    assert_eq!(data.to_bits(), cost.to_bits(), "forward_cost's cost");
    let mut out = vec![0.0; inputs.rows * net.outputs()];
    net.predict(&mut ws, params, inputs, &mut out).unwrap();
    (cost + penalty, grads, out)
}

fn assert_close(a: &(f64, Vec<Vec<f64>>, Vec<f64>), b: &(f64, Vec<Vec<f64>>, Vec<f64>)) {
    assert!((a.0 - b.0).abs() <= 1e-12 * b.0.abs(), "{} vs {}", a.0, b.0);
    for (x, y) in (a.1.iter().flatten().chain(&a.2)).zip(b.1.iter().flatten().chain(&b.2)) {
        assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn a_mid_sized_batch_in_two_blocks_equals_one_block_to_rounding_at_every_thread_count() {
    for output in Output::ALL.map(|(_, o)| o) {
        let net = Mlp::new(vec![2, 32, 32, 3], Activation::Relu, output, 0.2).unwrap();
        let rows = 515;
        let plan = net.blocks::<f64>(rows);
        assert_eq!((plan.count, plan.block, plan.groups), (2, 258, 2));
        let (params, x, y) = problem(&net, rows);
        let inputs = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        let want = one_block(&net, &params, inputs, Targets::Dense(&y));
        let one = blocked(&net, &params, inputs, Targets::Dense(&y), 1);
        assert_close(&one, &want);
        assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 2));
        assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 3));
    }
}

#[test]
fn a_full_batch_in_blocks_equals_itself_at_every_thread_count_and_one_block_to_rounding() {
    // More blocks than groups: each group sums several blocks in order.
    let outputs = Output::ALL.map(|(_, o)| o);
    for (output, transposed) in outputs
        .iter()
        .map(|&o| (o, false))
        .chain([(Output::Softmax, true)])
    {
        let net = Mlp::new(vec![3, 8, 5, 2], Activation::Tanh, output, 0.2)
            .unwrap()
            .with_hidden(&[Activation::Sigmoid, Activation::LeakyRelu])
            .unwrap();
        let rows = 17 * net.block_rows::<f64>() + 3;
        let plan = net.blocks::<f64>(rows);
        assert!(
            plan.count > plan.groups && plan.groups == MAX_GROUPS,
            "{plan:?}"
        );
        assert!(plan.block <= net.block_rows::<f64>());
        let (params, x, y) = problem(&net, rows);
        let xt: Vec<f64> = (0..x.len()).map(|i| x[(i % rows) * 3 + i / rows]).collect();
        let rows_major = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        let inputs = Inputs {
            x: if transposed { &xt } else { &x },
            rows,
            transposed,
        };
        let want = one_block(&net, &params, rows_major, Targets::Dense(&y));
        let one = blocked(&net, &params, inputs, Targets::Dense(&y), 1);
        assert_close(&one, &want);
        assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 2));
        assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 3));
    }
}

#[test]
fn a_full_batch_workspace_is_bounded_by_the_block_not_the_rows() {
    let net = Mlp::new(
        vec![64, 256, 256, 10],
        Activation::Relu,
        Output::Softmax,
        0.0,
    )
    .unwrap();
    let params: usize = net.param_lens().iter().sum();
    // What a workspace may hold: per block buffer one block's activations, deltas and
    // gradients; per group one gradient.
    let bound = |ws: &Workspace<f32>, plan: &Blocks| {
        let per_row = 256 + 256 + 10 + 2 * 256;
        4 * (ws.blocks.len() * (plan.block * per_row + params) + plan.groups * params)
    };
    for m in [1_000_000, 10_000_000] {
        let plan = net.blocks::<f32>(m);
        assert!(plan.block <= net.block_rows::<f32>() && plan.groups <= MAX_GROUPS);
        let mut ws = Workspace::<f32>::default();
        ws.fit(&net, m).unwrap();
        assert!(ws.blocks.len() <= MAX_GROUPS);
        assert!(
            ws.bytes() <= bound(&ws, &plan),
            "{m} rows: {} bytes",
            ws.bytes()
        );
        // Not even A1 of every row: 256 values a row.
        assert!(
            ws.bytes() < 1_000_000 * 256 * 4 / 20,
            "{m} rows: {} bytes",
            ws.bytes()
        );
    }
    // A batch trained on in 64 blocks holds at most 16 blocks' buffers (one per thread
    // computing blocks, at most one per group): not the whole batch's.
    let net = Mlp::new(vec![8, 16, 4], Activation::Relu, Output::Identity, 0.0).unwrap();
    let rows = 64 * net.block_rows::<f32>();
    let x = vec![0.5f32; rows * 8];
    let y = vec![0.25f32; rows * 4];
    let p: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.1; n]).collect();
    let mut grads = zeros::<f32>(&net);
    let mut ws = Workspace::default();
    let inputs = Inputs {
        x: &x,
        rows,
        transposed: false,
    };
    net.loss_and_grad(&mut ws, &p, inputs, Targets::Dense(&y), &mut grads)
        .unwrap();
    let plan = net.blocks::<f32>(rows);
    let per_row = 16 + 4 + 2 * 16;
    let params: usize = net.param_lens().iter().sum();
    let held = 4 * (ws.blocks.len() * (plan.block * per_row + params) + plan.groups * params);
    assert_eq!(plan.count, 64);
    let unblocked = rows * per_row * 4;
    assert!(
        ws.bytes() <= held && held < unblocked / 2,
        "{} bytes",
        ws.bytes()
    );
}

#[test]
fn tiles_cover_c_and_depend_only_on_the_shape() {
    assert_eq!(tiles(64, 2, 5), (64, 5));
    assert_eq!(tiles(256, 32, 32), (256, 32));
    for (m, k, n) in [
        (1024, 256, 256),
        (256, 1024, 10),
        (64, 1024, 256),
        (1000, 64, 300),
    ] {
        let (tr, tc) = tiles(m, k, n);
        let count = m.div_ceil(tr) * n.div_ceil(tc);
        assert!(
            count > 1 && count <= MAX_TILES,
            "{m}x{k}x{n}: {count} tiles"
        );
    }
}

#[test]
fn labels_out_of_range_are_an_error() {
    let net = Mlp::new(vec![2, 3], Activation::Relu, Output::Softmax, 0.0).unwrap();
    let params = vec![vec![0.1f64; 6], vec![0.0; 3]];
    let mut grads = vec![vec![0.0f64; 6], vec![0.0; 3]];
    let x = [1.0, 2.0];
    let inputs = Inputs {
        x: &x,
        rows: 1,
        transposed: false,
    };
    let r = net.loss_and_grad(
        &mut Workspace::default(),
        &params,
        inputs,
        Targets::Labels(&[3]),
        &mut grads,
    );
    assert!(matches!(r, Err(Error::Invalid(_))));
    assert!(Mlp::new(vec![2, 1], Activation::Relu, Output::Softmax, 0.0).is_err());
}

#[test]
fn dropout_rates_are_checked_and_zero_rates_are_no_dropout() {
    let net = || Mlp::new(vec![3, 4, 4, 1], Activation::Relu, Output::Sigmoid, 0.0).unwrap();
    for bad in [
        &[1.0][..],
        &[-0.1],
        &[f64::NAN],
        &[0.1, 0.2, 0.3],
        &[0.1, 1.0],
    ] {
        assert!(
            matches!(net().with_dropout(bad), Err(Error::Invalid(_))),
            "{bad:?}"
        );
    }
    assert!(net().with_dropout(&[0.0, 0.0]).unwrap().dropout.is_empty());
    assert_eq!(net().with_dropout(&[0.2]).unwrap().dropout, vec![0.2, 0.2]);
    assert_eq!(net().with_dropout(&[0.2, 0.0]).unwrap().rate(2), 0.0);
    // The masks keep about 1 - rate of the units, and depend on every part of the key.
    let key = DropKey {
        seed: 1,
        epoch: 2,
        position: 3,
    };
    let kept = (0..10_000)
        .filter(|&i| Mlp::keep(key.row_key(1, i / 100), i % 100, 0.3))
        .count();
    assert!((6_800..7_200).contains(&kept), "{kept}");
    let other = DropKey { position: 4, ..key };
    assert_ne!(key.row_key(1, 0), other.row_key(1, 0));
    assert_ne!(key.row_key(1, 0), key.row_key(2, 0));
    assert_ne!(key.row_key(1, 0), key.row_key(1, 1));
}

#[test]
fn per_layer_activations_match_finite_differences_and_differ_from_one_for_all() {
    let acts: Vec<Activation> = Activation::ALL.iter().map(|&(_, a)| a).collect();
    let net = Mlp::new(
        vec![3, 4, 5, 4, 3, 4, 2],
        Activation::Relu,
        Output::Identity,
        0.1,
    )
    .unwrap()
    .with_hidden(&acts)
    .unwrap();
    assert_eq!(net.hidden, acts);
    assert_eq!(net.activation(3), Activation::Tanh);
    let rows = 6;
    let (mut params, x, y) = problem(&net, rows);
    let mut ws = Workspace::default();
    let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
    let inputs = Inputs {
        x: &x,
        rows,
        transposed: false,
    };
    let c = net
        .loss_and_grad(&mut ws, &params, inputs, Targets::Dense(&y), &mut grads)
        .unwrap();
    let h = 1e-6;
    for p in 0..params.len() {
        for i in 0..params[p].len() {
            let old = params[p][i];
            params[p][i] = old + h;
            let up = cost(&net, &mut ws, &params, &x, &y, rows);
            params[p][i] = old - h;
            let down = cost(&net, &mut ws, &params, &x, &y, rows);
            params[p][i] = old;
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - grads[p][i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "param {p}[{i}]: {fd} vs {}",
                grads[p][i]
            );
        }
    }
    // Each layer reads its own activation: all-relu gives another cost.
    let relu = Mlp::new(net.sizes.clone(), Activation::Relu, Output::Identity, 0.1).unwrap();
    assert_ne!(c, cost(&relu, &mut ws, &params, &x, &y, rows));
}

#[test]
fn hidden_activations_huber_delta_and_poisson_targets_are_checked() {
    let net = || Mlp::new(vec![3, 4, 4, 1], Activation::Relu, Output::Poisson, 0.0).unwrap();
    let tanh = Activation::Tanh;
    assert!(matches!(net().with_hidden(&[]), Err(Error::Invalid(_))));
    assert!(matches!(
        net().with_hidden(&[tanh; 3]),
        Err(Error::Invalid(_))
    ));
    assert_eq!(net().with_hidden(&[tanh]).unwrap().hidden, vec![tanh; 2]);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(net().with_huber_delta(bad), Err(Error::Invalid(_))),
            "{bad}"
        );
    }
    let net = net();
    let (params, x, _) = problem(&net, 2);
    let mut ws = Workspace::default();
    let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
    let inputs = Inputs {
        x: &x,
        rows: 2,
        transposed: false,
    };
    let r = net.loss_and_grad(
        &mut ws,
        &params,
        inputs,
        Targets::Dense(&[1.0, -0.5]),
        &mut grads,
    );
    assert!(
        matches!(r, Err(Error::Invalid(ref e)) if e.contains(">= 0")),
        "{r:?}"
    );
    let mut alpha = net.clone();
    assert!(alpha.set_alpha(-1.0).is_err() && alpha.alpha == 0.0);
}

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

#[test]
fn the_integer_keep_threshold_is_the_float_test() {
    for rate in [0.0, 1e-9, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.999_999] {
        let t = Mlp::keep_threshold(rate);
        let scaled = |u: u64| u as f64 * (1.0 / (1u64 << 53) as f64) >= rate;
        for u in [
            t.saturating_sub(2),
            t.saturating_sub(1),
            t,
            t + 1,
            0,
            (1 << 53) - 1,
        ] {
            assert_eq!(u >= t, scaled(u), "rate {rate}, u {u}");
        }
        // The masks drawn through it are the keep() masks.
        let key = DropKey {
            seed: 3,
            epoch: 1,
            position: 4,
        };
        let mut v = vec![1.0f64; 3 * 37];
        super::passes::dropout_rows(&mut v, 37, key, 2, 5, rate);
        for (i, x) in v.iter().enumerate() {
            let kept = Mlp::keep(key.row_key(2, 5 + i / 37), i % 37, rate);
            assert_eq!(*x != 0.0, kept, "rate {rate} element {i}");
        }
    }
}
