//! The exponentially weighted average, the building block of every optimizer here.
//!
//! `v_t = beta * v_{t-1} + (1 - beta) * x_t`, started at `v_0 = 0`, averages roughly the
//! last `1 / (1 - beta)` values. Momentum is an EWA of gradients, RMSprop an EWA of squared
//! gradients, Adam both; each kernel inlines [`ewa`] into its single pass.
//!
//! The same primitive also runs on its own: [`ewa_series`] averages a whole array along one
//! axis (the lecture's smoothed temperature curve), [`moving_average`] is the plain
//! trailing mean it is compared with, and [`update_averages`] keeps an EMA of many tensors
//! in place (Polyak averaging of parameters), one call per step.

use crate::error::{Error, Result};
use crate::numerics::float::Float;
use crate::optim::ops::{self, Slice, SliceMut};
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{multiversion, Level};

/// One EWA step: `beta * v + one_minus_beta * x`.
///
/// `one_minus_beta` is passed in rather than computed so that it is rounded once, from the
/// `f64` hyper-parameter, exactly as torch rounds `1 - beta` for a float32 tensor. With
/// `one_minus_beta` other than `1 - beta` this is torch's SGD momentum buffer
/// (`momentum * buf + (1 - dampening) * g`).
#[inline(always)]
pub fn ewa<T: Float>(v: T, x: T, beta: T, one_minus_beta: T) -> T {
    beta * v + one_minus_beta * x
}

/// One EWA step of squared values: `beta * v + ((1 - beta) * x) * x`.
///
/// The product is taken in torch's order (`addcmul_(x, x, value=1 - beta)`): scaling `x`
/// first keeps float32 state finite for |x| up to about `sqrt(f32::MAX / (1 - beta))`,
/// where `(1 - beta) * (x * x)` overflows at |x| ~ 1.8e19.
#[inline(always)]
pub fn ewa_sq<T: Float>(v: T, x: T, beta: T, one_minus_beta: T) -> T {
    beta * v + (one_minus_beta * x) * x
}

/// The bias correction of step `t` (1-based): `1 - beta**t`, computed as Python computes
/// `1 - beta ** t` (double precision `pow`), so scalars match torch bit for bit.
#[inline]
pub fn bias_correction(beta: f64, t: u64) -> f64 {
    1.0 - beta.powf(t as f64)
}

/// `x ** 0.5` as Python computes it: the C library's `pow(x, 0.5)`, which is not always
/// the correctly rounded `sqrt(x)` (it differs by one ulp for some `x`). torch takes the
/// square roots of its bias corrections this way; LLVM would turn a literal `powf(0.5)`
/// into `sqrt`, so the exponent is hidden from it.
#[inline]
pub fn py_pow_half(x: f64) -> f64 {
    x.powf(std::hint::black_box(0.5))
}

/// A C-contiguous array seen as `(outer, n, inner)`: `n` steps along the averaged axis,
/// each step `inner` contiguous lanes, repeated in `outer` independent blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl Series {
    /// An array of `shape` averaged along `axis` (which must be `< shape.len()`).
    pub fn along(shape: &[usize], axis: usize) -> Self {
        Series {
            outer: shape[..axis].iter().product(),
            n: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    pub fn len(self) -> usize {
        self.outer * self.n * self.inner
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The constants of an averaged series, rounded once to `T` from their `f64` values.
#[derive(Clone, Debug)]
pub struct EwaK<T> {
    pub beta: T,
    pub one_minus_beta: T,
    /// `1 - beta**t` for `t = 1, 2, ...` while it differs from one in `f64` (empty without
    /// bias correction); later steps are not divided, which is what dividing by one does.
    pub corrections: Vec<T>,
}

impl<T: Float> EwaK<T> {
    fn new(beta: f64, corrected: bool, n: usize) -> Self {
        let corrections = if corrected {
            (1..=n as u64)
                .map(|t| bias_correction(beta, t))
                .take_while(|&c| c != 1.0)
                .map(T::from_f64)
                .collect()
        } else {
            Vec::new()
        };
        EwaK {
            beta: T::from_f64(beta),
            one_minus_beta: T::from_f64(1.0 - beta),
            corrections,
        }
    }
}

/// The running sum of one lane's window, exact to a few units in the last place however
/// long the series: finite values are summed in `f64` with Neumaier's compensation, and
/// NaNs and infinities are counted, so one of them leaves the window when it does instead
/// of poisoning the rest of the series (as `inf - inf` would). Values of magnitude
/// `2**BIG_EXP` and more are summed apart, scaled by `2**-BIG_SHIFT`, so finite values
/// whose sum exceeds `f64::MAX` (`1e308 + 1e308`) do not overflow it either.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowSum {
    small: Neumaier,
    /// The sum of the large values times `2**-BIG_SHIFT`.
    big: Neumaier,
    nans: usize,
    pos_infs: usize,
    neg_infs: usize,
}

/// A compensated sum.
#[derive(Clone, Copy, Debug, Default)]
struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    #[inline(always)]
    fn add(&mut self, y: f64) {
        let t = self.sum + y;
        self.compensation += if self.sum.abs() >= y.abs() {
            (self.sum - t) + y
        } else {
            (y - t) + self.sum
        };
        self.sum = t;
    }

    #[inline(always)]
    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// `2**BIG_EXP`: below it a value goes to the unscaled sum, which 2**64 of them cannot
/// overflow (`2**564 < f64::MAX`); from it on to the sum scaled by `2**-BIG_SHIFT`, which
/// scaling keeps exact (no large value becomes subnormal) and finite.
const BIG_EXP: i32 = 500;
const BIG_SHIFT: i32 = 600;

impl WindowSum {
    #[inline(always)]
    fn add_finite(&mut self, y: f64) {
        if y.abs() < 2f64.powi(BIG_EXP) {
            self.small.add(y);
        } else {
            self.big.add(y * 2f64.powi(-BIG_SHIFT));
        }
    }

    /// Adds `y` to the window (`entering`) or takes it out.
    #[inline(always)]
    fn count(&mut self, y: f64, entering: bool) {
        if y.is_finite() {
            self.add_finite(if entering { y } else { -y });
            return;
        }
        let counter = if y.is_nan() {
            &mut self.nans
        } else if y > 0.0 {
            &mut self.pos_infs
        } else {
            &mut self.neg_infs
        };
        *counter = if entering { *counter + 1 } else { *counter - 1 };
    }

    /// The mean of the `len` values in the window, as IEEE arithmetic would give it.
    #[inline(always)]
    fn mean(&self, len: f64) -> f64 {
        if self.nans > 0 || (self.pos_infs > 0 && self.neg_infs > 0) {
            f64::NAN
        } else if self.pos_infs > 0 {
            f64::INFINITY
        } else if self.neg_infs > 0 {
            f64::NEG_INFINITY
        } else if self.big.sum == 0.0 && self.big.compensation == 0.0 {
            self.small.value() / len
        } else {
            // The mean of finite values is at most their largest magnitude: finite.
            let scaled = self.big.value() + self.small.value() * 2f64.powi(-BIG_SHIFT);
            (scaled / len) * 2f64.powi(BIG_SHIFT)
        }
    }
}

/// Row `t` of a panel reads `x[t * stride..][..width]` and writes the `t`-th output row.
#[inline(always)]
fn ewa_rows<'a, T: Float + 'a>(
    x: &[T],
    stride: usize,
    rows: impl Iterator<Item = &'a mut [T]>,
    v: &mut [T],
    k: &EwaK<T>,
) {
    let width = v.len();
    if width == 1 {
        // One lane (a 1-D series, or the last axis): the recurrence alone sets the pace.
        let mut v = T::ZERO;
        for (t, out) in rows.enumerate() {
            v = ewa(v, x[t * stride], k.beta, k.one_minus_beta);
            out[0] = k.corrections.get(t).map_or(v, |&c| v / c);
        }
        return;
    }
    v.fill(T::ZERO);
    for (t, out) in rows.enumerate() {
        let (x, out) = (&x[t * stride..][..width], &mut out[..width]);
        if let Some(&c) = k.corrections.get(t) {
            for i in 0..width {
                let vi = ewa(v[i], x[i], k.beta, k.one_minus_beta);
                v[i] = vi;
                out[i] = vi / c;
            }
        } else {
            for i in 0..width {
                let vi = ewa(v[i], x[i], k.beta, k.one_minus_beta);
                v[i] = vi;
                out[i] = vi;
            }
        }
    }
}

#[inline(always)]
fn moving_average_rows<'a, T: Float + 'a>(
    x: &[T],
    stride: usize,
    rows: impl Iterator<Item = &'a mut [T]>,
    sums: &mut [WindowSum],
    window: usize,
) {
    let width = sums.len();
    sums.fill(WindowSum::default());
    if let [s] = sums {
        for (t, out) in rows.enumerate() {
            s.count(x[t * stride].to_f64(), true);
            if let Some(leaving) = t.checked_sub(window) {
                s.count(x[leaving * stride].to_f64(), false);
            }
            out[0] = T::from_f64(s.mean((t + 1).min(window) as f64));
        }
        return;
    }
    for (t, out) in rows.enumerate() {
        let (entering, out) = (&x[t * stride..][..width], &mut out[..width]);
        let leaving = t.checked_sub(window).map(|s| &x[s * stride..][..width]);
        let len = (t + 1).min(window) as f64;
        for i in 0..width {
            let s = &mut sums[i];
            s.count(entering[i].to_f64(), true);
            if let Some(leaving) = leaving {
                s.count(leaving[i].to_f64(), false);
            }
            out[i] = T::from_f64(s.mean(len));
        }
    }
}

multiversion! {
    /// [`ewa_series`] of one block: `x` and `out` are `(n, v.len())`, row-major.
    pub fn ewa_block<T: Float>(x: &[T], out: &mut [T], v: &mut [T], k: &EwaK<T>) {
        let width = v.len();
        ewa_rows(x, width, out.chunks_exact_mut(width), v, k);
    }
}

multiversion! {
    /// [`ewa_series`] of `rows.len()` steps of `v.len()` lanes, step `t` read from
    /// `x[t * stride..]`.
    pub fn ewa_panel<T: Float>(x: &[T], stride: usize, rows: &mut [&mut [T]], v: &mut [T], k: &EwaK<T>) {
        ewa_rows(x, stride, rows.iter_mut().map(|r| &mut **r), v, k);
    }
}

multiversion! {
    /// [`moving_average`] of one block: `x` and `out` are `(n, sums.len())`, row-major.
    pub fn moving_average_block<T: Float>(x: &[T], out: &mut [T], sums: &mut [WindowSum], window: usize) {
        let width = sums.len();
        moving_average_rows(x, width, out.chunks_exact_mut(width), sums, window);
    }
}

multiversion! {
    /// [`moving_average`] of `rows.len()` steps of `sums.len()` lanes, step `t` read from
    /// `x[t * stride..]`.
    pub fn moving_average_panel<T: Float>(x: &[T], stride: usize, rows: &mut [&mut [T]], sums: &mut [WindowSum], window: usize) {
        moving_average_rows(x, stride, rows.iter_mut().map(|r| &mut **r), sums, window);
    }
}

multiversion! {
    /// `average = beta * average + one_minus_beta * value`, element by element.
    pub fn ema_step<T: Float>(average: &mut [T], value: &[T], beta: T, one_minus_beta: T) {
        let value = &value[..average.len()];
        for (a, &x) in average.iter_mut().zip(value) {
            *a = ewa(*a, x, beta, one_minus_beta);
        }
    }
}

/// An operation along the time axis of a [`Series`] whose lanes are independent, so any
/// split of the lanes across threads gives the same bits.
trait LaneOp<T>: Sync {
    type Scratch: Send;
    fn scratch(&self, width: usize) -> Self::Scratch;
    fn block(&self, level: Level, x: &[T], out: &mut [T], scratch: &mut Self::Scratch);
    fn panel(
        &self,
        level: Level,
        x: &[T],
        stride: usize,
        rows: &mut [&mut [T]],
        scratch: &mut Self::Scratch,
    );
}

impl<T: Float> LaneOp<T> for EwaK<T> {
    type Scratch = Vec<T>;
    fn scratch(&self, width: usize) -> Vec<T> {
        vec![T::ZERO; width]
    }
    fn block(&self, level: Level, x: &[T], out: &mut [T], v: &mut Vec<T>) {
        ewa_block(level, x, out, v, self);
    }
    fn panel(&self, level: Level, x: &[T], stride: usize, rows: &mut [&mut [T]], v: &mut Vec<T>) {
        ewa_panel(level, x, stride, rows, &mut v[..rows[0].len()], self);
    }
}

/// A trailing window of `window` steps.
struct Window(usize);

impl<T: Float> LaneOp<T> for Window {
    type Scratch = Vec<WindowSum>;
    fn scratch(&self, width: usize) -> Vec<WindowSum> {
        vec![WindowSum::default(); width]
    }
    fn block(&self, level: Level, x: &[T], out: &mut [T], sums: &mut Vec<WindowSum>) {
        moving_average_block(level, x, out, sums, self.0);
    }
    fn panel(
        &self,
        level: Level,
        x: &[T],
        stride: usize,
        rows: &mut [&mut [T]],
        sums: &mut Vec<WindowSum>,
    ) {
        let width = rows[0].len();
        moving_average_panel(level, x, stride, rows, &mut sums[..width], self.0);
    }
}

/// Panels narrower than this cost more in per-row bookkeeping than they gain.
const MIN_PANEL_WIDTH: usize = 64;

fn check_series<T>(x: &[T], out: &[T], s: Series) -> Result<()> {
    if x.len() != s.len() || out.len() != s.len() {
        return Err(Error::Mismatch(format!(
            "a series of {} x {} x {} elements needs input and output of that length, got {} and {}",
            s.outer,
            s.n,
            s.inner,
            x.len(),
            out.len()
        )));
    }
    Ok(())
}

/// Runs `op` over every lane: serially, or in tasks of whole blocks when a block is
/// small, else in panels of columns, each task of about `CHUNK_ELEMENTS` elements.
fn run_series<T: Float, Op: LaneOp<T>>(level: Level, op: &Op, x: &[T], out: &mut [T], s: Series) {
    if s.is_empty() {
        return;
    }
    let block_len = s.n * s.inner;
    let width = (CHUNK_ELEMENTS / s.n).max(MIN_PANEL_WIDTH);
    let threaded = parallel::worth_threads(s.len());
    if !threaded || width >= s.inner {
        let task_len = if threaded {
            CHUNK_ELEMENTS.div_ceil(block_len) * block_len
        } else {
            s.len()
        };
        let tasks: Vec<_> = x.chunks(task_len).zip(out.chunks_mut(task_len)).collect();
        let run = |(x, out): (&[T], &mut [T])| {
            let mut scratch = op.scratch(s.inner);
            for (x, out) in x.chunks(block_len).zip(out.chunks_mut(block_len)) {
                op.block(level, x, out, &mut scratch);
            }
        };
        parallel::run_each(tasks, threaded, run);
        return;
    }
    // The rows of a panel are strided in `out`, so each panel gets its own list of them.
    let mut panels: Vec<(&[T], Vec<&mut [T]>)> = Vec::new();
    for (x, out) in x.chunks(block_len).zip(out.chunks_mut(block_len)) {
        let first = panels.len();
        for lo in (0..s.inner).step_by(width) {
            panels.push((&x[lo..], Vec::with_capacity(s.n)));
        }
        for row in out.chunks_mut(s.inner) {
            for (panel, segment) in panels[first..].iter_mut().zip(row.chunks_mut(width)) {
                panel.1.push(segment);
            }
        }
    }
    parallel::run_each(panels, threaded, |(x, mut rows)| {
        op.panel(level, x, s.inner, &mut rows, &mut op.scratch(width));
    });
}

/// The exponentially weighted average of `x` along the middle axis of `s`:
/// `v_t = beta * v_{t-1} + (1 - beta) * x_t` from `v_0 = 0`, written to `out` as `v_t`, or
/// as `v_t / (1 - beta**t)` when `corrected` (`t` is 1-based).
///
/// `beta`, `1 - beta` and each `1 - beta**t` are computed in `f64` and rounded once to
/// `T`; each step is then `beta * v + (1 - beta) * x` and one division in `T`, so a NumPy
/// transcription of the formula reproduces it bit for bit. Lanes are independent, so the
/// result is the same for any thread count.
pub fn ewa_series<T: Float>(
    level: Level,
    x: &[T],
    out: &mut [T],
    s: Series,
    beta: f64,
    corrected: bool,
) -> Result<()> {
    if !(0.0..1.0).contains(&beta) {
        return Err(Error::Invalid(format!(
            "beta must be in [0, 1), got {beta:?}"
        )));
    }
    check_series(x, out, s)?;
    run_series(level, &EwaK::new(beta, corrected, s.n), x, out, s);
    Ok(())
}

/// The trailing moving average of `x` along the middle axis of `s`: `out_t` is the mean of
/// `x_{t-window+1}, ..., x_t`, or of `x_0, ..., x_t` while `t < window - 1`, so `out` has
/// the length of `x` (pandas' `rolling(window, min_periods=1).mean()`).
///
/// Sums are kept in `f64` with compensation, so each mean is within a few units in the last
/// place of the exact mean of its window (float32 results within one unit of it),
/// and a NaN or infinity only affects the windows that contain it.
pub fn moving_average<T: Float>(
    level: Level,
    x: &[T],
    out: &mut [T],
    s: Series,
    window: usize,
) -> Result<()> {
    if window == 0 {
        return Err(Error::Invalid("window must be at least 1, got 0".into()));
    }
    check_series(x, out, s)?;
    run_series(level, &Window(window), x, out, s);
    Ok(())
}

/// `average = decay * average + (1 - decay) * value` for every pair of tensors, in one call.
///
/// `decay` and `1 - decay` are rounded once to each tensor's type. Large updates are cut
/// into pieces that run on the pool; every element is computed by the same code whichever
/// thread runs it. Everything is checked first: on error no average has changed.
pub fn update_averages(
    level: Level,
    averages: Vec<SliceMut<'_>>,
    values: Vec<Slice<'_>>,
    decay: f64,
) -> Result<()> {
    if !(0.0..=1.0).contains(&decay) {
        return Err(Error::Invalid(format!(
            "decay must be in [0, 1], got {decay:?}"
        )));
    }
    let total = values.iter().map(Slice::len).sum();
    let pairs = ops::paired(averages, values)?;
    let (b32, m32) = (decay as f32, (1.0 - decay) as f32);
    parallel::run_each(pairs, parallel::worth_threads(total), |pair| match pair {
        (SliceMut::F32(a), Slice::F32(v)) => ema_step(level, a, v, b32, m32),
        (SliceMut::F64(a), Slice::F64(v)) => ema_step(level, a, v, decay, 1.0 - decay),
        _ => unreachable!("dtypes checked when pairing"),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simd;

    #[test]
    fn ewa_of_a_constant_converges_to_it_and_bias_correction_removes_the_start_up_lag() {
        let (beta, x) = (0.9f64, 5.0f64);
        let mut v = 0.0;
        for t in 1..=3u64 {
            v = ewa(v, x, beta, 1.0 - beta);
            // Uncorrected, v_t = x * (1 - beta^t): biased low at the start.
            assert!((v - x * bias_correction(beta, t)).abs() < 1e-12);
            assert!((v / bias_correction(beta, t) - x).abs() < 1e-12);
        }
        for _ in 0..500 {
            v = ewa(v, x, beta, 1.0 - beta);
        }
        assert!((v - x).abs() < 1e-12);
    }

    #[test]
    fn py_pow_half_is_pythons_pow_not_sqrt() {
        // Python (glibc's pow): (1 - 0.6069143337725912 ** 3) ** 0.5 == 0.8811618095130537,
        // one ulp above math.sqrt of the same value (AdamW's third step in a seed that
        // tests/test_properties.py once drew).
        let x = bias_correction(0.606_914_333_772_591_2, 3);
        assert_eq!(py_pow_half(x), 0.881_161_809_513_053_7);
        assert_eq!(x.sqrt(), 0.881_161_809_513_053_6);
    }

    #[test]
    fn bias_correction_matches_python_pow() {
        // Python: 1 - 0.999 ** 10 == 0.009955119790251765
        assert_eq!(bias_correction(0.999, 10), 0.009_955_119_790_251_765);
    }

    /// Deterministic values with some spread, in `T`.
    fn data<T: Float>(len: usize, seed: usize) -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(((i * 7919 + seed * 104_729) % 1999) as f64 / 999.0 - 1.0))
            .collect()
    }

    /// The definition, one element at a time.
    fn ewa_reference<T: Float>(x: &[T], s: Series, beta: f64, corrected: bool) -> Vec<T> {
        let (b, m) = (T::from_f64(beta), T::from_f64(1.0 - beta));
        let mut out = vec![T::ZERO; x.len()];
        for o in 0..s.outer {
            for i in 0..s.inner {
                let mut v = T::ZERO;
                for t in 0..s.n {
                    let at = (o * s.n + t) * s.inner + i;
                    v = b * v + m * x[at];
                    let c = bias_correction(beta, t as u64 + 1);
                    out[at] = if corrected { v / T::from_f64(c) } else { v };
                }
            }
        }
        out
    }

    /// Shapes for the serial path, whole blocks on the pool, and column panels on the pool.
    const SHAPES: [Series; 6] = [
        Series {
            outer: 1,
            n: 0,
            inner: 3,
        },
        Series {
            outer: 1,
            n: 7,
            inner: 1,
        },
        Series {
            outer: 3,
            n: 5,
            inner: 4,
        },
        Series {
            outer: 40_000,
            n: 3,
            inner: 1,
        },
        Series {
            outer: 2,
            n: 300,
            inner: 1_000,
        },
        Series {
            outer: 1,
            n: 70_000,
            inner: 1,
        },
    ];

    fn check_ewa<T: Float>() {
        for s in SHAPES {
            let x: Vec<T> = data(s.len(), s.n);
            for (beta, corrected) in [(0.9, true), (0.98, false), (0.0, true), (0.5, true)] {
                let want = ewa_reference(&x, s, beta, corrected);
                for level in simd::supported() {
                    let mut out = vec![T::ONE; x.len()];
                    ewa_series(level, &x, &mut out, s, beta, corrected).unwrap();
                    assert_eq!(out, want, "{s:?} beta={beta} {level:?}");
                }
            }
        }
    }

    #[test]
    fn ewa_series_matches_the_definition_bit_for_bit_at_every_level() {
        check_ewa::<f32>();
        check_ewa::<f64>();
    }

    #[test]
    fn ewa_series_refuses_bad_beta_and_lengths() {
        let s = Series::along(&[4], 0);
        let (x, mut out) = (vec![1.0f64; 4], vec![0.0; 4]);
        for beta in [1.0, -0.1, f64::NAN] {
            let e = ewa_series(simd::level(), &x, &mut out, s, beta, true).unwrap_err();
            assert!(e.to_string().starts_with("beta must be in [0, 1)"), "{e}");
        }
        let short = Series::along(&[3], 0);
        assert!(matches!(
            ewa_series(simd::level(), &x, &mut out, short, 0.9, true),
            Err(Error::Mismatch(_))
        ));
        assert_eq!(out, [0.0; 4]);
    }

    #[test]
    fn series_along_an_axis() {
        assert_eq!(
            Series::along(&[2, 3, 4, 5], 1),
            Series {
                outer: 2,
                n: 3,
                inner: 20
            }
        );
        assert_eq!(
            Series::along(&[6], 0),
            Series {
                outer: 1,
                n: 6,
                inner: 1
            }
        );
    }

    /// The definition with exact sums (f64 for f32 data; an exact rational is overkill for
    /// the tolerance below).
    fn moving_average_reference(x: &[f64], s: Series, window: usize) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        for o in 0..s.outer {
            for i in 0..s.inner {
                for t in 0..s.n {
                    let from = (t + 1).saturating_sub(window);
                    let vals: Vec<f64> =
                        (from..=t).map(|u| x[(o * s.n + u) * s.inner + i]).collect();
                    out[(o * s.n + t) * s.inner + i] = vals.iter().sum::<f64>() / vals.len() as f64;
                }
            }
        }
        out
    }

    #[test]
    fn moving_average_matches_the_definition_at_every_level() {
        for s in SHAPES.into_iter().filter(|s| s.n < 1000) {
            let x: Vec<f64> = data(s.len(), 3);
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let x32_as_64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            for window in [1, 2, 5, 1000] {
                let want = moving_average_reference(&x, s, window);
                let want32 = moving_average_reference(&x32_as_64, s, window);
                for level in simd::supported() {
                    let mut out = vec![0.0; x.len()];
                    moving_average(level, &x, &mut out, s, window).unwrap();
                    for (a, b) in out.iter().zip(&want) {
                        assert!((a - b).abs() <= 1e-13, "{s:?} window={window}: {a} vs {b}");
                    }
                    let mut out32 = vec![0.0f32; x.len()];
                    moving_average(level, &x32, &mut out32, s, window).unwrap();
                    for (a, b) in out32.iter().zip(&want32) {
                        assert!((*a as f64 - b).abs() <= 1e-7, "{a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn moving_average_keeps_nan_and_infinity_inside_their_windows() {
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let x = [1.0, nan, 2.0, 3.0, inf, 4.0, -inf, 5.0, 6.0, 7.0];
        let expected = [
            (2, [1.0, nan, nan, 2.5, inf, inf, -inf, -inf, 5.5, 6.5]),
            (3, [1.0, nan, nan, nan, inf, inf, nan, -inf, -inf, 6.0]),
        ];
        let mut out = [0.0; 10];
        for (window, want) in expected {
            moving_average(simd::level(), &x, &mut out, Series::along(&[10], 0), window).unwrap();
            for (a, b) in out.iter().zip(want) {
                assert!(*a == b || (a.is_nan() && b.is_nan()), "{window}: {out:?}");
            }
        }
        assert!(moving_average(simd::level(), &x, &mut out, Series::along(&[10], 0), 0).is_err());
    }

    #[test]
    fn finite_values_whose_sum_overflows_only_affect_their_windows() {
        let x = [1e308, 1e308, 1.0, 1.0, 1.0, -1e308, -1.7e308, 2.0];
        let want = [1e308, 1e308, 5e307, 1.0, 1.0, -5e307, -1.35e308, -8.5e307];
        let mut out = [0.0; 8];
        for level in simd::supported() {
            moving_average(level, &x, &mut out, Series::along(&[8], 0), 2).unwrap();
            for (a, b) in out.iter().zip(want) {
                assert!((a - b).abs() <= 1e-15 * b.abs(), "{level:?}: {out:?}");
            }
            assert_eq!(&out[3..5], &[1.0, 1.0]);
        }
        let x32 = [3e38f32, 3e38, 1.0, 1.0];
        let mut out32 = [0.0f32; 4];
        moving_average(simd::level(), &x32, &mut out32, Series::along(&[4], 0), 2).unwrap();
        assert_eq!(out32, [3e38, 3e38, 1.5e38, 1.0]);
    }

    #[test]
    fn a_long_moving_average_does_not_drift() {
        // A plain running sum loses the small values' low bits each time a 1e8 passes
        // through the window: it ends up off by about 1e-6 relative.
        let (n, window) = (200_000, 7);
        let x: Vec<f64> = data::<f64>(n, 0)
            .iter()
            .enumerate()
            .map(|(t, &v)| if t % 50 == 0 { 1e8 } else { v + 1.5 })
            .collect();
        let mut out = vec![0.0; n];
        moving_average(simd::level(), &x, &mut out, Series::along(&[n], 0), window).unwrap();
        for t in window - 1..n {
            let exact = x[t + 1 - window..=t].iter().sum::<f64>() / window as f64;
            let window_has_no_big_value = exact < 1e3;
            if window_has_no_big_value {
                assert!(
                    (out[t] - exact).abs() <= 4e-16 * exact,
                    "{t}: {} vs {exact}",
                    out[t]
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        let s = Series {
            outer: 3,
            n: 500,
            inner: 777,
        };
        let x: Vec<f32> = data(s.len(), 1);
        let run = |threads| {
            parallel::set_num_threads(threads).unwrap();
            let (mut e, mut m) = (vec![0.0f32; s.len()], vec![0.0f32; s.len()]);
            ewa_series(simd::level(), &x, &mut e, s, 0.95, true).unwrap();
            moving_average(simd::level(), &x, &mut m, s, 9).unwrap();
            let mut avg: Vec<f32> = data(s.len(), 2);
            let (averages, values) = (vec![SliceMut::F32(&mut avg)], vec![Slice::F32(&x)]);
            update_averages(simd::level(), averages, values, 0.99).unwrap();
            (e, m, avg)
        };
        let one = run(1);
        assert_eq!(one, run(4));
        assert_eq!(one.0, ewa_reference(&x, s, 0.95, true));
    }

    #[test]
    fn update_averages_is_the_ewa_step_for_every_tensor() {
        let values: Vec<Vec<f64>> = [5, 0, 3 * CHUNK_ELEMENTS + 1]
            .iter()
            .map(|&n| data(n, n))
            .collect();
        let v32: Vec<f32> = data(11, 4);
        for level in simd::supported() {
            let mut avgs: Vec<Vec<f64>> = values
                .iter()
                .map(|v| v.iter().map(|x| x * 2.0).collect())
                .collect();
            let mut a32: Vec<f32> = vec![1.0; 11];
            let mut averages: Vec<SliceMut<'_>> =
                avgs.iter_mut().map(|a| SliceMut::F64(a)).collect();
            averages.push(SliceMut::F32(&mut a32));
            let mut slices: Vec<Slice<'_>> = values.iter().map(|v| Slice::F64(v)).collect();
            slices.push(Slice::F32(&v32));
            update_averages(level, averages, slices, 0.999).unwrap();
            for (avg, val) in avgs.iter().zip(&values) {
                for (a, v) in avg.iter().zip(val) {
                    assert_eq!(*a, 0.999 * (v * 2.0) + (1.0 - 0.999) * v);
                }
            }
            for (a, v) in a32.iter().zip(&v32) {
                assert_eq!(*a, 0.999f32 * 1.0 + (1.0f64 - 0.999) as f32 * v);
            }
        }
    }

    #[test]
    fn update_averages_checks_everything_first() {
        let (mut a, mut b) = (vec![1.0f64; 3], vec![1.0f64; 2]);
        let (va, vb) = (vec![0.0; 3], vec![0.0; 3]);
        let bad = update_averages(
            simd::level(),
            vec![SliceMut::F64(&mut a), SliceMut::F64(&mut b)],
            vec![Slice::F64(&va), Slice::F64(&vb)],
            0.5,
        );
        assert!(matches!(bad, Err(Error::Mismatch(_))));
        let e = update_averages(
            simd::level(),
            vec![SliceMut::F64(&mut a)],
            vec![Slice::F64(&va)],
            1.5,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "decay must be in [0, 1], got 1.5");
        assert_eq!(a, [1.0; 3]);
    }
}
