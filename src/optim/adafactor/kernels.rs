//! Adafactor's element-wise passes and row/column reductions, compiled per SIMD level.

use super::reductions::{norm_of, row_norms_of};
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
    /// The row and column EWAs of one whole matrix (`cols > 1`) in one pass over it:
    /// `rows_kernel` and `cols_kernel` at once, the same sums.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rows_cols_kernel<T: AdafactorFloat>(g: &[T], cols: usize, r: &mut [T], c: &mut [T], n_rows: T, n_cols: T, w: T) {
        let mut norms = vec![T::ZERO; r.len()];
        let mut acc = vec![T::ZERO; cols];
        if T::LANES == 8 {
            row_norms_of::<T, 8>(g, cols, &mut norms, Some(&mut acc));
        } else {
            row_norms_of::<T, 4>(g, cols, &mut norms, Some(&mut acc));
        }
        for (r, &norm) in r.iter_mut().zip(&norms) {
            *r = lerp(*r, norm * norm / n_cols, w);
        }
        for (c, &a) in c.iter_mut().zip(&acc) {
            let norm = a.sqrt();
            *c = lerp(*c, norm * norm / n_rows, w);
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
                let v = ri * cj / mean;
                let v = if v < floor { floor } else { v };
                u.write((T::ONE / v.sqrt()) * (sign * gij));
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
