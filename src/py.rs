//! Python bindings (the `_core` extension module): thin wrappers over the core, and the
//! one place core errors become Python exceptions.

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
#[cfg(feature = "bench-refs")]
mod bench_refs;
mod ewa;
mod interleave;
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

/// How much work a binding hands the core: the one decision whether to release the GIL
/// for it ([`maybe_detach`]).
///
/// Releasing and re-taking the GIL (and waking a thread waiting for it) costs more than
/// small work takes. Two units, because they count different work: an element of an
/// element-wise pass, of a norm or of a network's activations (threshold: the core's
/// [`PARALLEL_MIN_ELEMENTS`], the size at which it starts sharing work with its pool), and a
/// sample of an epoch's order, built by a shuffle or a block shuffle (threshold: twice that,
/// the value the order bindings used before this helper; not re-measured).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Work {
    Elements(usize),
    Samples(usize),
}

impl Work {
    fn is_large(self) -> bool {
        match self {
            Work::Elements(n) => n >= PARALLEL_MIN_ELEMENTS,
            Work::Samples(n) => n >= 2 * PARALLEL_MIN_ELEMENTS,
        }
    }
}

/// Runs `f` with the GIL released when `work` is large ([`Work`]), else holding it.
pub(crate) fn maybe_detach<T: Send>(py: Python<'_>, work: Work, f: impl FnOnce() -> T + Send) -> T {
    if work.is_large() {
        py.detach(f)
    } else {
        f()
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

/// The SIMD level kernels run with: 'scalar', 'avx2' or 'avx512'.
#[pyfunction]
fn simd_level() -> &'static str {
    simd::level().name()
}

/// Forces the SIMD level for later steps (one of `supported_simd_levels()`).
#[pyfunction]
fn set_simd_level(name: &str) -> PyResult<()> {
    let isa = simd::Isa::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown SIMD level {name:?}; expected 'scalar', 'avx2' or 'avx512'"
        ))
    })?;
    simd::set_level(isa).map_err(PyValueError::new_err)
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
    m.add_function(wrap_pyfunction!(optim::adafactor_step, m)?)?;
    m.add_function(wrap_pyfunction!(optim::adafactor_steps, m)?)?;
    m.add_function(wrap_pyfunction!(optim::schedulefree_adamw_steps, m)?)?;
    m.add_function(wrap_pyfunction!(optim::schedulefree_sgd_steps, m)?)?;
    m.add_function(wrap_pyfunction!(optim::schedulefree_interpolate, m)?)?;
    m.add_class::<batches::Batcher>()?;
    m.add_class::<batches::EpochIter>()?;
    m.add_class::<nn::Network>()?;
    m.add_function(wrap_pyfunction!(batches::_plain_gather, m)?)?;
    m.add_function(wrap_pyfunction!(interleave::interleave_columns, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    #[cfg(feature = "bench-refs")]
    m.add_function(wrap_pyfunction!(bench_refs::stream_reference, m)?)?;
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
    let hidden: Vec<&str> = crate::nn::Activation::ALL.iter().map(|(n, _)| *n).collect();
    m.add(
        "HIDDEN_ACTIVATIONS",
        pyo3::types::PyTuple::new(m.py(), hidden)?,
    )?;
    Ok(())
}
