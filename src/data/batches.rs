//! Shuffled mini-batch epochs: the permutation of each epoch, and the gather of the chosen
//! samples of any array into contiguous batches, on the thread pool.
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

use std::alloc::{self, Layout};
use std::fs::File;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use rayon::prelude::*;

use crate::error::{try_filled, try_grow, Error, Result};
use crate::runtime::parallel;

pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Samples per bucket of the full shuffle: a bucket of u64 indices (256 KiB) fits in L2.
pub const BUCKET_SAMPLES: usize = 1 << 15;

/// Spins of a waiting thread before it sleeps.
const WAIT_SPINS: u32 = 2000;

/// Shuffles of fewer samples run on the calling thread.
const PARALLEL_MIN_SAMPLES: usize = 1 << 16;

/// Samples ahead of the one being copied whose memory the gather asks the CPU to load:
/// reading random samples is bound by memory latency, and requests in flight hide it.
const PREFETCH_AHEAD: usize = 8;

/// Cache lines of a sample prefetched; the hardware streams the rest of a long run.
#[cfg(target_arch = "x86_64")]
const PREFETCH_LINES: usize = 4;

#[inline(always)]
fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..bytes.div_ceil(64).min(PREFETCH_LINES) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * 64).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// Bytes of output per gather task: large enough to amortise claiming, small enough that
/// every thread gets a share of a 1024-row batch.
pub const TASK_BYTES: usize = 32 << 10;

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

struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    #[inline]
    fn below(&mut self, r: u64) -> u64 {
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
fn try_collect<T>(iter: impl ExactSizeIterator<Item = T>, what: &str) -> Result<Vec<T>> {
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
fn shuffle(n: usize, key: u64, bucket: usize) -> Vec<u64> {
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

/// The positions of an epoch's permutation one shard takes: `start, start + step, ...`,
/// `len` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positions {
    pub start: usize,
    pub step: usize,
    pub len: usize,
}

impl Positions {
    fn all(n: usize) -> Self {
        Positions {
            start: 0,
            step: 1,
            len: n,
        }
    }

    /// The permutation position of this shard's `i`-th sample.
    fn at(&self, i: usize) -> usize {
        self.start + i * self.step
    }
}

/// The positions of the permutation that shard `index` of `count` takes: every `count`-th
/// one from `index` (as torch's `DistributedSampler`), `n / count` of them, so the shards
/// are equal and disjoint and the last `n % count` positions are left out. Interleaving
/// makes shard `i`'s `k`-th batch of size `b` exactly its part of the `k`-th batch of size
/// `b * count` of the unsharded epoch: data-parallel training with a global batch `B`
/// sees the same batches as one process with batch `B`.
pub fn shard(n: usize, index: usize, count: usize) -> Result<Positions> {
    if count == 0 || index >= count {
        return Err(Error::Invalid(format!(
            "shard index must be in [0, count) with count >= 1, got ({index}, {count})"
        )));
    }
    let per = n / count;
    if per == 0 {
        return Err(Error::Invalid(format!(
            "{n} samples cannot be split into {count} non-empty shards"
        )));
    }
    Ok(Positions {
        start: index,
        step: count,
        len: per,
    })
}

/// The samples one shard visits in one epoch, in order.
#[derive(Clone, Debug)]
pub struct Order {
    /// `None`: the identity permutation (no shuffle).
    perm: Option<Vec<u64>>,
    positions: Positions,
}

/// The samples of one batch, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Samples {
    /// `start, start + 1, ..., start + len - 1`.
    Consecutive {
        start: usize,
        len: usize,
    },
    List(Vec<u64>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::Consecutive { len, .. } => *len,
            Samples::List(v) => v.len(),
        }
    }
}

impl Order {
    #[cfg(test)]
    pub fn new(
        n: usize,
        seed: u64,
        epoch: u64,
        how: Shuffle,
        shard_: (usize, usize),
    ) -> Result<Self> {
        Self::reusing(Vec::new(), n, seed, epoch, how, shard_)
    }

    /// As `new`, filling `buffer` (say the previous epoch's, from `into_buffer`): a large
    /// fresh allocation costs as much as the shuffle, in page faults.
    pub fn reusing(
        mut buffer: Vec<u64>,
        n: usize,
        seed: u64,
        epoch: u64,
        how: Shuffle,
        shard_: (usize, usize),
    ) -> Result<Self> {
        let positions = shard(n, shard_.0, shard_.1)?;
        let perm = if how == Shuffle::None {
            None
        } else {
            permutation_into(&mut buffer, n, seed, epoch, how)?;
            Some(buffer)
        };
        Ok(Order { perm, positions })
    }

    /// An order of no samples.
    pub fn empty() -> Self {
        Order {
            perm: None,
            positions: Positions::all(0),
        }
    }

    /// The permutation's memory, if there is one.
    pub fn into_buffer(self) -> Option<Vec<u64>> {
        self.perm
    }

    /// The samples at positions `rows`, without a copy, when the order is a permutation read
    /// at every position (no shard); None otherwise.
    pub fn slice(&self, rows: Range<usize>) -> Option<&[u64]> {
        let p = self.positions;
        match &self.perm {
            Some(perm) if p.step == 1 => Some(&perm[p.at(rows.start)..p.at(rows.end)]),
            _ => None,
        }
    }

    /// The samples at positions `rows` of this order.
    pub fn batch(&self, rows: Range<usize>) -> Result<Samples> {
        let p = self.positions;
        let what = "a batch's sample indices";
        Ok(match &self.perm {
            Some(perm) if p.step == 1 => Samples::List(try_collect(
                perm[p.at(rows.start)..p.at(rows.end)].iter().copied(),
                what,
            )?),
            None if p.step == 1 => Samples::Consecutive {
                start: p.at(rows.start),
                len: rows.len(),
            },
            _ => Samples::List(try_collect(rows.map(|i| self.get(i) as u64), what)?),
        })
    }

    pub fn len(&self) -> usize {
        self.positions.len
    }

    /// The epoch's number of batches of `batch_size` (>= 1) samples: a last, smaller batch
    /// counts unless `drop_last`.
    pub fn num_batches(&self, batch_size: usize, drop_last: bool) -> usize {
        if drop_last {
            self.len() / batch_size
        } else {
            self.len().div_ceil(batch_size)
        }
    }

    /// The sample at position `i` of this order.
    pub fn get(&self, i: usize) -> usize {
        let p = self.positions.at(i);
        self.perm.as_ref().map_or(p, |perm| perm[p] as usize)
    }

    pub fn to_vec(&self) -> Result<Vec<u64>> {
        try_collect(
            (0..self.len()).map(|i| self.get(i) as u64),
            "the epoch's indices",
        )
    }
}

/// A 64-byte-aligned, uninitialised heap block the gather writes and NumPy arrays may view.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
}

const BUFFER_ALIGN: usize = 64;

#[repr(align(64))]
struct CacheLine;
const _: () = assert!(std::mem::align_of::<CacheLine>() == BUFFER_ALIGN);

// SAFETY: a plain heap block; who writes it when is governed by `Job`.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Ok(Buffer {
                ptr: NonNull::<CacheLine>::dangling().cast(),
                len,
            });
        }
        let oom = || Error::OutOfMemory {
            what: "a batch".into(),
            bytes: len,
        };
        let layout = Layout::from_size_align(len, BUFFER_ALIGN).map_err(|_| oom())?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        NonNull::new(ptr)
            .map(|ptr| Buffer { ptr, len })
            .ok_or_else(oom)
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated in `new` with this layout.
            unsafe {
                alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, BUFFER_ALIGN),
                );
            }
        }
    }
}

/// The file under a memory-mapped source, which must keep `bytes` bytes: a page read past
/// its end ends the process with SIGBUS. Checked (one `fstat`) before each batch is read.
#[derive(Debug)]
pub struct MappedFile {
    file: File,
    bytes: u64,
    /// The source's index, for the message.
    index: usize,
}

impl MappedFile {
    /// `file` must be the mapped file; `bytes` the end of the map in it.
    pub fn new(file: File, bytes: u64, index: usize) -> Self {
        MappedFile { file, bytes, index }
    }

    /// An error if the file no longer holds the map's extent.
    pub fn check(&self) -> Result<()> {
        let i = self.index;
        let size = self.file.metadata().map(|m| m.len()).map_err(|e| {
            Error::Invalid(format!(
                "arrays[{i}] is a memory map whose file could not be checked ({e}); reading it \
                 could crash, so iteration stops"
            ))
        })?;
        if size < self.bytes {
            return Err(Error::Invalid(format!(
                "arrays[{i}] is a memory map of a file that shrank to {size} bytes since it was \
                 mapped (it needs {}); reading it would crash, so iteration stops",
                self.bytes
            )));
        }
        Ok(())
    }
}

/// An array to gather samples from, described by its memory layout alone.
///
/// A batch of `rows` samples has the array's shape with the sample axis set to `rows`, in C
/// order. Its bytes are laid out as `(outer, rows, inner)` units of `run` contiguous bytes:
/// `outer` and `inner` hold the byte offsets of the positions before and after the sample
/// axis (the trailing dims that are contiguous in the source are folded into `run`).
#[derive(Clone, Debug)]
pub struct Source {
    base: usize,
    samples: usize,
    sample_stride: isize,
    outer: Vec<isize>,
    inner: Vec<isize>,
    run: usize,
    /// Loop over samples outermost: when one sample's units are close together (row-major
    /// samples), each sample's memory is then read in one go.
    sample_major: bool,
    /// The file under the array, when it is a memory map.
    file: Option<Arc<MappedFile>>,
}

/// Byte offsets of every position of `dims` (length, byte stride), in C order.
fn offsets(dims: &[(usize, isize)]) -> Vec<isize> {
    dims.iter().fold(vec![0], |acc, &(len, stride)| {
        acc.iter()
            .flat_map(|&o| (0..len).map(move |k| o + k as isize * stride))
            .collect()
    })
}

impl Source {
    /// The array at address `base` with this shape, byte strides and item size, sampled
    /// along `axis`.
    pub fn new(
        base: usize,
        shape: &[usize],
        strides: &[isize],
        itemsize: usize,
        axis: usize,
    ) -> Result<Self> {
        if shape.len() != strides.len() || axis >= shape.len() {
            return Err(Error::Mismatch(format!(
                "axis {axis} of a {}-d array with {} strides",
                shape.len(),
                strides.len()
            )));
        }
        let empty = shape
            .iter()
            .enumerate()
            .any(|(d, &len)| d != axis && len == 0);
        let dims = |r: Range<usize>| -> Vec<(usize, isize)> {
            shape[r.clone()]
                .iter()
                .zip(&strides[r])
                .filter(|(&len, _)| len != 1)
                .map(|(&len, &stride)| (len, stride))
                .collect()
        };
        let outer_dims = dims(0..axis);
        let mut inner_dims = dims(axis + 1..shape.len());
        let mut run = itemsize;
        while let Some(&(len, stride)) = inner_dims.last() {
            if stride != run as isize {
                break;
            }
            run *= len;
            inner_dims.pop();
        }
        let sample_stride = strides[axis];
        let widest_outer = outer_dims
            .iter()
            .map(|d| d.1.unsigned_abs())
            .max()
            .unwrap_or(0);
        Ok(Source {
            base,
            samples: shape[axis],
            sample_stride,
            outer: if empty {
                Vec::new()
            } else {
                offsets(&outer_dims)
            },
            inner: offsets(&inner_dims),
            run,
            sample_major: sample_stride.unsigned_abs() >= widest_outer,
            file: None,
        })
    }

    /// This source reading a memory map of `file`, checked before each batch.
    pub fn mapping(mut self, file: MappedFile) -> Self {
        self.file = Some(Arc::new(file));
        self
    }

    /// An error if the array is a memory map whose file shrank below the map.
    pub fn check_file(&self) -> Result<()> {
        self.file.as_deref().map_or(Ok(()), MappedFile::check)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Hints the CPU to fetch (the first cache lines of) each unit of sample `sample`.
    pub fn prefetch_sample(&self, sample: usize) {
        let base = self.base as *const u8;
        let first_unit = self.inner.first().copied().unwrap_or(0);
        for &o in &self.outer {
            prefetch(
                base.wrapping_offset(o + sample as isize * self.sample_stride + first_unit),
                self.run,
            );
        }
    }

    /// Copies the batch whose row `i` is sample `samples[i]` into `out`, on this thread (a
    /// [`Job`] without the tasks, for batches too small to share); an error, before
    /// reading, if the array's file shrank below its memory map.
    ///
    /// # Safety
    /// As [`Job::new`]: the source memory stays readable for the call and every sample is
    /// below `samples()`; `out` holds `batch_bytes(samples.len())` bytes.
    pub unsafe fn gather(&self, out: *mut u8, samples: &[u64]) -> Result<()> {
        self.check_file()?;
        let n = samples.len();
        if self.sample_bytes() == 0 {
            return Ok(());
        }
        if let ([o], [i]) = (&self.outer[..], &self.inner[..]) {
            // Each sample is one run of bytes (row-major rows, 1-d labels): one move per row.
            let first = (self.base as *const u8).wrapping_offset(o + i);
            match self.run {
                4 => self.gather_runs::<4>(first, out, samples),
                8 => self.gather_runs::<8>(first, out, samples),
                16 => self.gather_runs::<16>(first, out, samples),
                _ => self.copy(out, n, 0..1, 0..n, &|i| samples[i] as usize),
            }
            return Ok(());
        }
        self.copy(out, n, 0..self.outer.len(), 0..n, &|i| samples[i] as usize);
        Ok(())
    }

    /// [`Source::gather`] of a source whose samples are single runs of `N` bytes, the first
    /// at `first`: row `r` of `out` is the run of sample `samples[r]`.
    ///
    /// # Safety
    /// As [`Source::gather`].
    #[inline(always)]
    unsafe fn gather_runs<const N: usize>(&self, first: *const u8, out: *mut u8, samples: &[u64]) {
        let stride = self.sample_stride;
        let at = |s: u64| first.wrapping_offset(s as isize * stride);
        for (r, &s) in samples.iter().enumerate() {
            if let Some(&ahead) = samples.get(r + PREFETCH_AHEAD) {
                prefetch(at(ahead), N);
            }
            ptr::copy_nonoverlapping(at(s), out.add(r * N), N);
        }
    }

    /// Bytes of one sample.
    fn sample_bytes(&self) -> usize {
        self.outer.len() * self.inner.len() * self.run
    }

    /// Bytes of a batch of `rows` samples.
    pub fn batch_bytes(&self, rows: usize) -> usize {
        self.sample_bytes() * rows
    }

    /// Copies the units at outer positions `o` and batch rows `r` of a batch of `rows`
    /// samples; row `i` of the batch is sample `sample(i)`.
    ///
    /// # Safety
    /// The source memory must be readable as described and `out` must hold the batch.
    #[inline(always)]
    unsafe fn copy_block<const N: usize>(
        &self,
        out: *mut u8,
        rows: usize,
        o: Range<usize>,
        r: Range<usize>,
        sample: &impl Fn(usize) -> usize,
    ) {
        let (run, units) = (self.run, self.inner.len());
        let base = self.base as *const u8;
        let first_unit = self.inner.first().copied().unwrap_or(0);
        let at = |o: usize, i: usize| {
            base.wrapping_offset(self.outer[o] + sample(i) as isize * self.sample_stride)
        };
        let copy = |src: *const u8, o: usize, r: usize| {
            let dst = out.add((o * rows + r) * units * run);
            for (i, &off) in self.inner.iter().enumerate() {
                // N is the run length when known at compile time, so small copies are moves.
                let len = if N == 0 { run } else { N };
                ptr::copy_nonoverlapping(src.offset(off), dst.add(i * run), len);
            }
        };
        let end = r.end;
        if self.sample_major {
            for r in r {
                if r + PREFETCH_AHEAD < end {
                    prefetch(
                        at(o.start, r + PREFETCH_AHEAD).wrapping_offset(first_unit),
                        run,
                    );
                }
                for o in o.clone() {
                    copy(at(o, r), o, r);
                }
            }
        } else {
            for o in o {
                for r in r.clone() {
                    if r + PREFETCH_AHEAD < end {
                        prefetch(at(o, r + PREFETCH_AHEAD).wrapping_offset(first_unit), run);
                    }
                    copy(at(o, r), o, r);
                }
            }
        }
    }

    /// # Safety
    /// As `copy_block`.
    unsafe fn copy(
        &self,
        out: *mut u8,
        rows: usize,
        o: Range<usize>,
        r: Range<usize>,
        sample: &impl Fn(usize) -> usize,
    ) {
        match self.run {
            1 => self.copy_block::<1>(out, rows, o, r, sample),
            2 => self.copy_block::<2>(out, rows, o, r, sample),
            4 => self.copy_block::<4>(out, rows, o, r, sample),
            8 => self.copy_block::<8>(out, rows, o, r, sample),
            16 => self.copy_block::<16>(out, rows, o, r, sample),
            _ => self.copy_block::<0>(out, rows, o, r, sample),
        }
    }

    /// How a batch of `rows` samples is cut into tasks of about `TASK_BYTES`.
    fn split(&self, rows: usize) -> Split {
        let unit = self.inner.len() * self.run;
        let sample = self.sample_bytes();
        if sample == 0 || rows == 0 {
            return Split::default();
        }
        let rows_per = (TASK_BYTES / sample).clamp(1, rows);
        let outer_per = if sample > TASK_BYTES {
            (TASK_BYTES / unit.max(1)).clamp(1, self.outer.len())
        } else {
            self.outer.len()
        };
        Split {
            rows_per,
            outer_per,
            row_tasks: rows.div_ceil(rows_per),
            tasks: rows.div_ceil(rows_per) * self.outer.len().div_ceil(outer_per),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Split {
    rows_per: usize,
    outer_per: usize,
    row_tasks: usize,
    tasks: usize,
}

/// The gather of one batch from every source, shared out as tasks that any thread may
/// claim: the pool's workers when it is handed to them, and whoever waits for it.
pub struct Job {
    sources: Arc<[Source]>,
    samples: Samples,
    buffers: Vec<Arc<Buffer>>,
    splits: Vec<Split>,
    /// Index of each source's first task (and the total at the end).
    first_task: Vec<usize>,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    fork_generation: u64,
    /// The thread blocked in `finish` or `cancel`, woken as tasks complete.
    waiter: OnceLock<Thread>,
}

impl Job {
    /// The gather of `samples` into `buffers` (one per source, each at least `batch_bytes`
    /// long); an error if a source's memory-mapped file shrank below its map.
    ///
    /// # Safety
    /// Every source must describe memory that stays readable until the job is finished
    /// (`finish` or `cancel` returned), and every sample must be below each source's
    /// `samples()`.
    pub unsafe fn new(
        sources: Arc<[Source]>,
        samples: Samples,
        buffers: Vec<Arc<Buffer>>,
    ) -> Result<Self> {
        let n = samples.len();
        if buffers.len() != sources.len()
            || sources
                .iter()
                .zip(&buffers)
                .any(|(s, b)| b.len() < s.batch_bytes(n))
        {
            return Err(Error::Mismatch(
                "gather job: buffers missing or too small".into(),
            ));
        }
        for s in sources.iter() {
            s.check_file()?;
        }
        let splits: Vec<Split> = sources.iter().map(|s| s.split(n)).collect();
        let mut first_task = vec![0];
        for s in &splits {
            first_task.push(first_task[first_task.len() - 1] + s.tasks);
        }
        Ok(Job {
            sources,
            samples,
            buffers,
            splits,
            first_task,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            fork_generation: parallel::fork_generation(),
            waiter: OnceLock::new(),
        })
    }

    fn total(&self) -> usize {
        self.first_task[self.first_task.len() - 1]
    }

    /// Hands the job to pool threads (they stop when no task is left): one fewer than the
    /// pool has, because whoever waits for the job works on it too, and until then that
    /// core is left to the caller's own work.
    pub fn spawn(self: &Arc<Self>) {
        let pool = parallel::pool();
        let helpers = pool.current_num_threads().saturating_sub(1).max(1);
        for _ in 0..helpers.min(self.total()) {
            let job = Arc::clone(self);
            pool.spawn(move || job.help());
        }
    }

    fn run_task(&self, t: usize) {
        let s = self.first_task.partition_point(|&f| f <= t) - 1;
        let (src, split) = (&self.sources[s], self.splits[s]);
        let local = t - self.first_task[s];
        let (oc, rc) = (local / split.row_tasks, local % split.row_tasks);
        let n = self.samples.len();
        let o = oc * split.outer_per..((oc + 1) * split.outer_per).min(src.outer.len());
        let r = rc * split.rows_per..((rc + 1) * split.rows_per).min(n);
        let out = self.buffers[s].as_ptr();
        // SAFETY: the contract of `new`; tasks write disjoint parts of the buffer.
        unsafe {
            match &self.samples {
                Samples::List(list) => src.copy(out, n, o, r, &|i| list[i] as usize),
                Samples::Consecutive { start, .. } => src.copy(out, n, o, r, &|i| start + i),
            }
        }
    }

    /// Hints the CPU to fetch every source's rows of this batch, so that the gather, run
    /// later on this thread, finds them in cache (for batches too small to hand to the
    /// pool): a hint, never a fault.
    pub fn prefetch(&self) {
        for src in self.sources.iter() {
            match &self.samples {
                Samples::List(list) => list.iter().for_each(|&i| src.prefetch_sample(i as usize)),
                Samples::Consecutive { start, len } => {
                    (*start..start + len).for_each(|i| src.prefetch_sample(i));
                }
            }
        }
    }

    /// Claims and runs one task; false when none is left.
    fn help_one(&self) -> bool {
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        if t >= self.total() {
            return false;
        }
        if panic::catch_unwind(AssertUnwindSafe(|| self.run_task(t))).is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Release);
        if let Some(waiter) = self.waiter.get() {
            waiter.unpark();
        }
        true
    }

    /// Runs tasks until none is left to claim.
    pub fn help(&self) {
        while self.help_one() {}
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.total()
    }

    /// Waits until `claimed` tasks are done, working on `meanwhile` (the next batch) if
    /// given: tasks claimed by pool threads finish within one task's time, so it then spins
    /// briefly and sleeps until a task completes. In a forked child the threads that
    /// claimed tasks do not exist: the whole batch is redone here.
    fn wait_for(&self, claimed: usize, meanwhile: Option<&Job>) {
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < claimed {
            if parallel::fork_generation() != self.fork_generation {
                for t in 0..self.total() {
                    self.run_task(t);
                }
                self.done.store(self.total(), Ordering::Release);
                return;
            }
            if meanwhile.is_some_and(Job::help_one) {
                continue;
            }
            if spins < WAIT_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // A job has one owner, which alone waits for it; if another thread registered
            // first, the timeout still bounds the sleep.
            let _ = self.waiter.set(std::thread::current());
            if self.done.load(Ordering::Acquire) < claimed {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
    }

    /// Helps until every task is done and returns the filled buffers; while waiting for
    /// other threads' last tasks, works on `meanwhile`.
    pub fn finish(&self, meanwhile: Option<&Job>) -> Result<Vec<Arc<Buffer>>> {
        self.help();
        self.wait_for(self.total(), meanwhile);
        if self.panicked.load(Ordering::Relaxed) {
            return Err(Error::Internal(
                "a worker thread panicked while gathering a batch".into(),
            ));
        }
        Ok(self.buffers.clone())
    }

    /// Stops handing out tasks and waits for those already running; afterwards no thread
    /// touches the sources or buffers.
    pub fn cancel(&self) {
        let claimed = self
            .next
            .swap(self.total(), Ordering::AcqRel)
            .min(self.total());
        self.wait_for(claimed, None);
    }
}

/// The benchmarks' reference for a plain gather: `threads` OS threads each copy an equal
/// share of `indices`' rows of every array (`(address, bytes per row)`), a batch at a time,
/// into their own reused buffers — no permutation, no prefetch, no allocation per batch.
/// Returns a checksum so that the copies cannot be optimised away.
///
/// # Safety
/// Each address must point to at least `max(indices) + 1` rows of readable bytes.
pub unsafe fn plain_gather(
    arrays: &[(usize, usize)],
    indices: &[u64],
    batch: usize,
    threads: usize,
) -> u64 {
    let batch = batch.max(1);
    let per = indices.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(per)
            .map(|share| {
                scope.spawn(move || {
                    let mut bufs: Vec<Vec<u8>> = arrays
                        .iter()
                        .map(|&(_, row)| vec![0u8; batch * row])
                        .collect();
                    let mut sum = 0u64;
                    for rows in share.chunks(batch) {
                        for (&(base, row), buf) in arrays.iter().zip(&mut bufs) {
                            for (k, &i) in rows.iter().enumerate() {
                                // SAFETY: the caller's contract.
                                unsafe {
                                    ptr::copy_nonoverlapping(
                                        (base + i as usize * row) as *const u8,
                                        buf.as_mut_ptr().add(k * row),
                                        row,
                                    );
                                };
                            }
                            std::hint::black_box(&mut *buf);
                            sum = sum.wrapping_add(buf.first().copied().unwrap_or(0) as u64);
                        }
                    }
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .fold(0, u64::wrapping_add)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_permutation(p: &[u64]) -> bool {
        let mut seen = vec![false; p.len()];
        p.iter()
            .all(|&i| (i as usize) < p.len() && !std::mem::replace(&mut seen[i as usize], true))
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut g = SplitMix64(0);
        assert_eq!(g.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_is_in_range_and_unbiased_for_a_tiny_range() {
        let mut g = SplitMix64(7);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[g.below(3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        // The rejection path: a range just above 2^63 rejects almost half the draws.
        let r = (1u64 << 63) + 1;
        for _ in 0..1000 {
            assert!(g.below(r) < r);
        }
    }

    #[test]
    fn permutations_are_permutations_for_every_mode_and_size() {
        for n in [
            0,
            1,
            2,
            3,
            10,
            1000,
            BUCKET_SAMPLES,
            BUCKET_SAMPLES + 1,
            100_003,
        ] {
            for how in [
                Shuffle::None,
                Shuffle::Full,
                Shuffle::Blocks {
                    block_size: 7,
                    buffer_blocks: 3,
                },
                Shuffle::Blocks {
                    block_size: 1,
                    buffer_blocks: 1,
                },
                Shuffle::Blocks {
                    block_size: 100_000,
                    buffer_blocks: 4,
                },
            ] {
                let p = permutation(n, 42, 3, how).unwrap();
                assert_eq!(p.len(), n);
                assert!(is_permutation(&p), "n={n} {how:?}");
            }
        }
    }

    #[test]
    fn the_permutation_is_pinned() {
        // Changing any of these values changes every user's epochs: it must never happen
        // by accident. (Also computed by the Python transcription in tests/test_batches.py.)
        assert_eq!(
            permutation(10, 0, 0, Shuffle::Full).unwrap(),
            [1, 3, 5, 6, 2, 0, 9, 4, 8, 7]
        );
        let p = permutation(100_000, 123, 4, Shuffle::Full).unwrap();
        assert_eq!(
            (&p[..4], &p[p.len() - 2..]),
            (&[60251, 21960, 88754, 35598][..], &[49818, 8978][..])
        );
        let blocks = Shuffle::Blocks {
            block_size: 4,
            buffer_blocks: 2,
        };
        assert_eq!(
            permutation(30, 5, 2, blocks).unwrap(),
            [
                29, 28, 20, 21, 22, 23, 14, 12, 19, 15, 18, 17, 13, 16, 8, 9, 7, 5, 10, 4, 6, 11,
                3, 2, 24, 1, 26, 27, 25, 0
            ]
        );
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        let n = 3 * BUCKET_SAMPLES + 17;
        let mut results = Vec::new();
        for threads in [1, 2, 5] {
            parallel::set_num_threads(threads).unwrap();
            results.push((
                permutation(n, 9, 1, Shuffle::Full).unwrap(),
                permutation(
                    n,
                    9,
                    1,
                    Shuffle::Blocks {
                        block_size: 50,
                        buffer_blocks: 8,
                    },
                )
                .unwrap(),
            ));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn seeds_and_epochs_give_different_permutations() {
        let a = permutation(1000, 1, 0, Shuffle::Full).unwrap();
        assert_eq!(a, permutation(1000, 1, 0, Shuffle::Full).unwrap());
        assert_ne!(a, permutation(1000, 1, 1, Shuffle::Full).unwrap());
        assert_ne!(a, permutation(1000, 2, 0, Shuffle::Full).unwrap());
    }

    /// All 24 orders of 4 items are equally likely, with buckets of 1 or 2 samples so the
    /// bucket assignment is exercised.
    #[test]
    fn small_bucket_shuffles_are_uniform() {
        for bucket in [1, 2, 4] {
            let mut counts = std::collections::HashMap::new();
            let draws = 24_000;
            for e in 0..draws {
                *counts
                    .entry(shuffle(4, epoch_key(5, e), bucket))
                    .or_insert(0u32) += 1;
            }
            assert_eq!(counts.len(), 24);
            let expected = draws as f64 / 24.0;
            let chi2: f64 = counts
                .values()
                .map(|&c| (c as f64 - expected).powi(2) / expected)
                .sum();
            // 23 degrees of freedom: p = 0.001 at 49.7.
            assert!(chi2 < 49.7, "bucket {bucket}: chi2 {chi2}");
        }
    }

    #[test]
    fn block_shuffle_keeps_each_window_together() {
        let (n, block, window) = (1000, 10, 4);
        let p = permutation(
            n,
            3,
            0,
            Shuffle::Blocks {
                block_size: block,
                buffer_blocks: window,
            },
        )
        .unwrap();
        for w in p.chunks(block * window) {
            let mut blocks: Vec<u64> = w.iter().map(|&i| i / block as u64).collect();
            blocks.sort_unstable();
            blocks.dedup();
            assert_eq!(blocks.len(), window);
        }
        assert_ne!(
            p,
            permutation(
                n,
                3,
                1,
                Shuffle::Blocks {
                    block_size: block,
                    buffer_blocks: window
                }
            )
            .unwrap()
        );
    }

    #[test]
    fn shards_are_equal_disjoint_and_drop_the_remainder() {
        let positions = |i| {
            let p = shard(10, i, 3).unwrap();
            (0..p.len).map(|k| p.at(k)).collect::<Vec<_>>()
        };
        assert_eq!(positions(0), vec![0, 3, 6]);
        assert_eq!(positions(2), vec![2, 5, 8]);
        assert!(shard(10, 3, 3).is_err());
        assert!(shard(10, 0, 0).is_err());
        assert!(shard(2, 0, 3).is_err());
    }

    /// A batch gathered by `Job` from an array of `shape` with `strides` (in items) along
    /// `axis`, compared with an index-by-index reference.
    fn check_gather(shape: &[usize], strides_items: &[isize], axis: usize) {
        let itemsize = 4;
        let span: usize = shape
            .iter()
            .zip(strides_items)
            .map(|(&l, &s)| (l.max(1) - 1) * s.unsigned_abs())
            .sum::<usize>()
            + 1;
        let data: Vec<u32> = (0..span as u32).collect();
        // Negative strides start from the far end.
        let origin: isize = shape
            .iter()
            .zip(strides_items)
            .filter(|(_, &s)| s < 0)
            .map(|(&l, &s)| (l as isize - 1) * -s)
            .sum();
        let base = data.as_ptr() as usize + origin as usize * itemsize;
        let strides: Vec<isize> = strides_items
            .iter()
            .map(|s| s * itemsize as isize)
            .collect();
        let src = Source::new(base, shape, &strides, itemsize, axis).unwrap();
        let m = shape[axis];
        let order = Order::new(m, 11, 0, Shuffle::Full, (0, 1)).unwrap();
        let rows = 1..m;
        let n = rows.len();
        let buf = Arc::new(Buffer::new(src.batch_bytes(n)).unwrap());
        let sources: Arc<[Source]> = Arc::from(vec![src.clone()]);
        let job = Arc::new(unsafe {
            Job::new(
                sources,
                order.batch(rows.clone()).unwrap(),
                vec![buf.clone()],
            )
            .unwrap()
        });
        job.spawn();
        job.finish(None).unwrap();
        #[allow(clippy::cast_ptr_alignment, reason = "the buffer is 64-byte aligned")]
        let got = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u32, buf.len() / 4) };
        // Reference: walk the batch in C order.
        let mut out_shape = shape.to_vec();
        out_shape[axis] = n;
        let total: usize = out_shape.iter().product();
        let mut expected = Vec::with_capacity(total);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..total {
            let mut off = origin;
            for d in 0..shape.len() {
                let i = if d == axis {
                    order.get(rows.start + idx[d])
                } else {
                    idx[d]
                };
                off += i as isize * strides_items[d];
            }
            expected.push(data[off as usize]);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < out_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        assert_eq!(
            got,
            &expected[..],
            "shape {shape:?} strides {strides_items:?} axis {axis}"
        );
        // The same batch copied on this thread (the epoch loop's path for small batches).
        let here = Buffer::new(src.batch_bytes(n)).unwrap();
        let samples = order.slice(rows).unwrap();
        // SAFETY: `data` is alive, the samples are below `m`, the buffer holds the batch.
        unsafe { src.gather(here.as_ptr(), samples) }.unwrap();
        #[allow(clippy::cast_ptr_alignment, reason = "the buffer is 64-byte aligned")]
        let here = unsafe { std::slice::from_raw_parts(here.as_ptr() as *const u32, got.len()) };
        assert_eq!(
            here,
            &expected[..],
            "Source::gather: shape {shape:?} strides {strides_items:?} axis {axis}"
        );
    }

    #[test]
    fn gathers_any_layout_along_any_axis() {
        check_gather(&[50, 3], &[3, 1], 0); // C order, rows
        check_gather(&[3, 50], &[50, 1], 1); // C order, columns
        check_gather(&[3, 50], &[1, 3], 1); // F order, columns
        check_gather(&[50, 3], &[1, 50], 0); // F order, rows
        check_gather(&[4, 20, 3, 2], &[120, 6, 2, 1], 1); // 4-d C order, middle axis
        check_gather(&[4, 20, 3, 2], &[1, 4, 80, 240], 1); // 4-d F order
        check_gather(&[20, 3], &[-3, 1], 0); // reversed rows
        check_gather(&[20, 3], &[6, 2], 0); // strided view
        check_gather(&[20, 0, 3], &[0, 3, 1], 0); // empty sample
        check_gather(&[20], &[1], 0); // 1-d
        check_gather(&[50, 2], &[2, 1], 0); // rows of 8 bytes
        check_gather(&[50, 4], &[4, 1], 0); // rows of 16 bytes
        check_gather(&[20, 2], &[-2, 1], 0); // reversed rows of 8 bytes
        check_gather(&[3000, 40], &[40, 1], 0); // many tasks
        check_gather(&[2, 3000, 40], &[40, 80, 1], 1); // many tasks, outer dim
        check_gather(&[3, 10, 4000], &[40000, 4000, 1], 1); // samples split across tasks
    }

    #[test]
    fn a_cancelled_job_stops_writing_and_a_finished_one_reports_done() {
        let m = 200_000;
        let data: Vec<u8> = (0..m * 64).map(|i| (i % 251) as u8).collect();
        let src = Source::new(data.as_ptr() as usize, &[m, 64], &[64, 1], 1, 0).unwrap();
        let order = Order::new(m, 1, 0, Shuffle::Full, (0, 1)).unwrap();
        let sources: Arc<[Source]> = Arc::from(vec![src.clone()]);
        let new_job = |buf: &Arc<Buffer>| {
            // SAFETY: `data` outlives the jobs; the order is a permutation of 0..m.
            Arc::new(unsafe {
                Job::new(
                    sources.clone(),
                    order.batch(0..m).unwrap(),
                    vec![buf.clone()],
                )
                .unwrap()
            })
        };
        let buf = Arc::new(Buffer::new(src.batch_bytes(m)).unwrap());
        // SAFETY: the buffer holds this many bytes and no job uses it yet.
        unsafe { ptr::write_bytes(buf.as_ptr(), 0, buf.len()) };
        let job = new_job(&buf);
        job.spawn();
        job.cancel();
        // SAFETY: initialised above; after `cancel` no thread writes the buffer.
        let snapshot =
            |b: &Buffer| unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }.to_vec();
        let before = snapshot(&buf);
        std::thread::sleep(Duration::from_millis(20));
        assert!(before == snapshot(&buf), "a cancelled job kept writing");

        let job = new_job(&buf);
        assert!(!job.is_done());
        job.spawn();
        job.finish(None).unwrap();
        assert!(job.is_done());
        let got = snapshot(&buf);
        for (r, row) in got.chunks(64).enumerate() {
            let i = order.get(r);
            assert_eq!(row, &data[i * 64..(i + 1) * 64]);
        }
    }

    #[test]
    fn num_batches_counts_a_last_smaller_batch_unless_dropped() {
        let order = Order::new(10, 0, 0, Shuffle::Full, (0, 1)).unwrap();
        let counts: Vec<(usize, usize)> = [1, 3, 5, 10, 20]
            .iter()
            .map(|&b| (order.num_batches(b, false), order.num_batches(b, true)))
            .collect();
        assert_eq!(counts, [(10, 10), (4, 3), (2, 2), (1, 1), (1, 0)]);
    }

    #[test]
    fn plain_gather_copies_every_row() {
        let data: Vec<u8> = (0..=255).collect();
        let idx: Vec<u64> = (0..256).rev().collect();
        let sum = unsafe { plain_gather(&[(data.as_ptr() as usize, 1)], &idx, 16, 2) };
        // Each thread adds the first byte of each of its batches: 255, 239, ..., 15.
        assert_eq!(sum, (0..16).map(|k| 255 - 16 * k).sum::<u64>());
    }

    #[test]
    fn buffers_are_aligned_and_empty_ones_do_not_allocate() {
        assert_eq!(Buffer::new(0).unwrap().as_ptr() as usize % BUFFER_ALIGN, 0);
        assert_eq!(
            Buffer::new(100).unwrap().as_ptr() as usize % BUFFER_ALIGN,
            0
        );
        assert_eq!(
            Buffer::new(usize::MAX - 10).err(),
            Some(Error::OutOfMemory {
                what: "a batch".into(),
                bytes: usize::MAX - 10
            })
        );
    }
}
