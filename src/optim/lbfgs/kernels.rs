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

/// Chunks a thread takes at once in the fused passes: each chunk's lanes are a chain of
/// dependent additions, and two chains in one loop run at twice the rate of one.
const GROUP: usize = 2;

/// A pass over a group of chunks: their element range, and their sums to write.
type GroupPass<'a, const K: usize> = dyn Fn(Range<usize>, &mut [[f64; K]]) + Sync + 'a;

/// `f(chunks, sums)` over groups of [`GROUP`] consecutive chunks of `0..n` (`sums[i]` the
/// `K` sums of the group's `i`-th chunk), the chunks' sums added up in chunk order; the
/// same bits as [`chunked`] with the chunks one by one.
fn chunked_groups<const K: usize>(n: usize, f: &GroupPass<'_, K>) -> [f64; K] {
    let chunks = n.div_ceil(CHUNK_ELEMENTS);
    if chunks <= 1 {
        let mut one = [[0.0f64; K]];
        f(0..n, &mut one);
        return one[0];
    }
    let mut parts = vec![[0.0f64; K]; chunks];
    let at = Out::of(&mut parts);
    let work = |i: usize| {
        let c = i * GROUP..((i + 1) * GROUP).min(chunks);
        // SAFETY: each group writes its own chunks' elements of `parts`.
        let sums = unsafe { at.part(c.clone()) };
        f(
            c.start * CHUNK_ELEMENTS..(c.end * CHUNK_ELEMENTS).min(n),
            sums,
        );
    };
    let groups = chunks.div_ceil(GROUP);
    if worth_threads(n) {
        for_each_index(groups, &work);
    } else {
        (0..groups).for_each(work);
    }
    std::array::from_fn(|k| parts.iter().map(|p| p[k]).sum())
}

/// The ranges of `r`'s chunks (`r` starts at a chunk boundary), as two ranges relative to
/// `r.start`: the first chunk's and the second's (empty if `r` has one chunk).
fn halves(r: &Range<usize>) -> (Range<usize>, Range<usize>) {
    let len = r.len();
    let first = len.min(CHUNK_ELEMENTS);
    (0..first, first..len)
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
    let (a, b) = (&a[..n], &b[..n]);
    if n <= SHORT {
        let mut acc = [0.0f64; 8];
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            acc[i % 8] += x.to_f64() * y.to_f64();
        }
        return lanes_sum(acc);
    }
    let lv = level();
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

/// One chunk's slices of the pair pass: `y`, `s` written; `g`, `p`, `d` read.
type PairChunk<'a, T> = (&'a mut [T], &'a mut [T], &'a [T], &'a [T], &'a [T]);

/// Elements a fused pass updates before it takes their dot products: the block is still
/// in the L1 cache for the second loop, and each loop alone is one the compiler vectorizes.
const BLOCK: usize = 512;

/// `acc[k] += w_i v_i` (in f64) over the elements `i` of lane `k` (`i % 8 == k`), in order;
/// `w` and `v` of one length.
#[inline(always)]
fn lane_dot<T: Float>(acc: &mut [f64; 8], w: &[T], v: &[T]) {
    let mut a = *acc;
    let ((cw, tw), (cv, tv)) = (w.as_chunks::<8>(), v.as_chunks::<8>());
    for (x, y) in cw.iter().zip(cv) {
        for k in 0..8 {
            a[k] += x[k].to_f64() * y[k].to_f64();
        }
    }
    for (k, (x, y)) in tw.iter().zip(tv).enumerate() {
        a[k] += x.to_f64() * y.to_f64();
    }
    *acc = a;
}

/// [`lane_dot`] of two pairs of vectors of one length (a multiple of 8) in one loop: two
/// chains of additions in flight.
#[inline(always)]
fn lane_dot2<T: Float>(acc: [&mut [f64; 8]; 2], w: [&[T]; 2], v: [&[T]; 2]) {
    let [acc0, acc1] = acc;
    let (mut a0, mut a1) = (*acc0, *acc1);
    let lanes = |x: &[T]| x.as_chunks::<8>().0.len();
    let n = lanes(w[0])
        .min(lanes(w[1]))
        .min(lanes(v[0]))
        .min(lanes(v[1]));
    let (w0, w1) = (&w[0].as_chunks::<8>().0[..n], &w[1].as_chunks::<8>().0[..n]);
    let (v0, v1) = (&v[0].as_chunks::<8>().0[..n], &v[1].as_chunks::<8>().0[..n]);
    for (((x0, y0), x1), y1) in w0.iter().zip(v0).zip(w1).zip(v1) {
        for k in 0..8 {
            a0[k] += x0[k].to_f64() * y0[k].to_f64();
        }
        for k in 0..8 {
            a1[k] += x1[k].to_f64() * y1[k].to_f64();
        }
    }
    (*acc0, *acc1) = (a0, a1);
}

/// `y = g - p`, `s = d t` of one block.
#[inline(always)]
fn pair_block<T: Float>(y: &mut [T], s: &mut [T], g: &[T], p: &[T], d: &[T], t: T) {
    for ((y, &g), &p) in y.iter_mut().zip(g).zip(p) {
        *y = g - p;
    }
    for (s, &d) in s.iter_mut().zip(d) {
        *s = d * t;
    }
}

/// One chunk of the pair pass from element `from` (a multiple of 8) on, its lanes
/// continued in `acc` (`y . s`, `y . y`).
#[inline(always)]
fn pair_rest<T: Float>(c: PairChunk<'_, T>, from: usize, t: T, mut acc: [[f64; 8]; 2]) -> [f64; 2] {
    let (y, s, g, p, d) = c;
    let n = y.len();
    let (y, s, g, p, d) = (
        &mut y[from..],
        &mut s[from..n],
        &g[from..n],
        &p[from..n],
        &d[from..n],
    );
    let blocks = y.chunks_mut(BLOCK).zip(s.chunks_mut(BLOCK));
    for ((y, s), ((g, p), d)) in
        blocks.zip(g.chunks(BLOCK).zip(p.chunks(BLOCK)).zip(d.chunks(BLOCK)))
    {
        pair_block(y, s, g, p, d, t);
        let [ys, yy] = &mut acc;
        lane_dot(ys, y, s);
        lane_dot(yy, y, y);
    }
    [lanes_sum(acc[0]), lanes_sum(acc[1])]
}

/// Two chunks of the pair pass in lockstep over their common whole blocks.
#[inline(always)]
fn pair_two<T: Float>(c0: PairChunk<'_, T>, c1: PairChunk<'_, T>, t: T) -> [[f64; 2]; 2] {
    let len = c0.0.len().min(c1.0.len()) / BLOCK * BLOCK;
    let ([mut ys0, mut yy0], [mut ys1, mut yy1]) = ([[0.0f64; 8]; 2], [[0.0f64; 8]; 2]);
    let ((y0, s0, g0, p0, d0), (y1, s1, g1, p1, d1)) = (c0, c1);
    for b in (0..len).step_by(BLOCK) {
        let r = b..b + BLOCK;
        let (y0, s0) = (&mut y0[r.clone()], &mut s0[r.clone()]);
        let (y1, s1) = (&mut y1[r.clone()], &mut s1[r.clone()]);
        pair_block(y0, s0, &g0[r.clone()], &p0[r.clone()], &d0[r.clone()], t);
        pair_block(y1, s1, &g1[r.clone()], &p1[r.clone()], &d1[r], t);
        lane_dot2([&mut ys0, &mut ys1], [y0, y1], [s0, s1]);
        lane_dot2([&mut yy0, &mut yy1], [y0, y1], [y0, y1]);
    }
    [
        pair_rest((y0, s0, g0, p0, d0), len, t, [ys0, yy0]),
        pair_rest((y1, s1, g1, p1, d1), len, t, [ys1, yy1]),
    ]
}

multiversion! {
    /// One or two chunks of [`pair`] (the second empty for one): their `(y . s, y . y)`.
    fn pair_kernel<T: Float>(c0: PairChunk<'_, T>, c1: PairChunk<'_, T>, t: T) -> [[f64; 2]; 2] {
        if c1.0.is_empty() {
            return [pair_rest(c0, 0, t, [[0.0; 8]; 2]), [0.0; 2]];
        }
        pair_two(c0, c1, t)
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
    let (g, p, d) = (&g[..n], &p[..n], &d[..n]);
    if n <= SHORT {
        return pair_rest((y, &mut s[..n], g, p, d), 0, t, [[0.0; 8]; 2]);
    }
    let lv = level();
    let (oy, os) = (Out::of(y), Out::of(&mut s[..n]));
    chunked_groups(n, &|r, sums| {
        // SAFETY: the groups are disjoint parts of `y` and `s`, borrowed mutably for the pass.
        let (y, s) = unsafe { (oy.part(r.clone()), os.part(r.clone())) };
        let (g, p, d) = (&g[r.clone()], &p[r.clone()], &d[r.clone()]);
        let (h0, h1) = halves(&r);
        let (y0, y1) = y.split_at_mut(h0.end);
        let (s0, s1) = s.split_at_mut(h0.end);
        let c0 = (y0, s0, &g[h0.clone()], &p[h0.clone()], &d[h0]);
        let c1 = (y1, s1, &g[h1.clone()], &p[h1.clone()], &d[h1]);
        let out = pair_kernel(lv, c0, c1, t);
        sums.copy_from_slice(&out[..sums.len()]);
    })
}

/// Vectors this short take a plain loop in [`update_dot`] (the same sums).
const SHORT: usize = 64;

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

/// One chunk's slices of an update pass: `q` written, `a` and `w` read.
type UpdateChunk<'a, T> = (&'a mut [T], &'a [T], &'a [T]);

/// One chunk of an update pass from element `from` (a multiple of 8) on, its lanes
/// continued in `acc`.
#[inline(always)]
fn update_rest<T: Float>(
    c: UpdateChunk<'_, T>,
    from: usize,
    mut acc: [f64; 8],
    f: &impl Fn(T, T) -> T,
) -> f64 {
    let (q, a, w) = c;
    let n = q.len();
    let (q, a, w) = (&mut q[from..], &a[from..n], &w[from..n]);
    for ((q, a), w) in q
        .chunks_mut(BLOCK)
        .zip(a.chunks(BLOCK))
        .zip(w.chunks(BLOCK))
    {
        for (q, &a) in q.iter_mut().zip(a) {
            *q = f(*q, a);
        }
        lane_dot(&mut acc, w, q);
    }
    lanes_sum(acc)
}

/// One chunk, or two in lockstep over their common whole blocks, of an update pass.
#[inline(always)]
fn update_with<T: Float>(
    c0: UpdateChunk<'_, T>,
    c1: UpdateChunk<'_, T>,
    f: impl Fn(T, T) -> T,
) -> [f64; 2] {
    if c1.0.is_empty() {
        return [update_rest(c0, 0, [0.0; 8], &f), 0.0];
    }
    let len = c0.0.len().min(c1.0.len()) / BLOCK * BLOCK;
    let (mut a0, mut a1) = ([0.0f64; 8], [0.0f64; 8]);
    let ((q0, x0, w0), (q1, x1, w1)) = (c0, c1);
    for b in (0..len).step_by(BLOCK) {
        let r = b..b + BLOCK;
        let (q0, q1) = (&mut q0[r.clone()], &mut q1[r.clone()]);
        for (q, &a) in q0.iter_mut().zip(&x0[r.clone()]) {
            *q = f(*q, a);
        }
        for (q, &a) in q1.iter_mut().zip(&x1[r.clone()]) {
            *q = f(*q, a);
        }
        lane_dot2([&mut a0, &mut a1], [&w0[r.clone()], &w1[r]], [q0, q1]);
    }
    [
        update_rest((q0, x0, w0), len, a0, &f),
        update_rest((q1, x1, w1), len, a1, &f),
    ]
}

multiversion! {
    /// One or two chunks of [`update_dot`] (the second empty for one): their `w . q`.
    fn update_dot_kernel<T: Float>(c0: UpdateChunk<'_, T>, c1: UpdateChunk<'_, T>, u: Update<T>) -> [f64; 2] {
        match u {
            Update::Neg => update_with(c0, c1, |_, a| -a),
            Update::NegScale(h) => update_with(c0, c1, |_, a| -a * h),
            Update::Axpy(alpha) => update_with(c0, c1, |q, a| q + alpha * a),
            Update::AxpyScale(alpha, h) => update_with(c0, c1, |q, a| (q + alpha * a) * h),
        }
    }
}

/// [`update_dot`] of a short vector: one element at a time.
#[inline(always)]
fn short_update_dot<T: Float>(q: &mut [T], a: &[T], w: &[T], f: impl Fn(T, T) -> T) -> f64 {
    let mut acc = [0.0f64; 8];
    for (i, (q, (&a, &w))) in q.iter_mut().zip(a.iter().zip(w)).enumerate() {
        *q = f(*q, a);
        acc[i & 7] += w.to_f64() * q.to_f64();
    }
    lanes_sum(acc)
}

/// `q_i = u(q_i, a_i)`, then `sum w_i q_i` of the new `q` (as [`dot_sum`] sums it), in one
/// pass.
pub(super) fn update_dot<T: Float>(q: &mut [T], a: &[T], w: &[T], u: Update<T>) -> f64 {
    let n = q.len();
    let (a, w) = (&a[..n], &w[..n]);
    if n <= SHORT {
        // a plain loop: the SIMD kernel's setup costs more than it saves here
        return match u {
            Update::Neg => short_update_dot(q, a, w, |_, a| -a),
            Update::NegScale(h) => short_update_dot(q, a, w, |_, a| -a * h),
            Update::Axpy(alpha) => short_update_dot(q, a, w, |q, a| q + alpha * a),
            Update::AxpyScale(alpha, h) => short_update_dot(q, a, w, |q, a| (q + alpha * a) * h),
        };
    }
    let lv = level();
    let oq = Out::of(q);
    chunked_groups(n, &|r, sums| {
        // SAFETY: the groups are disjoint parts of `q`, borrowed mutably for the pass.
        let q = unsafe { oq.part(r.clone()) };
        let (a, w) = (&a[r.clone()], &w[r.clone()]);
        let (h0, h1) = halves(&r);
        let (q0, q1) = q.split_at_mut(h0.end);
        let c0 = (q0, &a[h0.clone()], &w[h0]);
        let c1 = (q1, &a[h1.clone()], &w[h1]);
        let out = update_dot_kernel(lv, c0, c1, u);
        sums[0] = [out[0]];
        if sums.len() > 1 {
            sums[1] = [out[1]];
        }
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
        for n in [5, 61, 67, 3 * CHUNK_ELEMENTS + 13] {
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
