//! ferroptim: the optimization algorithms of deep learning for NumPy arrays.
//!
//! The core — kernels, state, threading, SIMD dispatch — is plain Rust without pyo3, tested
//! by `cargo test` and timed by `cargo bench`. The Python bindings live in `py`, behind the
//! `python` feature that maturin enables.

pub mod bandwidth;
pub mod data;
pub mod error;
pub mod nn;
pub mod numerics;
pub mod optim;
pub mod runtime;

pub use error::{Error, Result};
pub use numerics::float::{Dtype, Float};
pub use optim::hyper::{Algorithm, Hyper};
pub use optim::optimizer::{Optimizer, State, Tensor, TensorState};

#[cfg(feature = "python")]
mod py;
