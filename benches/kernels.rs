//! `cargo bench`: every optimizer step at 1K, 1M and 100M elements, float32 and float64,
//! beside a streaming pass over the same bytes (the memory-bandwidth reference).
//!
//! Each benchmark reports bytes/s (the bytes the update must move); compare a kernel's
//! throughput with its `stream` row of the same shape: the kernel is at the memory bound
//! when they match. The `*_kernel` rows time one kernel in cache on one thread at each SIMD
//! level, per state type (float32, bfloat16, float16): the cost of the 16-bit conversions.
//! Set `FERROPTIM_NUM_THREADS` / `FERROPTIM_SIMD` to fix threads or ISA.

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use ferroptim::simd::Isa;
use ferroptim::{
    bytes_per_element, matmul_bf16, stream, update, update_bf16, Adadelta, Adagrad, Adam, Adamax,
    Bf16, Direct, Float, Hyper, Kernel, Lion, MatBf16, Momentum, NAdam, Optimizer, RAdam, RmsProp,
    Sgd, Stored, Tensor, F16,
};

const SIZES: [usize; 3] = [1_000, 1_000_000, 100_000_000];

fn main() {
    divan::main();
}

/// The tensor of one step, for either dtype.
trait Elem: Float {
    fn tensor<'a>(param: &'a mut [Self], grad: &'a [Self]) -> Tensor<'a>;
}

impl Elem for f32 {
    fn tensor<'a>(param: &'a mut [f32], grad: &'a [f32]) -> Tensor<'a> {
        Tensor::F32 { param, grad }
    }
}

impl Elem for f64 {
    fn tensor<'a>(param: &'a mut [f64], grad: &'a [f64]) -> Tensor<'a> {
        Tensor::F64 { param, grad }
    }
}

/// Times `Optimizer::step` on one tensor of `n` elements (after a first step has created
/// the state, so allocation is not timed).
fn bench_step<T: Elem>(bencher: Bencher, n: usize, hyper: Hyper, read_write: usize) {
    let mut param: Vec<T> = (0..n)
        .map(|i| T::from_f64((i % 97) as f64 * 1e-2))
        .collect();
    let grad: Vec<T> = (0..n)
        .map(|i| T::from_f64((i % 89) as f64 * 1e-3 - 0.04))
        .collect();
    let mut opt = Optimizer::new(hyper.algorithm(), &[T::DTYPE], &[n], &[0]);
    let hyper = opt.validate(vec![hyper]).unwrap();
    opt.step(vec![T::tensor(&mut param, &grad)], &hyper, 1.0)
        .unwrap();
    bencher
        .counter(BytesCount::new(n * bytes_per_element::<T>(read_write, 1)))
        .bench_local(|| {
            opt.step(vec![T::tensor(&mut param, &grad)], &hyper, 1.0)
                .unwrap();
        });
}

/// Times the streaming reference moving the same bytes as a kernel with `read_write`
/// read-and-written arrays and one read-only array.
fn bench_stream<T: Float>(bencher: Bencher, n: usize, read_write: usize) {
    let src: Vec<T> = vec![T::from_f64(1e-3); n];
    let mut dst: Vec<Vec<T>> = vec![vec![T::ONE; n]; read_write];
    bencher
        .counter(BytesCount::new(n * bytes_per_element::<T>(read_write, 1)))
        .bench_local(|| {
            let mut views: Vec<&mut [T]> =
                dst.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
            stream(&mut views, &src);
        });
}

const ADAM: Adam = Adam::TORCH;

const SGD: Sgd = Sgd {
    lr: 1e-3,
    momentum: 0.0,
    dampening: 0.0,
    nesterov: false,
    weight_decay: 0.0,
    maximize: false,
};

const RMSPROP: RmsProp = RmsProp::TORCH;

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn adam<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(b, n, Hyper::Adam(ADAM), 3);
}

/// One Adam step of the lecture's [2, 5, 2, 1] network (six tensors, 30 elements): the
/// fixed cost of a step, which `fit` pays once per batch.
#[divan::bench(max_time = 2)]
fn adam_lecture_net(b: Bencher) {
    let lens = [10usize, 5, 10, 2, 2, 1];
    let mut params: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0.5; n]).collect();
    let grads: Vec<Vec<f32>> = lens.iter().map(|&n| vec![-0.025; n]).collect();
    let mut opt = Optimizer::new(
        Hyper::Adam(ADAM).algorithm(),
        &[f32::DTYPE; 6],
        &lens,
        &[0; 6],
    );
    let hyper = opt.validate(vec![Hyper::Adam(ADAM)]).unwrap();
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        let tensors = params
            .iter_mut()
            .zip(&grads)
            .map(|(p, g)| f32::tensor(p, g))
            .collect();
        opt.step(tensors, &hyper, 1.0).unwrap();
    });
}

/// One Adam step of a 32x32 float32 matrix whose columns of dead units (a quarter, zero
/// gradients for 2,000 steps) hold subnormal first moments, as in the demo's network:
/// compare with `adam` at 1,000 (ordinary values). Without `subnormal`'s wide path each
/// operation on them takes a microcode assist on Intel CPUs.
#[divan::bench(max_time = 2)]
fn adam_dead_units(b: Bencher) {
    let n = 1024;
    let mut param: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 1e-2).collect();
    let live: Vec<f32> = (0..n).map(|i| (i % 89) as f32 * 1e-3 - 0.04).collect();
    let grad: Vec<f32> = (0..n)
        .map(|i| if i % 32 < 8 { 0.0 } else { live[i] })
        .collect();
    let mut opt = Optimizer::new(Hyper::Adam(ADAM).algorithm(), &[f32::DTYPE], &[n], &[0]);
    let hyper = opt.validate(vec![Hyper::Adam(ADAM)]).unwrap();
    opt.step(vec![f32::tensor(&mut param, &live)], &hyper, 1.0)
        .unwrap();
    for _ in 0..2000 {
        opt.step(vec![f32::tensor(&mut param, &grad)], &hyper, 1.0)
            .unwrap();
    }
    b.counter(BytesCount::new(n * bytes_per_element::<f32>(3, 1)))
        .bench_local(|| {
            opt.step(vec![f32::tensor(&mut param, &grad)], &hyper, 1.0)
                .unwrap();
        });
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn adamw<T: Elem>(b: Bencher, n: usize) {
    let h = Adam {
        weight_decay: 1e-2,
        decoupled: true,
        ..ADAM
    };
    bench_step::<T>(b, n, Hyper::Adam(h), 3);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn amsgrad<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(
        b,
        n,
        Hyper::Adam(Adam {
            amsgrad: true,
            ..ADAM
        }),
        4,
    );
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn sgd<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(b, n, Hyper::Sgd(SGD), 1);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn sgd_momentum<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(
        b,
        n,
        Hyper::Sgd(Sgd {
            momentum: 0.9,
            ..SGD
        }),
        2,
    );
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn momentum<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(
        b,
        n,
        Hyper::Momentum(Momentum {
            lr: 1e-2,
            beta: 0.9,
        }),
        2,
    );
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn rmsprop<T: Elem>(b: Bencher, n: usize) {
    bench_step::<T>(b, n, Hyper::RmsProp(RMSPROP), 2);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn adagrad<T: Elem>(b: Bencher, n: usize) {
    let h = Adagrad::TORCH;
    bench_step::<T>(b, n, Hyper::Adagrad(h), 2);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn adadelta<T: Elem>(b: Bencher, n: usize) {
    let h = Adadelta::TORCH;
    bench_step::<T>(b, n, Hyper::Adadelta(h), 3);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn adamax<T: Elem>(b: Bencher, n: usize) {
    let h = Adamax::TORCH;
    bench_step::<T>(b, n, Hyper::Adamax(h), 3);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn nadam<T: Elem>(b: Bencher, n: usize) {
    let h = NAdam::TORCH;
    bench_step::<T>(b, n, Hyper::NAdam(h), 3);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn radam<T: Elem>(b: Bencher, n: usize) {
    let h = RAdam::TORCH;
    bench_step::<T>(b, n, Hyper::RAdam(h), 3);
}

#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn lion<T: Elem>(b: Bencher, n: usize) {
    let h = Lion {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.0,
    };
    bench_step::<T>(b, n, Hyper::Lion(h), 2);
}

/// The in-cache size of the `*_kernel` rows: 16K elements, 256 KiB with float32 state.
const IN_CACHE: usize = 16_384;

/// Times one kernel on one thread (at the level `run` uses) on [`IN_CACHE`] elements that stay in cache:
/// the compute cost per element of each state type, which the 2-core 100M run hides only
/// partly behind memory bandwidth. `run` applies the kernel as [`update`] does.
fn bench_kernel<S: Stored<f32>>(
    b: Bencher,
    hyper: Hyper,
    slots: usize,
    run: impl Fn(&Kernel<f32>, &mut [f32], &[f32], [&mut [S]; 3]),
) {
    let n = IN_CACHE;
    let mut p: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 1e-2).collect();
    let g: Vec<f32> = (0..n).map(|i| (i % 89) as f32 * 1e-3 - 0.04).collect();
    let mut s: Vec<Vec<S>> = (0..3)
        .map(|j| vec![S::store(if j < slots { 1e-3 } else { 0.0 }); if j < slots { n } else { 0 }])
        .collect();
    let k = Kernel::<f32>::new(&hyper, 10, [false; 3]);
    b.counter(ItemsCount::new(n)).bench_local(|| {
        let [s0, s1, s2] = &mut s[..] else {
            unreachable!()
        };
        run(&k, &mut p, &g, [s0, s1, s2]);
    });
}

/// Every instruction set; a bench row for one this CPU does not run does nothing.
const LEVELS: [Isa; 3] = Isa::ALL;

/// Adam's kernel in cache with float32 or bfloat16 state, at each SIMD level.
#[divan::bench(types = [f32, Bf16], args = LEVELS, max_time = 1)]
fn adam_kernel<S: Stored<f32>>(b: Bencher, isa: Isa) {
    let Some(level) = isa.level() else { return };
    bench_kernel::<S>(b, Hyper::Adam(ADAM), 2, |k, p, g, s| {
        update(level, k, Direct(p), g, s);
    });
}

/// Adam's kernel in cache with bfloat16 state as the optimizer runs it: at the AVX-512
/// level on a CPU with AVX-512 BF16, the kernel of `ferroptim::optim::bf16`.
#[divan::bench(args = LEVELS, max_time = 1)]
fn adam_kernel_bf16_as_stepped(b: Bencher, isa: Isa) {
    let Some(level) = isa.level() else { return };
    bench_kernel::<Bf16>(b, Hyper::Adam(ADAM), 2, |k, p, g, s| {
        update_bf16(level, k, p, g, s);
    });
}

/// The lecture's momentum in cache with float32, bfloat16 or float16 state.
#[divan::bench(types = [f32, Bf16, F16], args = LEVELS, max_time = 1)]
fn momentum_kernel<S: Stored<f32>>(b: Bencher, isa: Isa) {
    let Some(level) = isa.level() else { return };
    bench_kernel::<S>(
        b,
        Hyper::Momentum(Momentum {
            lr: 1e-2,
            beta: 0.9,
        }),
        1,
        |k, p, g, s| {
            update(level, k, Direct(p), g, s);
        },
    );
}

/// The bandwidth reference of SGD (1 array read and written, 1 read).
#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn stream_1rw<T: Float>(b: Bencher, n: usize) {
    bench_stream::<T>(b, n, 1);
}

/// The bandwidth reference of SGD-momentum, Momentum, RMSprop, Adagrad and Lion
/// (2 read-write, 1 read).
#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn stream_2rw<T: Float>(b: Bencher, n: usize) {
    bench_stream::<T>(b, n, 2);
}

/// The bandwidth reference of Adam, AdamW, Adadelta, Adamax, NAdam and RAdam
/// (3 read-write, 1 read).
#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn stream_3rw<T: Float>(b: Bencher, n: usize) {
    bench_stream::<T>(b, n, 3);
}

/// The bandwidth reference of `AMSGrad` (4 read-write, 1 read).
#[divan::bench(types = [f32, f64], args = SIZES, max_time = 2)]
fn stream_4rw<T: Float>(b: Bencher, n: usize) {
    bench_stream::<T>(b, n, 4);
}

/// `C = A B` of square bfloat16 matrices summed in float32 (Muon's Newton–Schulz products),
/// on one thread at the detected level (the AVX-512 BF16 kernel where the CPU has it):
/// items/s are floating-point operations per second (`2 n^3` per product).
#[divan::bench(args = [256, 512, 2000], max_time = 2)]
fn matmul_bf16_flops(bencher: Bencher, n: usize) {
    let a: Vec<Bf16> = (0..n * n)
        .map(|i| Bf16::from_f32((i % 7) as f32 - 3.0))
        .collect();
    let m = MatBf16::rows(&a, n);
    let mut c = vec![0.0f32; n * n];
    let level = ferroptim::simd::detected();
    bencher
        .counter(ItemsCount::new(2 * n * n * n))
        .bench_local(|| matmul_bf16(level, (n, n, n), m, m, &mut c, false, false));
}
