//! The Schedule-Free bindings: one parameter's AdamW or SGD step with its state, and the
//! train/eval interpolation, the GIL released for large parameters.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::typed_array;
use crate::optim::adafactor::AdafactorFloat;
use crate::optim::schedulefree::{self, AdamWHyper, SgdHyper};
use crate::py::{maybe_detach, Work};

fn is_f32(param: &Bound<'_, PyAny>) -> PyResult<bool> {
    if param.extract::<Bound<'_, PyArrayDyn<f32>>>().is_ok() {
        Ok(true)
    } else if param.extract::<Bound<'_, PyArrayDyn<f64>>>().is_ok() {
        Ok(false)
    } else {
        Err(PyTypeError::new_err(
            "Schedule-Free's parameters must be float32 or float64 arrays",
        ))
    }
}

fn adamw_as<T: Element + AdafactorFloat>(
    py: Python<'_>,
    h: &AdamWHyper,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let param = typed_array::<T>("the parameter", param, None)?;
    let shape = param.shape().to_vec();
    let grad = typed_array::<T>("the gradient", grad, Some(&shape))?;
    let z = typed_array::<T>("z", z, Some(&shape))?;
    let v = typed_array::<T>("exp_avg_sq", exp_avg_sq, Some(&shape))?;
    let mut p = param.try_readwrite()?;
    let g = grad.try_readonly()?;
    let mut z = z.try_readwrite()?;
    let mut v = v.try_readwrite()?;
    let (p, g, z, v) = (
        p.as_slice_mut()?,
        g.as_slice()?,
        z.as_slice_mut()?,
        v.as_slice_mut()?,
    );
    maybe_detach(py, Work::Elements(p.len()), move || {
        schedulefree::adamw_step(h, p, g, z, v);
    });
    Ok(())
}

fn sgd_as<T: Element + AdafactorFloat>(
    py: Python<'_>,
    h: &SgdHyper,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let param = typed_array::<T>("the parameter", param, None)?;
    let shape = param.shape().to_vec();
    let grad = typed_array::<T>("the gradient", grad, Some(&shape))?;
    let z = typed_array::<T>("z", z, Some(&shape))?;
    let mut p = param.try_readwrite()?;
    let g = grad.try_readonly()?;
    let mut z = z.try_readwrite()?;
    let (p, g, z) = (p.as_slice_mut()?, g.as_slice()?, z.as_slice_mut()?);
    maybe_detach(py, Work::Elements(p.len()), move || {
        schedulefree::sgd_step(h, p, g, z);
    });
    Ok(())
}

fn interpolate_as<T: Element + AdafactorFloat>(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    weight: f64,
) -> PyResult<()> {
    let param = typed_array::<T>("the parameter", param, None)?;
    let shape = param.shape().to_vec();
    let z = typed_array::<T>("z", z, Some(&shape))?;
    let mut p = param.try_readwrite()?;
    let z = z.try_readonly()?;
    let (p, z) = (p.as_slice_mut()?, z.as_slice()?);
    maybe_detach(py, Work::Elements(p.len()), move || {
        schedulefree::interpolate(p, z, weight);
    });
    Ok(())
}

/// One Schedule-Free AdamW step of a C-contiguous float32 or float64 parameter (holding
/// `y`), in place, with its gradient and state `z`, `exp_avg_sq` (same dtype and shape). The
/// scalars are the group's, computed by `ferroptim.ScheduleFreeAdamW`, which checks them.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (param, grad, z, exp_avg_sq, beta2, one_minus_beta2, bias_correction2, eps, weight_decay, ckp1, y_alpha, lr))]
pub(crate) fn schedulefree_adamw_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    beta2: f64,
    one_minus_beta2: f64,
    bias_correction2: f64,
    eps: f64,
    weight_decay: f64,
    ckp1: f64,
    y_alpha: f64,
    lr: f64,
) -> PyResult<()> {
    let h = AdamWHyper {
        beta2,
        one_minus_beta2,
        bias_correction2,
        eps,
        weight_decay,
        ckp1,
        y_alpha,
        lr,
    };
    if is_f32(param)? {
        adamw_as::<f32>(py, &h, param, grad, z, exp_avg_sq)
    } else {
        adamw_as::<f64>(py, &h, param, grad, z, exp_avg_sq)
    }
}

/// One Schedule-Free SGD step of a C-contiguous float32 or float64 parameter (holding `y`),
/// in place, with its gradient and state `z` (same dtype and shape). The scalars are the
/// group's, computed by `ferroptim.ScheduleFreeSGD`, which checks them.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (param, grad, z, weight_decay, ckp1, y_alpha, lr))]
pub(crate) fn schedulefree_sgd_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    weight_decay: f64,
    ckp1: f64,
    y_alpha: f64,
    lr: f64,
) -> PyResult<()> {
    let h = SgdHyper {
        weight_decay,
        ckp1,
        y_alpha,
        lr,
    };
    if is_f32(param)? {
        sgd_as::<f32>(py, &h, param, grad, z)
    } else {
        sgd_as::<f64>(py, &h, param, grad, z)
    }
}

/// `param = lerp(param, z, weight)` in place (torch's `lerp_`), the train/eval switch.
#[pyfunction]
#[pyo3(signature = (param, z, weight))]
pub(crate) fn schedulefree_interpolate(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    weight: f64,
) -> PyResult<()> {
    if is_f32(param)? {
        interpolate_as::<f32>(py, param, z, weight)
    } else {
        interpolate_as::<f64>(py, param, z, weight)
    }
}
