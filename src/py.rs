//! Python bindings (the `_core` extension module): thin wrappers over the core, and the
//! one place core errors become Python exceptions.

use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;
use crate::hyper::MAX_SLOTS;
use crate::parallel::{self, PARALLEL_MIN_ELEMENTS};
use crate::simd;

mod arrays;
mod batches;
mod engine;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::OutOfMemory(_) => PyMemoryError::new_err(e.to_string()),
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

/// Sets the number of threads used for large steps (n >= 1).
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    parallel::set_num_threads(n).map_err(PyValueError::new_err)
}

/// The number of threads used for large steps.
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
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
    simd::supported().into_iter().map(|l| l.name()).collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_class::<batches::Batcher>()?;
    m.add_class::<batches::EpochIter>()?;
    m.add_function(wrap_pyfunction!(batches::_plain_gather, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(supported_simd_levels, m)?)?;
    m.add("MAX_SLOTS", MAX_SLOTS)?;
    m.add("PARALLEL_MIN_ELEMENTS", PARALLEL_MIN_ELEMENTS)?;
    Ok(())
}
