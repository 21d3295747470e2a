//! Helpers shared by the unit tests.

use std::sync::{Mutex, MutexGuard, PoisonError};

static THREAD_COUNT: Mutex<()> = Mutex::new(());

/// Held by every test that changes the global thread count (`parallel::set_num_threads`)
/// for as long as it relies on the count it set: `cargo test` runs tests in parallel, and
/// without it one test resizes the pool under another. A test that failed while holding
/// it does not fail the others (the poison is ignored).
pub fn thread_count_lock() -> MutexGuard<'static, ()> {
    THREAD_COUNT.lock().unwrap_or_else(PoisonError::into_inner)
}
