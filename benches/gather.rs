//! `cargo bench --bench gather`: one shuffled mini-batch gathered from two arrays (the
//! machinery of `ferroptim.Batches`: an `Order`, a `Source` per array, a `Job` on the pool),
//! beside a bare copy of the same rows on one thread (the reference).
//!
//! The arrays are an MNIST-sized float32 matrix (`SAMPLES` x 784, 31 MB: larger than the
//! caches) and its int64 labels. Each row reports the batch's bytes/s. Set
//! `FERROPTIM_NUM_THREADS=1` to compare the gather with the bare copy on one thread.

use std::sync::Arc;

use divan::counter::BytesCount;
use divan::Bencher;
use ferroptim::{Buffer, Job, Order, Samples, Shuffle, Source};

const SAMPLES: usize = 10_000;
const FEATURES: usize = 784;
const BATCHES: [usize; 3] = [64, 512, 4096];

fn main() {
    divan::main();
}

/// The two arrays: `x` (SAMPLES, FEATURES) float32 and `y` (SAMPLES,) int64.
fn data() -> (Vec<f32>, Vec<i64>) {
    let x = (0..SAMPLES * FEATURES).map(|i| (i % 251) as f32).collect();
    let y = (0..SAMPLES as i64).map(|i| i % 10).collect();
    (x, y)
}

/// The first batch of `rows` samples of a full shuffle.
fn first_batch(rows: usize) -> Vec<u64> {
    let order = Order::new(SAMPLES, 7, 0, Shuffle::Full, (0, 1)).unwrap();
    match order.batch(0..rows).unwrap() {
        Samples::List(list) => list,
        Samples::Consecutive { start, len } => (start as u64..(start + len) as u64).collect(),
    }
}

/// `Job::new` + `spawn` + `finish` on reused buffers, as `Batches` runs each batch.
#[divan::bench(args = BATCHES, max_time = 2)]
fn gather(bencher: Bencher, rows: usize) {
    let (x, y) = data();
    let sources: Arc<[Source]> = Arc::from(vec![
        Source::new(
            x.as_ptr() as usize,
            &[SAMPLES, FEATURES],
            &[4 * FEATURES as isize, 4],
            4,
            0,
        )
        .unwrap(),
        Source::new(y.as_ptr() as usize, &[SAMPLES], &[8], 8, 0).unwrap(),
    ]);
    let buffers: Vec<Arc<Buffer>> = sources
        .iter()
        .map(|s| Arc::new(Buffer::new(s.batch_bytes(rows)).unwrap()))
        .collect();
    let samples = Samples::List(first_batch(rows));
    bencher
        .counter(BytesCount::new(rows * (4 * FEATURES + 8)))
        .bench_local(|| {
            // SAFETY: `x` and `y` outlive the job (finished below); every sample < SAMPLES.
            let job = Arc::new(unsafe {
                Job::new(Arc::clone(&sources), samples.clone(), buffers.clone()).unwrap()
            });
            job.spawn();
            divan::black_box(job.finish(None).unwrap());
        });
}

/// The reference: the same rows copied one by one into the same kind of buffers, on the
/// calling thread, with nothing else (no tasks, no prefetch, no checks).
#[divan::bench(args = BATCHES, max_time = 2)]
fn bare_copy(bencher: Bencher, rows: usize) {
    let (x, y) = data();
    let indices = first_batch(rows);
    let (mut bx, mut by) = (vec![0f32; rows * FEATURES], vec![0i64; rows]);
    bencher
        .counter(BytesCount::new(rows * (4 * FEATURES + 8)))
        .bench_local(|| {
            for (k, &i) in indices.iter().enumerate() {
                let i = i as usize;
                bx[k * FEATURES..(k + 1) * FEATURES]
                    .copy_from_slice(&x[i * FEATURES..(i + 1) * FEATURES]);
                by[k] = y[i];
            }
            divan::black_box((&mut bx, &mut by));
        });
}
