//! The dedicated thread pool for large steps, and [`for_each_index`], the one way work is
//! split across it.
//!
//! Sized by `set_num_threads`, else `FERROPTIM_NUM_THREADS`, else the number of CPUs. A
//! forked child cannot use its parent's worker threads (they do not exist after `fork`), so
//! a `pthread_atfork` handler bumps a generation counter and the child builds a fresh pool
//! on first use instead of deadlocking. The locks other threads may hold at the moment of a
//! `fork` (the pool's own, which workers take to size their work, and [`one_at_a_time`]'s)
//! are taken by the forking thread before it forks and released after it on both sides, so
//! the child never inherits one locked by a thread it does not have.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

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

/// Held while a step writes memory that two threads could hand it at once (the GIL
/// released): such steps take turns instead of racing.
static STEP: Mutex<()> = Mutex::new(());

/// Runs `f` holding the step lock: calls from different threads take turns.
pub fn one_at_a_time<R>(f: impl FnOnce() -> R) -> R {
    register_fork_handlers();
    let _guard = STEP.lock().unwrap_or_else(PoisonError::into_inner);
    f()
}

type ForkGuards = (MutexGuard<'static, ()>, MutexGuard<'static, Slot>);

/// The locks the forking thread holds from `before_fork` to the handler after it.
struct HeldAcrossFork(UnsafeCell<Option<ForkGuards>>);

// SAFETY: only the forking thread touches it, between its `before_fork` and the handler
// after the fork, and it holds both locks then: a second thread forking at the same time
// waits in `before_fork` for the first to release them.
unsafe impl Sync for HeldAcrossFork {}

static HELD_ACROSS_FORK: HeldAcrossFork = HeldAcrossFork(UnsafeCell::new(None));

/// Waits for any thread holding the step or pool lock to release it (both are held briefly
/// and never while waiting for the forking thread), then holds them through the fork.
extern "C" fn before_fork() {
    let guards = (
        STEP.lock().unwrap_or_else(PoisonError::into_inner),
        POOL.lock().unwrap_or_else(PoisonError::into_inner),
    );
    // SAFETY: see `HeldAcrossFork`.
    unsafe { *HELD_ACROSS_FORK.0.get() = Some(guards) };
}

/// Releases the locks `before_fork` took (in the child it is the same thread, now alone).
fn release_after_fork() {
    // SAFETY: see `HeldAcrossFork`.
    drop(unsafe { (*HELD_ACROSS_FORK.0.get()).take() });
}

extern "C" fn after_fork_in_parent() {
    release_after_fork();
}

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    release_after_fork();
}

/// Registers the fork handlers, once per process, before the first lock is taken.
fn register_fork_handlers() {
    ATFORK.call_once(|| {
        // SAFETY: the handlers take and release process-wide locks and bump an atomic; they
        // never unwind (poisoned locks are recovered).
        #[cfg(unix)]
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            );
        }
    });
}

/// Thread counts above this many per CPU are refused (`set_num_threads`) or clamped
/// (`FERROPTIM_NUM_THREADS`): thousands of threads take minutes to start and gain nothing.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// The CPUs this process may run on (affinity and cgroup quota included).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The largest thread count accepted.
pub fn max_threads() -> usize {
    MAX_THREADS_PER_CPU * cpus()
}

/// The number of processes of this job on this host, from the variables MPI launchers set
/// (MPICH/Hydra, Open MPI, MVAPICH, Slurm), if any.
fn local_ranks() -> Option<usize> {
    [
        "MPI_LOCALNRANKS",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MV2_COMM_WORLD_LOCAL_SIZE",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
    .filter(|&n| n > 1)
}

/// Whether this process may run on every online CPU (no launcher pinned it to a subset).
fn unpinned() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) != 0
            {
                return true;
            }
            let online = libc::sysconf(libc::_SC_NPROCESSORS_ONLN);
            online <= 0 || libc::CPU_COUNT(&set) as libc::c_long >= online
        }
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// The default thread count without `FERROPTIM_NUM_THREADS`: every CPU, shared among the
/// ranks of an MPI job on this host unless the launcher already pinned each to its cores.
pub fn default_threads() -> usize {
    let n = cpus();
    match local_ranks() {
        Some(ranks) if unpinned() => (n / ranks).max(1),
        _ => n,
    }
}

/// What `FERROPTIM_NUM_THREADS` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvThreads {
    /// Unset: the default.
    Unset,
    Threads(usize),
    /// More than [`max_threads`]: that many are used instead.
    Clamped {
        asked: usize,
        used: usize,
    },
    /// Not an integer >= 1: the default is used.
    Invalid(String),
}

pub fn env_threads() -> EnvThreads {
    let Ok(v) = std::env::var("FERROPTIM_NUM_THREADS") else {
        return EnvThreads::Unset;
    };
    match v.trim().parse::<usize>() {
        Ok(0) | Err(_) => EnvThreads::Invalid(v),
        Ok(n) if n > max_threads() => EnvThreads::Clamped {
            asked: n,
            used: max_threads(),
        },
        Ok(n) => EnvThreads::Threads(n),
    }
}

fn initial_threads() -> usize {
    match env_threads() {
        EnvThreads::Threads(n) => n,
        EnvThreads::Clamped { used, .. } => used,
        EnvThreads::Unset | EnvThreads::Invalid(_) => default_threads(),
    }
}

fn lock() -> MutexGuard<'static, Slot> {
    register_fork_handlers();
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts the forks this process descends from: work handed to the pool before a fork never
/// finishes in the child, so waiters compare it with the value they saw when they handed it.
pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

/// The pool, built on first use (and again in a forked child).
///
/// # Panics
/// Only if not even a one-thread pool can be built (the system cannot start a thread).
pub fn pool() -> Arc<ThreadPool> {
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
            initial_threads()
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

/// Sets the number of worker threads for later steps (`1 <= n <= max_threads()`).
pub fn set_num_threads(n: usize) -> Result<(), String> {
    if n == 0 || n > max_threads() {
        return Err(format!(
            "the number of threads must be at least 1 and at most {} ({MAX_THREADS_PER_CPU} per \
             CPU of the {} this process may use), got {n}",
            max_threads(),
            cpus()
        ));
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

/// The state shared between the caller of [`for_each_index`] and the workers helping it.
struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    n: usize,
    /// The caller's closure with its lifetime erased; see the safety argument in
    /// [`for_each_index`].
    work: *const (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `work` points to a `Sync` closure, only called while the caller keeps it alive.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims indices until none is left, running each claimed one exactly once.
    fn drain(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.n {
                return;
            }
            // SAFETY: `i < n` was claimed before `done` reached `n`, so the caller of
            // `for_each_index` is still waiting and the closure is alive.
            let work = unsafe { &*self.work };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| work(i))) {
                self.panic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Runs `work(i)` once for every `i` in `0..n`, on the calling thread and on as many pool
/// workers as join while work is left.
///
/// The caller starts at once and pool workers claim indices as they wake up, so a step is
/// never slower than running it alone: waking a sleeping worker can take tens of
/// microseconds (more on virtual machines), and a fork-join that waits for workers to start
/// would pay that on every mid-sized step. `work` must not itself call `for_each_index`.
pub fn for_each_index(n: usize, work: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    // The caller is one of the threads: one more would share a core with it (and with a
    // worker that claimed a chunk, which the caller then waits for).
    let helpers = (pool.current_num_threads() - 1).min(n.saturating_sub(1));
    if helpers == 0 {
        (0..n).for_each(work);
        return;
    }
    // SAFETY (of the erased lifetime): a worker calls `work` only for an index `i < n` it
    // claimed, and this function returns only after `done == n`, i.e. after every claimed
    // call has returned. A worker starting later claims `i >= n` and never touches `work`.
    let work: *const (dyn Fn(usize) + Sync + '_) = work;
    #[allow(
        clippy::transmute_ptr_to_ptr,
        reason = "an `as` cast cannot extend a trait object's lifetime"
    )]
    let work = unsafe {
        std::mem::transmute::<
            *const (dyn Fn(usize) + Sync + '_),
            *const (dyn Fn(usize) + Sync + 'static),
        >(work)
    };
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        n,
        work,
        panic: Mutex::new(None),
    });
    for _ in 0..helpers {
        let shared = Arc::clone(&shared);
        pool.spawn(move || shared.drain());
    }
    shared.drain();
    // What is left are chunks workers are finishing now: a short wait.
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < n {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    let panic = shared
        .panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(p) = panic {
        resume_unwind(p);
    }
}

/// Keeps one pool worker awake until the returned guard drops: it runs the pool's jobs as
/// they arrive and spins between them, so work handed to the pool by [`for_each_index`]
/// starts at once instead of after a sleeping worker wakes (tens of microseconds on a
/// virtual machine). For loops that hand the pool short work thousands of times a second;
/// it holds a core while it lives. `None` on a one-thread pool.
#[must_use = "the worker stays awake only while the guard lives"]
pub fn stay_awake() -> Option<Awake> {
    let pool = pool();
    if pool.current_num_threads() < 2 {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    pool.spawn(move || {
        while !flag.load(Ordering::Acquire) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                // Pauses between looks at the queues: less traffic on their cache lines
                // and less of a sibling hyper-thread's core taken, for a microsecond or
                // two of delay.
                for _ in 0..AWAKE_PAUSES {
                    std::hint::spin_loop();
                }
            }
        }
    });
    Some(Awake { stop })
}

/// `pause` instructions between an awake worker's looks for work (each 10-140 cycles,
/// by CPU).
const AWAKE_PAUSES: usize = 32;

/// The guard of [`stay_awake`]: the worker goes back to the pool when it drops.
#[derive(Debug)]
pub struct Awake {
    stop: Arc<AtomicBool>,
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Whether `total` elements are worth sharing with the pool's workers.
pub fn worth_threads(total: usize) -> bool {
    total >= PARALLEL_MIN_ELEMENTS && pool().current_num_threads() > 1
}

/// Consumes every item with `f`: on the calling thread alone, or with [`for_each_index`]
/// when `threaded`.
pub fn run_each<I: Send>(items: Vec<I>, threaded: bool, f: impl Fn(I) + Sync) {
    if !threaded || items.len() < 2 {
        items.into_iter().for_each(f);
        return;
    }
    // Each index is claimed by exactly one thread; the mutex only makes that visible to
    // the type system.
    let items: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    for_each_index(items.len(), &|i| {
        let item = items[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(item) = item {
            f(item);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_far_beyond_the_cpus_are_refused() {
        let err = set_num_threads(max_threads() + 1).unwrap_err();
        assert!(err.contains("at least 1 and at most"), "{err}");
        assert!(set_num_threads(0).is_err());
        assert!(max_threads() >= cpus() && default_threads() >= 1);
    }

    #[test]
    fn for_each_index_runs_every_index_exactly_once() {
        for n in [0, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each_index(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller_after_all_work_stopped() {
        let ran = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            for_each_index(64, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(i != 5, "boom");
            });
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn an_awake_worker_runs_pool_work_and_goes_back_when_its_guard_drops() {
        let _threads = crate::test_util::thread_count_lock();
        set_num_threads(2).unwrap();
        // Other tests resize the global pool meanwhile: hold on to this one.
        let pool = pool();
        let awake = stay_awake().expect("two threads");
        let threads = Mutex::new(Vec::new());
        for_each_index(2, &|_| {
            threads.lock().unwrap().push(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
        let threads = threads.into_inner().unwrap();
        assert_ne!(threads[0], threads[1], "the other half ran on a worker");
        drop(awake);
        // Every worker takes a job of its own: the awake one has left its loop.
        assert_eq!(pool.broadcast(|_| 1).len(), pool.current_num_threads());
    }

    #[test]
    fn set_num_threads_resizes_the_pool_and_rejects_zero() {
        let _threads = crate::test_util::thread_count_lock();
        assert!(set_num_threads(0).is_err());
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        set_num_threads(1).unwrap();
        assert_eq!(num_threads(), 1);
    }

    /// Forks while another thread keeps taking the pool's lock (as a worker sizing its
    /// work does) and the step lock: every child must get both locks and a pool of its own.
    #[cfg(unix)]
    #[test]
    fn a_child_forked_while_other_threads_take_the_locks_does_not_deadlock() {
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..2)
            .map(|k| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if k == 0 {
                            let _ = num_threads();
                        } else {
                            one_at_a_time(std::hint::spin_loop);
                        }
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            // SAFETY: the child only takes the two locks, sizes its pool and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = one_at_a_time(|| num_threads() >= 1);
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(i32::from(!ok)) };
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut status = 0;
            loop {
                // SAFETY: waits for our own child.
                let done = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
                if done == pid {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: kills our own hung child.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &raw mut status, 0);
                    }
                    stop.store(true, Ordering::Relaxed);
                    panic!("the forked child deadlocked");
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            t.join().unwrap();
        }
    }
}
