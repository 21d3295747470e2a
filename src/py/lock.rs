//! A per-object lock for objects Python threads share: a second thread waits (with the
//! interpreter released, so the holder can finish) instead of failing with PyO3's "Already
//! mutably borrowed"; a call back into the object from the thread holding it (say from an
//! lr schedule) gets a clear error instead of a deadlock.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

fn this_thread() -> u64 {
    THREAD.with(|t| *t)
}

pub struct Locked<T> {
    inner: Mutex<T>,
    /// The thread holding `inner` (0: none).
    owner: AtomicU64,
}

pub struct Guard<'a, T> {
    guard: MutexGuard<'a, T>,
    owner: &'a AtomicU64,
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A guard carried out of `Python::detach`, whose closure runs on the calling thread.
struct SameThread<G>(G);
// SAFETY: `detach` runs its closure on the current thread and returns to it, so the guard
// is locked and unlocked by one thread.
unsafe impl<G> Send for SameThread<G> {}

impl<T: Send> Locked<T> {
    pub fn new(value: T) -> Self {
        Locked {
            inner: Mutex::new(value),
            owner: AtomicU64::new(0),
        }
    }

    /// Takes the lock, waiting for another thread to let go of it; `what` names the object
    /// in the error a re-entrant call gets.
    pub fn lock<'a>(&'a self, py: Python<'_>, what: &str) -> PyResult<Guard<'a, T>> {
        let me = this_thread();
        let guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.owner.load(Ordering::Acquire) == me {
                    return Err(PyRuntimeError::new_err(format!(
                        "{what} is in use by this same thread: it was called back from inside \
                         its own call (e.g. from an lr schedule or a __hash__/__eq__); call it \
                         before or after"
                    )));
                }
                // Wait without the interpreter: the holder may need it to finish.
                py.detach(|| SameThread(self.inner.lock().unwrap_or_else(PoisonError::into_inner)))
                    .0
            }
        };
        self.owner.store(me, Ordering::Release);
        Ok(Guard {
            guard,
            owner: &self.owner,
        })
    }
}
