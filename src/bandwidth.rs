//! The memory-bandwidth bound of an update kernel, as a reference for benchmarks.
//!
//! An update step on a large tensor is limited by the bytes it moves: Adam reads the
//! parameter, gradient and two moments and writes three of them back (28 bytes per float32
//! element). [`stream`] moves exactly the same bytes — reads every array, writes back the
//! read-write ones — with a single addition per element, chunked and threaded the same way
//! as the optimizer, so `time(stream) / time(kernel)` is the fraction of the attainable
//! bandwidth a kernel reaches.

use crate::float::Float;
use crate::parallel::{self, CHUNK_ELEMENTS};

/// Bytes an update moves per element of type `T` with `read_write` arrays read and written
/// back and `read_only` arrays only read.
pub fn bytes_per_element<T>(read_write: usize, read_only: usize) -> usize {
    (2 * read_write + read_only) * std::mem::size_of::<T>()
}

/// Adds `src` into each `dst` array in place: `dst[k][i] += src[i]`.
///
/// Work is cut into the optimizer's chunks; within a chunk each destination is one
/// vectorized pass, so `src` is read from memory once and from cache after that.
/// Panics if the lengths differ.
pub fn stream<T: Float>(dst: &mut [&mut [T]], src: &[T]) {
    let n = src.len();
    assert!(dst.iter().all(|d| d.len() == n), "arrays differ in length");
    let mut chunks: Vec<(&[T], Vec<&mut [T]>)> = src
        .chunks(CHUNK_ELEMENTS)
        .map(|s| (s, Vec::with_capacity(dst.len())))
        .collect();
    for d in dst.iter_mut() {
        for (chunk, part) in chunks.iter_mut().zip(d.chunks_mut(CHUNK_ELEMENTS)) {
            chunk.1.push(part);
        }
    }
    let run = |(s, ds): (&[T], Vec<&mut [T]>)| {
        for d in ds {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = *d + x;
            }
        }
    };
    parallel::run_each(chunks, parallel::worth_threads(n), run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_adds_into_every_destination() {
        let n = crate::parallel::PARALLEL_MIN_ELEMENTS + 3;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let (mut a, mut b, mut c) = (vec![1.0f32; n], vec![2.0f32; n], vec![3.0f32; n]);
        stream(&mut [&mut a, &mut b, &mut c], &src);
        assert!((0..n).all(|i| a[i] == 1.0 + i as f32 && c[i] == 3.0 + i as f32));
        assert_eq!(bytes_per_element::<f32>(3, 1), 28);
    }
}
