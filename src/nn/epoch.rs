//! The epoch loop: gather a batch (the `MiniBatches` machinery), forward, backward, step,
//! for a range of an epoch's batches, with no allocation per batch beyond the gather's
//! index list.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DropKey, Inputs, Mlp, NnFloat, Stats, Targets, Workspace};
use crate::data::{Buffer, Job, Order, Source};
use crate::error::{try_filled, Error, Result};

/// Gathers at least this many bytes are handed to the pool while the current batch trains
/// (a 512-row batch of the demo's 2-32-32-1 network is 6 KiB); smaller ones are prefetched.
const PREFETCH_MIN_BYTES: usize = 4 << 10;

/// The same for batches computed in several blocks ([`Mlp::blocks`]), which need the pool:
/// a small gather there would delay them more than the gather itself takes.
const BLOCKS_PREFETCH_MIN_BYTES: usize = 64 << 10;

/// The parts of a small batch's samples prefetched one by one (one after each phase of the
/// batch before it).
const PREFETCH_PARTS: usize = 4;

/// How often the loop asks whether to stop (Ctrl-C), in wall time.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// What one epoch trains on: the two gather sources (X, then Y) and the epoch's order.
pub struct EpochData<'a> {
    /// `[X, Y]` (and `W` when `weighted`): X of the network's dtype with `n_0` features per sample; Y of int64 labels
    /// (`labels`) or of the network's dtype with `k` values per sample.
    pub sources: Arc<[Source]>,
    pub order: &'a Order,
    pub batch_size: usize,
    /// The epoch's batches to train on (batch `j` holds order positions
    /// `j*batch_size .. min((j+1)*batch_size, len)`).
    pub batches: Range<usize>,
    /// X's batches are `(n_0, rows)` (sampled along axis 1).
    pub x_transposed: bool,
    /// Y's batches are `(k, rows)` (sampled along axis 1).
    pub y_transposed: bool,
    pub labels: bool,
    /// The sources hold a third one, a weight per sample (of the network's dtype): each
    /// batch's cost is their weighted mean ([`Mlp::cost_and_grad`]).
    pub weighted: bool,
    /// Dropout's `(seed, epoch, offset)`: batch `j` draws the masks of
    /// [`DropKey`] `(seed, epoch, offset + j)`; None: no dropout.
    pub dropout: Option<(u64, u64, u64)>,
}

/// The update of one batch: `step(params, grads)`.
pub type StepFn<'a, T> = dyn FnMut(&mut [&mut [T]], &[Vec<T>]) -> StepOutcome + 'a;

/// What the optimizer did with one batch's gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Applied,
    /// Not applied (a non-finite gradient under `nan_policy='skip'`).
    Skipped,
    /// Not applied, and the epoch stops (the caller keeps the reason).
    Abort,
}

/// Seconds spent in each phase (accumulated).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    pub gather: f64,
    pub forward: f64,
    pub backward: f64,
    pub step: f64,
}

/// How far an epoch got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochReport {
    /// Batches trained on (their costs were pushed).
    pub done: usize,
    /// The poll asked to stop, or the step aborted.
    pub stopped: bool,
}

struct Gathered {
    job: Arc<Job>,
    rows: usize,
}

/// Trains on `data.batches` of one epoch: for each batch, its cost (data cost plus L2
/// penalty) is pushed to `costs` and `step(params, grads)` applies the update. `poll` is
/// called about every millisecond; when it returns true the loop stops after the current
/// batch. On error (a gather, a label out of range) the batches before it stay applied and
/// `costs` holds theirs. With batch norm, each batch normalizes with its own statistics
/// and updates `running` (`[mean_1, var_1, ...]`; empty without batch norm).
///
/// # Panics
/// If `params` or `grads` do not hold one buffer per parameter of `net`.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch<T: NnFloat>(
    net: &Mlp,
    ws: &mut Workspace<T>,
    params: &mut [&mut [T]],
    grads: &mut [Vec<T>],
    running: &mut [&mut [T]],
    data: &EpochData<'_>,
    costs: &mut Vec<f64>,
    mut timing: Option<&mut Timing>,
    step: &mut StepFn<'_, T>,
    poll: &mut dyn FnMut() -> bool,
) -> Result<EpochReport> {
    let len = data.order.len();
    let b = data.batch_size.max(1);
    let rows_of = |j: usize| {
        let start = j * b;
        start..(start + b).min(len)
    };
    let max_rows = b.min(len);
    let k = net.outputs();
    if data.sources.len() != 2 + usize::from(data.weighted) {
        return Err(Error::Mismatch(
            "train_epoch needs sources [X, Y] (and W when weighted)".into(),
        ));
    }
    let sets: Vec<Vec<Arc<Buffer>>> = (0..2)
        .map(|_| {
            data.sources
                .iter()
                .map(|s| Buffer::new(s.batch_bytes(max_rows)).map(Arc::new))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let blocks = net.blocks::<T>(max_rows).count > 1;
    let large = data
        .sources
        .iter()
        .map(|s| s.batch_bytes(max_rows))
        .sum::<usize>()
        >= if blocks {
            BLOCKS_PREFETCH_MIN_BYTES
        } else {
            PREFETCH_MIN_BYTES
        }
        && crate::runtime::parallel::num_threads() > 1;
    let mut y_rows: Vec<T> = if data.y_transposed && !data.labels && k > 1 {
        try_filled(max_rows * k, T::ZERO, || {
            format!("the targets of a batch of {max_rows} rows")
        })?
    } else {
        Vec::new()
    };
    ws.fit(net, max_rows)?;
    // Batches computed in blocks hand them to the pool once per batch: a worker stays
    // awake for them.
    let _awake = blocks.then(crate::runtime::parallel::stay_awake).flatten();

    let start_job = |j: usize| -> Result<Gathered> {
        let rows = rows_of(j);
        let n = rows.len();
        // SAFETY: the caller keeps the sources' memory alive for the call (the bindings
        // hold the arrays), and `order` is a permutation of the samples; every job is
        // finished or cancelled before this function returns.
        let job = unsafe {
            Job::new(
                Arc::clone(&data.sources),
                data.order.batch(rows)?,
                sets[j % 2].clone(),
            )?
        };
        let job = Arc::new(job);
        if large {
            job.spawn();
        } else {
            // Gathered on this thread after the current batch trains: the rows arrive meanwhile.
            job.prefetch();
        }
        Ok(Gathered { job, rows: n })
    };

    let mut report = EpochReport {
        done: 0,
        stopped: false,
    };
    let mut last_poll = Instant::now();
    // Small batches of a permutation are copied on this thread straight from the order (no
    // job, no allocation), the next one prefetched while the current one trains: a part of
    // its samples after each phase, so that the loads in flight do not fill the CPU's
    // buffers all at once (a prefetch waits for a free one).
    let direct = !large && data.order.slice(0..0).is_some();
    let prefetch = |j: usize, part: usize| {
        if !direct || j >= data.batches.end {
            return;
        }
        let samples = data.order.slice(rows_of(j)).unwrap_or(&[]);
        let per_part = samples.len().div_ceil(PREFETCH_PARTS);
        let from = (part * per_part).min(samples.len());
        let to = ((part + 1) * per_part).min(samples.len());
        for src in data.sources.iter() {
            for &i in &samples[from..to] {
                src.prefetch_sample(i as usize);
            }
        }
    };
    let mut next = if data.batches.is_empty() {
        None
    } else if direct {
        for part in 0..PREFETCH_PARTS {
            prefetch(data.batches.start, part);
        }
        None
    } else {
        Some(start_job(data.batches.start)?)
    };
    let result = (|| -> Result<()> {
        for j in data.batches.clone() {
            // The phases are clocked only when asked (a clock read is ~20 ns).
            let clock = || timing.is_some().then(Instant::now);
            let t0 = clock();
            let (owned, rows);
            let buffers: &[Arc<Buffer>] = if direct {
                let samples = data.order.slice(rows_of(j)).unwrap_or(&[]);
                for (src, buf) in data.sources.iter().zip(&sets[0]) {
                    // SAFETY: as for the jobs of `start_job`; the buffer holds `max_rows` samples.
                    unsafe { src.gather(buf.as_ptr(), samples) }?;
                }
                rows = samples.len();
                &sets[0]
            } else {
                let current = next.take().expect("a gather is pending for every batch");
                owned = current.job.finish(None)?;
                if j + 1 < data.batches.end {
                    next = Some(start_job(j + 1)?);
                }
                rows = current.rows;
                &owned
            };
            // SAFETY: the finished buffers hold the batch: X as rows * n_0 values of T,
            // Y as rows labels (i64) or rows * k values of T; 64-byte aligned.
            let x = unsafe {
                std::slice::from_raw_parts(buffers[0].as_ptr() as *const T, rows * net.sizes[0])
            };
            let y = if data.labels {
                // The gather's buffers are 64-byte aligned.
                #[allow(clippy::cast_ptr_alignment)]
                Targets::Labels(unsafe {
                    std::slice::from_raw_parts(buffers[1].as_ptr() as *const i64, rows)
                })
            } else {
                let raw = unsafe {
                    std::slice::from_raw_parts(buffers[1].as_ptr() as *const T, rows * k)
                };
                if y_rows.is_empty() {
                    Targets::Dense(raw)
                } else {
                    for i in 0..rows {
                        for c in 0..k {
                            y_rows[i * k + c] = raw[c * rows + i];
                        }
                    }
                    Targets::Dense(&y_rows[..rows * k])
                }
            };
            let inputs = Inputs {
                x,
                rows,
                transposed: data.x_transposed,
            };
            prefetch(j + 1, 0);
            let t1 = clock();
            let mut phases = [0.0; 2];
            let timed = timing.is_some().then_some(&mut phases);
            let key = data.dropout.map(|(seed, epoch, offset)| DropKey {
                seed,
                epoch,
                position: offset.wrapping_add(j as u64),
            });
            // SAFETY: as for X: the weights of the batch's rows, values of T.
            let weights = data.weighted.then(|| unsafe {
                std::slice::from_raw_parts(buffers[2].as_ptr() as *const T, rows)
            });
            let stats = Stats::Batch(Some(&mut *running));
            let (cost, penalty) =
                net.cost_and_grad(ws, &*params, inputs, y, grads, timed, key, weights, stats)?;
            prefetch(j + 1, 1);
            prefetch(j + 1, 2);
            let t3 = clock();
            let outcome = step(params, grads);
            prefetch(j + 1, 3);
            let t4 = Instant::now();
            if let Some(t) = timing.as_deref_mut() {
                let secs = |a: Option<Instant>, b: Option<Instant>| {
                    a.zip(b).map_or(0.0, |(a, b)| (b - a).as_secs_f64())
                };
                t.gather += secs(t0, t1);
                t.forward += phases[0];
                t.backward += phases[1];
                t.gather += secs(t1, t3) - phases[0] - phases[1];
                t.step += secs(t3, Some(t4));
            }
            if outcome == StepOutcome::Abort {
                report.stopped = true;
                return Ok(());
            }
            costs.push(cost + penalty);
            report.done += 1;
            if t4 - last_poll >= POLL_EVERY {
                last_poll = t4;
                if poll() {
                    report.stopped = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    })();
    if let Some(pending) = next {
        pending.job.cancel();
    }
    result.map(|()| report)
}
