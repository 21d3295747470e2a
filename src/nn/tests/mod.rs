//! The networks' tests: gradients against finite differences, products and batches in
//! blocks against one block, at every thread count.

use super::gemm::{matmul, tiles, MAX_TILES, ROW_BLOCK_ELEMENTS};
use super::workspace::{Blocks, Buffers, MAX_GROUPS};
use super::*;
use crate::error::Error;

mod batch_norm;

pub(super) fn values(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i + 1) * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0)
        .collect()
}

pub(super) fn problem(net: &Mlp, rows: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
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

pub(super) fn cost(
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
pub(super) fn zeros<T: NnFloat>(net: &Mlp) -> Vec<Vec<T>> {
    net.zero_grads("test").unwrap()
}

/// A batch computed as one block, whatever its size: the block-level passes over one
/// buffer of every row, on this thread. The cost (penalty included), the gradients and
/// the outputs.
pub(super) fn one_block<T: NnFloat>(
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
pub(super) fn blocked(
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

pub(super) fn assert_close(a: &(f64, Vec<Vec<f64>>, Vec<f64>), b: &(f64, Vec<Vec<f64>>, Vec<f64>)) {
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
    // a 128-wide layer's weight gradient at batch 512, and a 64-wide one's: tiles of 64
    assert_eq!(tiles(128, 512, 128), (64, 64));
    assert_eq!(tiles(64, 512, 128), (64, 64));
    // where tiles of 128 are enough, they stay
    assert_eq!(tiles(512, 128, 128), (128, 128));
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
        super::block::dropout_rows(&mut v, 37, key, 2, 5, rate);
        for (i, x) in v.iter().enumerate() {
            let kept = Mlp::keep(key.row_key(2, 5 + i / 37), i % 37, rate);
            assert_eq!(*x != 0.0, kept, "rate {rate} element {i}");
        }
    }
}
