//! The gather: the chosen samples of every source copied into contiguous batch buffers,
//! in tasks on the thread pool, with prefetching of the rows ahead.

use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::runtime::parallel;

use super::buffer::Buffer;
use super::orders::Samples;
use super::source::Source;

/// Spins of a waiting thread before it sleeps.
const WAIT_SPINS: u32 = 2000;

/// Samples ahead of the one being copied whose memory the gather asks the CPU to load:
/// reading random samples is bound by memory latency, and requests in flight hide it.
pub(super) const PREFETCH_AHEAD: usize = 8;

/// Cache lines of a sample prefetched; the hardware streams the rest of a long run.
#[cfg(target_arch = "x86_64")]
const PREFETCH_LINES: usize = 4;

#[inline(always)]
pub(super) fn prefetch(p: *const u8, bytes: usize) {
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

#[derive(Clone, Copy, Default)]
pub(super) struct Split {
    pub(super) rows_per: usize,
    pub(super) outer_per: usize,
    pub(super) row_tasks: usize,
    pub(super) tasks: usize,
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
