//! The Adafactor binding: one parameter's step with its second-moment state, the GIL
//! released for large parameters.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::typed_array;
use crate::optim::adafactor::{self, AdafactorFloat, AdafactorHyper, Moments};
use crate::py::{maybe_detach, Work};

/// `(variance, row_var, col_var)`, as given.
type State<'a, 'py> = (
    Option<&'a Bound<'py, PyAny>>,
    Option<&'a Bound<'py, PyAny>>,
    Option<&'a Bound<'py, PyAny>>,
);

fn step_as<T: Element + AdafactorFloat>(
    py: Python<'_>,
    h: &AdafactorHyper,
    t: f64,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    state: State<'_, '_>,
) -> PyResult<()> {
    let param = typed_array::<T>("the parameter", param, None)?;
    let grad = typed_array::<T>("the gradient", grad, None)?;
    let shape = param.shape().to_vec();
    if grad.shape() != shape {
        return Err(PyValueError::new_err(format!(
            "the gradient's shape {:?} differs from the parameter's {:?}",
            grad.shape(),
            shape
        )));
    }
    let mut p = param.try_readwrite()?;
    let g = grad.try_readonly()?;
    let (p, g) = (p.as_slice_mut()?, g.as_slice()?);
    let work = Work::Elements(p.len());
    match state {
        (Some(variance), None, None) => {
            if shape.len() > 1 {
                return Err(PyValueError::new_err(
                    "a parameter with 2 or more dimensions needs row_var and col_var",
                ));
            }
            let variance = typed_array::<T>("variance", variance, None)?;
            if variance.shape() != shape {
                return Err(PyValueError::new_err(format!(
                    "variance must have the parameter's shape {shape:?}, got {:?}",
                    variance.shape()
                )));
            }
            let mut v = variance.try_readwrite()?;
            let v = v.as_slice_mut()?;
            let moments = Moments::Full { variance: v };
            maybe_detach(py, work, move || adafactor::step(h, t, p, g, moments));
        }
        (None, Some(row_var), Some(col_var)) => {
            let nd = shape.len();
            if nd < 2 {
                return Err(PyValueError::new_err(
                    "only a parameter with 2 or more dimensions has row_var and col_var",
                ));
            }
            let (rows, cols) = (shape[nd - 2], shape[nd - 1]);
            let mut row_shape = shape.clone();
            row_shape[nd - 1] = 1;
            let mut col_shape = shape.clone();
            col_shape[nd - 2] = 1;
            let row_var = typed_array::<T>("row_var", row_var, None)?;
            let col_var = typed_array::<T>("col_var", col_var, None)?;
            if row_var.shape() != row_shape || col_var.shape() != col_shape {
                return Err(PyValueError::new_err(format!(
                    "row_var and col_var must have shapes {row_shape:?} and {col_shape:?}, got {:?} and {:?}",
                    row_var.shape(),
                    col_var.shape()
                )));
            }
            let mut r = row_var.try_readwrite()?;
            let mut c = col_var.try_readwrite()?;
            let (r, c) = (r.as_slice_mut()?, c.as_slice_mut()?);
            let moments = Moments::Factored {
                row_var: r,
                col_var: c,
                rows,
                cols,
            };
            maybe_detach(py, work, move || adafactor::step(h, t, p, g, moments));
        }
        _ => {
            return Err(PyValueError::new_err(
                "give either variance, or row_var and col_var",
            ))
        }
    }
    Ok(())
}

/// One Adafactor step of a C-contiguous float32 or float64 parameter, in place, with its
/// gradient and state (same dtype): `row_var` and `col_var` (torch's shapes) for a
/// parameter with 2 or more dimensions, else `variance` (the parameter's shape). `t` is the
/// step count after its increment. `ferroptim.Adafactor` checks the values.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (param, grad, t, variance, row_var, col_var, lr, beta2_decay, eps1, eps2, d, weight_decay, maximize, foreach))]
pub(crate) fn adafactor_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    t: f64,
    variance: Option<&Bound<'_, PyAny>>,
    row_var: Option<&Bound<'_, PyAny>>,
    col_var: Option<&Bound<'_, PyAny>>,
    lr: f64,
    beta2_decay: f64,
    eps1: f64,
    eps2: f64,
    d: f64,
    weight_decay: f64,
    maximize: bool,
    foreach: bool,
) -> PyResult<()> {
    let h = AdafactorHyper {
        lr,
        beta2_decay,
        eps1,
        eps2,
        d,
        weight_decay,
        maximize,
        foreach,
    };
    if param.extract::<Bound<'_, PyArrayDyn<f32>>>().is_ok() {
        step_as::<f32>(py, &h, t, param, grad, (variance, row_var, col_var))
    } else if param.extract::<Bound<'_, PyArrayDyn<f64>>>().is_ok() {
        step_as::<f64>(py, &h, t, param, grad, (variance, row_var, col_var))
    } else {
        Err(PyTypeError::new_err(
            "Adafactor's parameters must be float32 or float64 arrays",
        ))
    }
}
