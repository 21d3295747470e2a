//! ferroptim: the optimization algorithms of deep learning for NumPy arrays.
//!
//! The core — kernels, state, threading, SIMD dispatch — is plain Rust without pyo3, tested
//! by `cargo test` and timed by `cargo bench`. The Python bindings live in `py`, behind the
//! `python` feature that maturin enables.

// Without the bindings nearly every core item would look unused: the dead-code check is the
// one `make lint` runs, with `--features python`.
#![cfg_attr(not(feature = "python"), allow(dead_code, unused_imports))]

#[cfg(feature = "bench-refs")]
mod bandwidth;
mod data;
mod error;
mod nn;
mod numerics;
mod optim;
mod runtime;

// What the benches and the Rust integration tests use; the rest is reached through `py`.
#[cfg(feature = "bench-refs")]
pub use bandwidth::{bytes_per_element, stream};
pub use data::{Buffer, Job, Order, Samples, Shuffle, Source};
pub use error::{Error, Result};
pub use nn::gemm_bf16::{matmul_bf16, MatBf16};
pub use nn::{Activation, BatchNorm, Inputs, Mlp, Output, Stats, Targets, Workspace};
pub use numerics::float::{Dtype, Float};
pub use numerics::half::{Bf16, Stored, F16};
pub use numerics::mixed::Direct;
pub use optim::bf16::update as update_bf16;
// Every optimizer's hyper-parameter struct: a new one needs no line here.
pub use optim::hyper::params::*;
pub use optim::hyper::{Algorithm, Hyper};
pub use optim::kernels::{update, Kernel};
pub use optim::optimizer::{Optimizer, State, Tensor, TensorState};
pub use runtime::simd::{self, Isa, Level};

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod test_util;
