//! The one error type of the core; the bindings turn it into Python exceptions in one place.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A hyper-parameter outside its valid range (a `ValueError` in Python).
    Hyper {
        group: usize,
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Tensors that do not fit the optimizer: wrong count, dtype or length (a programming
    /// error of the caller of the core; the bindings check these before calling).
    Mismatch(String),
    /// An argument outside its valid range, outside any param group (a `ValueError` in
    /// Python); the message names the argument.
    Invalid(String),
    /// An allocation of `bytes` bytes for `what` failed (a `MemoryError` in Python).
    OutOfMemory { what: String, bytes: usize },
    /// A bug: a worker thread panicked (a `RuntimeError` in Python).
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Hyper {
                group,
                name,
                value,
                expected,
            } => write!(
                f,
                "invalid {name}={value} in param_groups[{group}]: expected {expected}"
            ),
            Error::Mismatch(msg) | Error::Invalid(msg) | Error::Internal(msg) => f.write_str(msg),
            Error::OutOfMemory { what, bytes } => {
                write!(f, "could not allocate {bytes} bytes for {what}")
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// `n` copies of `value` in a new vector, or `OutOfMemory` naming `what` (for every size a
/// user controls: a failed infallible allocation aborts the process).
pub fn try_filled<T: Clone>(n: usize, value: T, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_grow(&mut v, n, value, what)?;
    Ok(v)
}

/// `map` of every element of `src` in a new vector, or `OutOfMemory` naming `what`.
pub fn try_map<A: Copy, B>(
    src: &[A],
    map: impl Fn(A) -> B,
    what: impl FnOnce() -> String,
) -> Result<Vec<B>> {
    let mut v = Vec::new();
    v.try_reserve_exact(src.len())
        .map_err(|_| Error::OutOfMemory {
            what: what(),
            bytes: src.len().saturating_mul(std::mem::size_of::<B>()),
        })?;
    v.extend(src.iter().map(|&x| map(x)));
    Ok(v)
}

/// Resizes `v` to `n` elements (new ones `value`), or `OutOfMemory` naming `what`.
pub fn try_grow<T: Clone>(
    v: &mut Vec<T>,
    n: usize,
    value: T,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if n > v.len() {
        v.try_reserve_exact(n - v.len())
            .map_err(|_| Error::OutOfMemory {
                what: what(),
                bytes: n.saturating_mul(std::mem::size_of::<T>()),
            })?;
    }
    v.resize(n, value);
    Ok(())
}
