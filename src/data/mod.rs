//! The data path: the permutation of each epoch ([`permutation`]), the order each shard
//! visits ([`orders`]), the arrays batches are read from ([`source`]), the buffers they are
//! gathered into ([`buffer`]), the gather itself ([`gather`]), and the column-to-row
//! interleave of decoded Parquet columns ([`interleave`]).
//!
//! A shuffled mini-batch epoch is: the epoch's permutation, the shard's positions of it,
//! cut into batches, and each batch's samples copied from every source into contiguous
//! buffers on the thread pool.

pub mod buffer;
pub mod gather;
pub mod interleave;
pub mod orders;
pub mod permutation;
pub mod source;
#[cfg(test)]
mod tests;

pub use buffer::Buffer;
pub use gather::Job;
pub use orders::{Order, Samples};
pub use permutation::Shuffle;
pub use source::{MappedFile, Source};
