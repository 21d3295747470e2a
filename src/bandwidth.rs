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
use crate::simd::{self, multiversion};

/// Bytes an update moves per element of type `T` with `read_write` arrays read and written
/// back and `read_only` arrays only read.
pub fn bytes_per_element<T>(read_write: usize, read_only: usize) -> usize {
    (2 * read_write + read_only) * std::mem::size_of::<T>()
}

multiversion! {
    /// One fused pass: `d[i] += s[i]` for up to 4 destinations at once (`rest` empty
    /// slices are skipped), so every array is streamed simultaneously, as a kernel does.
    fn add_piece<T: Float>(s: &[T], d0: &mut [T], d1: &mut [T], d2: &mut [T], d3: &mut [T]) {
        let n = s.len();
        let d0 = &mut d0[..n];
        // One loop per arity, so each vectorizes with no per-element branch.
        match [d1.len(), d2.len(), d3.len()].iter().filter(|&&l| l == n).count() {
            0 => (0..n).for_each(|i| d0[i] = d0[i] + s[i]),
            1 => {
                let d1 = &mut d1[..n];
                (0..n).for_each(|i| {
                    d0[i] = d0[i] + s[i];
                    d1[i] = d1[i] + s[i];
                });
            }
            2 => {
                let (d1, d2) = (&mut d1[..n], &mut d2[..n]);
                (0..n).for_each(|i| {
                    d0[i] = d0[i] + s[i];
                    d1[i] = d1[i] + s[i];
                    d2[i] = d2[i] + s[i];
                });
            }
            _ => {
                let (d1, d2, d3) = (&mut d1[..n], &mut d2[..n], &mut d3[..n]);
                (0..n).for_each(|i| {
                    d0[i] = d0[i] + s[i];
                    d1[i] = d1[i] + s[i];
                    d2[i] = d2[i] + s[i];
                    d3[i] = d3[i] + s[i];
                });
            }
        }
    }
}

/// Adds `src` into each of 1 to 4 `dst` arrays in place, `dst[k][i] += src[i]`, in one
/// fused pass cut into the optimizer's chunks and threaded the same way.
///
/// # Panics
/// If the lengths differ or more than 4 destinations are given.
pub fn stream<T: Float>(dst: &mut [&mut [T]], src: &[T]) {
    let n = src.len();
    assert!(dst.iter().all(|d| d.len() == n), "arrays differ in length");
    assert!((1..=4).contains(&dst.len()), "1 to 4 destination arrays");
    let level = simd::level();
    let mut chunks: Vec<(&[T], [&mut [T]; 4])> = src
        .chunks(CHUNK_ELEMENTS)
        .map(|s| (s, Default::default()))
        .collect();
    for (k, d) in dst.iter_mut().enumerate() {
        for (chunk, part) in chunks.iter_mut().zip(d.chunks_mut(CHUNK_ELEMENTS)) {
            chunk.1[k] = part;
        }
    }
    parallel::run_each(
        chunks,
        parallel::worth_threads(n),
        |(s, [d0, d1, d2, d3])| add_piece(level, s, d0, d1, d2, d3),
    );
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
