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
    /// An allocation of this many bytes failed (a `MemoryError` in Python).
    OutOfMemory(usize),
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
            Error::OutOfMemory(bytes) => write!(f, "could not allocate {bytes} bytes"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
