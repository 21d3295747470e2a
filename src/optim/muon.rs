//! Muon as torch.optim.Muon runs it: momentum (Nesterov by default), the update
//! orthogonalized by Newton–Schulz iterations, decoupled weight decay and a shape-dependent
//! learning-rate scale, for 2-D parameters.
//!
//! In float32 mode the Newton–Schulz iteration runs its matrix products through the crate's
//! float32 gemm ([`crate::nn::matmul`], the one the networks use). In bfloat16 mode
//! (torch's) every tensor torch materializes in bfloat16 — the input, its normalization, and
//! the result of each `@` / `addmm` (`beta C + alpha A B`, rounded once) — is rounded to
//! bfloat16 where torch rounds it, and the products of bfloat16 matrices are summed in
//! float32 as torch's CPU kernels sum them ([`matmul_bf16`]: AVX-512 BF16 where the CPU has
//! it). The sums' order differs from torch's, so a float32 sum can round to a neighbouring
//! bfloat16 value now and then, which the iteration carries on (the tests bound it).

use crate::nn::gemm_bf16::{matmul_bf16, MatBf16};
use crate::numerics::float::Float;
use crate::numerics::half::Bf16;
use crate::runtime::simd::multiversion;

/// torch's `adjust_lr_fn`: how the learning rate scales with the shape `(A, B)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustLr {
    /// `sqrt(max(1, A / B))` (Keller Jordan's; torch's default).
    Original,
    /// `0.2 sqrt(max(A, B))` (Moonshot's, to match AdamW's update RMS).
    MatchRmsAdamw,
    /// `sqrt(A / B)` (Bernstein's).
    SpectralUnclamped,
}

/// The element type of the Newton–Schulz iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsDtype {
    /// Every intermediate rounded to bfloat16 as torch does.
    Bf16,
    /// float32 throughout.
    F32,
}

/// Hyper-parameters of one group, checked by the caller (Python owns their ranges).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonHyper {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// `(a, b, c)` of `X <- a X + (b G + c G^2) X` with `G = X X^T`.
    pub ns_coefficients: [f64; 3],
    pub eps: f64,
    pub ns_steps: usize,
    pub adjust_lr: AdjustLr,
    pub ns_dtype: NsDtype,
}

/// torch's `_adjust_lr`: `lr` times the ratio of `adjust` for a `(rows, cols)` parameter.
pub fn adjusted_lr(lr: f64, adjust: AdjustLr, rows: usize, cols: usize) -> f64 {
    let (a, b) = (rows as f64, cols as f64);
    let ratio = match adjust {
        AdjustLr::Original => (a / b).max(1.0).sqrt(),
        AdjustLr::MatchRmsAdamw => 0.2 * a.max(b).sqrt(),
        AdjustLr::SpectralUnclamped => (a / b).sqrt(),
    };
    lr * ratio
}

/// The parameter types, with the fused multiply-add torch's vectorized CPU kernels use
/// (`lerp_` and `add_(alpha=)` are `fmadd`s there).
pub trait MuonFloat: Float {
    /// `self * a + b`, rounded once.
    fn fma(self, a: Self, b: Self) -> Self;
    fn to_f32(self) -> f32;
    /// Rounded to float32 to odd (toward zero, the last bit set when inexact), so that a
    /// second rounding to bfloat16 (to nearest even) is the correct rounding of `self`, as
    /// torch's `.to(torch.bfloat16)` of a float64 tensor is.
    fn to_f32_odd(self) -> f32;
    fn from_f32(x: f32) -> Self;
}

impl MuonFloat for f32 {
    #[inline(always)]
    fn fma(self, a: f32, b: f32) -> f32 {
        self.mul_add(a, b)
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn to_f32_odd(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> f32 {
        x
    }
}

impl MuonFloat for f64 {
    #[inline(always)]
    fn fma(self, a: f64, b: f64) -> f64 {
        self.mul_add(a, b)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_f32_odd(self) -> f32 {
        let t = self as f32;
        if f64::from(t) == self || !t.is_finite() {
            return t;
        }
        let mut bits = t.to_bits();
        if f64::from(t).abs() > self.abs() {
            bits -= 1; // rounded away from zero: the neighbour toward zero
        }
        f32::from_bits(bits | 1)
    }
    fn from_f32(x: f32) -> f64 {
        f64::from(x)
    }
}

/// torch's `start.lerp(end, w)` on CPU: `start + w (end - start)` for `|w| < 0.5`, else
/// `end + (w - 1) (end - start)`, each one fused multiply-add.
#[inline(always)]
fn lerp<T: MuonFloat>(start: T, end: T, w: T) -> T {
    if w.abs() < T::from_f64(0.5) {
        w.fma(end - start, start)
    } else {
        (w - T::ONE).fma(end - start, end)
    }
}

fn round_in(dtype: NsDtype, x: &mut [f32]) {
    if dtype == NsDtype::Bf16 {
        for v in &mut *x {
            *v = Bf16::from_f32(*v).to_f32();
        }
    }
}

/// `C = A B` for row-major `A (m, k)`, `B (k, n)` given by their (row, column) strides,
/// summed in float32 by the crate's gemm into the row-major `(m, n)` buffer `c`.
fn product_f32(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    sa: (isize, isize),
    b: &[f32],
    sb: (isize, isize),
    c: &mut [f32],
) {
    assert_eq!(c.len(), m * n);
    // SAFETY: `a` and `b` hold matrices of these shapes and strides (the callers' buffers
    // are exactly that size) and `c` is an (m, n) row-major buffer of its own.
    unsafe {
        crate::nn::matmul(
            (m, k, n),
            a.as_ptr(),
            sa,
            b.as_ptr(),
            sb,
            c.as_mut_ptr(),
            true,
        );
    }
}

/// torch's `_zeropower_via_newtonschulz` of a row-major `(rows, cols)` matrix `g` (given in
/// float32), in `h.ns_dtype`: the result, row-major `(rows, cols)`, in float32 (holding
/// bfloat16 values in bfloat16 mode).
pub fn newton_schulz(g: &[f32], rows: usize, cols: usize, h: &MuonHyper) -> Vec<f32> {
    let transposed = rows > cols;
    let (r, c) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let level = crate::runtime::simd::level();
    let mut x: Vec<f32> = if transposed {
        transpose(g, (rows, cols))
    } else {
        g.to_vec()
    };
    round_in(h.ns_dtype, &mut x);
    let sum_sq = sum_of_squares(level, &x);
    let mut norm = [sum_sq.sqrt() as f32];
    round_in(h.ns_dtype, &mut norm);
    let mut eps = [h.eps as f32];
    round_in(h.ns_dtype, &mut eps);
    let norm = if norm[0] < eps[0] { eps[0] } else { norm[0] };
    divide(level, &mut x, norm, h.ns_dtype == NsDtype::Bf16);
    let coefficients = h.ns_coefficients.map(|v| v as f32);
    match h.ns_dtype {
        NsDtype::Bf16 => iterate_bf16(&mut x, (r, c), coefficients, h.ns_steps),
        NsDtype::F32 => iterate_f32(&mut x, (r, c), coefficients, h.ns_steps),
    }
    if transposed {
        transpose(&x, (r, c))
    } else {
        x
    }
}

/// The transpose of the row-major `(rows, cols)` matrix `x`.
fn transpose(x: &[f32], (rows, cols): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    for (i, row) in x.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

multiversion! {
    /// `sum x^2` in float64 (8 running sums, added in order at the end): exact for
    /// float32-held bfloat16 values unless their squares span more than 37 binary orders
    /// of magnitude.
    fn sum_of_squares(x: &[f32]) -> f64 {
        let mut lanes = [0.0f64; 8];
        let mut blocks = x.chunks_exact(8);
        for b in &mut blocks {
            for (l, &v) in lanes.iter_mut().zip(b) {
                *l += f64::from(v) * f64::from(v);
            }
        }
        let tail: f64 = blocks.remainder().iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        lanes.iter().sum::<f64>() + tail
    }
}

multiversion! {
    /// `x <- x / norm`, rounded to bfloat16 when `bf16`, element-wise.
    fn divide(x: &mut [f32], norm: f32, bf16: bool) {
        if bf16 {
            for v in x {
                *v = Bf16::from_f32(*v / norm).to_f32();
            }
        } else {
            for v in x {
                *v /= norm;
            }
        }
    }
}

/// `steps` iterations `G = X X^T`, `X <- a X + (b G + c G G) X` on the row-major `(r, c)`
/// `x` (`r <= c`), in float32.
fn iterate_f32(x: &mut [f32], (r, c): (usize, usize), [a, b, cc]: [f32; 3], steps: usize) {
    let (ci, ri) = (c as isize, r as isize);
    let mut gram = vec![0.0f32; r * r];
    let mut sq = vec![0.0f32; r * r];
    let mut ux = vec![0.0f32; r * c];
    for _ in 0..steps {
        product_f32((r, c, r), x, (ci, 1), x, (1, ci), &mut gram);
        product_f32((r, r, r), &gram, (ri, 1), &gram, (ri, 1), &mut sq);
        // U = b G + c G G, in place of G G
        sq.iter_mut()
            .zip(&gram)
            .for_each(|(s, &g)| *s = b * g + cc * *s);
        product_f32((r, r, c), &sq, (ri, 1), x, (ci, 1), &mut ux);
        x.iter_mut().zip(&ux).for_each(|(v, &p)| *v = a * *v + p);
    }
}

/// [`iterate_f32`] as torch runs it in bfloat16: `x` holds bfloat16 values; `G`, `U = b G +
/// c G G` (`addmm`, rounded once) and `a X + U X` (the same) are rounded to bfloat16, and
/// the products of bfloat16 matrices are summed in float32 ([`matmul_bf16`]); the two
/// symmetric ones (`X X^T`, `G G`) are computed on and above the diagonal only.
fn iterate_bf16(x: &mut [f32], (r, c): (usize, usize), [a, b, cc]: [f32; 3], steps: usize) {
    let level = crate::runtime::simd::level();
    let mut xh = vec![Bf16::default(); r * c];
    round_bf16(level, x, &mut xh);
    let mut gh = vec![Bf16::default(); r * r];
    let mut uh = vec![Bf16::default(); r * r];
    let mut prod = vec![0.0f32; r * r.max(c)];
    for _ in 0..steps {
        let xm = MatBf16::rows(&xh, c);
        let xt = MatBf16::transposed(&xh, c);
        let gram = &mut prod[..r * r];
        matmul_bf16(level, (r, c, r), xm, xt, gram, true, true);
        let (src, dst) = (Shared::of(gram), Shared::of_mut(&mut gh));
        in_blocks(r * r, &|at| {
            // SAFETY: the blocks are disjoint ranges of `gh`, `gram` is only read.
            unsafe { round_bf16(level, src.part(&at), dst.part_mut(&at)) };
        });
        // G is symmetric: G G = G G^T, whose B reads G's rows
        let gm = MatBf16::rows(&gh, r);
        let gt = MatBf16::transposed(&gh, r);
        matmul_bf16(level, (r, r, r), gm, gt, gram, true, true);
        let (g, sq, u) = (Shared::of(&gh), Shared::of(gram), Shared::of_mut(&mut uh));
        in_blocks(r * r, &|at| {
            // SAFETY: the blocks are disjoint ranges of `uh`; `gh` and `gram` are only read.
            unsafe { gram_update(level, g.part(&at), sq.part(&at), b, cc, u.part_mut(&at)) };
        });
        let um = MatBf16::rows(&uh, r);
        let ux = &mut prod[..r * c];
        matmul_bf16(level, (r, r, c), um, xm, ux, false, true);
        let (v, p) = (Shared::of_mut(&mut xh), Shared::of(ux));
        in_blocks(r * c, &|at| {
            // SAFETY: the blocks are disjoint ranges of `xh`; `ux` is only read.
            unsafe { next_x(level, v.part_mut(&at), p.part(&at), a) };
        });
    }
    x.iter_mut().zip(&xh).for_each(|(v, h)| *v = h.to_f32());
}

/// A slice's start and length, shared with the pool's threads for passes over disjoint
/// parts of it.
#[derive(Clone, Copy)]
struct Shared<T> {
    at: usize,
    len: usize,
    of: std::marker::PhantomData<*const T>,
}

// SAFETY: only an address; the passes that use it keep their parts disjoint.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn of(x: &[T]) -> Self {
        Shared {
            at: x.as_ptr() as usize,
            len: x.len(),
            of: std::marker::PhantomData,
        }
    }

    fn of_mut(x: &mut [T]) -> Self {
        Shared {
            at: x.as_mut_ptr() as usize,
            len: x.len(),
            of: std::marker::PhantomData,
        }
    }

    /// The elements `at` of the slice.
    ///
    /// # Safety
    /// The slice is alive and nobody writes these elements meanwhile.
    unsafe fn part(&self, at: &std::ops::Range<usize>) -> &[T] {
        assert!(at.end <= self.len);
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts((self.at as *const T).add(at.start), at.len()) }
    }

    /// The elements `at` of the slice, to write.
    ///
    /// # Safety
    /// The slice was borrowed mutably, is alive, and nobody else reads or writes these
    /// elements meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part_mut(&self, at: &std::ops::Range<usize>) -> &mut [T] {
        assert!(at.end <= self.len);
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut((self.at as *mut T).add(at.start), at.len()) }
    }
}

/// Element-wise passes over at least twice this many values run on the pool by blocks.
const PASS_BLOCK: usize = 1 << 15;

/// Runs `pass` over the blocks of `0..len` of `PASS_BLOCK` values, on the pool when there
/// are several and it has threads (an element-wise pass: its results do not depend on the
/// cut).
fn in_blocks(len: usize, pass: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    if len < 2 * PASS_BLOCK || crate::runtime::parallel::num_threads() < 2 {
        return pass(0..len);
    }
    crate::runtime::parallel::for_each_index(len.div_ceil(PASS_BLOCK), &|i| {
        pass(i * PASS_BLOCK..((i + 1) * PASS_BLOCK).min(len));
    });
}

multiversion! {
    /// `out = bf16(x)`, element-wise.
    fn round_bf16(x: &[f32], out: &mut [Bf16]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = Bf16::from_f32(v);
        }
    }
}

multiversion! {
    /// `u = bf16(b g + c s)` (torch's `addmm(G, G, G, beta=b, alpha=c)` with `s = G G`),
    /// element-wise.
    fn gram_update(g: &[Bf16], s: &[f32], b: f32, c: f32, u: &mut [Bf16]) {
        for ((u, &g), &s) in u.iter_mut().zip(g).zip(s) {
            *u = Bf16::from_f32(b * g.to_f32() + c * s);
        }
    }
}

multiversion! {
    /// `x = bf16(a x + p)` (torch's `addmm(X, U, X, beta=a)` with `p = U X`), element-wise.
    fn next_x(x: &mut [Bf16], p: &[f32], a: f32) {
        for (v, &p) in x.iter_mut().zip(p) {
            *v = Bf16::from_f32(a * v.to_f32() + p);
        }
    }
}

multiversion! {
    /// `B <- lerp(B, g, w)`, element-wise.
    fn momentum<T: MuonFloat>(buf: &mut [T], grad: &[T], w: T) {
        for (b, &g) in buf.iter_mut().zip(grad) {
            *b = lerp(*b, g, w);
        }
    }
}

multiversion! {
    /// `out = narrow(lerp(g, B, m))` (Nesterov) or `narrow(B)`, element-wise; `narrow` rounds
    /// to float32 to odd when `odd` (for a second rounding to bfloat16), else to nearest.
    fn update_of<T: MuonFloat>(grad: &[T], buf: &[T], m: T, nesterov: bool, odd: bool, out: &mut [f32]) {
        let narrow = |v: T| if odd { v.to_f32_odd() } else { v.to_f32() };
        if nesterov {
            for ((o, &g), &b) in out.iter_mut().zip(grad).zip(buf) {
                *o = narrow(lerp(g, b, m));
            }
        } else {
            for (o, &b) in out.iter_mut().zip(buf) {
                *o = narrow(b);
            }
        }
    }
}

multiversion! {
    /// `p <- O alpha + p decay` (one fused multiply-add), element-wise.
    fn apply<T: MuonFloat>(param: &mut [T], ortho: &[f32], alpha: T, decay: T) {
        for (p, &o) in param.iter_mut().zip(ortho) {
            *p = T::from_f32(o).fma(alpha, *p * decay);
        }
    }
}

/// One Muon step of a row-major `(rows, cols)` parameter with its gradient and momentum
/// buffer (torch's `_single_tensor_muon`):
///
/// `B <- lerp(B, g, 1 - momentum)`; `U = lerp(g, B, momentum)` (Nesterov) or `B`;
/// `O = NS(U)`; `p <- p (1 - lr weight_decay)`; `p <- p - adjusted_lr O`.
pub fn step<T: MuonFloat>(
    h: &MuonHyper,
    (rows, cols): (usize, usize),
    param: &mut [T],
    grad: &[T],
    buf: &mut [T],
) {
    let n = rows * cols;
    let (param, grad, buf) = (&mut param[..n], &grad[..n], &mut buf[..n]);
    let level = crate::runtime::simd::level();
    momentum(level, buf, grad, T::from_f64(1.0 - h.momentum));
    let mut update = vec![0.0f32; n];
    let odd = h.ns_dtype == NsDtype::Bf16;
    update_of(
        level,
        grad,
        buf,
        T::from_f64(h.momentum),
        h.nesterov,
        odd,
        &mut update,
    );
    let ortho = newton_schulz(&update, rows, cols, h);
    let decay = T::from_f64(1.0 - h.lr * h.weight_decay);
    let alpha = T::from_f64(-adjusted_lr(h.lr, h.adjust_lr, rows, cols));
    apply(level, param, &ortho, alpha, decay);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(ns_dtype: NsDtype) -> MuonHyper {
        MuonHyper {
            lr: 0.02,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_coefficients: [3.4445, -4.7750, 2.0315],
            eps: 1e-7,
            ns_steps: 5,
            adjust_lr: AdjustLr::Original,
            ns_dtype,
        }
    }

    /// A full-rank matrix of pseudo-random elements in [-1, 1).
    fn matrix(rows: usize, cols: usize) -> Vec<f32> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..rows * cols)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `X X^T` (or `X^T X` for tall X) in f64: the Gram matrix of the shorter side.
    fn gram(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        let (r, c) = (rows.min(cols), rows.max(cols));
        let at = |i: usize, k: usize| {
            f64::from(if rows <= cols {
                x[i * cols + k]
            } else {
                x[k * cols + i]
            })
        };
        let mut out = vec![0.0; r * r];
        for i in 0..r {
            for j in 0..r {
                out[i * r + j] = (0..c).map(|k| at(i, k) * at(j, k)).sum();
            }
        }
        out
    }

    #[test]
    fn newton_schulz_brings_singular_values_near_one_for_wide_and_tall_matrices() {
        for (rows, cols) in [(6, 40), (40, 6), (17, 17)] {
            let o = newton_schulz(&matrix(rows, cols), rows, cols, &hyper(NsDtype::F32));
            let g = gram(&o, rows, cols);
            let r = rows.min(cols);
            // Muon's quintic leaves singular values in about (0.5, 1.5), not exactly 1.
            for i in 0..r {
                assert!(
                    g[i * r + i] > 0.2 && g[i * r + i] < 2.3,
                    "{rows}x{cols} {i}"
                );
            }
        }
    }

    #[test]
    fn the_bfloat16_iteration_returns_bfloat16_values_close_to_the_float32_one() {
        let (rows, cols) = (8, 24);
        let g = matrix(rows, cols);
        let lo = newton_schulz(&g, rows, cols, &hyper(NsDtype::Bf16));
        let hi = newton_schulz(&g, rows, cols, &hyper(NsDtype::F32));
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (&l, &h) in lo.iter().zip(&hi) {
            assert_eq!(Bf16::from_f32(l).to_f32(), l);
            diff += f64::from(l - h).powi(2);
            norm += f64::from(h).powi(2);
        }
        // bfloat16 rounding (2^-9 relative) amplified by the quintic's steep slope near zero
        assert!(
            diff.sqrt() < 0.1 * norm.sqrt(),
            "{} {}",
            diff.sqrt(),
            norm.sqrt()
        );
    }

    #[test]
    fn a_step_with_zero_ns_steps_is_the_normalized_nesterov_momentum() {
        let h = MuonHyper {
            ns_steps: 0,
            ..hyper(NsDtype::F32)
        };
        let (rows, cols) = (3, 2);
        let g: Vec<f64> = (0..6).map(|i| f64::from(i) - 2.5).collect();
        let mut buf = vec![0.5f64; 6];
        let mut p = vec![1.0f64; 6];
        step(&h, (rows, cols), &mut p, &g, &mut buf);
        let b: Vec<f64> = (0..6).map(|i| 0.95 * 0.5 + 0.05 * g[i]).collect();
        let u: Vec<f64> = (0..6).map(|i| 0.05 * g[i] + 0.95 * b[i]).collect();
        let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        let lr = 0.02 * 1.5f64.sqrt();
        for i in 0..6 {
            assert!((buf[i] - b[i]).abs() < 1e-12);
            let want = (1.0 - 0.02 * 0.1) - lr * u[i] / norm;
            assert!((p[i] - want).abs() < 1e-6, "{i}: {} {want}", p[i]);
        }
    }

    #[test]
    fn float64_rounds_to_bfloat16_once_through_round_to_odd() {
        // 1 + 2^-8 is a bfloat16 tie (to even: 1); a float64 just above it must round up,
        // which rounding to float32 first (to nearest: the tie itself) would lose.
        let above = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        assert_eq!(Bf16::from_f32(above as f32).to_f32(), 1.0);
        assert_eq!(
            f64::from(Bf16::from_f32(above.to_f32_odd()).to_f32()),
            1.0 + 2f64.powi(-7)
        );
        let below = 1.0 + 2f64.powi(-8) - 2f64.powi(-40);
        assert_eq!(Bf16::from_f32(below.to_f32_odd()).to_f32(), 1.0);
        for x in [0.1f64, -3.7, 1e-30, -1.0 / 3.0] {
            let odd = x.to_f32_odd();
            // inexact: the odd one of the two float32 neighbours of x
            assert!(odd.to_bits() & 1 == 1, "{x}");
            assert!(
                (f64::from(odd) - x).abs() <= x.abs() * 2f64.powi(-23),
                "{x}"
            );
        }
        assert_eq!(65504.0f64.to_f32_odd(), 65504.0);
    }

    #[test]
    fn adjusted_lr_follows_torch() {
        assert_eq!(adjusted_lr(1.0, AdjustLr::Original, 8, 2), 2.0);
        assert_eq!(adjusted_lr(1.0, AdjustLr::Original, 2, 8), 1.0);
        assert_eq!(adjusted_lr(1.0, AdjustLr::SpectralUnclamped, 2, 8), 0.5);
        assert!((adjusted_lr(1.0, AdjustLr::MatchRmsAdamw, 2, 25) - 1.0).abs() < 1e-15);
    }
}
