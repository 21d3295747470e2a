//! The optimizers: hyper-parameters and their ranges ([`hyper`]), the fused update kernels
//! ([`kernels`], with their bfloat16 ([`bf16`]) and subnormal-state ([`subnormal`]) paths), the
//! multi-tensor apply that owns the state ([`optimizer`]), the EWA they are built on ([`ewa`])
//! and the element-wise operations over lists of tensors ([`ops`]: norms, clipping, scaling).
//! The optimizers whose state is not per-element slots step one tensor at a time outside the
//! engine: [`lbfgs`], [`muon`], [`adafactor`] (factored second moments) and [`schedulefree`].

pub mod adafactor;
pub mod bf16;
pub mod ewa;
pub mod hyper;
pub mod kernels;
pub mod lbfgs;
pub mod muon;
pub mod ops;
pub mod optimizer;
pub mod schedulefree;
pub mod subnormal;
