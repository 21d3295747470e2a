//! Bindings of the averages: `ewa` and `moving_average` of an array along an axis, and the
//! in-place EMA of a list of tensors behind `ParameterEMA` and the streaming `EWA`.
//!
//! Arrays are read straight from NumPy's C struct (see `arrays.rs`); outputs are new arrays.
//! Large work runs with the GIL released ([`super::maybe_detach`]).

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{check_array, disjoint_extents, layout, overlapping, shape_str, Checked};
use super::{maybe_detach, Work};
use crate::numerics::float::{Dtype, Float};
use crate::optim::ewa::{self as ewa_core, Series};
use crate::runtime::simd;

fn series(shape: &[usize], axis: isize) -> PyResult<Series> {
    let ndim = shape.len() as isize;
    let normalized = if axis < 0 { axis + ndim } else { axis };
    if !(0..ndim).contains(&normalized) {
        return Err(PyValueError::new_err(format!(
            "axis {axis} is out of bounds for an array of {ndim} dimension{}",
            if ndim == 1 { "" } else { "s" }
        )));
    }
    Ok(Series::along(shape, normalized as usize))
}

/// A new array shaped like `x`, filled by `fill(x, out)` (without the GIL when large).
fn map_series<'py, T: Float + Element>(
    x: &Bound<'py, PyUntypedArray>,
    checked: Checked,
    fill: impl FnOnce(&[T], &mut [T]) -> crate::Result<()> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    assert_eq!(
        T::DTYPE,
        checked.dtype,
        "map_series called with the wrong element type"
    );
    let py = x.py();
    let out = PyArrayDyn::<T>::zeros(py, layout(x).shape.to_vec(), false);
    {
        let mut guard = out.try_readwrite()?;
        let dst = guard.as_slice_mut()?;
        // SAFETY: `x` is a live, aligned, C-contiguous array of `checked.len` elements of
        // `T` (checked by `check_array`), kept alive by the caller, and `out` is new.
        let src = unsafe { std::slice::from_raw_parts(checked.data as *const T, checked.len) };
        maybe_detach(py, Work::Elements(checked.len), || fill(src, dst))?;
    }
    Ok(out.into_any())
}

/// The exponentially weighted average of x along axis (see `ferroptim.ewa`).
#[pyfunction]
#[pyo3(signature = (x, beta, bias_correction = true, axis = 0))]
pub(super) fn ewa<'py>(
    x: &Bound<'py, PyAny>,
    beta: f64,
    bias_correction: bool,
    axis: isize,
) -> PyResult<Bound<'py, PyAny>> {
    let (a, c) = check_array(x, "x", false)?;
    let s = series(layout(&a).shape, axis)?;
    let level = simd::level();
    match c.dtype {
        Dtype::F32 => map_series::<f32>(&a, c, |x, out| {
            ewa_core::ewa_series(level, x, out, s, beta, bias_correction)
        }),
        Dtype::F64 => map_series::<f64>(&a, c, |x, out| {
            ewa_core::ewa_series(level, x, out, s, beta, bias_correction)
        }),
    }
}

/// The trailing moving average of x along axis (see `ferroptim.moving_average`).
#[pyfunction]
#[pyo3(signature = (x, window, axis = 0))]
pub(super) fn moving_average<'py>(
    x: &Bound<'py, PyAny>,
    window: i64,
    axis: isize,
) -> PyResult<Bound<'py, PyAny>> {
    let window = usize::try_from(window)
        .ok()
        .filter(|&w| w > 0)
        .ok_or_else(|| PyValueError::new_err(format!("window must be at least 1, got {window}")))?;
    let (a, c) = check_array(x, "x", false)?;
    let s = series(layout(&a).shape, axis)?;
    let level = simd::level();
    match c.dtype {
        Dtype::F32 => map_series::<f32>(&a, c, |x, out| {
            ewa_core::moving_average(level, x, out, s, window)
        }),
        Dtype::F64 => map_series::<f64>(&a, c, |x, out| {
            ewa_core::moving_average(level, x, out, s, window)
        }),
    }
}

/// `averages[i] = decay * averages[i] + (1 - decay) * values[i]` for every i, in place, in
/// one call. Averages must be pairwise disjoint and no value may share memory with one;
/// everything is checked before anything changes.
#[pyfunction]
#[pyo3(signature = (averages, values, decay, names = None))]
pub(super) fn ema_update(
    py: Python<'_>,
    averages: Vec<Bound<'_, PyAny>>,
    values: Vec<Bound<'_, PyAny>>,
    decay: f64,
    names: Option<Vec<String>>,
) -> PyResult<()> {
    if values.len() != averages.len() {
        return Err(PyValueError::new_err(format!(
            "expected {} values (one per average), got {}",
            averages.len(),
            values.len()
        )));
    }
    let names =
        names.unwrap_or_else(|| (0..values.len()).map(|i| format!("values[{i}]")).collect());
    if names.len() != values.len() {
        return Err(PyValueError::new_err("names and values differ in length"));
    }
    let mut avgs = Vec::with_capacity(values.len());
    let mut vals = Vec::with_capacity(values.len());
    for ((average, value), name) in averages.iter().zip(&values).zip(&names) {
        let (a, ac) = check_array(average, &format!("the average of {name}"), true)?;
        let (v, vc) = check_array(value, name, false)?;
        if vc.dtype != ac.dtype {
            return Err(PyTypeError::new_err(format!(
                "{name} has dtype {}, expected {} like its average",
                vc.dtype.name(),
                ac.dtype.name()
            )));
        }
        let (vs, as_) = (layout(&v).shape, layout(&a).shape);
        if vs != as_ {
            return Err(PyValueError::new_err(format!(
                "{name} has shape {}, expected {} like its average",
                shape_str(vs),
                shape_str(as_)
            )));
        }
        avgs.push(ac);
        vals.push(vc);
    }
    let extents = disjoint_extents(&avgs, &names, "the averages of")?;
    for (v, name) in vals.iter().zip(&names) {
        if let Some(j) = overlapping(&extents, v.data, v.nbytes()) {
            return Err(PyValueError::new_err(format!(
                "{name} shares memory with the average of {}; pass a separate array",
                names[j]
            )));
        }
    }
    // SAFETY: averages are pairwise disjoint and no value overlaps one (checked above); the
    // argument lists keep every array alive for the call.
    let (dst, src) = unsafe {
        (
            avgs.iter().map(|c| c.slice_mut()).collect(),
            vals.iter().map(|c| c.slice()).collect(),
        )
    };
    let level = simd::level();
    let total: usize = vals.iter().map(|c| c.len).sum();
    maybe_detach(py, Work::Elements(total), || {
        ewa_core::update_averages(level, dst, src, decay)
    })?;
    Ok(())
}
