//! Bindings of the multi-tensor operations: gradient norm and clipping, accumulation,
//! Lookahead's synchronisation. Each takes lists of arrays, checks them all before touching
//! any, and releases the GIL for large work.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::arrays::{check_array, disjoint_extents, overlapping, read_only_error, Checked};
use super::{type_name, Work};
use crate::numerics::float::Dtype;
use crate::optim::ops::{self, clip_coefficient, Norm, Slice, SliceMut};

/// Checked arrays of a list (or tuple) argument, with the objects that keep them alive.
struct Arrays<'py> {
    _alive: Vec<Bound<'py, PyAny>>,
    checked: Vec<Checked>,
    names: Vec<String>,
}

impl Arrays<'_> {
    fn total(&self) -> usize {
        self.checked.iter().map(|c| c.len).sum()
    }
}

fn arrays<'py>(obj: &Bound<'py, PyAny>, what: &str, writeable: bool) -> PyResult<Arrays<'py>> {
    let items: Vec<Bound<'py, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a list of arrays, got {}",
            type_name(obj)
        )));
    };
    let names: Vec<String> = (0..items.len()).map(|i| format!("{what}[{i}]")).collect();
    let checked = items
        .iter()
        .zip(&names)
        .map(|(a, n)| check_array(a, n, writeable).map(|(_, c)| c))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Arrays {
        _alive: items,
        checked,
        names,
    })
}

/// Checks that the arrays that will be written are pairwise disjoint and that no array
/// read beside them overlaps one (read-only arrays may overlap each other).
fn check_disjoint(written: &[&Arrays<'_>], read: &[&Arrays<'_>]) -> PyResult<()> {
    let all: Vec<Checked> = written
        .iter()
        .flat_map(|a| a.checked.iter().copied())
        .collect();
    let names: Vec<String> = written
        .iter()
        .flat_map(|a| a.names.iter().cloned())
        .collect();
    let extents = disjoint_extents(&all, &names, "arrays")?;
    for r in read {
        for (c, n) in r.checked.iter().zip(&r.names) {
            if let Some(j) = overlapping(&extents, c.data, c.nbytes()) {
                return Err(PyValueError::new_err(format!(
                    "{n} shares memory with {}; pass a separate array",
                    names[j]
                )));
            }
        }
    }
    Ok(())
}

fn mutable<'a>(a: &Arrays<'_>) -> Vec<SliceMut<'a>> {
    // SAFETY: callers checked the arrays disjoint from each other and from every array read
    // beside them, and `a` keeps them alive for the call.
    a.checked.iter().map(|c| unsafe { c.slice_mut() }).collect()
}

fn readonly<'a>(a: &Arrays<'_>) -> Vec<Slice<'a>> {
    // SAFETY: as in `mutable`; read-only views of live arrays nobody writes.
    a.checked.iter().map(|c| unsafe { c.slice() }).collect()
}

/// Runs `f` with the GIL released when the arrays' `total` elements are many.
fn maybe_detach<T: Send>(py: Python<'_>, total: usize, f: impl FnOnce() -> T + Send) -> T {
    super::maybe_detach(py, Work::Elements(total), f)
}

/// The norm of all arrays together (as if concatenated); `norm_type` > 0 or inf.
#[pyfunction]
pub fn grad_norm(py: Python<'_>, arrays_: &Bound<'_, PyAny>, norm_type: f64) -> PyResult<f64> {
    let a = arrays(arrays_, "grads", false)?;
    let norm = Norm::of_order(norm_type)?;
    let xs = readonly(&a);
    Ok(maybe_detach(py, a.total(), || ops::norm(&xs, norm)))
}

/// `x *= factor` in place for every array.
#[pyfunction]
pub fn scale_(py: Python<'_>, arrays_: &Bound<'_, PyAny>, factor: f64) -> PyResult<()> {
    let a = arrays(arrays_, "grads", true)?;
    check_disjoint(&[&a], &[])?;
    let xs = mutable(&a);
    maybe_detach(py, a.total(), || ops::scale(xs, factor));
    Ok(())
}

/// `clip_grad_norm`: the norm `N` of all arrays together, then every array scaled by the
/// core's clip coefficient `min(1, max_norm / (N + 1e-6))` where it is below 1 (or NaN).
/// Returns `N` (an empty sum as +0.0). With `error_if_nonfinite`, a NaN or infinite `N` is
/// returned before anything is scaled (the Python layer raises).
#[pyfunction]
pub fn clip_grad_norm_(
    py: Python<'_>,
    arrays_: &Bound<'_, PyAny>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> PyResult<f64> {
    // One parse of the arrays; whether they may be scaled is settled before any work, and
    // raised only when a scaling is due (read-only gradients that need no clipping are fine).
    let a = arrays(arrays_, "grads", false)?;
    let norm = Norm::of_order(norm_type)?;
    let writable = match a.checked.iter().position(|c| !c.writeable) {
        Some(i) => Err(read_only_error(&a.names[i])),
        None => check_disjoint(&[&a], &[]),
    };
    // Writable arrays are viewed mutably only (the norm reads them through those views).
    let ys = writable.is_ok().then(|| mutable(&a));
    let xs = if ys.is_none() {
        readonly(&a)
    } else {
        Vec::new()
    };
    let (total, coef) = maybe_detach(py, a.total(), move || {
        let total = match &ys {
            Some(ys) => ops::norm(&ys.iter().map(SliceMut::as_slice).collect::<Vec<_>>(), norm),
            None => ops::norm(&xs, norm),
        } + 0.0;
        if error_if_nonfinite && !total.is_finite() {
            return (total, None);
        }
        let coef = clip_coefficient(max_norm, total);
        let due = coef.is_nan() || coef < 1.0;
        if let (true, Some(ys)) = (due, ys) {
            ops::scale(ys, coef);
        }
        (total, due.then_some(coef))
    });
    if coef.is_some() {
        writable?;
    }
    Ok(total)
}

/// `x /= divisor` in place for every array.
#[pyfunction]
pub fn divide_(py: Python<'_>, arrays_: &Bound<'_, PyAny>, divisor: f64) -> PyResult<()> {
    let a = arrays(arrays_, "arrays", true)?;
    check_disjoint(&[&a], &[])?;
    let xs = mutable(&a);
    maybe_detach(py, a.total(), || ops::divide(xs, divisor));
    Ok(())
}

/// `x = clip(x, lo, hi)` in place for every array (NaN stays NaN).
#[pyfunction]
pub fn clamp_(py: Python<'_>, arrays_: &Bound<'_, PyAny>, lo: f64, hi: f64) -> PyResult<()> {
    let a = arrays(arrays_, "grads", true)?;
    check_disjoint(&[&a], &[])?;
    let xs = mutable(&a);
    maybe_detach(py, a.total(), || ops::clamp(xs, lo, hi));
    Ok(())
}

/// `acc[i] = x[i]` (first) or `acc[i] += x[i]`, for arrays of equal dtypes and sizes.
#[pyfunction]
pub fn accumulate_(
    py: Python<'_>,
    acc: &Bound<'_, PyAny>,
    xs: &Bound<'_, PyAny>,
    first: bool,
) -> PyResult<()> {
    let acc = arrays(acc, "accumulators", true)?;
    let x = arrays(xs, "grads", false)?;
    check_disjoint(&[&acc], &[&x])?;
    let (dst, src) = (mutable(&acc), readonly(&x));
    maybe_detach(py, acc.total(), || ops::accumulate(dst, src, first))?;
    Ok(())
}

/// Lookahead: `slow += alpha * (fast - slow); fast = slow`, array by array.
#[pyfunction]
pub fn lookahead_sync_(
    py: Python<'_>,
    slow: &Bound<'_, PyAny>,
    fast: &Bound<'_, PyAny>,
    alpha: f64,
) -> PyResult<()> {
    let s = arrays(slow, "slow", true)?;
    let f = arrays(fast, "fast", true)?;
    check_disjoint(&[&s, &f], &[])?;
    let (ss, fs) = (mutable(&s), mutable(&f));
    maybe_detach(py, s.total(), || ops::lookahead_sync(ss, fs, alpha))?;
    Ok(())
}

/// The arrays' dtype, which must be the buffer's too.
fn same_dtype(buffer: &Arrays<'_>, xs: &Arrays<'_>) -> PyResult<Dtype> {
    let dtype = buffer.checked[0].dtype;
    if let Some((c, n)) = xs
        .checked
        .iter()
        .zip(&xs.names)
        .find(|(c, _)| c.dtype != dtype)
    {
        return Err(PyTypeError::new_err(format!(
            "{n} is {}, the buffer {}: pack arrays of one dtype per buffer",
            c.dtype.name(),
            dtype.name()
        )));
    }
    Ok(dtype)
}

/// Copies the arrays one after another into `buffer` (1-D, their total length, same dtype).
#[pyfunction]
pub fn pack_(
    py: Python<'_>,
    arrays_: &Bound<'_, PyAny>,
    buffer: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let x = arrays(arrays_, "arrays", false)?;
    let b = arrays(PyList::new(py, [buffer])?.as_any(), "buffer", true)?;
    check_disjoint(&[&b], &[&x])?;
    let dtype = same_dtype(&b, &x)?;
    let (mut dst, src) = (mutable(&b), readonly(&x));
    maybe_detach(py, b.total(), || match (dtype, dst.pop()) {
        (Dtype::F32, Some(SliceMut::F32(buf))) => {
            let xs: Vec<&[f32]> = src
                .iter()
                .map(|s| if let Slice::F32(v) = s { *v } else { &[] })
                .collect();
            ops::pack(&xs, buf)
        }
        (Dtype::F64, Some(SliceMut::F64(buf))) => {
            let xs: Vec<&[f64]> = src
                .iter()
                .map(|s| if let Slice::F64(v) = s { *v } else { &[] })
                .collect();
            ops::pack(&xs, buf)
        }
        _ => unreachable!("one buffer of the checked dtype"),
    })?;
    Ok(())
}

/// Copies consecutive pieces of `buffer` back into the arrays, times `scale`.
#[pyfunction]
pub fn unpack_(
    py: Python<'_>,
    buffer: &Bound<'_, PyAny>,
    arrays_: &Bound<'_, PyAny>,
    scale: f64,
) -> PyResult<()> {
    let x = arrays(arrays_, "arrays", true)?;
    // The buffer is only read, but `ops::unpack` borrows it mutably; it must not overlap.
    let b = arrays(PyList::new(py, [buffer])?.as_any(), "buffer", true)?;
    check_disjoint(&[&x, &b], &[])?;
    let dtype = same_dtype(&b, &x)?;
    let (mut buf, dst) = (mutable(&b), mutable(&x));
    maybe_detach(py, b.total(), || match (dtype, buf.pop()) {
        (Dtype::F32, Some(SliceMut::F32(b))) => {
            let mut xs: Vec<&mut [f32]> = dst
                .into_iter()
                .filter_map(|s| {
                    if let SliceMut::F32(v) = s {
                        Some(v)
                    } else {
                        None
                    }
                })
                .collect();
            ops::unpack(b, &mut xs, scale)
        }
        (Dtype::F64, Some(SliceMut::F64(b))) => {
            let mut xs: Vec<&mut [f64]> = dst
                .into_iter()
                .filter_map(|s| {
                    if let SliceMut::F64(v) = s {
                        Some(v)
                    } else {
                        None
                    }
                })
                .collect();
            ops::unpack(b, &mut xs, scale)
        }
        _ => unreachable!("one buffer of the checked dtype"),
    })?;
    Ok(())
}
