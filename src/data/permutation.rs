//! The permutation of each epoch: a counter-based RNG, the full and the block shuffle.
//!
//! # The permutation of epoch `e` under seed `s`, for `n` samples
//!
//! Everything is u64 arithmetic modulo 2^64. `G = 0x9E3779B97F4A7C15` and `mix` is
//! SplitMix64's output function:
//!
//! ```text
//! mix(z): z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9
//!         z = (z ^ z >> 27) * 0x94D049BB133111EB
//!         return z ^ z >> 31
//! ```
//!
//! A *stream seeded with x* yields `mix(x + G), mix(x + 2G), mix(x + 3G), ...` (SplitMix64).
//! `below(r)` draws an integer in `[0, r)` from a stream by Lemire's method: take the next
//! draw `x`, let `m = x * r` as a 128-bit product, draw again while `m mod 2^64 < (2^64 - r)
//! mod r`, and return `m >> 64` (exactly uniform). `sub(k, t) = mix(k + mix(t + 1))`.
//!
//! 1. The epoch key is `key = mix(s + (e + 1) G)`: draw `e` of the stream seeded with `s`.
//! 2. `shuffle(n, key)` (the full shuffle) is the Rao–Sandelius method: with
//!    `B = max(1, ceil(n / 2^15))` buckets, sample `i` goes to bucket `below(B)` drawn from
//!    its own draws `x = mix(sub(key, 0) + (i + 1) G)`, then `x = mix(x + G)` after each
//!    rejection (none when `B = 1`). Each bucket lists its samples in increasing order and is
//!    then shuffled by Fisher–Yates — for `j = len - 1` down to 1, swap items `j` and
//!    `below(j + 1)` — with the stream seeded with `sub(key, b + 1)` for bucket `b`. The
//!    permutation is bucket 0, then bucket 1, ... A uniform assignment followed by uniform
//!    shuffles is a uniform permutation; buckets of about 2^15 samples are shuffled in cache
//!    and in parallel, and the result does not depend on the number of threads.
//! 3. The block shuffle with blocks of `c` samples and a buffer of `w` blocks (for data read
//!    from disk): block `j` holds samples `[j c, min(n, (j + 1) c))`; the blocks are put in
//!    the order `shuffle(ceil(n / c), sub(key, 2^64 - 1))`; that sequence is cut into windows
//!    of `w` consecutive blocks; window `v` (its blocks' samples, in that order) is shuffled by
//!    Fisher–Yates with the stream seeded with `sub(key, v + 1)`; the windows are concatenated.
//! 4. Shard `i` of `k` takes positions `[i p, (i + 1) p)` of the permutation, `p = floor(n / k)`:
//!    equal and disjoint; the last `n mod k` positions are left out of that epoch.

use rayon::prelude::*;

use crate::error::{try_filled, try_grow, Error, Result};
use crate::runtime::parallel;

pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Samples per bucket of the full shuffle: a bucket of u64 indices (256 KiB) fits in L2.
pub const BUCKET_SAMPLES: usize = 1 << 15;

/// Shuffles of fewer samples run on the calling thread.
const PARALLEL_MIN_SAMPLES: usize = 1 << 16;

#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sub(key: u64, tag: u64) -> u64 {
    mix(key.wrapping_add(mix(tag.wrapping_add(1))))
}

/// The key of epoch `epoch` under `seed`.
pub fn epoch_key(seed: u64, epoch: u64) -> u64 {
    mix(seed.wrapping_add(epoch.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Lemire's multiply-shift from draw `x` into `[0, r)`; `redraw` gives the next draw after a
/// rejection. `reject_below` is `(2^64 - r) mod r`, or `None` to compute it only when needed.
#[inline]
fn below(mut x: u64, r: u64, reject_below: Option<u64>, mut redraw: impl FnMut(u64) -> u64) -> u64 {
    let mut m = u128::from(x) * u128::from(r);
    if (m as u64) < r {
        let t = reject_below.unwrap_or_else(|| r.wrapping_neg() % r);
        while (m as u64) < t {
            x = redraw(x);
            m = u128::from(x) * u128::from(r);
        }
    }
    (m >> 64) as u64
}

pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    #[inline]
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    #[inline]
    pub(super) fn below(&mut self, r: u64) -> u64 {
        let x = self.next();
        below(x, r, None, |_| self.next())
    }
}

fn fisher_yates(items: &mut [u64], seed: u64) {
    let mut rng = SplitMix64(seed);
    for j in (1..items.len()).rev() {
        let k = rng.below(j as u64 + 1) as usize;
        items.swap(j, k);
    }
}

/// A raw pointer that threads writing disjoint positions may share.
#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);
// SAFETY: only used for writes to positions no other thread touches.
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// Through a method, so closures capture the wrapper (Sync), not its raw field.
    fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `f(i)` for each `i < n`, on the pool when `parallel`; results in order.
fn map_indexed<T: Send>(n: usize, parallel: bool, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if parallel {
        parallel::pool().install(|| (0..n).into_par_iter().map(&f).collect())
    } else {
        (0..n).map(f).collect()
    }
}

/// Cuts `items` into consecutive pieces of the given lengths (which sum to its length).
fn split_lengths<'a>(mut items: &'a mut [u64], lens: &[usize]) -> Result<Vec<&'a mut [u64]>> {
    try_collect(
        lens.iter().map(|&len| {
            let (head, tail) = std::mem::take(&mut items).split_at_mut(len);
            items = tail;
            head
        }),
        "the shuffle's windows",
    )
}

/// The items of `iter` in a vector, or `OutOfMemory` naming `what`.
pub(super) fn try_collect<T>(iter: impl ExactSizeIterator<Item = T>, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(iter.len())
        .map_err(|_| Error::OutOfMemory {
            what: what.into(),
            bytes: iter.len().saturating_mul(std::mem::size_of::<T>()),
        })?;
    v.extend(iter);
    Ok(v)
}

/// Fisher–Yates on each piece with its own stream, `seed_of(piece index)`.
fn shuffle_pieces(pieces: Vec<&mut [u64]>, parallel: bool, seed_of: impl Fn(usize) -> u64 + Sync) {
    if parallel {
        parallel::pool().install(|| {
            pieces
                .into_par_iter()
                .enumerate()
                .for_each(|(i, p)| fisher_yates(p, seed_of(i)));
        });
    } else {
        for (i, p) in pieces.into_iter().enumerate() {
            fisher_yates(p, seed_of(i));
        }
    }
}

/// Large shuffles fan out over the pool, unless they already run on it (an order computed
/// ahead, beside the training it would otherwise slow down).
fn use_threads(n: usize) -> bool {
    n >= PARALLEL_MIN_SAMPLES
        && parallel::num_threads() > 1
        && rayon::current_thread_index().is_none()
}

/// Fills `out` with the full shuffle of `0..out.len()` under `key`, with buckets of about
/// `bucket` samples.
fn shuffle_into(out: &mut [u64], key: u64, bucket: usize) {
    let n = out.len();
    let buckets = n.div_ceil(bucket).max(1);
    let parallel = use_threads(n);
    let lens = if buckets == 1 {
        fill_identity(out, 0);
        vec![n]
    } else {
        partition(out, key, buckets, parallel)
    };
    // A few buckets per 2**15 samples: no size a user chooses makes these large.
    let pieces = split_lengths(out, &lens).expect("one piece per bucket");
    shuffle_pieces(pieces, parallel, |b| sub(key, b as u64 + 1));
}

#[cfg(test)]
pub(super) fn shuffle(n: usize, key: u64, bucket: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    shuffle_into(&mut out, key, bucket);
    out
}

fn fill_identity(out: &mut [u64], start: u64) {
    for (k, slot) in out.iter_mut().enumerate() {
        *slot = start + k as u64;
    }
}

/// Bucket of each sample: counter-based, so any thread can compute any sample's bucket.
struct Assign {
    seed: u64,
    buckets: u64,
    reject_below: u64,
}

impl Assign {
    fn new(key: u64, buckets: usize) -> Self {
        let r = buckets as u64;
        Assign {
            seed: sub(key, 0),
            buckets: r,
            reject_below: r.wrapping_neg() % r,
        }
    }

    #[inline]
    fn bucket(&self, i: usize) -> usize {
        let x = mix(self.seed.wrapping_add((i as u64 + 1).wrapping_mul(GAMMA)));
        below(x, self.buckets, Some(self.reject_below), |x| {
            mix(x.wrapping_add(GAMMA))
        }) as usize
    }
}

/// Per-chunk bucket counts of a stable partition of `0..n` (chunking is free: any chunking
/// gives the same partition).
fn bucket_counts(n: usize, assign: &Assign, chunks: usize) -> Vec<Vec<usize>> {
    let chunk = n.div_ceil(chunks);
    map_indexed(chunks, chunks > 1, |c| {
        let mut counts = vec![0usize; assign.buckets as usize];
        for i in c * chunk..((c + 1) * chunk).min(n) {
            counts[assign.bucket(i)] += 1;
        }
        counts
    })
}

fn chunks_for(n: usize, parallel: bool) -> usize {
    if parallel {
        (parallel::num_threads() * 4).min(n / 4096).max(1)
    } else {
        1
    }
}

/// Fills `out` with `0..out.len()` stably partitioned into buckets; returns their sizes.
fn partition(out: &mut [u64], key: u64, buckets: usize, parallel: bool) -> Vec<usize> {
    let n = out.len();
    let assign = Assign::new(key, buckets);
    let chunks = chunks_for(n, parallel);
    let counts = bucket_counts(n, &assign, chunks);
    // next[c][b]: where chunk c writes its next sample of bucket b.
    let mut next = vec![vec![0usize; buckets]; chunks];
    let mut lens = vec![0usize; buckets];
    let mut at = 0;
    for b in 0..buckets {
        for c in 0..chunks {
            next[c][b] = at;
            at += counts[c][b];
            lens[b] += counts[c][b];
        }
    }
    let dst = SharedPtr(out.as_mut_ptr());
    let chunk = n.div_ceil(chunks);
    let scatter = |(c, mut next): (usize, Vec<usize>)| {
        for i in c * chunk..((c + 1) * chunk).min(n) {
            let b = assign.bucket(i);
            // SAFETY: the offsets of all (chunk, bucket) pairs tile 0..n, so every index
            // is written once, by one thread, inside `out`.
            unsafe { dst.get().add(next[b]).write(i as u64) };
            next[b] += 1;
        }
    };
    if chunks > 1 {
        parallel::pool().install(|| next.into_par_iter().enumerate().for_each(scatter));
    } else {
        next.into_iter().enumerate().for_each(scatter);
    }
    lens
}

/// How an epoch orders the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shuffle {
    /// In storage order.
    None,
    /// Uniformly at random.
    Full,
    /// The locality-friendly block shuffle (see the module docs).
    Blocks {
        block_size: usize,
        buffer_blocks: usize,
    },
}

fn block_shuffle_into(out: &mut [u64], key: u64, block: usize, window: usize) -> Result<()> {
    let n = out.len();
    let blocks = n.div_ceil(block);
    let mut order = try_filled(blocks, 0, || format!("the order of {blocks} blocks"))?;
    shuffle_into(&mut order, sub(key, u64::MAX), BUCKET_SAMPLES);
    let block_len = |j: u64| block.min(n - j as usize * block);
    let windows: Vec<&[u64]> = try_collect(order.chunks(window), "the shuffle's windows")?;
    let lens: Vec<usize> = try_collect(
        windows
            .iter()
            .map(|w| w.iter().map(|&j| block_len(j)).sum()),
        "the shuffle's windows",
    )?;
    let mut pieces = split_lengths(out, &lens)?;
    for (piece, w) in pieces.iter_mut().zip(&windows) {
        let mut at = 0;
        for &j in *w {
            let len = block_len(j);
            fill_identity(&mut piece[at..at + len], j * block as u64);
            at += len;
        }
    }
    shuffle_pieces(pieces, use_threads(n), |v| sub(key, v as u64 + 1));
    Ok(())
}

/// Makes `out` the permutation of `0..n` for epoch `epoch` under `seed` (see the module
/// docs), reusing its memory.
pub fn permutation_into(
    out: &mut Vec<u64>,
    n: usize,
    seed: u64,
    epoch: u64,
    how: Shuffle,
) -> Result<()> {
    if let Shuffle::Blocks {
        block_size,
        buffer_blocks,
    } = how
    {
        if block_size == 0 || buffer_blocks == 0 {
            return Err(Error::Invalid(format!(
                "block_size and buffer_blocks must be at least 1, got {block_size} and {buffer_blocks}"
            )));
        }
    }
    try_grow(out, n, 0, || format!("the permutation of {n} samples"))?;
    let key = epoch_key(seed, epoch);
    match how {
        Shuffle::None => fill_identity(out, 0),
        Shuffle::Full => shuffle_into(out, key, BUCKET_SAMPLES),
        Shuffle::Blocks {
            block_size,
            buffer_blocks,
        } => block_shuffle_into(out, key, block_size, buffer_blocks)?,
    }
    Ok(())
}

/// The permutation of `0..n` for epoch `epoch` under `seed` (see the module docs).
#[cfg(test)]
pub fn permutation(n: usize, seed: u64, epoch: u64, how: Shuffle) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    permutation_into(&mut out, n, seed, epoch, how)?;
    Ok(out)
}
