//! The optimizer bindings: the engine (parameters, their checks and the step), param-group
//! reading, `state_dict` conversion, and the locked view the fused training loop steps with.

use numpy::{Element, PyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::numerics::float::Float;

mod adafactor;
mod engine;
mod fit;
mod groups;
mod lbfgs;
mod many;
mod muon;
mod schedulefree;
mod state_dict;

pub(crate) use adafactor::{adafactor_step, adafactor_steps};
pub use engine::Engine;
pub(super) use fit::Applied;
pub use lbfgs::Lbfgs;
pub(crate) use muon::muon_step;
pub(crate) use schedulefree::{
    schedulefree_adamw_steps, schedulefree_interpolate, schedulefree_sgd_steps,
};

/// `a` as an array of `T` (a `TypeError` naming `what` otherwise), of `shape` where given (a
/// `ValueError` otherwise): the per-tensor optimizers' bindings' argument check.
pub(super) fn typed_array<'py, T: Element + Float>(
    what: &str,
    a: &Bound<'py, PyAny>,
    shape: Option<&[usize]>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a: Bound<'py, PyArrayDyn<T>> = a
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a {} array", T::DTYPE.name())))?;
    if let Some(shape) = shape {
        if a.shape() != shape {
            return Err(PyValueError::new_err(format!(
                "{what} must have the parameter's shape {shape:?}, got {:?}",
                a.shape()
            )));
        }
    }
    Ok(a)
}
