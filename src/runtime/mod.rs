//! Where the work runs: the thread pool ([`parallel`]) and the SIMD level each kernel is
//! compiled for and dispatched to ([`simd`]).

pub mod parallel;
pub mod simd;
