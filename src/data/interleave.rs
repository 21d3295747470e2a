//! The column-to-row interleave: equal-length columns (Arrow's decoded Parquet columns)
//! written into a row-major `(rows, columns)` block, each value cast to the block's element
//! type as it is written, row `i` going to the block row the caller says (the shuffle's
//! scatter) — in tasks of rows on the thread pool.
//!
//! Casts are Rust's `as` (round to nearest, ties to even; integers to the nearest float),
//! which is what NumPy's assignment `block[:, c] = column` does, so the block holds the same
//! bytes as the NumPy interleave it replaces. float16 widens exactly; booleans give 0 or 1.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::numerics::float::Float;
use crate::numerics::half::F16;
use crate::runtime::parallel;

/// A column to interleave: one value per row, in any of the types NumPy gives for Arrow's
/// numeric and boolean columns. `Bool` holds NumPy's one byte per value (0 is false,
/// anything else true).
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    Bool(&'a [u8]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F16(&'a [F16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Column<'_> {
    /// The number of values (rows).
    fn len(&self) -> usize {
        match self {
            Column::Bool(s) | Column::U8(s) => s.len(),
            Column::I8(s) => s.len(),
            Column::I16(s) => s.len(),
            Column::I32(s) => s.len(),
            Column::I64(s) => s.len(),
            Column::U16(s) => s.len(),
            Column::U32(s) => s.len(),
            Column::U64(s) => s.len(),
            Column::F16(s) => s.len(),
            Column::F32(s) => s.len(),
            Column::F64(s) => s.len(),
        }
    }
}

/// Where the columns' rows go in the block: row `i` to block row `start + i`, or to block
/// row `dest[i]` (a scatter; no block row may be named twice).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    Offset(usize),
    Scatter(&'a [i64]),
}

/// A block's element type: `f32` or `f64`, with the cast from every column type.
pub trait Block: Float {
    fn from_i8(x: i8) -> Self;
    fn from_i16(x: i16) -> Self;
    fn from_i32(x: i32) -> Self;
    fn from_i64(x: i64) -> Self;
    fn from_u8(x: u8) -> Self;
    fn from_u16(x: u16) -> Self;
    fn from_u32(x: u32) -> Self;
    fn from_u64(x: u64) -> Self;
    fn from_f16(x: F16) -> Self;
    fn from_f32(x: f32) -> Self;
    fn from_f64_as(x: f64) -> Self;
    /// NumPy's boolean byte: 0 is false (0.0), anything else true (1.0).
    #[inline(always)]
    fn from_bool(x: u8) -> Self {
        if x == 0 {
            Self::ZERO
        } else {
            Self::ONE
        }
    }
}

macro_rules! impl_block {
    ($t:ty, $f16:expr) => {
        impl Block for $t {
            #[inline(always)]
            fn from_i8(x: i8) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_i16(x: i16) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_i32(x: i32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_i64(x: i64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_u8(x: u8) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_u16(x: u16) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_u32(x: u32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_u64(x: u64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_f16(x: F16) -> Self {
                $f16(x)
            }
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_f64_as(x: f64) -> Self {
                x as $t
            }
        }
    };
}
impl_block!(f32, F16::to_f32);
// Exact twice: float16 -> float32 -> float64.
impl_block!(f64, |x: F16| f64::from(x.to_f32()));

/// Bytes of block rows per task: a task's rows stay in cache while every column writes
/// into them (one column at a time, so that each column is read sequentially).
const TASK_BYTES: usize = 64 << 10;

/// Writes `columns` into `out`, a row-major block of `columns.len()` values per row: value
/// `i` of column `c` goes to `out[r * columns.len() + c]`, where `r` is block row
/// `start + i` or `dest[i]` ([`Rows`]). Block rows no column row goes to are left as
/// they were. Large blocks are written on the thread pool.
///
/// Errors (before anything is written): no columns, columns of different lengths, a block
/// whose length is not a whole number of rows, rows that fall outside the block, a scatter
/// of the wrong length or naming a block row twice.
pub fn interleave<T: Block>(columns: &[Column<'_>], out: &mut [T], rows: Rows<'_>) -> Result<()> {
    let width = columns.len();
    if width == 0 {
        return Err(Error::Invalid("columns: no columns to interleave".into()));
    }
    let n = columns[0].len();
    if let Some((c, col)) = columns.iter().enumerate().find(|(_, c)| c.len() != n) {
        return Err(Error::Invalid(format!(
            "columns: columns[{c}] has {} values, columns[0] has {n}; every column must have \
             the same length",
            col.len()
        )));
    }
    if !out.len().is_multiple_of(width) {
        return Err(Error::Invalid(format!(
            "out: {} values are not whole rows of {width} columns",
            out.len()
        )));
    }
    let block_rows = out.len() / width;
    match rows {
        Rows::Offset(start) => {
            if start.checked_add(n).is_none_or(|end| end > block_rows) {
                return Err(Error::Invalid(format!(
                    "dest: rows {start}..{start}+{n} do not fit the block's {block_rows} rows"
                )));
            }
        }
        Rows::Scatter(dest) => check_scatter(dest, n, block_rows)?,
    }
    let rows_per = (TASK_BYTES / (width * std::mem::size_of::<T>())).max(16);
    let tasks = n.div_ceil(rows_per);
    let base = out.as_mut_ptr() as usize;
    let task = |t: usize| {
        let r = t * rows_per..((t + 1) * rows_per).min(n);
        for (c, col) in columns.iter().enumerate() {
            // SAFETY: the checks above: every row `i < n` goes to a block row below
            // `block_rows`, distinct rows to distinct block rows, and each task writes the
            // block rows of its own `r` only, so tasks write disjoint elements of `out`.
            unsafe { write_column(col, base as *mut T, width, c, r.clone(), rows) };
        }
    };
    if tasks > 1 && parallel::worth_threads(n * width) {
        parallel::for_each_index(tasks, &task);
    } else {
        (0..tasks).for_each(task);
    }
    Ok(())
}

fn check_scatter(dest: &[i64], n: usize, block_rows: usize) -> Result<()> {
    if dest.len() != n {
        return Err(Error::Invalid(format!(
            "dest: {} block rows given for {n} rows of the columns",
            dest.len()
        )));
    }
    let mut seen = vec![0u64; block_rows.div_ceil(64)];
    for (i, &d) in dest.iter().enumerate() {
        let Some(r) = usize::try_from(d).ok().filter(|&r| r < block_rows) else {
            return Err(Error::Invalid(format!(
                "dest[{i}] = {d} is outside the block's {block_rows} rows"
            )));
        };
        let (word, bit) = (r / 64, 1u64 << (r % 64));
        if seen[word] & bit != 0 {
            return Err(Error::Invalid(format!(
                "dest[{i}] = {d} names a block row already written; each row of the block may \
                 be named once"
            )));
        }
        seen[word] |= bit;
    }
    Ok(())
}

/// Writes rows `r` of `col` into column `c` of the block at `out`.
///
/// # Safety
/// `out` must hold `block_rows * width` values, every block row `rows` maps `r` to must be
/// below `block_rows`, and no other thread may touch those rows' elements meanwhile.
#[inline]
unsafe fn write_column<T: Block>(
    col: &Column<'_>,
    out: *mut T,
    width: usize,
    c: usize,
    r: Range<usize>,
    rows: Rows<'_>,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match *col {
            Column::Bool(s) => write(s, T::from_bool, out, width, c, r, rows),
            Column::I8(s) => write(s, T::from_i8, out, width, c, r, rows),
            Column::I16(s) => write(s, T::from_i16, out, width, c, r, rows),
            Column::I32(s) => write(s, T::from_i32, out, width, c, r, rows),
            Column::I64(s) => write(s, T::from_i64, out, width, c, r, rows),
            Column::U8(s) => write(s, T::from_u8, out, width, c, r, rows),
            Column::U16(s) => write(s, T::from_u16, out, width, c, r, rows),
            Column::U32(s) => write(s, T::from_u32, out, width, c, r, rows),
            Column::U64(s) => write(s, T::from_u64, out, width, c, r, rows),
            Column::F16(s) => write(s, T::from_f16, out, width, c, r, rows),
            Column::F32(s) => write(s, T::from_f32, out, width, c, r, rows),
            Column::F64(s) => write(s, T::from_f64_as, out, width, c, r, rows),
        }
    }
}

/// [`write_column`] for one column type, cast by `cast`.
///
/// # Safety
/// As [`write_column`].
#[inline(always)]
unsafe fn write<S: Copy, T: Block>(
    src: &[S],
    cast: impl Fn(S) -> T,
    out: *mut T,
    width: usize,
    c: usize,
    r: Range<usize>,
    rows: Rows<'_>,
) {
    let src = &src[r.clone()];
    // SAFETY: the caller's contract; `i` runs over `r`, so `start + i` and `dest[i]` are
    // block rows it covers.
    unsafe {
        match rows {
            Rows::Offset(start) => {
                for (i, &x) in r.clone().zip(src) {
                    out.add((start + i) * width + c).write(cast(x));
                }
            }
            Rows::Scatter(dest) => {
                for (&x, &d) in src.iter().zip(&dest[r]) {
                    out.add(d as usize * width + c).write(cast(x));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleave as the obvious loop: `out[row(i)][c] = cast(columns[c][i])`.
    fn reference(columns: &[Vec<f64>], out: &mut [f64], dest: &[usize]) {
        let w = columns.len();
        for (c, col) in columns.iter().enumerate() {
            for (i, &x) in col.iter().enumerate() {
                out[dest[i] * w + c] = x;
            }
        }
    }

    #[test]
    fn rows_go_where_they_are_sent_whatever_the_task_split() {
        // 5 columns of 7_001 rows: several tasks of f64 rows, an odd last one.
        let (w, n) = (5, 7_001);
        let cols: Vec<Vec<f64>> = (0..w)
            .map(|c| (0..n).map(|i| (i * 10 + c) as f64).collect())
            .collect();
        let views: Vec<Column<'_>> = cols.iter().map(|c| Column::F64(c)).collect();
        // Unshuffled, into rows 3.. of a larger block; the other rows stay as they were.
        let mut out = vec![-1.0; (n + 4) * w];
        interleave(&views, &mut out, Rows::Offset(3)).unwrap();
        let mut want = vec![-1.0; (n + 4) * w];
        reference(&cols, &mut want, &(3..n + 3).collect::<Vec<_>>());
        assert_eq!(out, want);
        // Scattered by a permutation (reversed pairs of an odd-length stride walk).
        let dest: Vec<i64> = (0..n as i64).map(|i| (i * 7) % n as i64).collect();
        let mut out = vec![0.0; n * w];
        interleave(&views, &mut out, Rows::Scatter(&dest)).unwrap();
        let mut want = vec![0.0; n * w];
        let d: Vec<usize> = dest.iter().map(|&d| d as usize).collect();
        reference(&cols, &mut want, &d);
        assert_eq!(out, want);
    }

    #[test]
    fn every_column_type_casts_as_rust_does() {
        let b = [0u8, 1, 2];
        let i = [-3i64, i64::MAX, 16_777_217];
        let u = [0u64, u64::MAX, 16_777_217];
        let h = [F16(0x3c00), F16(0x0001), F16(0xfc00)]; // 1, the smallest subnormal, -inf
        let f = [0.1f64, -1e300, f64::MIN_POSITIVE];
        let cols = [
            Column::Bool(&b),
            Column::I64(&i),
            Column::U64(&u),
            Column::F16(&h),
            Column::F64(&f),
        ];
        let mut out = vec![0f32; 15];
        interleave(&cols, &mut out, Rows::Offset(0)).unwrap();
        let row = |k: usize| &out[k * 5..k * 5 + 5];
        assert_eq!(row(0), [0.0, -3.0, 0.0, 1.0, 0.1f64 as f32]);
        assert_eq!(
            row(1),
            [
                1.0,
                i64::MAX as f32,
                u64::MAX as f32,
                2f32.powi(-24),
                f32::NEG_INFINITY
            ]
        );
        // 16_777_217 rounds to 16_777_216 (ties to even) in float32; 2.2e-308 to 0.
        assert_eq!(
            row(2),
            [1.0, 16_777_216.0, 16_777_216.0, f32::NEG_INFINITY, 0.0]
        );
        let mut out = vec![0f64; 15];
        interleave(&cols, &mut out, Rows::Offset(0)).unwrap();
        assert_eq!(out[8], 2f64.powi(-24));
        assert_eq!(
            out[10..],
            [
                1.0,
                16_777_217.0,
                16_777_217.0,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE
            ]
        );
    }

    #[test]
    fn bad_inputs_are_refused_before_anything_is_written() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [1.0f32, 2.0];
        let mut out = vec![9f32; 6];
        let err = |cols: &[Column<'_>], out: &mut [f32], rows| {
            interleave(cols, out, rows).unwrap_err().to_string()
        };
        let e = err(
            &[Column::F32(&a), Column::F32(&b)],
            &mut out,
            Rows::Offset(0),
        );
        assert!(
            e.contains("columns[1] has 2 values, columns[0] has 3"),
            "{e}"
        );
        assert!(err(&[], &mut out, Rows::Offset(0)).contains("no columns"));
        let e = err(&[Column::F32(&a); 4], &mut out, Rows::Offset(0));
        assert!(e.contains("not whole rows of 4 columns"), "{e}");
        let e = err(&[Column::F32(&a); 2], &mut out, Rows::Offset(1));
        assert!(e.contains("do not fit the block's 3 rows"), "{e}");
        let e = err(&[Column::F32(&a); 2], &mut out, Rows::Scatter(&[0, 2, 0]));
        assert!(
            e.contains("dest[2] = 0 names a block row already written"),
            "{e}"
        );
        let e = err(&[Column::F32(&a); 2], &mut out, Rows::Scatter(&[0, 3, 1]));
        assert!(e.contains("dest[1] = 3 is outside"), "{e}");
        let e = err(&[Column::F32(&a); 2], &mut out, Rows::Scatter(&[0, -1, 1]));
        assert!(e.contains("dest[1] = -1 is outside"), "{e}");
        let e = err(&[Column::F32(&a); 2], &mut out, Rows::Scatter(&[0, 1]));
        assert!(e.contains("2 block rows given for 3 rows"), "{e}");
        assert_eq!(out, [9.0; 6]);
    }
}
