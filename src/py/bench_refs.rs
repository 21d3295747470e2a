//! The benchmarks' memory-bandwidth reference as a binding, for benches/compare.py: built only
//! with the `bench-refs` feature (not in the wheel).

use numpy::PyArrayMethods;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The memory-bandwidth reference of benchmarks: `dst[k] += src` for every array of `dst`
/// (1-D C-contiguous float32 arrays of one length), in one threaded pass with the GIL
/// released. It moves the bytes an update with `len(dst)` read-write arrays and one
/// read-only array moves. With `dst16` (1 or 2 uint16 arrays, each element incremented)
/// `dst` must be one array: the bytes of an update with 16-bit state.
#[pyfunction]
#[pyo3(signature = (dst, src, dst16 = None))]
pub(super) fn stream_reference(
    py: Python<'_>,
    dst: Vec<Bound<'_, numpy::PyArray1<f32>>>,
    src: Bound<'_, numpy::PyArray1<f32>>,
    dst16: Option<Vec<Bound<'_, numpy::PyArray1<u16>>>>,
) -> PyResult<()> {
    let src = src.try_readonly()?;
    let src = src.as_slice()?;
    let mut dst = dst
        .iter()
        .map(numpy::PyArrayMethods::try_readwrite)
        .collect::<Result<Vec<_>, _>>()?;
    let mut views = dst
        .iter_mut()
        .map(|d| d.as_slice_mut())
        .collect::<Result<Vec<_>, _>>()?;
    let mut half = dst16
        .iter()
        .flatten()
        .map(numpy::PyArrayMethods::try_readwrite)
        .collect::<Result<Vec<_>, _>>()?;
    let mut half_views = half
        .iter_mut()
        .map(|d| d.as_slice_mut())
        .collect::<Result<Vec<_>, _>>()?;
    if views.iter().any(|v| v.len() != src.len()) || half_views.iter().any(|v| v.len() != src.len())
    {
        return Err(PyValueError::new_err(
            "stream_reference: arrays differ in length",
        ));
    }
    if dst16.is_some() {
        if views.len() != 1 || !(1..=2).contains(&half_views.len()) {
            return Err(PyValueError::new_err(
                "stream_reference: with dst16, dst is one array and dst16 one or two",
            ));
        }
        let d = views.pop().unwrap_or_default();
        py.detach(|| crate::bandwidth::stream_16(d, &mut half_views, src));
        return Ok(());
    }
    if !(1..=4).contains(&views.len()) {
        return Err(PyValueError::new_err(
            "stream_reference: 1 to 4 destination arrays",
        ));
    }
    py.detach(|| crate::bandwidth::stream(&mut views, src));
    Ok(())
}
