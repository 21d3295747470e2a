//! Python bindings (the `_core` extension module): thin wrappers over the core, and the
//! one place core errors become Python exceptions.

use numpy::PyArrayMethods;
use pyo3::exceptions::{
    PyMemoryError, PyRuntimeError, PyRuntimeWarning, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use crate::error::Error;
use crate::runtime::parallel::{self, PARALLEL_MIN_ELEMENTS};
use crate::runtime::simd;

mod arrays;
mod batches;
mod ewa;
mod lock;
mod nn;
mod ops;
mod optim;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
            Error::Internal(_) => PyRuntimeError::new_err(e.to_string()),
            _ => PyValueError::new_err(e.to_string()),
        }
    }
}

/// The name of an object's type, for error messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// Sets the number of threads used for large steps: an int in [1, 4 * CPUs].
#[pyfunction]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    if n.is_instance_of::<PyBool>() || !n.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "set_num_threads: n must be an int, got {}",
            type_name(n)
        )));
    }
    let n = n.extract::<usize>().unwrap_or(0);
    parallel::set_num_threads(n).map_err(|e| PyValueError::new_err(format!("set_num_threads: {e}")))
}

/// Warns about a `FERROPTIM_NUM_THREADS` that is not used as given.
fn warn_about_env_threads(py: Python<'_>) -> PyResult<()> {
    let msg = match parallel::env_threads() {
        parallel::EnvThreads::Clamped { asked, used } => format!(
            "FERROPTIM_NUM_THREADS={asked} is more than {} per CPU of the {} this process may \
             use; using {used} threads",
            parallel::MAX_THREADS_PER_CPU,
            parallel::cpus()
        ),
        parallel::EnvThreads::Invalid(v) => format!(
            "FERROPTIM_NUM_THREADS={v:?} is not an integer >= 1; using the default of {} threads",
            parallel::default_threads()
        ),
        _ => return Ok(()),
    };
    let msg = std::ffi::CString::new(msg).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &msg, 1)
}

/// The number of threads used for large steps.
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
}

/// The memory-bandwidth reference of benchmarks: `dst[k] += src` for every array of `dst`
/// (1-D C-contiguous float32 arrays of one length), in one threaded pass with the GIL
/// released. It moves the bytes an update with `len(dst)` read-write arrays and one
/// read-only array moves. With `dst16` (1 or 2 uint16 arrays, each element incremented)
/// `dst` must be one array: the bytes of an update with 16-bit state.
#[pyfunction]
#[pyo3(signature = (dst, src, dst16 = None))]
fn stream_reference(
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

/// The SIMD level kernels run with: 'scalar', 'avx2' or 'avx512'.
#[pyfunction]
fn simd_level() -> &'static str {
    simd::level().name()
}

/// Forces the SIMD level for later steps (one of `supported_simd_levels()`).
#[pyfunction]
fn set_simd_level(name: &str) -> PyResult<()> {
    let level = simd::Level::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown SIMD level {name:?}; expected 'scalar', 'avx2' or 'avx512'"
        ))
    })?;
    simd::set_level(level).map_err(PyValueError::new_err)
}

/// The SIMD levels this CPU supports, lowest first.
#[pyfunction]
fn supported_simd_levels() -> Vec<&'static str> {
    simd::supported()
        .into_iter()
        .map(crate::runtime::simd::Level::name)
        .collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    warn_about_env_threads(m.py())?;
    m.add_class::<optim::Engine>()?;
    m.add_class::<optim::Lbfgs>()?;
    m.add_function(wrap_pyfunction!(optim::muon_step, m)?)?;
    m.add_class::<batches::Batcher>()?;
    m.add_class::<batches::EpochIter>()?;
    m.add_class::<nn::Network>()?;
    m.add_function(wrap_pyfunction!(batches::_plain_gather, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(stream_reference, m)?)?;
    m.add_function(wrap_pyfunction!(ops::grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(ops::scale_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::clip_grad_norm_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::divide_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::clamp_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::accumulate_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::lookahead_sync_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::pack_, m)?)?;
    m.add_function(wrap_pyfunction!(ops::unpack_, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(supported_simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(ewa::ewa, m)?)?;
    m.add_function(wrap_pyfunction!(ewa::moving_average, m)?)?;
    m.add_function(wrap_pyfunction!(ewa::ema_update, m)?)?;
    m.add("PARALLEL_MIN_ELEMENTS", PARALLEL_MIN_ELEMENTS)?;
    Ok(())
}
