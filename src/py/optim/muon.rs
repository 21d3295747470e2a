//! The Muon binding: one parameter's step (its gradient and momentum buffer), the GIL
//! released for the Newton–Schulz products.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::optim::muon::{self, AdjustLr, MuonFloat, MuonHyper, NsDtype};

fn step_as<T: Element + MuonFloat>(
    py: Python<'_>,
    h: &MuonHyper,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    buf: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let param: Bound<'_, PyArrayDyn<T>> = param.extract()?;
    let grad: Bound<'_, PyArrayDyn<T>> = grad.extract().map_err(|_| {
        PyTypeError::new_err(format!("the gradient must be a {} array", T::DTYPE.name()))
    })?;
    let buf: Bound<'_, PyArrayDyn<T>> = buf.extract()?;
    let shape = param.shape().to_vec();
    if shape.len() != 2 || grad.shape() != shape || buf.shape() != shape {
        return Err(PyValueError::new_err(format!(
            "Muon steps 2-D parameters with a gradient and buffer of their shape; got {:?}, {:?}, {:?}",
            shape,
            grad.shape(),
            buf.shape()
        )));
    }
    let mut p = param.try_readwrite()?;
    let g = grad.try_readonly()?;
    let mut b = buf.try_readwrite()?;
    let (p, g, b) = (p.as_slice_mut()?, g.as_slice()?, b.as_slice_mut()?);
    py.detach(|| muon::step(h, (shape[0], shape[1]), p, g, b));
    Ok(())
}

/// One Muon step of a 2-D C-contiguous parameter, in place, with its gradient and momentum
/// buffer (same shape and dtype, float32 or float64). `ferroptim.Muon` checks the values.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (param, grad, buf, lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn, ns_dtype))]
pub(crate) fn muon_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    buf: &Bound<'_, PyAny>,
    lr: f64,
    weight_decay: f64,
    momentum: f64,
    nesterov: bool,
    ns_coefficients: [f64; 3],
    eps: f64,
    ns_steps: usize,
    adjust_lr_fn: Option<&str>,
    ns_dtype: &str,
) -> PyResult<()> {
    let adjust_lr = match adjust_lr_fn {
        None | Some("original") => AdjustLr::Original,
        Some("match_rms_adamw") => AdjustLr::MatchRmsAdamw,
        Some("spectral_unclamped") => AdjustLr::SpectralUnclamped,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "adjust_lr_fn must be None, 'original', 'match_rms_adamw' or 'spectral_unclamped', got {other:?}"
            )))
        }
    };
    let ns_dtype = match ns_dtype {
        "bfloat16" => NsDtype::Bf16,
        "float32" => NsDtype::F32,
        other => {
            return Err(PyValueError::new_err(format!(
                "ns_dtype must be 'bfloat16' or 'float32', got {other:?}"
            )))
        }
    };
    let h = MuonHyper {
        lr,
        weight_decay,
        momentum,
        nesterov,
        ns_coefficients,
        eps,
        ns_steps,
        adjust_lr,
        ns_dtype,
    };
    if param.extract::<Bound<'_, PyArrayDyn<f32>>>().is_ok() {
        step_as::<f32>(py, &h, param, grad, buf)
    } else if param.extract::<Bound<'_, PyArrayDyn<f64>>>().is_ok() {
        step_as::<f64>(py, &h, param, grad, buf)
    } else {
        Err(PyTypeError::new_err(
            "Muon's parameters must be float32 or float64 arrays",
        ))
    }
}
