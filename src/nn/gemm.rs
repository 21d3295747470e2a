//! Matrix products ([`gemm`], cut into [`tiles`] by [`matmul`]) and the blocks of rows of
//! the element-wise passes ([`by_row_blocks`]), spread over the pool.

use super::NnFloat;

/// `C = A B` through faer (runtime-dispatched AVX2/AVX-512 kernels; small products by its
/// `nano-gemm`), sequential: `A (m, k)` and `B (k, n)` given by (row, column) strides
/// in elements, C row-major with row stride `ldc`.
///
/// # Safety
/// The pointers must address matrices of these shapes and strides; C must not overlap
/// A or B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    c: *mut T,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k <= SMALL_MULS {
        return T::small_gemm((m, k, n), a, (rsa, csa), b, (rsb, csb), c, ldc);
    }
    let a = faer::MatRef::<T>::from_raw_parts(a, m, k, rsa, csa);
    let b = faer::MatRef::<T>::from_raw_parts(b, k, n, rsb, csb);
    let c = faer::MatMut::<T>::from_raw_parts_mut(c, m, n, ldc as isize, 1);
    faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, T::ONE, faer::Par::Seq);
}

/// Products of at most this many multiply-adds go straight to `nano-gemm` (faer's own
/// threshold for it; faer would first try its matrix-vector kernels, slower at this size).
const SMALL_MULS: usize = 16 * 16 * 16;

/// Products of at least twice this many multiply-adds (about 5 us of one core) are cut
/// into tiles of C.
pub(super) const TILE_MIN_MULS: usize = 1 << 18;
/// The most tiles a product is cut into.
pub(super) const MAX_TILES: usize = 16;
/// Tiles are at least this many rows and columns (where C has them), or half as many where
/// that gives a product fewer than [`MIN_TILES`] tiles.
const TILE_MIN_SIDE: usize = 128;
/// A product worth this many tiles or more is cut into at least this many where halving
/// [`TILE_MIN_SIDE`] allows it: a 128-wide layer's weight gradient `Xᵀ dZ`, (128, 128) with
/// the batch as inner size, would otherwise be one tile on one thread while the others wait
/// (faer's float64 rate on a 64 × 64 tile with inner size 512 was 94% of the 128 × 128
/// tile's, one thread).
const MIN_TILES: usize = 4;

/// How C `(m, n)` of a product with inner size `k` is cut into tiles: `(rows, columns)`
/// per tile. A function of the shape alone, never of the thread count: each tile is the
/// same faer call whichever thread runs it, so results do not depend on the thread count.
pub(super) fn tiles(m: usize, k: usize, n: usize) -> (usize, usize) {
    let want = (m * k * n / TILE_MIN_MULS).clamp(1, MAX_TILES);
    let blocks = |side: usize| {
        let row_blocks = want.min(m.div_ceil(side));
        (row_blocks, (want / row_blocks).min(n.div_ceil(side)).max(1))
    };
    let (mut row_blocks, mut col_blocks) = blocks(TILE_MIN_SIDE);
    if row_blocks * col_blocks < want.min(MIN_TILES) {
        (row_blocks, col_blocks) = blocks(TILE_MIN_SIDE / 2);
    }
    let round = |len: usize, blocks: usize| len.div_ceil(blocks).div_ceil(16) * 16;
    (round(m, row_blocks).min(m), round(n, col_blocks).min(n))
}

/// `C = A B` as [`gemm`] with C row-major `(m, n)`, cut into the [`tiles`] of its shape,
/// computed on the pool when `par` and there are several (the same tiles either way, so the
/// same bits).
///
/// # Safety
/// As [`gemm`].
pub(crate) unsafe fn matmul<T: NnFloat>(
    shape: (usize, usize, usize),
    a: *const T,
    sa: (isize, isize),
    b: *const T,
    sb: (isize, isize),
    c: *mut T,
    par: bool,
) {
    let (m, k, n) = shape;
    let (tr, tc) = tiles(m, k, n);
    if tr >= m && tc >= n {
        return gemm(shape, a, sa, b, sb, c, n);
    }
    let (row_tiles, col_tiles) = (m.div_ceil(tr), n.div_ceil(tc));
    let (a, b, c) = (a as usize, b as usize, c as usize);
    let tile = |t: usize| {
        let (r0, c0) = ((t / col_tiles) * tr, (t % col_tiles) * tc);
        let (rows, cols) = (tr.min(m - r0), tc.min(n - c0));
        let a = (a as *const T).wrapping_offset(r0 as isize * sa.0);
        let b = (b as *const T).wrapping_offset(c0 as isize * sb.1);
        let c = (c as *mut T).wrapping_add(r0 * n + c0);
        // SAFETY: the tiles of C are disjoint; A and B are read only.
        unsafe { gemm((rows, k, cols), a, sa, b, sb, c, n) };
    };
    let count = row_tiles * col_tiles;
    if par {
        on_pool(count, &tile);
    } else {
        (0..count).for_each(tile);
    }
}

/// Runs `work(i)` for every `i < n`: with [`crate::runtime::parallel::for_each_index`] when the pool
/// has several threads, else on this thread alone (not beside a lone worker).
pub(super) fn on_pool(n: usize, work: &(dyn Fn(usize) + Sync)) {
    if crate::runtime::parallel::num_threads() < 2 {
        (0..n).for_each(work);
    } else {
        crate::runtime::parallel::for_each_index(n, work);
    }
}

/// Element-wise passes over at least twice this many values are cut into blocks of whole
/// rows of about this many, spread over the pool.
pub(super) const ROW_BLOCK_ELEMENTS: usize = 1 << 15;

/// Runs `f(first, block)` on blocks of whole rows of `out` (`n` values per row; `first` is
/// the block's first element), on the pool when `par`, it has several threads and `out` is
/// large. For element-wise passes, whose results do not depend on the cut.
pub(super) fn by_row_blocks<T: NnFloat>(
    out: &mut [T],
    n: usize,
    par: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let len = out.len();
    if !par || len < 2 * ROW_BLOCK_ELEMENTS || crate::runtime::parallel::num_threads() < 2 {
        return f(0, out);
    }
    let block = (ROW_BLOCK_ELEMENTS / n.max(1)).max(1) * n;
    let at = out.as_mut_ptr() as usize;
    crate::runtime::parallel::for_each_index(len.div_ceil(block), &|i| {
        let first = i * block;
        let end = (first + block).min(len);
        // SAFETY: the blocks are disjoint parts of `out`, borrowed mutably for this call.
        let part =
            unsafe { std::slice::from_raw_parts_mut((at as *mut T).add(first), end - first) };
        f(first, part);
    });
}
