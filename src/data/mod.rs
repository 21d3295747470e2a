//! The data path: epoch orders (permutations, block shuffles, MPI shards: [`orders`]) and the
//! mini-batch machinery that gathers them from arrays and memory maps ([`batches`]).

pub mod batches;
pub mod orders;
