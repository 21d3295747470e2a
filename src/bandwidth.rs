//! The memory-bandwidth bound of an update kernel, as a reference for benchmarks.
//!
//! An update step on a large tensor is limited by the bytes it moves: Adam reads the
//! parameter, gradient and two moments and writes three of them back (28 bytes per float32
//! element). [`stream`] moves exactly the same bytes — reads every array, writes back the
//! read-write ones — with a single addition per element, chunked and threaded the same way
//! as the optimizer, so `time(stream) / time(kernel)` is the fraction of the attainable
//! bandwidth a kernel reaches.

use crate::numerics::float::Float;
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, multiversion};

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

multiversion! {
    /// One fused pass over float32 `d` (`d[i] += s[i]`) and 16-bit `h0`, `h1` (each element
    /// incremented as an integer; an empty one is skipped): the bytes of an update with
    /// 16-bit state.
    fn add_piece_16<T: Float>(s: &[T], d: &mut [T], h0: &mut [u16], h1: &mut [u16]) {
        let n = s.len();
        let d = &mut d[..n];
        match (h0.len() == n, h1.len() == n) {
            (true, true) => {
                let (h0, h1) = (&mut h0[..n], &mut h1[..n]);
                (0..n).for_each(|i| {
                    d[i] = d[i] + s[i];
                    h0[i] = h0[i].wrapping_add(1);
                    h1[i] = h1[i].wrapping_add(1);
                });
            }
            (true, false) => {
                let h0 = &mut h0[..n];
                (0..n).for_each(|i| {
                    d[i] = d[i] + s[i];
                    h0[i] = h0[i].wrapping_add(1);
                });
            }
            _ => (0..n).for_each(|i| d[i] = d[i] + s[i]),
        }
    }
}

/// A chunk of [`stream_16`]'s arrays.
type Piece16<'a> = (&'a [f32], &'a mut [f32], [&'a mut [u16]; 2]);

/// The bandwidth reference of an update with 16-bit state: `dst += src` and every element
/// of the 1 or 2 `half` arrays incremented, in one fused pass chunked and threaded as the
/// optimizer is. Per element it moves 12 bytes plus 4 per 16-bit array (Adam with
/// bfloat16 state: 20).
///
/// # Panics
/// If the lengths differ, or `half` has no array or more than 2.
pub fn stream_16(dst: &mut [f32], half: &mut [&mut [u16]], src: &[f32]) {
    let n = src.len();
    assert!(
        dst.len() == n && half.iter().all(|h| h.len() == n),
        "arrays differ in length"
    );
    assert!((1..=2).contains(&half.len()), "1 or 2 16-bit arrays");
    let level = simd::level();
    let mut chunks: Vec<Piece16<'_>> = src
        .chunks(CHUNK_ELEMENTS)
        .zip(dst.chunks_mut(CHUNK_ELEMENTS))
        .map(|(s, d)| (s, d, Default::default()))
        .collect();
    for (k, h) in half.iter_mut().enumerate() {
        for (chunk, part) in chunks.iter_mut().zip(h.chunks_mut(CHUNK_ELEMENTS)) {
            chunk.2[k] = part;
        }
    }
    parallel::run_each(chunks, parallel::worth_threads(n), |(s, d, [h0, h1])| {
        add_piece_16(level, s, d, h0, h1);
    });
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
        let n = crate::runtime::parallel::PARALLEL_MIN_ELEMENTS + 3;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let (mut a, mut b, mut c) = (vec![1.0f32; n], vec![2.0f32; n], vec![3.0f32; n]);
        stream(&mut [&mut a, &mut b, &mut c], &src);
        assert!((0..n).all(|i| a[i] == 1.0 + i as f32 && c[i] == 3.0 + i as f32));
        assert_eq!(bytes_per_element::<f32>(3, 1), 28);
    }

    #[test]
    fn stream_16_adds_and_increments() {
        let n = crate::runtime::parallel::PARALLEL_MIN_ELEMENTS + 3;
        let src = vec![2.0f32; n];
        let (mut d, mut h0, mut h1) = (vec![1.0f32; n], vec![0u16; n], vec![u16::MAX; n]);
        stream_16(&mut d, &mut [&mut h0, &mut h1], &src);
        assert!((0..n).all(|i| d[i] == 3.0 && h0[i] == 1 && h1[i] == 0));
    }
}
