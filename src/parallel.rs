//! The dedicated thread pool for large steps.
//!
//! Sized by `set_num_threads`, else `FERROPTIM_NUM_THREADS`, else the number of CPUs. A
//! forked child cannot use its parent's worker threads (they do not exist after `fork`), so
//! a `pthread_atfork` handler bumps a generation counter and the child builds a fresh pool
//! on first use instead of deadlocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Work below this many elements runs on the calling thread: waking workers costs more.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Elements per task when a step is split across threads.
pub const CHUNK_ELEMENTS: usize = 1 << 15;

struct Slot {
    pool: Option<Arc<ThreadPool>>,
    /// Threads requested by `set_num_threads`; 0 means the default.
    requested: usize,
    fork_generation: u64,
}

static POOL: Mutex<Slot> = Mutex::new(Slot {
    pool: None,
    requested: 0,
    fork_generation: 0,
});
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn default_threads() -> usize {
    std::env::var("FERROPTIM_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn lock() -> std::sync::MutexGuard<'static, Slot> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts the forks this process descends from: work handed to the pool before a fork never
/// finishes in the child, so waiters compare it with the value they saw when they handed it.
pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

/// The pool, built on first use (and again in a forked child).
pub fn pool() -> Arc<ThreadPool> {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic (async-signal-safe).
        #[cfg(unix)]
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    let mut slot = lock();
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    if slot.fork_generation != generation {
        // The parent's workers are gone in this process; dropping their pool could block.
        std::mem::forget(slot.pool.take());
        slot.fork_generation = generation;
    }
    if slot.pool.is_none() {
        let n = if slot.requested > 0 {
            slot.requested
        } else {
            default_threads()
        };
        let pool = ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("ferroptim-{i}"))
            .build()
            .or_else(|_| ThreadPoolBuilder::new().num_threads(1).build())
            .expect("a one-thread pool can always be built");
        slot.pool = Some(Arc::new(pool));
    }
    slot.pool.clone().expect("set above")
}

/// Sets the number of worker threads for later steps (`n >= 1`).
pub fn set_num_threads(n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("the number of threads must be at least 1".into());
    }
    let mut slot = lock();
    slot.requested = n;
    slot.pool = None;
    Ok(())
}

/// The number of worker threads later steps use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_num_threads_resizes_the_pool_and_rejects_zero() {
        assert!(set_num_threads(0).is_err());
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        set_num_threads(1).unwrap();
        assert_eq!(num_threads(), 1);
    }
}
