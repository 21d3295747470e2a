//! `cargo bench --bench nn`: one forward and backward pass of `ferroptim.nn` (cost and
//! gradient of a batch: `Mlp::loss_and_grad`) beside the bare matrix products of the same
//! shapes (faer, one thread): what the products alone cost, the rest being the element-wise
//! passes, the cost and the bookkeeping.
//!
//! The network is the MNIST-sized `784 -> 128 (relu) -> 10 (softmax)` at batch sizes 128
//! and 1024; the counter is multiply-adds of the products. Set `FERROPTIM_NUM_THREADS=1` to
//! compare both on one thread.

use divan::counter::ItemsCount;
use divan::Bencher;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ferroptim::{Activation, Inputs, Mlp, Output, Targets, Workspace};

const SIZES: [usize; 3] = [784, 128, 10];
const ROWS: [usize; 2] = [128, 1024];

fn main() {
    divan::main();
}

fn values(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * scale)
        .collect()
}

/// Multiply-adds of the forward and backward products: `X W1`, `A1 W2` forward;
/// `A1^T dZ2`, `dZ2 W2^T`, `X^T dZ1` backward.
fn muls(rows: usize) -> usize {
    let [n0, n1, n2] = SIZES;
    rows * (n0 * n1 + n1 * n2) + rows * (n1 * n2 + n2 * n1 + n0 * n1)
}

#[divan::bench(args = ROWS, max_time = 2)]
fn forward_backward(bencher: Bencher, rows: usize) {
    let net = Mlp::new(SIZES.to_vec(), Activation::Relu, Output::Softmax, 1e-4).unwrap();
    let params: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| values(n, 0.1)).collect();
    let mut grads: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
    let x = values(rows * SIZES[0], 1.0);
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 10).collect();
    let mut ws = Workspace::default();
    bencher
        .counter(ItemsCount::new(muls(rows)))
        .bench_local(|| {
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let cost = net
                .loss_and_grad(
                    &mut ws,
                    &params,
                    inputs,
                    Targets::Labels(&labels),
                    &mut grads,
                )
                .unwrap();
            divan::black_box(cost);
        });
}

/// `C = A B`, as `ferroptim.nn` calls faer for one tile (one thread).
fn product(c: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0, Par::Seq);
}

/// The five products of [`forward_backward`] alone, each `C = A B` into a reused matrix.
#[divan::bench(args = ROWS, max_time = 2)]
fn gemm_same_shapes(bencher: Bencher, rows: usize) {
    let [n0, n1, n2] = SIZES;
    let mat = |r: usize, c: usize| {
        Mat::<f32>::from_fn(r, c, |i, j| ((i * 31 + j * 17) % 13) as f32 * 0.01)
    };
    let (x, w1, w2) = (mat(rows, n0), mat(n0, n1), mat(n1, n2));
    let (mut z1, mut z2) = (Mat::<f32>::zeros(rows, n1), Mat::<f32>::zeros(rows, n2));
    let (mut dw2, mut da1, mut dw1) = (
        Mat::<f32>::zeros(n1, n2),
        Mat::<f32>::zeros(rows, n1),
        Mat::<f32>::zeros(n0, n1),
    );
    bencher
        .counter(ItemsCount::new(muls(rows)))
        .bench_local(|| {
            product(z1.as_mut(), x.as_ref(), w1.as_ref());
            product(z2.as_mut(), z1.as_ref(), w2.as_ref());
            product(dw2.as_mut(), z1.as_ref().transpose(), z2.as_ref());
            product(da1.as_mut(), z2.as_ref(), w2.as_ref().transpose());
            product(dw1.as_mut(), x.as_ref().transpose(), da1.as_ref());
            divan::black_box((&z2, &dw1, &dw2));
        });
}
