//! ferroptim: the optimization algorithms of deep learning for NumPy arrays.
//!
//! The core — kernels, state, threading, SIMD dispatch — is plain Rust without pyo3, tested
//! by `cargo test` and timed by `cargo bench`. The Python bindings live in `py`, behind the
//! `python` feature that maturin enables.

pub mod bandwidth;
pub mod batches;
pub mod bf16_kernels;
pub mod epoch_orders;
pub mod error;
pub mod ewa;
pub mod float;
pub mod half;
pub mod hyper;
pub mod kernels;
pub mod mixed;
pub mod nn;
pub mod ops;
pub mod optimizer;
pub mod parallel;
pub mod simd;
pub mod subnormal;

pub use error::{Error, Result};
pub use float::{Dtype, Float};
pub use hyper::{Algorithm, Hyper};
pub use optimizer::{Optimizer, State, Tensor, TensorState};

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod test_util;
