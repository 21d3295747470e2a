//! bfloat16 matrix products summed in float32: `C = A B` with `A (m, k)` and `B (k, n)`
//! bfloat16 and `C` float32, as torch's CPU `mm` of bfloat16 matrices computes them before
//! rounding (oneDNN's AVX-512 BF16 kernels).
//!
//! Where the CPU has AVX-512 BF16 ([`Level::has_bf16_rounding`]) the product runs on
//! `vdpbf16ps`, which adds two products of bfloat16 pairs to each of 16 float32 lanes:
//! A and B are packed once per product (on the pool when it is large) into panels whose
//! elements are pairs of consecutive `k` (A: `MR` rows per panel, one broadcast pair per
//! row; B: `NR` columns per panel, two vectors per pair), and a register-blocked kernel
//! keeps an `MR x NR` block of C in 16 vector registers over a block of `KCP` pairs of `k`
//! (one `vdpbf16ps` per pair and vector, 64 floating-point operations). On one Zen 4 core
//! it runs at about 215 GFLOP/s at 256 x 256 and 190 at 2000 x 2000 (torch's oneDNN
//! `mm`: 198 and 202). Each element of C is one chain of float32 adds over the
//! pairs of `k` in order, whatever the blocking or the tiles, so the bits depend on the
//! shape alone (not on the thread count). Elsewhere the values are widened to float32
//! (exactly) and multiplied by faer's float32 gemm ([`super::gemm::matmul`]): products of
//! bfloat16 values are exact in float32, sums rounded in float32 as torch's kernels without
//! BF16 do.
//!
//! A product known to be symmetric (`X X^T`, or the square of a symmetric matrix) can be
//! asked for with `upper`: only the blocks of C that touch the diagonal or lie above it are
//! computed, and the rest mirrored, for about half the multiply-adds.

// The blocking, tiling and mirroring serve the x86-64 kernel only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::gemm::on_pool;
use crate::numerics::half::Bf16;
use crate::runtime::simd::Level;

/// A bfloat16 matrix: `data[i * rs + j * cs]` is element `(i, j)` (strides in elements).
#[derive(Clone, Copy, Debug)]
pub struct MatBf16<'a> {
    pub data: &'a [Bf16],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatBf16<'a> {
    /// A row-major matrix of `cols` columns.
    pub fn rows(data: &'a [Bf16], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix of `cols` columns.
    pub fn transposed(data: &'a [Bf16], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Whether a `(rows, cols)` matrix with these strides lies inside `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Rows of C per register block.
const MR: usize = 8;
/// Columns of C per register block: two vectors of 16 float32.
const NR: usize = 32;
/// Pairs of `k` per block of the packed operands: B's panel (`KCP x NR` pairs, 16 KiB)
/// stays in the level-1 cache while A's block streams past it.
const KCP: usize = 128;
/// Rows of C per pass over a tile's columns: the `MC / MR` A panels of a block of pairs
/// (96 KiB) stay in the level-2 cache while B's panels go past them.
const MC: usize = 192;

/// Products of at least twice this many multiply-adds (about 15 us of one core) are cut
/// into tiles of C computed on the pool.
const TILE_MIN_MULS: usize = 1 << 21;
/// The most tiles a product is cut into.
const MAX_TILES: usize = 16;

/// `C = A B`, C row-major `(m, n)` float32 with row stride `n`; with `upper` (C is known to
/// be symmetric, `m == n`) only the register blocks touching or above the diagonal are
/// computed and C's lower triangle is then copied from its upper one. Runs on the pool when
/// `par` and the product is large; the bits do not depend on the thread count. `level`
/// picks the AVX-512 BF16 kernel where it has it, else faer's float32 gemm.
///
/// # Panics
/// If A or B does not hold a matrix of its shape, C is not `m * n` long, or `upper` with
/// `m != n`.
pub fn matmul_bf16(
    level: Level,
    (m, k, n): (usize, usize, usize),
    a: MatBf16<'_>,
    b: MatBf16<'_>,
    c: &mut [f32],
    upper: bool,
    par: bool,
) {
    assert!(a.holds(m, k), "A does not hold a ({m}, {k}) matrix");
    assert!(b.holds(k, n), "B does not hold a ({k}, {n}) matrix");
    assert_eq!(c.len(), m * n, "C must hold the (m, n) product");
    assert!(!upper || m == n, "a symmetric product is square");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_bf16_rounding() {
        // SAFETY: the CPU has AVX-512 F, BW and BF16; the asserts checked the shapes.
        unsafe { x86::matmul((m, k, n), a, b, c, upper, par) };
        if upper {
            mirror_upper(c, n, par);
        }
        return;
    }
    let _ = (level, upper);
    let widen = |x: &[Bf16]| x.iter().map(|v| v.to_f32()).collect::<Vec<f32>>();
    let (wa, wb) = (widen(a.data), widen(b.data));
    let stride = |s: usize| isize::try_from(s).expect("strides fit in isize");
    // SAFETY: the widened copies have the layouts the asserts checked, and C is (m, n).
    unsafe {
        super::gemm::matmul(
            (m, k, n),
            wa.as_ptr(),
            (stride(a.rs), stride(a.cs)),
            wb.as_ptr(),
            (stride(b.rs), stride(b.cs)),
            c.as_mut_ptr(),
            par,
        );
    }
}

/// Copies the upper triangle of the row-major `(n, n)` matrix `c` onto its lower one, by
/// square blocks (a transpose); small ones, as a block's rows `4 n` bytes apart can share
/// few level-1 cache sets when `n` is a power of two. On the pool by blocks of rows when
/// `par` and `c` is large.
fn mirror_upper(c: &mut [f32], n: usize, par: bool) {
    const B: usize = 8;
    let at = c.as_mut_ptr() as usize;
    let rows = |i0: usize| {
        let c = at as *mut f32;
        for j0 in (0..=i0).step_by(B) {
            for i in i0..(i0 + B).min(n) {
                for j in j0..(j0 + B).min(i) {
                    // SAFETY: (i, j) and (j, i) are inside the (n, n) matrix; the calls
                    // write disjoint rows `i0..i0 + B` below the diagonal and read above it.
                    unsafe { *c.add(i * n + j) = *c.add(j * n + i) };
                }
            }
        }
    };
    let blocks = n.div_ceil(B);
    if par && n * n >= 2 * MIRROR_PAR_ELEMENTS {
        on_pool(blocks, &|b| rows(b * B));
    } else {
        (0..blocks).for_each(|b| rows(b * B));
    }
}

/// Matrices of at least twice this many elements are mirrored on the pool.
const MIRROR_PAR_ELEMENTS: usize = 1 << 15;

/// How C of a product is cut into tiles: `(rows, columns)` per tile, multiples of the
/// register block, square when `upper`. A function of the shape alone.
fn tiles(m: usize, k: usize, n: usize, upper: bool) -> (usize, usize) {
    let want = (m * k * n / TILE_MIN_MULS).clamp(1, MAX_TILES);
    let round = |len: usize, blocks: usize| len.div_ceil(blocks).div_ceil(NR) * NR;
    if upper {
        // b (b + 1) / 2 tiles on and above the diagonal
        let blocks = (1..=MAX_TILES)
            .find(|b| b * (b + 1) / 2 >= want)
            .unwrap_or(1);
        let side = round(m, blocks).min(m);
        return (side, side);
    }
    let row_blocks = want.min(m.div_ceil(2 * NR));
    let col_blocks = (want / row_blocks).min(n.div_ceil(2 * NR)).max(1);
    (round(m, row_blocks).min(m), round(n, col_blocks).min(n))
}

/// The tiles of C to compute: `(first row, first column)` of each, row-major, those wholly
/// below the diagonal left out when `upper`.
fn tile_origins(m: usize, n: usize, (tr, tc): (usize, usize), upper: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for r0 in (0..m).step_by(tr) {
        for c0 in (0..n).step_by(tc) {
            if !upper || r0 < c0 + tc {
                out.push((r0, c0));
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_dpbf16_ps, _mm512_loadu_epi32, _mm512_loadu_ps,
        _mm512_set1_epi32, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_shuffle_i32x4,
        _mm512_storeu_epi32, _mm512_storeu_ps, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64,
        _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm_prefetch, _MM_HINT_T0,
    };
    use std::cell::RefCell;

    use super::{on_pool, tile_origins, tiles, MatBf16, KCP, MC, MR, NR};
    use crate::numerics::half::Bf16;

    /// `C = A B` as [`super::matmul_bf16`] on the AVX-512 BF16 kernel, C's lower triangle
    /// left as it comes when `upper` (the caller mirrors it): A and B packed once (on the
    /// pool when large), then the tiles of C.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and BF16; A and B hold their shapes; C is `m * n`.
    pub(super) unsafe fn matmul(
        (m, k, n): (usize, usize, usize),
        a: MatBf16<'_>,
        b: MatBf16<'_>,
        c: &mut [f32],
        upper: bool,
        par: bool,
    ) {
        let pairs = k.div_ceil(2);
        let blocks = pairs.div_ceil(KCP);
        let (panels_a, panels_b) = (m.div_ceil(MR), n.div_ceil(NR));
        let (tr, tc) = tiles(m, k, n, upper);
        let origins = tile_origins(m, n, (tr, tc), upper);
        let par = par && origins.len() > 1;
        PACKED.with_borrow_mut(|(pa, pb)| {
            pa.resize(blocks * panels_a * MR * KCP, 0);
            pb.resize(blocks * panels_b * KCP * NR, 0);
            let (at_a, at_b) = (pa.as_mut_ptr() as usize, pb.as_mut_ptr() as usize);
            // one task per block of pairs and panel: A's, then B's
            let pack = |t: usize| {
                let (pc, q) = (KCP * (t % blocks), t / blocks);
                let kcp = KCP.min(pairs - pc);
                if q < panels_a {
                    let (i0, len) = (q * MR, MR * KCP);
                    let at = (at_a as *mut u32).wrapping_add((pc / KCP * panels_a + q) * len);
                    // SAFETY: the tasks write disjoint panels of `pa`; A holds (m, k).
                    unsafe {
                        let out = std::slice::from_raw_parts_mut(at, len);
                        pack_a(a, k, pc, kcp, i0, MR.min(m - i0), out);
                    }
                } else {
                    let q = q - panels_a;
                    let (j0, len) = (q * NR, KCP * NR);
                    let at = (at_b as *mut u32).wrapping_add((pc / KCP * panels_b + q) * len);
                    // SAFETY: as above, for `pb` and B (k, n).
                    unsafe {
                        let out = std::slice::from_raw_parts_mut(at, len);
                        pack_b(b, k, pc, kcp, j0, NR.min(n - j0), out);
                    }
                }
            };
            let tasks = blocks * (panels_a + panels_b);
            if par {
                on_pool(tasks, &pack);
            } else {
                (0..tasks).for_each(pack);
            }
            let at_c = c.as_mut_ptr() as usize;
            let tile = |t: usize| {
                let (r0, c0) = origins[t];
                let rows = r0..(r0 + tr).min(m);
                let cols = c0..(c0 + tc).min(n);
                let packed = (at_a as *const u32, at_b as *const u32);
                // SAFETY: the tiles are disjoint blocks of C; the packed panels are only
                // read; the CPU has the features, as the caller promised.
                unsafe { tile_of(k, (m, n), packed, at_c as *mut f32, rows, cols, upper) };
            };
            if par {
                on_pool(origins.len(), &tile);
            } else {
                (0..origins.len()).for_each(tile);
            }
        });
    }

    thread_local! {
        /// Packed A and B of the products this thread starts, kept between calls.
        static PACKED: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// The rows `rows` and columns `cols` of `C = A B` (C row-major `(m, n)`) from the packed
    /// panels (`(A, B)`: per block of `KCP` pairs, A's panels of `MR` rows then B's of `NR`
    /// columns), by blocks of pairs, of `MC` rows and of `NR` columns, register blocks wholly
    /// below the diagonal skipped when `upper`.
    ///
    /// # Safety
    /// As [`matmul`]; the panels are packed; no other thread writes this block of C.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile_of(
        k: usize,
        (m, n): (usize, usize),
        (pa, pb): (*const u32, *const u32),
        c: *mut f32,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        upper: bool,
    ) {
        let pairs = k.div_ceil(2);
        let (panels_a, panels_b) = (m.div_ceil(MR), n.div_ceil(NR));
        for pc in (0..pairs).step_by(KCP) {
            let kcp = KCP.min(pairs - pc);
            let (block_a, block_b) = (pc / KCP * panels_a, pc / KCP * panels_b);
            for ic in rows.clone().step_by(MC) {
                let rows_end = (ic + MC).min(rows.end);
                for j0 in cols.clone().step_by(NR) {
                    let w = NR.min(cols.end - j0);
                    for i0 in (ic..rows_end).step_by(MR) {
                        if upper && i0 >= j0 + w {
                            break;
                        }
                        let h = MR.min(rows_end - i0);
                        // the next register block's C, from memory when C is large: its
                        // loads would otherwise stall the start of the next kernel
                        for i in (i0 + MR..(i0 + 2 * MR).min(rows_end)).rev() {
                            let at = c.wrapping_add(i * n + j0);
                            _mm_prefetch::<_MM_HINT_T0>(at.cast());
                            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(16).cast());
                        }
                        // SAFETY: the panels of rows i0.. and columns j0.. in this block
                        // of pairs are packed; (i0, j0) is inside this block of C.
                        unsafe {
                            kernel_edge(
                                kcp,
                                pa.add((block_a + i0 / MR) * MR * KCP),
                                pb.add((block_b + j0 / NR) * KCP * NR),
                                c.add(i0 * n + j0),
                                n,
                                (h, w),
                                pc > 0,
                            );
                        }
                    }
                }
            }
        }
    }

    /// The pair `(x[i], x[i + 1])` (the second 0 past `k`) as a `u32`, the first in the
    /// low half: the layout `vdpbf16ps` multiplies.
    #[inline(always)]
    fn pair(lo: u16, hi: u16) -> u32 {
        u32::from(lo) | (u32::from(hi) << 16)
    }

    /// Packs `lines` lines of a matrix over the pairs `pc..pc + kcp` of `k` as
    /// `out[p * ps + l * ls_out]`: line `l` starts at `d[first + l * ls]` and steps `ks`
    /// along `k`. The element past `k` is zero (`out` is zeroed first when `lines < width`).
    ///
    /// # Safety
    /// Every element `first + l * ls + q * ks` (`l < lines`, `q < k`) is inside `d`; `out`
    /// holds every `p * ps + l * ls_out` for `p < kcp`, `l < width`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn pack_pairs(
        d: &[Bf16],
        (first, ls, ks): (usize, usize, usize),
        lines: usize,
        k: usize,
        (pc, kcp): (usize, usize),
        (width, ps, ls_out): (usize, usize, usize),
        out: &mut [u32],
    ) {
        if kcp == 0 {
            return;
        }
        debug_assert!(lines == 0 || first + (lines - 1) * ls + (k - 1) * ks < d.len());
        debug_assert!(out.len() > (kcp - 1) * ps + (width - 1) * ls_out);
        if lines < width {
            out.fill(0);
        }
        // pairs wholly inside k; the last one of an odd k is (x, 0)
        let full = kcp.min(k / 2 - pc.min(k / 2));
        let d = d.as_ptr();
        let o = out.as_mut_ptr();
        for l in 0..lines {
            let line = first + l * ls;
            let o = o.add(l * ls_out);
            // SAFETY: as the caller promises.
            unsafe {
                if ks == 1 && ps == 1 {
                    std::ptr::copy_nonoverlapping(
                        d.add(line + 2 * pc).cast::<u8>(),
                        o.cast::<u8>(),
                        4 * full,
                    );
                } else if ks == 1 {
                    let src = d.add(line + 2 * pc);
                    for p in 0..full {
                        // volatile: a plain store is vectorized into a scatter, many times
                        // slower on AMD Zen 4 than one store per value
                        o.add(p * ps)
                            .write_volatile(src.add(2 * p).cast::<u32>().read_unaligned());
                    }
                } else {
                    for p in 0..full {
                        let k0 = 2 * (pc + p);
                        let lo = (*d.add(line + k0 * ks)).0;
                        let hi = (*d.add(line + (k0 + 1) * ks)).0;
                        o.add(p * ps).write_volatile(pair(lo, hi));
                    }
                }
                if full < kcp {
                    *o.add(full * ps) = pair((*d.add(line + (k - 1) * ks)).0, 0);
                }
            }
        }
    }

    /// Packs rows `i0..i0 + h` of A over the pairs `pc..pc + kcp` of `k` as
    /// `out[i * KCP + p]` (each row's pairs in a row, as the kernel broadcasts them), rows
    /// past `h` and the element past `k` zero.
    ///
    /// # Safety
    /// A holds a `(i0 + h, k)` matrix; the CPU has AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_a(
        a: MatBf16<'_>,
        k: usize,
        pc: usize,
        kcp: usize,
        i0: usize,
        h: usize,
        out: &mut [u32],
    ) {
        assert!(out.len() >= KCP * MR);
        let layout = (MR, 1, KCP);
        // SAFETY: as the caller promises.
        unsafe {
            pack_pairs(
                a.data,
                (i0 * a.rs, a.rs, a.cs),
                h,
                k,
                (pc, kcp),
                layout,
                out,
            );
        };
    }

    /// Packs columns `j0..j0 + w` of B over the pairs `pc..pc + kcp` of `k` as
    /// `out[p * NR + j]`, columns past `w` and the row past `k` zero.
    ///
    /// # Safety
    /// B holds a `(k, j0 + w)` matrix; the CPU has AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_b(
        b: MatBf16<'_>,
        k: usize,
        pc: usize,
        kcp: usize,
        j0: usize,
        w: usize,
        out: &mut [u32],
    ) {
        assert!(out.len() >= kcp * NR);
        if b.rs == 1 && b.cs != 1 && w == NR {
            // B = X^T of a row-major X: each column's pairs lie in a row of X; 16 x 16
            // blocks of pairs transposed in registers, the rest one pair at a time
            let whole = kcp.min((k / 2).saturating_sub(pc)) / 16 * 16;
            let d = b.data.as_ptr();
            for p0 in (0..whole).step_by(16) {
                for l0 in (0..NR).step_by(16) {
                    let mut rows = [_mm512_setzero_si512(); 16];
                    for (l, row) in rows.iter_mut().enumerate() {
                        let at = (j0 + l0 + l) * b.cs + 2 * (pc + p0);
                        // SAFETY: the 32 bfloat16 values at `at` are in B's column
                        // j0 + l0 + l, pairs pc + p0.. of k, inside `k` (whole pairs).
                        #[allow(clippy::cast_ptr_alignment, reason = "an unaligned load")]
                        let at = unsafe { d.add(at).cast::<i32>() };
                        // SAFETY: as above.
                        *row = unsafe { _mm512_loadu_epi32(at) };
                    }
                    for (q, col) in transpose16(&rows).iter().enumerate() {
                        _mm512_storeu_epi32(
                            out[(p0 + q) * NR + l0..][..16].as_mut_ptr().cast(),
                            *col,
                        );
                    }
                }
            }
            let layout = (NR, NR, 1);
            let rest = (pc + whole, kcp - whole);
            let out = &mut out[whole * NR..];
            // SAFETY: as the caller promises.
            unsafe { pack_pairs(b.data, (j0 * b.cs, b.cs, b.rs), w, k, rest, layout, out) };
            return;
        }
        if b.cs != 1 || b.rs == 1 {
            // SAFETY: as the caller promises.
            unsafe {
                pack_pairs(
                    b.data,
                    (j0 * b.cs, b.cs, b.rs),
                    w,
                    k,
                    (pc, kcp),
                    (NR, NR, 1),
                    out,
                );
            };
            return;
        }
        if w < NR {
            out.fill(0);
        }
        let d = b.data;
        // row-major B: the pair's two elements lie in two rows
        for p in 0..kcp {
            let k0 = 2 * (pc + p);
            let lo = &d[k0 * b.rs + j0..][..w];
            let dst = &mut out[p * NR..][..w];
            if k0 + 1 < k {
                let hi = &d[(k0 + 1) * b.rs + j0..][..w];
                for ((o, l), h) in dst.iter_mut().zip(lo).zip(hi) {
                    *o = pair(l.0, h.0);
                }
            } else {
                for (o, l) in dst.iter_mut().zip(lo) {
                    *o = pair(l.0, 0);
                }
            }
        }
    }

    /// The transpose of 16 x 16 32-bit values: column `q` of `rows` as the `q`-th vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
        // within 128-bit lanes: pairs of rows interleaved, then groups of four
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        // u[4g + j], lane L: rows 4g..4g + 4 at column 4L + j
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (g, j) = (i / 4, i % 4);
            let (x, y) = (t[4 * g + j / 2], t[4 * g + j / 2 + 2]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            // lanes (0, 2) and (1, 3) of the row groups (0, 1) and (2, 3)
            let v0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
            let w0 = _mm512_shuffle_i32x4::<0xDD>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
            let w1 = _mm512_shuffle_i32x4::<0xDD>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_i32x4::<0x88>(v0, v1);
            out[8 + j] = _mm512_shuffle_i32x4::<0xDD>(v0, v1);
            out[4 + j] = _mm512_shuffle_i32x4::<0x88>(w0, w1);
            out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(w0, w1);
        }
        out
    }

    /// [`kernel`] on an `(h, w)` corner of C: through a full `MR x NR` scratch block when
    /// the corner is smaller.
    ///
    /// # Safety
    /// As [`kernel`] for the `(h, w)` block at `c`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel_edge(
        kcp: usize,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        (h, w): (usize, usize),
        add: bool,
    ) {
        if h == MR && w == NR {
            // SAFETY: as the caller promises.
            return unsafe { kernel(kcp, a, b, c, ldc, add) };
        }
        let mut tmp = [0.0f32; MR * NR];
        for i in 0..h {
            for j in 0..w {
                // SAFETY: (i, j) is inside the (h, w) block.
                tmp[i * NR + j] = if add {
                    unsafe { *c.add(i * ldc + j) }
                } else {
                    0.0
                };
            }
        }
        // SAFETY: tmp is a full MR x NR block.
        unsafe { kernel(kcp, a, b, tmp.as_mut_ptr(), NR, add) };
        for i in 0..h {
            for j in 0..w {
                // SAFETY: as above.
                unsafe { *c.add(i * ldc + j) = tmp[i * NR + j] };
            }
        }
    }

    /// The register block: `C[i][j] (+)= sum_p A[p][i] . B[p][j]` over `kcp` pairs for an
    /// `MR x NR` block of C at `c` (row stride `ldc`), each pair one `vdpbf16ps`; starts from
    /// C when `add`, else from zero.
    ///
    /// # Safety
    /// `a` holds `MR` rows of `KCP` pairs (`kcp` used), `b` `kcp * NR` pairs, `c` an `MR x NR` block; the CPU has
    /// AVX-512 F, BW and BF16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel(kcp: usize, a: *const u32, b: *const u32, c: *mut f32, ldc: usize, add: bool) {
        let mut acc: [[__m512; 2]; MR] = [[_mm512_setzero_ps(); 2]; MR];
        if add {
            for (i, row) in acc.iter_mut().enumerate() {
                for (h, v) in row.iter_mut().enumerate() {
                    // SAFETY: inside the block.
                    *v = unsafe { _mm512_loadu_ps(c.add(i * ldc + 16 * h)) };
                }
            }
        }
        for p in 0..kcp {
            // SAFETY: inside the panels.
            let (b0, b1) = unsafe {
                let at = b.add(p * NR).cast::<i32>();
                (
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi32(at)),
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi32(at.add(16))),
                )
            };
            for (i, row) in acc.iter_mut().enumerate() {
                #[allow(clippy::cast_possible_wrap)]
                // SAFETY: inside the panel.
                let x = unsafe { *a.add(i * KCP + p) } as i32;
                let x = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(x));
                row[0] = _mm512_dpbf16_ps(row[0], x, b0);
                row[1] = _mm512_dpbf16_ps(row[1], x, b1);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                // SAFETY: inside the block.
                unsafe { _mm512_storeu_ps(c.add(i * ldc + 16 * h), *v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simd;

    fn values(len: usize, seed: u64) -> Vec<Bf16> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                Bf16::from_f32((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            })
            .collect()
    }

    /// The product in float64 (exact products, float64 sums) with its sum of absolute products.
    fn reference(
        (m, k, n): (usize, usize, usize),
        a: MatBf16<'_>,
        b: MatBf16<'_>,
    ) -> (Vec<f64>, Vec<f64>) {
        let (mut c, mut abs) = (vec![0.0; m * n], vec![0.0; m * n]);
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let x = f64::from(a.data[i * a.rs + p * a.cs].to_f32())
                        * f64::from(b.data[p * b.rs + j * b.cs].to_f32());
                    c[i * n + j] += x;
                    abs[i * n + j] += x.abs();
                }
            }
        }
        (c, abs)
    }

    /// The levels to test: the BF16 kernel where the CPU has it, and the fallback.
    fn levels() -> Vec<Level> {
        let mut out = vec![Level::SCALAR];
        if simd::detected().has_bf16_rounding() {
            out.push(simd::detected());
        }
        out
    }

    fn check(shape: (usize, usize, usize), transposed_b: bool, upper: bool) {
        let (m, k, n) = shape;
        let av = values(m * k, 7 + m as u64);
        let bv = if upper {
            av.clone()
        } else {
            values(k * n, 11 + n as u64)
        };
        let a = MatBf16::rows(&av, k);
        // B as X^T of a row-major (n, k) X when transposed, else row-major (k, n)
        let b = if transposed_b {
            MatBf16::transposed(&bv, k)
        } else {
            MatBf16::rows(&bv, n)
        };
        let (want, abs) = reference(shape, a, b);
        for level in levels() {
            let mut c = vec![f32::NAN; m * n];
            matmul_bf16(level, shape, a, b, &mut c, upper, false);
            for (idx, ((&got, &w), &s)) in c.iter().zip(&want).zip(&abs).enumerate() {
                // float32 sums of exact products: at most k roundings of 2^-24 of the
                // running sum, each at most the sum of absolute products
                let tol = s * k as f64 * 2f64.powi(-24) + 1e-30;
                assert!(
                    (f64::from(got) - w).abs() <= tol,
                    "{shape:?} {} upper={upper} [{idx}]: {got} vs {w}",
                    level.name()
                );
            }
        }
    }

    #[test]
    fn products_match_a_float64_reference_over_odd_shapes() {
        for shape in [
            (1, 1, 1),
            (1, 7, 1),
            (1, 300, 45),
            (37, 300, 1),
            (9, 3, 33),
            (17, 257, 65),
            (64, 256, 64),
            (200, 515, 70),
            (13, 1, 40),
        ] {
            check(shape, false, false);
            check(shape, true, false);
        }
    }

    #[test]
    fn symmetric_products_match_the_full_product() {
        // X X^T for row-major X (m, k): B is X read transposed
        for (m, k) in [(1, 5), (9, 31), (33, 64), (70, 301), (300, 40)] {
            check((m, k, m), true, true);
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, k, n) = (300, 333, 290);
        let av = values(m * k, 3);
        let bv = values(k * n, 5);
        let a = MatBf16::rows(&av, k);
        let b = MatBf16::rows(&bv, n);
        let x = MatBf16::transposed(&av, k);
        let _lock = crate::test_util::thread_count_lock();
        for level in levels() {
            let runs: Vec<(Vec<f32>, Vec<f32>)> = [1, 2]
                .into_iter()
                .map(|threads| {
                    crate::runtime::parallel::set_num_threads(threads).unwrap();
                    let mut full = vec![0.0f32; m * n];
                    matmul_bf16(level, (m, k, n), a, b, &mut full, false, true);
                    let mut sym = vec![0.0f32; m * m];
                    matmul_bf16(level, (m, k, m), a, x, &mut sym, true, true);
                    (full, sym)
                })
                .collect();
            assert_eq!(runs[0], runs[1], "{}", level.name());
        }
    }
}
