//! Fully-connected networks: forward pass, cost and backward pass of the lecture's networks,
//! and the epoch loop that trains them with an optimizer — all in Rust.
//!
//! Layout (examples are rows, as in the demo's `net.py` and scikit-learn's `coefs_`):
//! `X (m, n_0)`, `W_l (n_{l-1}, n_l)`, `b_l (n_l,)`, `Z_l = A_{l-1} W_l + b_l`,
//! `A_l = g(Z_l)` for hidden layers and the output activation for the last one.
//! Parameters are passed in the order `W1, b1, W2, b2, ...`.
//!
//! Matrix products go through faer (runtime-dispatched AVX2/AVX-512 kernels), large ones
//! cut into tiles of C by shape alone and spread over the pool; bias and activation are
//! one pass over each layer's output, softmax and cross-entropy one pass over the last.
//! Batches larger than a cache-sized block of rows — and mid-sized ones, in two — are
//! computed block by block, the blocks side by side on the pool, each block's forward and
//! backward passes in a block-sized [`Workspace`] buffer, the blocks' gradients summed in
//! an order fixed by the shape ([`Mlp::blocks`]): memory is bounded by the block, never
//! by the batch, and results are the same bits at every thread count. Batch normalization
//! in training needs the whole batch's statistics: there the blocks run layer by layer,
//! each block's buffers kept until the backward pass (`synced.rs`).

mod block;
mod epoch;
mod float;
mod gemm;
pub(crate) mod gemm_bf16;
mod math;
mod model;
mod norm;
mod passes;
mod pointwise;
mod synced;
#[cfg(test)]
mod tests;
mod workspace;

pub use epoch::{train_epoch, EpochData, StepOutcome, Timing};
pub use float::NnFloat;
pub(crate) use gemm::matmul;
pub use model::{Activation, BatchNorm, DropKey, Inputs, Mlp, Output, Stats, Targets, LEAKY_SLOPE};
pub use workspace::Workspace;
