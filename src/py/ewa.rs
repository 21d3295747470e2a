//! Bindings of the averages: `ewa` and `moving_average` of an array along an axis, and the
//! in-place EMA of a list of tensors behind `ParameterEMA` and the streaming `EWA`.
//!
//! Inputs are read straight from NumPy's C struct, as the engine reads them; outputs are new
//! arrays. Work of `PARALLEL_MIN_ELEMENTS` elements or more runs with the GIL released.

use numpy::npyffi::NPY_ORDER;
use numpy::{
    Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods, PY_ARRAY_API,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::arrays::{describe_dtype, itemsize, layout, shape_str};
use super::type_name;
use crate::ewa::{self as ewa_core, Averaged, Series};
use crate::float::{Dtype, Float};
use crate::parallel::PARALLEL_MIN_ELEMENTS;
use crate::simd;

/// `obj` as a float32/float64 ndarray in native byte order, C-contiguous and aligned
/// (copied if it was not).
fn float_array<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<(Bound<'py, PyUntypedArray>, Dtype)> {
    let a = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a numpy.ndarray of float32 or float64, got {}",
            type_name(obj)
        ))
    })?;
    let l = layout(a);
    let dtype = l.dtype.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{name} has dtype {}, expected float32 or float64 (native byte order)",
            describe_dtype(a)
        ))
    })?;
    if l.is_c_aligned() {
        return Ok((a.clone(), dtype));
    }
    // SAFETY: `a` is a live ndarray; NewCopy returns a new reference or NULL.
    let copy = unsafe {
        let p = PY_ARRAY_API.PyArray_NewCopy(obj.py(), a.as_array_ptr(), NPY_ORDER::NPY_CORDER);
        Bound::from_owned_ptr_or_err(obj.py(), p)?.cast_into::<PyUntypedArray>()?
    };
    Ok((copy, dtype))
}

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
    fill: impl FnOnce(&[T], &mut [T]) -> crate::Result<()> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    let py = x.py();
    let l = layout(x);
    let n = l.len();
    let out = PyArrayDyn::<T>::zeros(py, l.shape.to_vec(), false);
    {
        let mut guard = out.try_readwrite()?;
        let dst = guard.as_slice_mut()?;
        // SAFETY: `x` is a live, aligned, C-contiguous array of `n` elements of `T` (checked
        // by `float_array`), kept alive by the caller, and `out` is a new array.
        let src = unsafe { std::slice::from_raw_parts(l.data as *const T, n) };
        if n >= PARALLEL_MIN_ELEMENTS {
            py.detach(|| fill(src, dst))?;
        } else {
            fill(src, dst)?;
        }
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
    let (a, dtype) = float_array(x, "x")?;
    let s = series(layout(&a).shape, axis)?;
    let level = simd::level();
    match dtype {
        Dtype::F32 => map_series::<f32>(&a, |x, out| {
            ewa_core::ewa_series(level, x, out, s, beta, bias_correction)
        }),
        Dtype::F64 => map_series::<f64>(&a, |x, out| {
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
    let (a, dtype) = float_array(x, "x")?;
    let s = series(layout(&a).shape, axis)?;
    let level = simd::level();
    match dtype {
        Dtype::F32 => map_series::<f32>(&a, |x, out| {
            ewa_core::moving_average(level, x, out, s, window)
        }),
        Dtype::F64 => map_series::<f64>(&a, |x, out| {
            ewa_core::moving_average(level, x, out, s, window)
        }),
    }
}

/// An average and its value, checked; `value` may be a contiguous copy of what was passed.
struct Pair<'py> {
    average: Bound<'py, PyUntypedArray>,
    value: Bound<'py, PyUntypedArray>,
    dtype: Dtype,
}

fn check_pair<'py>(
    average: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Pair<'py>> {
    let avg = average.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the average of {name} must be a numpy.ndarray, got {}",
            type_name(average)
        ))
    })?;
    let al = layout(avg);
    let dtype = al.dtype.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "the average of {name} has dtype {}, expected float32 or float64",
            describe_dtype(avg)
        ))
    })?;
    if !al.is_writeable() || !al.is_c_aligned() {
        return Err(PyValueError::new_err(format!(
            "the average of {name} must be a writeable, C-contiguous, aligned array"
        )));
    }
    let (value, value_dtype) = float_array(value, name)?;
    let vl = layout(&value);
    if value_dtype != dtype {
        return Err(PyTypeError::new_err(format!(
            "{name} has dtype {}, expected {} like its average",
            value_dtype.name(),
            dtype.name()
        )));
    }
    if vl.shape != al.shape {
        return Err(PyValueError::new_err(format!(
            "{name} has shape {}, expected {} like its average",
            shape_str(vl.shape),
            shape_str(al.shape)
        )));
    }
    Ok(Pair {
        average: avg.clone(),
        value,
        dtype,
    })
}

/// `(start, end, index)` of each non-empty array's bytes.
fn extent(
    a: &Bound<'_, PyUntypedArray>,
    dtype: Dtype,
    index: usize,
) -> Option<(usize, usize, usize)> {
    let l = layout(a);
    let nbytes = l.len() * itemsize(dtype);
    (nbytes > 0).then_some((l.data, l.data + nbytes, index))
}

/// `averages[i] = decay * averages[i] + (1 - decay) * values[i]` for every i, in place, in
/// one call. Values of another layout are copied; values must not share memory with any
/// average. Everything is checked before anything changes.
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
    let name = |i: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(i).cloned())
            .unwrap_or_else(|| format!("values[{i}]"))
    };
    let pairs = averages
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (a, v))| check_pair(a, v, &name(i)))
        .collect::<PyResult<Vec<_>>>()?;

    let mut extents: Vec<_> = pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| extent(&p.average, p.dtype, i))
        .collect();
    extents.sort_unstable();
    if let Some(w) = extents.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(PyValueError::new_err(format!(
            "the averages of {} and {} share memory",
            name(w[0].2),
            name(w[1].2)
        )));
    }
    for (i, p) in pairs.iter().enumerate() {
        let Some((start, end, _)) = extent(&p.value, p.dtype, i) else {
            continue;
        };
        // Extents are sorted and disjoint: only the last one starting before `end` can overlap.
        let k = extents.partition_point(|&(s, _, _)| s < end);
        if let Some(&(_, e, j)) = k.checked_sub(1).map(|k| &extents[k]) {
            if e > start {
                return Err(PyValueError::new_err(format!(
                    "{} shares memory with the average of {}; pass a separate array",
                    name(i),
                    name(j)
                )));
            }
        }
    }

    // SAFETY: every average is a live, writeable, aligned, C-contiguous array of its dtype,
    // averages are pairwise disjoint, no value overlaps an average, and `pairs` keeps every
    // array alive for the rest of this call.
    let tensors: Vec<Averaged<'_>> = pairs
        .iter()
        .map(|p| unsafe {
            let (a, v) = (layout(&p.average), layout(&p.value));
            match p.dtype {
                Dtype::F32 => Averaged::F32 {
                    average: std::slice::from_raw_parts_mut(a.data as *mut f32, a.len()),
                    value: std::slice::from_raw_parts(v.data as *const f32, v.len()),
                },
                Dtype::F64 => Averaged::F64 {
                    average: std::slice::from_raw_parts_mut(a.data as *mut f64, a.len()),
                    value: std::slice::from_raw_parts(v.data as *const f64, v.len()),
                },
            }
        })
        .collect();
    let level = simd::level();
    let total: usize = tensors.iter().map(Averaged::len).sum();
    if total >= PARALLEL_MIN_ELEMENTS {
        py.detach(|| ewa_core::update_averages(level, tensors, decay))?;
    } else {
        ewa_core::update_averages(level, tensors, decay)?;
    }
    Ok(())
}
