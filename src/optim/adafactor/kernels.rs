//! Adafactor's element-wise passes and row/column reductions, compiled per SIMD level.

use super::reductions::{finish_norm, norm_of, row_norms_of};
use super::{lerp, AdafactorFloat};
use crate::runtime::simd::multiversion;
use std::mem::MaybeUninit;

multiversion! {
    /// `norm_torch` of the contiguous `x`.
    pub(super) fn norm_kernel<T: AdafactorFloat>(x: &[T]) -> T {
        norm_of(x)
    }
}

multiversion! {
    /// The row EWA of whole rows of one matrix: `r = lerp(r, ||row||^2 / cols, w)`.
    pub(super) fn rows_kernel<T: AdafactorFloat>(g: &[T], cols: usize, r: &mut [T], n_cols: T, w: T) {
        let mut norms = vec![T::ZERO; r.len()];
        if T::LANES == 8 {
            row_norms_of::<T, 8>(g, cols, &mut norms, None);
        } else {
            row_norms_of::<T, 4>(g, cols, &mut norms, None);
        }
        for (r, &norm) in r.iter_mut().zip(&norms) {
            *r = lerp(*r, norm * norm / n_cols, w);
        }
    }
}

multiversion! {
    /// The column EWA of the columns `first..first + c.len()` of the row-major `g` (`rows`
    /// of `cols > 1`): `norm_columns` each, then `c = lerp(c, ||col||^2 / rows, w)`.
    pub(super) fn cols_kernel<T: AdafactorFloat>(g: &[T], cols: usize, first: usize, c: &mut [T], n_rows: T, w: T) {
        let width = c.len();
        let mut acc = vec![T::ZERO; width];
        for row in g.chunks_exact(cols) {
            for (a, &v) in acc.iter_mut().zip(&row[first..first + width]) {
                *a = *a + v * v;
            }
        }
        for (c, &a) in c.iter_mut().zip(&acc) {
            let norm = a.sqrt();
            *c = lerp(*c, norm * norm / n_rows, w);
        }
    }
}

multiversion! {
    /// The factored update of whole rows: `u_ij = g_ij / sqrt(max(r_i c_j / mean, floor))`
    /// (rsqrt, then times `sign g_ij`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_rows_kernel<T: AdafactorFloat>(g: &[T], r: &[T], c: &[T], u: &mut [MaybeUninit<T>], mean: T, floor: T, sign: T) {
        let cols = c.len();
        for ((u, g), &ri) in u.chunks_exact_mut(cols).zip(g.chunks_exact(cols)).zip(r) {
            for ((u, &cj), &gij) in u.iter_mut().zip(c).zip(g) {
                u.write(factored_update(gij, ri, cj, mean, floor, sign));
            }
        }
    }
}

multiversion! {
    /// The unfactored EWA and update: `V = lerp(V, g^2, w)`, `u = g / sqrt(max(V, floor))`.
    pub(super) fn full_kernel<T: AdafactorFloat>(g: &[T], v: &mut [T], u: &mut [MaybeUninit<T>], w: T, floor: T, sign: T) {
        let n = u.len();
        let (g, v) = (&g[..n], &mut v[..n]);
        for ((u, v), &g) in u.iter_mut().zip(v.iter_mut()).zip(g) {
            let g = sign * g;
            *v = lerp(*v, g * g, w);
            let s = if *v < floor { floor } else { *v };
            u.write((T::ONE / s.sqrt()) * g);
        }
    }
}

multiversion! {
    /// `p = p decay + u scale`: one fused multiply-add, or (foreach) the product rounded.
    pub(super) fn apply_kernel<T: AdafactorFloat>(p: &mut [T], u: &[T], scale: T, decay: Option<T>, foreach: bool) {
        let u = &u[..p.len()];
        for (p, &u) in p.iter_mut().zip(u) {
            let q = match decay {
                Some(c) => *p * c,
                None => *p,
            };
            *p = if foreach { q + u * scale } else { u.fma(scale, q) };
        }
    }
}

/// One element of the factored update: `g / sqrt(max(r c / mean, floor))` (rsqrt, then
/// times `sign g`), as `update_rows_kernel` writes it.
#[inline(always)]
fn factored_update<T: AdafactorFloat>(g: T, r: T, c: T, mean: T, floor: T, sign: T) -> T {
    let v = r * c / mean;
    let v = if v < floor { floor } else { v };
    (T::ONE / v.sqrt()) * (sign * g)
}

/// Values staged between the update's computation and its norm's lanes (a multiple of 8).
const STAGE: usize = 512;

/// Adds `x` (whole vectors of `L`) to the lane sums `acc` as `lane_sums` does: `acc_l +
/// x_l^2`, the product rounded, the vectors in order.
#[inline(always)]
fn add_lanes<T: AdafactorFloat, const L: usize>(acc: &mut [T; L], x: &[T]) {
    for v in x.chunks_exact(L) {
        for (a, &v) in acc.iter_mut().zip(v) {
            *a = *a + v * v;
        }
    }
}

/// `norm_of` the factored update of every matrix of the row-major `g` (`rows` of `cols`
/// each), computed in flat order and fed to the norm's lanes through a small buffer, never
/// stored: the bits of `norm_of` over what `update_rows_kernel` writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn update_norm_of<T: AdafactorFloat, const L: usize>(
    g: &[T],
    r: &[T],
    c: &[T],
    means: &[T],
    rows: usize,
    cols: usize,
    floor: T,
    sign: T,
) -> T {
    let mut acc = [T::ZERO; L];
    let mut buf = [T::ZERO; STAGE + 8];
    let mut len = 0;
    for (((g, r), c), &mean) in g
        .chunks_exact(rows * cols)
        .zip(r.chunks_exact(rows))
        .zip(c.chunks_exact(cols))
        .zip(means)
    {
        for (g, &ri) in g.chunks_exact(cols).zip(r) {
            for (g, c) in g.chunks(STAGE).zip(c.chunks(STAGE)) {
                let n = g.len();
                for ((b, &gij), &cj) in buf[len..len + n].iter_mut().zip(g).zip(c) {
                    *b = factored_update(gij, ri, cj, mean, floor, sign);
                }
                len += n;
                let whole = len - len % L;
                add_lanes(&mut acc, &buf[..whole]);
                buf.copy_within(whole..len, 0);
                len -= whole;
            }
        }
    }
    finish_norm(&acc, &buf[..len], 0)
}

multiversion! {
    /// The norm of the factored update of every matrix of `g` (their `R`, `C` and means),
    /// without storing it: `norm_kernel` of what `update_rows_kernel` writes, the same bits.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_norm_kernel<T: AdafactorFloat>(g: &[T], r: &[T], c: &[T], means: &[T], rows: usize, cols: usize, floor: T, sign: T) -> T {
        if T::LANES == 8 {
            update_norm_of::<T, 8>(g, r, c, means, rows, cols, floor, sign)
        } else {
            update_norm_of::<T, 4>(g, r, c, means, rows, cols, floor, sign)
        }
    }
}

multiversion! {
    /// `apply_kernel` over whole rows of one matrix with the factored update computed again
    /// (as `update_rows_kernel` computes it): `p = p decay + u scale`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_rows_kernel<T: AdafactorFloat>(p: &mut [T], g: &[T], r: &[T], c: &[T], mean: T, floor: T, sign: T, scale: T, decay: Option<T>, foreach: bool) {
        let cols = c.len();
        for ((p, g), &ri) in p.chunks_exact_mut(cols).zip(g.chunks_exact(cols)).zip(r) {
            for ((p, &gij), &cj) in p.iter_mut().zip(g).zip(c) {
                let u = factored_update(gij, ri, cj, mean, floor, sign);
                let q = match decay {
                    Some(d) => *p * d,
                    None => *p,
                };
                *p = if foreach { q + u * scale } else { u.fma(scale, q) };
            }
        }
    }
}

multiversion! {
    /// `update_rows_kernel` over every matrix of `g` (their `R`, `C` and means) into `u`,
    /// returning `norm_kernel` of what it wrote: the norm's lanes fed from each row just
    /// written, so that their additions overlap the update's arithmetic.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_and_norm_kernel<T: AdafactorFloat>(g: &[T], r: &[T], c: &[T], means: &[T], rows: usize, cols: usize, u: &mut [MaybeUninit<T>], floor: T, sign: T) -> T {
        if T::LANES == 8 {
            update_and_norm_of::<T, 8>(g, r, c, means, rows, cols, u, floor, sign)
        } else {
            update_and_norm_of::<T, 4>(g, r, c, means, rows, cols, u, floor, sign)
        }
    }
}

/// `u[..]` as initialized values.
///
/// # Safety
/// Every element of `u` was written.
#[inline(always)]
unsafe fn written<T>(u: &[MaybeUninit<T>]) -> &[T] {
    // SAFETY: MaybeUninit<T> has T's layout; the caller vouches for initialization.
    unsafe { &*(std::ptr::from_ref::<[MaybeUninit<T>]>(u) as *const [T]) }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn update_and_norm_of<T: AdafactorFloat, const L: usize>(
    g: &[T],
    r: &[T],
    c: &[T],
    means: &[T],
    rows: usize,
    cols: usize,
    u: &mut [MaybeUninit<T>],
    floor: T,
    sign: T,
) -> T {
    let per = rows * cols;
    let mut acc = [T::ZERO; L];
    // u[..done] added to the lanes (a multiple of L), u[..filled] written
    let (mut done, mut filled) = (0, 0);
    for (((g, r), c), &mean) in g
        .chunks_exact(per)
        .zip(r.chunks_exact(rows))
        .zip(c.chunks_exact(cols))
        .zip(means)
    {
        for (g, &ri) in g.chunks_exact(cols).zip(r) {
            for ((u, &cj), &gij) in u[filled..filled + cols].iter_mut().zip(c).zip(g) {
                u.write(factored_update(gij, ri, cj, mean, floor, sign));
            }
            filled += cols;
            let end = filled - filled % L;
            // SAFETY: u[..filled] is written.
            add_lanes(&mut acc, unsafe { written(&u[done..end]) });
            done = end;
        }
    }
    // SAFETY: u[..filled] is written.
    finish_norm(&acc, unsafe { written(&u[done..filled]) }, 0)
}

multiversion! {
    /// A whole factored parameter's first pass on one thread: each matrix's row and column
    /// EWAs (one pass over each matrix: `rows_kernel` and `cols_kernel`'s sums at once; the
    /// column's norm for a single column)
    /// and `norm_kernel(p)`, returned: p's lanes fed a block of rows at a time alongside
    /// the moments' work, so that the norm's additions overlap it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn whole_kernel<T: AdafactorFloat>(p: &[T], g: &[T], rows: usize, cols: usize, r: &mut [T], c: &mut [T], n_rows: T, n_cols: T, w: T) -> T {
        if T::LANES == 8 {
            whole_of::<T, 8>(p, g, rows, cols, r, c, n_rows, n_cols, w)
        } else {
            whole_of::<T, 4>(p, g, rows, cols, r, c, n_rows, n_cols, w)
        }
    }
}

/// Elements of a block of rows in `whole_of`.
const BLOCK: usize = 4096;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn whole_of<T: AdafactorFloat, const L: usize>(
    p: &[T],
    g: &[T],
    rows: usize,
    cols: usize,
    r: &mut [T],
    c: &mut [T],
    n_rows: T,
    n_cols: T,
    w: T,
) -> T {
    let per = rows * cols;
    let p = &p[..g.len()];
    let mut acc = [T::ZERO; L];
    // p[..done] added to the lanes (a multiple of L)
    let mut done = 0;
    let mut norms = vec![T::ZERO; rows];
    let mut col_acc = vec![T::ZERO; cols];
    let block_rows = (BLOCK / cols).max(1);
    for (m, ((g, r), c)) in g
        .chunks_exact(per)
        .zip(r.chunks_exact_mut(rows))
        .zip(c.chunks_exact_mut(cols))
        .enumerate()
    {
        col_acc.fill(T::ZERO);
        let mut first = 0;
        while first < rows {
            let last = (first + block_rows).min(rows);
            let (gb, nb) = (&g[first * cols..last * cols], &mut norms[first..last]);
            row_norms_of::<T, L>(gb, cols, nb, (cols > 1).then_some(&mut col_acc[..]));
            let end = m * per + last * cols;
            let end = end - end % L;
            add_lanes(&mut acc, &p[done..end]);
            done = end;
            first = last;
        }
        for (r, &norm) in r.iter_mut().zip(&norms) {
            *r = lerp(*r, norm * norm / n_cols, w);
        }
        if cols > 1 {
            for (c, &a) in c.iter_mut().zip(&col_acc) {
                let norm = a.sqrt();
                *c = lerp(*c, norm * norm / n_rows, w);
            }
        } else {
            // a single column is contiguous: torch reduces it as a last dimension
            let norm = norm_of(g);
            c[0] = lerp(c[0], norm * norm / n_rows, w);
        }
    }
    finish_norm(&acc, &p[done..], 0)
}
