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
mod tests;
