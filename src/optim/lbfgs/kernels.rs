//! L-BFGS's vector passes, compiled per SIMD level and run over the fixed chunks of the
//! vectors ([`CHUNK_ELEMENTS`] each), on the pool's threads for long vectors.
//!
//! Every dot product is summed in `f64` as [`dot`] sums it: eight lanes per chunk (lane
//! `i % 8` of the chunk's element `i`), the lanes combined in one fixed order, the chunks'
//! sums added in chunk order. The fused passes (an update of `q` and the dot product of
//! the updated `q` with another vector, in one pass) therefore give the bits of the
//! separate passes, on any number of threads and at any SIMD level.

use std::ops::Range;

use crate::numerics::float::Float;
use crate::runtime::parallel::{for_each_index, worth_threads, CHUNK_ELEMENTS};
use crate::runtime::simd::{level, multiversion};

/// A pointer to a slice's elements that chunks of a pass write through, each its own.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: the passes hand each chunk a disjoint part of the slice (see `part`).
unsafe impl<T: Send> Send for Out<T> {}
unsafe impl<T: Send> Sync for Out<T> {}

impl<T> Out<T> {
    fn of(s: &mut [T]) -> Self {
        Out(s.as_mut_ptr())
    }
    /// The elements `r` of the slice.
    ///
    /// SAFETY: `r` is within the slice, which is mutably borrowed for the pass, and no
    /// other chunk of the pass takes an overlapping range.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part(&self, r: Range<usize>) -> &mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(r.start), r.len()) }
    }
}

/// `f(range)` over the fixed chunks of `0..n`, its `K` sums added up in chunk order: on the
/// pool's threads for large `n`, the same bits on any number of threads.
fn chunked<const K: usize>(n: usize, f: &(dyn Fn(Range<usize>) -> [f64; K] + Sync)) -> [f64; K] {
    let chunks = n.div_ceil(CHUNK_ELEMENTS);
    if chunks <= 1 {
        return f(0..n);
    }
    let mut parts = vec![[0.0f64; K]; chunks];
    let at = Out::of(&mut parts);
    let work = |i: usize| {
        let v = f(i * CHUNK_ELEMENTS..((i + 1) * CHUNK_ELEMENTS).min(n));
        // SAFETY: each index writes its own element of `parts`.
        unsafe { at.part(i..i + 1)[0] = v };
    };
    if worth_threads(n) {
        for_each_index(chunks, &work);
    } else {
        (0..chunks).for_each(work);
    }
    std::array::from_fn(|k| parts.iter().map(|p| p[k]).sum())
}

/// The eight lanes' sum, in [`dot`]'s order.
#[inline(always)]
fn lanes_sum(acc: [f64; 8]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

multiversion! {
    /// `sum a_i b_i` of one chunk in f64 over eight lanes.
    fn dot_kernel<T: Float>(a: &[T], b: &[T]) -> f64 {
        let mut acc = [0.0f64; 8];
        let ((ca, ta), (cb, tb)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
        for (x, y) in ca.iter().zip(cb) {
            for k in 0..8 {
                acc[k] += x[k].to_f64() * y[k].to_f64();
            }
        }
        for (k, (x, y)) in ta.iter().zip(tb).enumerate() {
            acc[k] += x.to_f64() * y.to_f64();
        }
        lanes_sum(acc)
    }
}

/// `sum a_i b_i` of equal-length slices, summed in f64, chunk by chunk (eight lanes per
/// chunk, chunks in order).
pub(super) fn dot_sum<T: Float>(a: &[T], b: &[T]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b, lv) = (&a[..n], &b[..n], level());
    chunked(n, &|r| [dot_kernel(lv, &a[r.clone()], &b[r])])[0]
}

/// `sum a_i b_i`, summed in f64 (eight lanes per chunk, chunks in order), rounded once to `T`.
pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    T::from_f64(dot_sum(a, b))
}

multiversion! {
    /// `max |a_i s|` of one chunk (NaN if any is NaN; 0 for no elements).
    fn abs_max_kernel<T: Float>(a: &[T], s: T) -> T {
        let mut m = [T::ZERO; 8];
        let mut nan = [false; 8];
        let (ca, ta) = a.as_chunks::<8>();
        for x in ca {
            for k in 0..8 {
                let v = (x[k] * s).abs();
                m[k] = if v > m[k] { v } else { m[k] };
                #[allow(clippy::eq_op)]
                let is_nan = v != v;
                nan[k] |= is_nan;
            }
        }
        for (k, &x) in ta.iter().enumerate() {
            let v = (x * s).abs();
            m[k] = if v > m[k] { v } else { m[k] };
            #[allow(clippy::eq_op)]
            let is_nan = v != v;
            nan[k] |= is_nan;
        }
        if nan.iter().any(|&b| b) {
            return T::from_f64(f64::NAN);
        }
        m.iter().fold(T::ZERO, |a, &b| if b > a { b } else { a })
    }
}

/// `max |a_i s|` (NaN if any element is NaN, as torch's `abs().max()`); 0 for no elements.
/// A maximum does not depend on the order: any chunking gives the same value. (`s = 1`
/// gives `max |a_i|`: `a_i 1` is `a_i`.)
pub(super) fn abs_max_scaled<T: Float>(a: &[T], s: T) -> T {
    let (n, lv) = (a.len(), level());
    let chunks = n.div_ceil(CHUNK_ELEMENTS);
    if chunks <= 1 {
        return abs_max_kernel(lv, a, s);
    }
    let mut m = vec![T::ZERO; chunks];
    let out = Out::of(&mut m);
    let work = |c: usize| {
        let r = c * CHUNK_ELEMENTS..((c + 1) * CHUNK_ELEMENTS).min(n);
        // SAFETY: each chunk writes its own element of `m`.
        unsafe { out.part(c..c + 1)[0] = abs_max_kernel(lv, &a[r], s) };
    };
    if worth_threads(n) {
        for_each_index(chunks, &work);
    } else {
        (0..chunks).for_each(work);
    }
    m.iter().fold(T::ZERO, |a, &b| a.nan_max(b))
}

/// `max |a_i|` (NaN if any element is NaN); 0 for no elements.
pub(super) fn abs_max<T: Float>(a: &[T]) -> T {
    abs_max_scaled(a, T::ONE)
}

multiversion! {
    /// One chunk of [`pair`]: `y = g - p`, `s = d t`; returns `(y . s, y . y)`.
    fn pair_kernel<T: Float>(y: &mut [T], s: &mut [T], g: &[T], p: &[T], d: &[T], t: T) -> [f64; 2] {
        let n = y.len();
        let (s, g, p, d) = (&mut s[..n], &g[..n], &p[..n], &d[..n]);
        let (mut ys, mut yy) = ([0.0f64; 8], [0.0f64; 8]);
        let (cy, ty) = y.as_chunks_mut::<8>();
        let (cs, ts) = s.as_chunks_mut::<8>();
        let ((cg, tg), (cp, tp), (cd, td)) = (g.as_chunks::<8>(), p.as_chunks::<8>(), d.as_chunks::<8>());
        for ((((y, s), g), p), d) in cy.iter_mut().zip(cs).zip(cg).zip(cp).zip(cd) {
            for k in 0..8 {
                let (yk, sk) = (g[k] - p[k], d[k] * t);
                y[k] = yk;
                s[k] = sk;
                ys[k] += yk.to_f64() * sk.to_f64();
                yy[k] += yk.to_f64() * yk.to_f64();
            }
        }
        for (k, ((((y, s), &g), &p), &d)) in ty.iter_mut().zip(ts).zip(tg).zip(tp).zip(td).enumerate() {
            let (yk, sk) = (g - p, d * t);
            *y = yk;
            *s = sk;
            ys[k] += yk.to_f64() * sk.to_f64();
            yy[k] += yk.to_f64() * yk.to_f64();
        }
        [lanes_sum(ys), lanes_sum(yy)]
    }
}

/// The newest pair of one iteration in one pass: `y = g - p` (the gradient change) and
/// `s = d t` (the step) written, `(y . s, y . y)` returned as [`dot_sum`] sums them.
pub(super) fn pair<T: Float>(
    y: &mut [T],
    s: &mut [T],
    g: &[T],
    p: &[T],
    d: &[T],
    t: T,
) -> [f64; 2] {
    let n = y.len();
    let (g, p, d, lv) = (&g[..n], &p[..n], &d[..n], level());
    let (oy, os) = (Out::of(y), Out::of(&mut s[..n]));
    chunked(n, &|r| {
        // SAFETY: the chunks are disjoint parts of `y` and `s`, borrowed mutably for the pass.
        let (y, s) = unsafe { (oy.part(r.clone()), os.part(r.clone())) };
        pair_kernel(lv, y, s, &g[r.clone()], &p[r.clone()], &d[r], t)
    })
}

/// An element-wise update `q_i = f(q_i, a_i)` of the two-loop recursion.
#[derive(Clone, Copy, Debug)]
pub(super) enum Update<T> {
    /// `q = -a`.
    Neg,
    /// `q = (-a) h`.
    NegScale(T),
    /// `q = q + alpha a`.
    Axpy(T),
    /// `q = (q + alpha a) h`.
    AxpyScale(T, T),
}

#[inline(always)]
fn update_dot_with<T: Float>(q: &mut [T], a: &[T], w: &[T], f: impl Fn(T, T) -> T) -> f64 {
    let n = q.len();
    let (a, w) = (&a[..n], &w[..n]);
    let mut acc = [0.0f64; 8];
    let (cq, tq) = q.as_chunks_mut::<8>();
    let ((ca, ta), (cw, tw)) = (a.as_chunks::<8>(), w.as_chunks::<8>());
    for ((q, a), w) in cq.iter_mut().zip(ca).zip(cw) {
        for k in 0..8 {
            let v = f(q[k], a[k]);
            q[k] = v;
            acc[k] += w[k].to_f64() * v.to_f64();
        }
    }
    for (k, ((q, &a), &w)) in tq.iter_mut().zip(ta).zip(tw).enumerate() {
        let v = f(*q, a);
        *q = v;
        acc[k] += w.to_f64() * v.to_f64();
    }
    lanes_sum(acc)
}

multiversion! {
    /// One chunk of [`update_dot`].
    fn update_dot_kernel<T: Float>(q: &mut [T], a: &[T], w: &[T], u: Update<T>) -> f64 {
        match u {
            Update::Neg => update_dot_with(q, a, w, |_, a| -a),
            Update::NegScale(h) => update_dot_with(q, a, w, |_, a| -a * h),
            Update::Axpy(alpha) => update_dot_with(q, a, w, |q, a| q + alpha * a),
            Update::AxpyScale(alpha, h) => update_dot_with(q, a, w, |q, a| (q + alpha * a) * h),
        }
    }
}

/// `q_i = u(q_i, a_i)`, then `sum w_i q_i` of the new `q` (as [`dot_sum`] sums it), in one
/// pass.
pub(super) fn update_dot<T: Float>(q: &mut [T], a: &[T], w: &[T], u: Update<T>) -> f64 {
    let n = q.len();
    let (a, w, lv) = (&a[..n], &w[..n], level());
    let oq = Out::of(q);
    chunked(n, &|r| {
        // SAFETY: the chunks are disjoint parts of `q`, borrowed mutably for the pass.
        let q = unsafe { oq.part(r.clone()) };
        [update_dot_kernel(lv, q, &a[r.clone()], &w[r], u)]
    })[0]
}

/// `sum |a_i|`, summed in f64 (in element order within a chunk, chunks in order), rounded
/// once to `T`.
pub(super) fn abs_sum<T: Float>(a: &[T]) -> T {
    T::from_f64(chunked(a.len(), &|r| [a[r].iter().map(|x| x.abs().to_f64()).sum()])[0])
}

/// `f(range, part)` over the fixed chunks of `out` (`part` the chunk `out[range]`), on the
/// pool's threads for large `out`. For element-wise work: the same bits on any number of
/// threads.
fn chunks_mut<T: Send>(out: &mut [T], f: impl Fn(Range<usize>, &mut [T]) + Sync) {
    let n = out.len();
    if !worth_threads(n) {
        return f(0..n, out);
    }
    let at = Out::of(out);
    for_each_index(n.div_ceil(CHUNK_ELEMENTS), &|c| {
        let r = c * CHUNK_ELEMENTS..((c + 1) * CHUNK_ELEMENTS).min(n);
        // SAFETY: the chunks are disjoint parts of `out`, borrowed mutably for this call.
        let part = unsafe { at.part(r.clone()) };
        f(r, part);
    });
}

/// `y += alpha x` (torch's `y.add_(x, alpha=alpha)`), on the pool's threads for large `y`.
pub fn axpy<T: Float>(y: &mut [T], alpha: T, x: &[T]) {
    let n = y.len().min(x.len());
    chunks_mut(&mut y[..n], |r, part| {
        for (y, &x) in part.iter_mut().zip(&x[r]) {
            *y = *y + alpha * x;
        }
    });
}

/// `dst = src`, on the pool's threads for large slices.
pub fn copy<T: Copy + Send + Sync>(dst: &mut [T], src: &[T]) {
    chunks_mut(&mut dst[..src.len()], |r, part| {
        part.copy_from_slice(&src[r]);
    });
}

/// `out = x + t d`: the trial point of a step of length `t`.
pub(super) fn trial<T: Float>(out: &mut [T], x: &[T], t: f64, d: &[T]) {
    let t = T::from_f64(t);
    chunks_mut(out, |r, part| {
        for ((o, &x), &d) in part.iter_mut().zip(&x[r.clone()]).zip(&d[r]) {
            *o = x + t * d;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice `v` as `dot` summed it before the passes were fused: f64 lanes per chunk.
    fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
        let parts: Vec<f64> = a
            .chunks(CHUNK_ELEMENTS)
            .zip(b.chunks(CHUNK_ELEMENTS))
            .map(|(a, b)| {
                let mut acc = [0.0f64; 8];
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    acc[i % 8] += f64::from(*x) * f64::from(*y);
                }
                lanes_sum(acc)
            })
            .collect();
        if parts.len() == 1 {
            parts[0]
        } else {
            parts.iter().sum()
        }
    }

    fn vectors(n: usize) -> [Vec<f32>; 3] {
        [0.37f32, 0.11, 0.73].map(|f| (0..n).map(|i| ((i as f32) * f).sin()).collect())
    }

    #[test]
    fn fused_passes_give_the_bits_of_separate_passes_at_every_level_and_thread_count() {
        for n in [5, 3 * CHUNK_ELEMENTS + 13] {
            let [a, b, c] = vectors(n);
            let mut results = Vec::new();
            for lv in crate::runtime::simd::supported() {
                crate::runtime::simd::set_level(lv.isa()).unwrap();
                for threads in [1, 3] {
                    crate::runtime::parallel::set_num_threads(threads).unwrap();
                    let mut q = c.clone();
                    let got = update_dot(&mut q, &a, &b, Update::AxpyScale(0.5, 1.5));
                    let want: Vec<f32> =
                        c.iter().zip(&a).map(|(q, a)| (q + 0.5 * a) * 1.5).collect();
                    assert_eq!(q, want);
                    assert_eq!(got, reference_dot(&b, &want));
                    let (mut y, mut s) = (vec![0.0; n], vec![0.0; n]);
                    let [ys, yy] = pair(&mut y, &mut s, &a, &b, &c, 0.25);
                    assert_eq!(y, a.iter().zip(&b).map(|(g, p)| g - p).collect::<Vec<_>>());
                    assert_eq!(s, c.iter().map(|d| d * 0.25).collect::<Vec<_>>());
                    assert_eq!((ys, yy), (reference_dot(&y, &s), reference_dot(&y, &y)));
                    results.push((q, got, ys, yy, dot(&a, &b), abs_max(&a), abs_sum(&a)));
                }
            }
            crate::runtime::parallel::set_num_threads(1).unwrap();
            crate::runtime::simd::set_level(crate::runtime::simd::detected().isa()).unwrap();
            assert!(results.windows(2).all(|w| w[0] == w[1]));
        }
    }

    #[test]
    fn abs_max_is_nan_if_any_element_is_and_the_largest_magnitude_otherwise() {
        let mut a = vec![0.5f32; 2 * CHUNK_ELEMENTS + 3];
        a[CHUNK_ELEMENTS + 7] = -3.0;
        assert_eq!(abs_max(&a), 3.0);
        assert_eq!(abs_max_scaled(&a, -2.0), 6.0);
        a[2 * CHUNK_ELEMENTS + 1] = f32::NAN;
        assert!(abs_max(&a).is_nan());
        assert_eq!(abs_max::<f32>(&[]), 0.0);
    }
}
