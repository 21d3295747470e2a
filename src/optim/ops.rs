//! Element-wise operations over lists of tensors, in one threaded pass each: the global
//! gradient norm for clipping, in-place scaling and clamping, gradient accumulation and
//! Lookahead's synchronisation.
//!
//! The norm is a reduction, so its summation order is fixed: every tensor is cut into the
//! same `CHUNK_ELEMENTS` pieces whatever the thread count, each piece is summed into 16
//! independent `f64` lanes (which vectorize without reordering any sum), and pieces are
//! combined in order. The result is bit-identical for any thread count and SIMD level.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::numerics::float::{Dtype, Float};
use crate::numerics::half::{Bf16, Stored, F16};
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, multiversion};

/// A read-only tensor of either dtype.
#[derive(Clone, Copy, Debug)]
pub enum Slice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A tensor of either dtype, modified in place.
#[derive(Debug)]
pub enum SliceMut<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl Slice<'_> {
    pub fn len(&self) -> usize {
        self.meta().1
    }
}

impl SliceMut<'_> {
    /// The same elements, read-only.
    pub fn as_slice(&self) -> Slice<'_> {
        match self {
            SliceMut::F32(x) => Slice::F32(x),
            SliceMut::F64(x) => Slice::F64(x),
        }
    }

    pub fn len(&self) -> usize {
        self.meta().1
    }
}

/// A tensor that can be cut into `CHUNK_ELEMENTS` pieces for the pool.
pub(crate) trait Pieces: Sized {
    fn meta(&self) -> (Dtype, usize);
    fn pieces(self) -> Vec<Self>;
}

impl Pieces for Slice<'_> {
    fn meta(&self) -> (Dtype, usize) {
        match self {
            Slice::F32(x) => (Dtype::F32, x.len()),
            Slice::F64(x) => (Dtype::F64, x.len()),
        }
    }

    fn pieces(self) -> Vec<Self> {
        match self {
            Slice::F32(x) => x.chunks(CHUNK_ELEMENTS).map(Slice::F32).collect(),
            Slice::F64(x) => x.chunks(CHUNK_ELEMENTS).map(Slice::F64).collect(),
        }
    }
}

impl Pieces for SliceMut<'_> {
    fn meta(&self) -> (Dtype, usize) {
        match self {
            SliceMut::F32(x) => (Dtype::F32, x.len()),
            SliceMut::F64(x) => (Dtype::F64, x.len()),
        }
    }

    fn pieces(self) -> Vec<Self> {
        match self {
            SliceMut::F32(x) => x.chunks_mut(CHUNK_ELEMENTS).map(SliceMut::F32).collect(),
            SliceMut::F64(x) => x.chunks_mut(CHUNK_ELEMENTS).map(SliceMut::F64).collect(),
        }
    }
}

/// Which norm: `Lp` for a finite `p > 0`, or the maximum absolute value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    L1,
    L2,
    Lp(f64),
    Inf,
}

impl Norm {
    /// The norm of order `p` (`f64::INFINITY` for the max norm); `p` must be > 0.
    pub fn of_order(p: f64) -> Result<Norm> {
        match p {
            p if p == f64::INFINITY => Ok(Norm::Inf),
            1.0 => Ok(Norm::L1),
            2.0 => Ok(Norm::L2),
            p if p > 0.0 && p.is_finite() => Ok(Norm::Lp(p)),
            p => Err(Error::Mismatch(format!(
                "norm_type must be a number > 0 or inf, got {p}"
            ))),
        }
    }
}

const LANES: usize = 16;

multiversion! {
    /// Per-piece partial of a norm: a sum of `|x|^p`, or the max of `|x|` for `Norm::Inf`
    /// (16-bit values widened to `f32` first).
    pub fn norm_partial<T: Float, S: Stored<T>>(x: &[S], norm: Norm) -> f64 {
        let mut lanes = [0.0f64; LANES];
        let mut blocks = x.chunks_exact(LANES);
        let term = |v: S| -> f64 {
            let a = v.load().abs().to_f64();
            match norm {
                Norm::L1 | Norm::Inf => a,
                Norm::L2 => a * a,
                Norm::Lp(p) => a.powf(p),
            }
        };
        let combine = |acc: f64, t: f64| if norm == Norm::Inf { acc.nan_max(t) } else { acc + t };
        for block in &mut blocks {
            for (lane, &v) in lanes.iter_mut().zip(block) {
                *lane = combine(*lane, term(v));
            }
        }
        for (lane, &v) in lanes.iter_mut().zip(blocks.remainder()) {
            *lane = combine(*lane, term(v));
        }
        lanes.into_iter().fold(0.0, combine)
    }
}

/// A read-only tensor of any stored type, for [`norm_any`].
#[derive(Clone, Copy, Debug)]
pub enum AnySlice<'a> {
    Float(Slice<'a>),
    Bf16(&'a [Bf16]),
    F16(&'a [F16]),
}

impl AnySlice<'_> {
    pub fn len(&self) -> usize {
        match self {
            AnySlice::Float(x) => x.len(),
            AnySlice::Bf16(x) => x.len(),
            AnySlice::F16(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pieces(self) -> Vec<Self> {
        match self {
            AnySlice::Float(x) => x.pieces().into_iter().map(AnySlice::Float).collect(),
            AnySlice::Bf16(x) => x.chunks(CHUNK_ELEMENTS).map(AnySlice::Bf16).collect(),
            AnySlice::F16(x) => x.chunks(CHUNK_ELEMENTS).map(AnySlice::F16).collect(),
        }
    }
}

/// The norm of all tensors together, as if concatenated (torch's `clip_grad_norm_` total).
pub fn norm(xs: &[Slice<'_>], norm: Norm) -> f64 {
    let any: Vec<AnySlice<'_>> = xs.iter().copied().map(AnySlice::Float).collect();
    norm_any(&any, norm)
}

/// [`norm`] over tensors that may be 16-bit.
pub fn norm_any(xs: &[AnySlice<'_>], norm: Norm) -> f64 {
    let level = simd::level();
    let pieces: Vec<AnySlice<'_>> = xs.iter().flat_map(|x| x.pieces()).collect();
    let total: usize = xs.iter().map(AnySlice::len).sum();
    let partials: Vec<AtomicU64> = pieces.iter().map(|_| AtomicU64::new(0)).collect();
    let work = |i: usize| {
        let v = match pieces[i] {
            AnySlice::Float(Slice::F32(x)) => norm_partial::<f32, f32>(level, x, norm),
            AnySlice::Float(Slice::F64(x)) => norm_partial::<f64, f64>(level, x, norm),
            AnySlice::Bf16(x) => norm_partial::<f32, Bf16>(level, x, norm),
            AnySlice::F16(x) => norm_partial::<f32, F16>(level, x, norm),
        };
        partials[i].store(v.to_bits(), Ordering::Relaxed);
    };
    if parallel::worth_threads(total) {
        parallel::for_each_index(pieces.len(), &work);
    } else {
        (0..pieces.len()).for_each(work);
    }
    let parts = partials
        .iter()
        .map(|p| f64::from_bits(p.load(Ordering::Relaxed)));
    match norm {
        Norm::Inf => parts.fold(0.0, f64::nan_max),
        Norm::L1 => parts.sum(),
        Norm::L2 => parts.sum::<f64>().sqrt(),
        Norm::Lp(p) => parts.sum::<f64>().powf(1.0 / p),
    }
}

/// torch's `clip_grad_norm_` factor: `min(max_norm / (total_norm + 1e-6), 1)`. A NaN norm
/// gives NaN, as in torch (the gradients become NaN rather than silently unclipped).
pub fn clip_coefficient(max_norm: f64, total_norm: f64) -> f64 {
    let coef = max_norm / (total_norm + 1e-6);
    if coef.is_nan() {
        coef
    } else {
        coef.min(1.0)
    }
}

multiversion! {
    fn scale_piece<T: Float>(x: &mut [T], factor: T) {
        for v in x {
            *v = *v * factor;
        }
    }
}

multiversion! {
    fn divide_piece<T: Float>(x: &mut [T], divisor: T) {
        for v in x {
            *v = *v / divisor;
        }
    }
}

multiversion! {
    fn clamp_piece<T: Float>(x: &mut [T], lo: T, hi: T) {
        // torch.clamp: NaN stays NaN.
        for v in x {
            let c = if *v < lo { lo } else { *v };
            *v = if c > hi { hi } else { c };
        }
    }
}

/// Applies `f32_op` / `f64_op` to every piece of every tensor, threaded when large.
fn each_piece(
    xs: Vec<SliceMut<'_>>,
    f32_op: impl Fn(&mut [f32]) + Sync,
    f64_op: impl Fn(&mut [f64]) + Sync,
) {
    let total: usize = xs.iter().map(SliceMut::len).sum();
    let pieces: Vec<SliceMut<'_>> = xs.into_iter().flat_map(SliceMut::pieces).collect();
    parallel::run_each(pieces, parallel::worth_threads(total), |p| match p {
        SliceMut::F32(x) => f32_op(x),
        SliceMut::F64(x) => f64_op(x),
    });
}

/// `x *= factor` for every element of every tensor (factor rounded to each dtype).
pub fn scale(xs: Vec<SliceMut<'_>>, factor: f64) {
    let level = simd::level();
    each_piece(
        xs,
        |x| scale_piece(level, x, factor as f32),
        |x| scale_piece(level, x, factor),
    );
}

/// `x /= divisor` for every element of every tensor.
pub fn divide(xs: Vec<SliceMut<'_>>, divisor: f64) {
    let level = simd::level();
    each_piece(
        xs,
        |x| divide_piece(level, x, divisor as f32),
        |x| divide_piece(level, x, divisor),
    );
}

/// `x = min(max(x, lo), hi)` for every element (NaN stays NaN), as `torch.clamp`.
pub fn clamp(xs: Vec<SliceMut<'_>>, lo: f64, hi: f64) {
    let level = simd::level();
    each_piece(
        xs,
        |x| clamp_piece(level, x, lo as f32, hi as f32),
        |x| clamp_piece(level, x, lo, hi),
    );
}

multiversion! {
    fn accumulate_piece<T: Float>(acc: &mut [T], x: &[T], first: bool) {
        let x = &x[..acc.len()];
        for (a, &v) in acc.iter_mut().zip(x) {
            *a = if first { v } else { *a + v };
        }
    }
}

multiversion! {
    fn lookahead_piece<T: Float>(slow: &mut [T], fast: &mut [T], alpha: T) {
        let fast = &mut fast[..slow.len()];
        for (s, f) in slow.iter_mut().zip(fast) {
            let v = *s + alpha * (*f - *s);
            *s = v;
            *f = v;
        }
    }
}

/// Pairs of same-dtype, same-length tensors, cut into aligned pieces.
pub(crate) fn paired<A: Pieces, B: Pieces>(a: Vec<A>, b: Vec<B>) -> Result<Vec<(A, B)>> {
    if a.len() != b.len() {
        return Err(Error::Mismatch(format!(
            "expected {} tensors, got {}",
            a.len(),
            b.len()
        )));
    }
    let mut out = Vec::new();
    for (i, (x, y)) in a.into_iter().zip(b).enumerate() {
        if x.meta() != y.meta() {
            return Err(Error::Mismatch(format!(
                "tensor {i}: dtypes or lengths differ"
            )));
        }
        out.extend(x.pieces().into_iter().zip(y.pieces()));
    }
    Ok(out)
}

/// `acc = x` (when `first`) or `acc += x`, tensor by tensor: gradient accumulation.
pub fn accumulate(acc: Vec<SliceMut<'_>>, xs: Vec<Slice<'_>>, first: bool) -> Result<()> {
    let level = simd::level();
    let total: usize = xs.iter().map(Slice::len).sum();
    let pairs = paired(acc, xs)?;
    parallel::run_each(pairs, parallel::worth_threads(total), |pair| match pair {
        (SliceMut::F32(a), Slice::F32(x)) => accumulate_piece(level, a, x, first),
        (SliceMut::F64(a), Slice::F64(x)) => accumulate_piece(level, a, x, first),
        _ => unreachable!("dtypes checked when pairing"),
    });
    Ok(())
}

/// Lookahead's synchronisation: `slow += alpha * (fast - slow)`, then `fast = slow`.
pub fn lookahead_sync(slow: Vec<SliceMut<'_>>, fast: Vec<SliceMut<'_>>, alpha: f64) -> Result<()> {
    let level = simd::level();
    let total: usize = slow.iter().map(SliceMut::len).sum();
    let pairs = paired(slow, fast)?;
    parallel::run_each(pairs, parallel::worth_threads(total), |pair| match pair {
        (SliceMut::F32(s), SliceMut::F32(f)) => lookahead_piece(level, s, f, alpha as f32),
        (SliceMut::F64(s), SliceMut::F64(f)) => lookahead_piece(level, s, f, alpha),
        _ => unreachable!("dtypes checked when pairing"),
    });
    Ok(())
}

multiversion! {
    fn copy_scaled<T: Float>(dst: &mut [T], src: &[T], scale: T, scaled: bool) {
        let src = &src[..dst.len()];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = if scaled { s * scale } else { s };
        }
    }
}

/// Splits `buffer` into consecutive pieces as long as `lens`, or fails if the lengths do not
/// add up to the buffer's.
fn split_by<'a, T>(buffer: &'a mut [T], lens: &[usize]) -> Result<Vec<&'a mut [T]>> {
    if lens.iter().sum::<usize>() != buffer.len() {
        return Err(Error::Mismatch(format!(
            "the buffer has {} elements, the tensors {}",
            buffer.len(),
            lens.iter().sum::<usize>()
        )));
    }
    let mut rest = buffer;
    let mut out = Vec::with_capacity(lens.len());
    for &n in lens {
        let (head, tail) = rest.split_at_mut(n);
        out.push(head);
        rest = tail;
    }
    Ok(out)
}

/// Copies same-dtype tensors one after another into `buffer` (whose length must be their
/// total), so a single collective can carry them all.
pub fn pack<T: Float>(xs: &[&[T]], buffer: &mut [T]) -> Result<()> {
    let level = simd::level();
    let lens: Vec<usize> = xs.iter().map(|x| x.len()).collect();
    let parts = split_by(buffer, &lens)?;
    let pairs: Vec<(&mut [T], &[T])> = parts
        .into_iter()
        .zip(xs)
        .flat_map(|(d, s)| d.chunks_mut(CHUNK_ELEMENTS).zip(s.chunks(CHUNK_ELEMENTS)))
        .collect();
    let total = lens.iter().sum();
    parallel::run_each(pairs, parallel::worth_threads(total), |(d, s)| {
        copy_scaled(level, d, s, T::ONE, false);
    });
    Ok(())
}

/// The inverse of [`pack`], multiplying by `scale` on the way (1 / world size turns an
/// all-reduced sum into the mean).
pub fn unpack<T: Float>(buffer: &mut [T], xs: &mut [&mut [T]], scale: f64) -> Result<()> {
    let level = simd::level();
    let lens: Vec<usize> = xs.iter().map(|x| x.len()).collect();
    let parts = split_by(buffer, &lens)?;
    let pairs: Vec<(&mut [T], &[T])> = xs
        .iter_mut()
        .zip(parts)
        .flat_map(|(d, s)| d.chunks_mut(CHUNK_ELEMENTS).zip(s.chunks(CHUNK_ELEMENTS)))
        .collect();
    let total = lens.iter().sum();
    let scale_t = T::from_f64(scale);
    parallel::run_each(pairs, parallel::worth_threads(total), |(d, s)| {
        copy_scaled(level, d, s, scale_t, scale != 1.0);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn norms_match_their_definitions_and_ignore_the_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        let (a, b) = (data(100_003), data(17));
        let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
        let xs = [Slice::F32(&a), Slice::F64(&b64)];
        let all: Vec<f64> = a
            .iter()
            .map(|&x| x as f64)
            .chain(b64.iter().copied())
            .collect();
        let l2 = all.iter().map(|x| x * x).sum::<f64>().sqrt();
        let l1 = all.iter().map(|x| x.abs()).sum::<f64>();
        let linf = all.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let l3 = all.iter().map(|x| x.abs().powi(3)).sum::<f64>().cbrt();
        let results: Vec<[f64; 4]> = [1, 2, 3]
            .iter()
            .map(|&t| {
                crate::runtime::parallel::set_num_threads(t).unwrap();
                [Norm::L2, Norm::L1, Norm::Inf, Norm::Lp(3.0)].map(|n| norm(&xs, n))
            })
            .collect();
        for r in &results {
            assert_eq!(r.map(f64::to_bits), results[0].map(f64::to_bits));
        }
        let r = results[0];
        assert!((r[0] - l2).abs() < 1e-9 * l2 && (r[1] - l1).abs() < 1e-9 * l1);
        assert_eq!(r[2], linf);
        assert!((r[3] - l3).abs() < 1e-9 * l3);
        assert_eq!(Norm::of_order(f64::INFINITY), Ok(Norm::Inf));
        assert!(Norm::of_order(0.0).is_err() && Norm::of_order(-1.0).is_err());
    }

    #[test]
    fn every_level_gives_the_same_norm_bits() {
        let x = data(5000);
        let bits: Vec<u64> = crate::runtime::simd::supported()
            .into_iter()
            .map(|l| norm_partial::<f32, f32>(l, &x, Norm::L2).to_bits())
            .collect();
        assert!(bits.iter().all(|&b| b == bits[0]));
    }

    #[test]
    fn pack_then_unpack_round_trips_with_a_scale() {
        let (a, b) = (data(70_001), data(3));
        let mut buf = vec![0.0f32; a.len() + b.len()];
        pack(&[&a, &b], &mut buf).unwrap();
        assert_eq!(&buf[..a.len()], &a[..]);
        assert_eq!(&buf[a.len()..], &b[..]);
        let (mut x, mut y) = (vec![0.0f32; a.len()], vec![0.0f32; 3]);
        unpack(&mut buf, &mut [&mut x, &mut y], 0.5).unwrap();
        assert!(x.iter().zip(&a).all(|(x, a)| *x == a * 0.5) && y[2] == b[2] * 0.5);
        assert!(pack(&[&a], &mut buf).is_err());
    }

    #[test]
    fn in_place_ops() {
        let mut x = vec![1.0f32, -2.0, 3.0, f32::NAN];
        scale(vec![SliceMut::F32(&mut x)], 0.5);
        assert_eq!(&x[..3], &[0.5, -1.0, 1.5]);
        clamp(vec![SliceMut::F32(&mut x)], -0.75, 0.75);
        assert_eq!(&x[..3], &[0.5, -0.75, 0.75]);
        assert!(x[3].is_nan());
        let mut acc = vec![0.0f64; 3];
        accumulate(
            vec![SliceMut::F64(&mut acc)],
            vec![Slice::F64(&[1.0, 2.0, 3.0])],
            true,
        )
        .unwrap();
        accumulate(
            vec![SliceMut::F64(&mut acc)],
            vec![Slice::F64(&[1.0, 2.0, 3.0])],
            false,
        )
        .unwrap();
        divide(vec![SliceMut::F64(&mut acc)], 2.0);
        assert_eq!(acc, vec![1.0, 2.0, 3.0]);
        let bad = accumulate(
            vec![SliceMut::F64(&mut acc)],
            vec![Slice::F32(&[1.0, 2.0, 3.0])],
            false,
        );
        assert!(bad.is_err());
        let (mut slow, mut fast) = (vec![0.0f64, 1.0], vec![2.0f64, 3.0]);
        lookahead_sync(
            vec![SliceMut::F64(&mut slow)],
            vec![SliceMut::F64(&mut fast)],
            0.5,
        )
        .unwrap();
        assert_eq!((slow.clone(), fast), (vec![1.0, 2.0], slow));
    }
}
