//! torch's CPU sums and norms, in its order (see the parent module).

use super::AdafactorFloat;
use crate::numerics::float::Float;

/// torch's 2-norm of `n` contiguous values `x(0), ..., x(n-1)` (its `vector_norm` over a
/// contiguous last dimension, `binary_kernel_reduce_lastdim`): whole vectors summed lane-wise
/// (`acc += x * x`, the product rounded), the lanes added in order, then the remaining
/// elements added to that sum one by one — a first block of four with the product rounded,
/// the rest with a fused multiply-add (how the compiler built torch's scalar tail) — and
/// the square root taken.
#[cfg(test)]
#[inline(always)]
pub fn norm_torch<T: AdafactorFloat>(n: usize, x: impl Fn(usize) -> T) -> T {
    let lanes = T::LANES;
    let body = n - n % lanes;
    let mut acc = [T::ZERO; 8];
    for start in (0..body).step_by(lanes) {
        for (l, a) in acc[..lanes].iter_mut().enumerate() {
            let v = x(start + l);
            *a = *a + v * v;
        }
    }
    let mut s = acc[0];
    for &a in &acc[1..lanes] {
        s = s + a;
    }
    let rounded = if n - body >= 4 { body + 4 } else { body };
    for k in body..rounded {
        let v = x(k);
        s = s + v * v;
    }
    for k in rounded..n {
        let v = x(k);
        s = v.fma(v, s);
    }
    s.sqrt()
}

/// torch's 2-norms of the columns of a row-major `(rows, cols)` matrix with `cols > 1`
/// (`vector_norm(dim=-2)`, the generic `binary_kernel_reduce`): each column summed in order,
/// `acc + x * x` with the product rounded; written to `out[..cols]`.
#[cfg(test)]
pub fn norm_columns<T: AdafactorFloat>(g: &[T], rows: usize, cols: usize, out: &mut [T]) {
    let out = &mut out[..cols];
    out.fill(T::ZERO);
    for row in g[..rows * cols].chunks_exact(cols) {
        for (a, &v) in out.iter_mut().zip(row) {
            *a = *a + v * v;
        }
    }
    for a in out {
        *a = a.sqrt();
    }
}

/// `ceil(log2(x))` as torch's `utils::CeilLog2` (1 for `x <= 2`).
pub(super) fn ceil_log2(x: usize) -> u32 {
    if x <= 2 {
        1
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// torch's `multi_row_sum` over `R` interleaved accumulators of `W` lanes: `size` rows,
/// row `i` contributing `load(i, k)` to accumulator `k`, summed in up to four levels of
/// chunks so that only partial sums of similar size meet.
pub(super) fn multi_row_sum<T: Float, const R: usize, const W: usize>(
    size: usize,
    load: impl Fn(usize, usize) -> [T; W],
) -> [[T; W]; R] {
    const LEVELS: usize = 4;
    let add = |a: &mut [T; W], b: [T; W]| a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
    let power = (ceil_log2(size) / LEVELS as u32).max(4);
    let step = 1usize << power;
    let mask = step - 1;
    let mut acc = [[[T::ZERO; W]; R]; LEVELS];
    let mut i = 0;
    while i + step <= size {
        for _ in 0..step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                add(a, load(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(j);
            for (u, l) in upper[0].iter_mut().zip(lower[j - 1].iter_mut()) {
                add(u, *l);
                *l = [T::ZERO; W];
            }
            if i & (mask << (j as u32 * power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            add(a, load(i, k));
        }
        i += 1;
    }
    let (first, rest) = acc.split_at_mut(1);
    for level in rest.iter() {
        for (a, &u) in first[0].iter_mut().zip(level) {
            add(a, u);
        }
    }
    first[0]
}

/// torch's `row_sum`: `size` values `load(i)` (of `W` lanes) summed by four interleaved
/// [`multi_row_sum`] accumulators, the leftover values added to the first, then the four
/// accumulators added in order.
pub(super) fn row_sum<T: Float, const W: usize>(
    size: usize,
    load: impl Fn(usize) -> [T; W],
) -> [T; W] {
    const ILP: usize = 4;
    let whole = size / ILP;
    let mut partial = multi_row_sum::<T, ILP, W>(whole, |i, k| load(i * ILP + k));
    let add = |a: &mut [T; W], b: [T; W]| a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
    for i in whole * ILP..size {
        add(&mut partial[0], load(i));
    }
    for k in 1..ILP {
        let p = partial[k];
        add(&mut partial[0], p);
    }
    partial[0]
}

/// torch's `sum` of contiguous values (its cascade sum, `SumKernel.cpp`): runs of at least
/// one vector are summed as vectors (`row_sum` over whole vectors, then the leftover
/// elements, then the lanes, in that order); shorter runs element by element.
pub fn sum_torch<T: AdafactorFloat>(x: &[T]) -> T {
    let lanes = T::LANES;
    if x.len() < lanes {
        return row_sum::<T, 1>(x.len(), |i| [x[i]])[0];
    }
    let vectors = x.len() / lanes;
    let acc = row_sum::<T, 8>(vectors, |v| {
        let mut lane = [T::ZERO; 8];
        lane[..lanes].copy_from_slice(&x[v * lanes..(v + 1) * lanes]);
        lane
    });
    let mut total = T::ZERO;
    for &v in &x[vectors * lanes..] {
        total = total + v;
    }
    for &a in &acc[..lanes] {
        total = total + a;
    }
    T::ZERO + total
}

/// The lane sums of torch's `norm_torch` over the whole vectors of `K` runs of one
/// length `body` (a multiple of `L`): `acc[k][l]` sums `x_k(s + l)^2` over the vectors in
/// order, the product rounded. `K` runs at once keep `K` addition chains in flight.
#[inline(always)]
pub(super) fn lane_sums<T: Float, const L: usize, const K: usize>(
    xs: [&[T]; K],
    body: usize,
) -> [[T; L]; K] {
    let xs = xs.map(|x| &x[..body]);
    let mut acc = [[T::ZERO; L]; K];
    let mut s = 0;
    while s + L <= body {
        for (a, x) in acc.iter_mut().zip(&xs) {
            let v: &[T; L] = x[s..s + L].try_into().expect("L values");
            for (a, &v) in a.iter_mut().zip(v) {
                *a = *a + v * v;
            }
        }
        s += L;
    }
    acc
}

/// `norm_torch`'s end: the lanes added in order, then the tail of `x` past `body`.
#[inline(always)]
pub(super) fn finish_norm<T: AdafactorFloat>(acc: &[T], x: &[T], body: usize) -> T {
    let mut s = acc[0];
    for &a in &acc[1..] {
        s = s + a;
    }
    let n = x.len();
    let rounded = if n - body >= 4 { body + 4 } else { body };
    for &v in &x[body..rounded] {
        s = s + v * v;
    }
    for &v in &x[rounded..] {
        s = v.fma(v, s);
    }
    s.sqrt()
}

/// `norm_torch` of the contiguous `x`, the same bits, vectorized.
#[inline(always)]
pub(super) fn norm_of<T: AdafactorFloat>(x: &[T]) -> T {
    let body = x.len() - x.len() % T::LANES;
    if T::LANES == 8 {
        let [acc] = lane_sums::<T, 8, 1>([x], body);
        finish_norm(&acc, x, body)
    } else {
        let [acc] = lane_sums::<T, 4, 1>([x], body);
        finish_norm(&acc, x, body)
    }
}

/// `norm_torch` of every row of the row-major `g` (rows of `cols`), four rows at a time;
/// with `col_acc`, each row's squares are also added to it (`acc_j + g_ij^2`, the rows in
/// order, as `norm_columns` sums), so one pass over `g` gives both.
#[inline(always)]
pub(super) fn row_norms_of<T: AdafactorFloat, const L: usize>(
    g: &[T],
    cols: usize,
    out: &mut [T],
    mut col_acc: Option<&mut [T]>,
) {
    let body = cols - cols % L;
    let mut add_columns = |x: &[T]| {
        if let Some(acc) = col_acc.as_deref_mut() {
            for (a, &v) in acc.iter_mut().zip(x) {
                *a = *a + v * v;
            }
        }
    };
    let mut quads = g.chunks_exact(4 * cols);
    let mut outs = out.chunks_exact_mut(4);
    for (q, o) in (&mut quads).zip(&mut outs) {
        let rows = [0, 1, 2, 3].map(|k| &q[k * cols..(k + 1) * cols]);
        let acc = lane_sums::<T, L, 4>(rows, body);
        for ((o, a), x) in o.iter_mut().zip(&acc).zip(rows) {
            *o = finish_norm(a, x, body);
            add_columns(x);
        }
    }
    for (x, o) in quads
        .remainder()
        .chunks_exact(cols)
        .zip(outs.into_remainder())
    {
        let [acc] = lane_sums::<T, L, 1>([x], body);
        *o = finish_norm(&acc, x, body);
        add_columns(x);
    }
}
