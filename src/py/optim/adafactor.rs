//! The Adafactor bindings: one parameter's step with its second-moment state, and the step
//! of every parameter in one call; the GIL released for large steps.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use pyo3::types::PyList;

use super::many::{check_step, one_at_a_time, Raw};
use super::schedulefree::per_tensor;
use super::typed_array;
use crate::optim::adafactor::{self, AdafactorFloat, AdafactorHyper, AdafactorTensor, Moments};
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

/// A tensor of a checked step as the core takes it.
///
/// # Safety
/// `Raw`s from one [`check_step`] whose arrays are still alive and unresized.
unsafe fn tensor<'a, T>(
    h: AdafactorHyper,
    t: f64,
    shape: &[usize],
    p: Raw,
    g: Raw,
    state: [Raw; 3],
) -> AdafactorTensor<'a, T> {
    let moments = if shape.len() < 2 {
        Moments::Full {
            variance: unsafe { state[0].slice_mut() },
        }
    } else {
        let nd = shape.len();
        Moments::Factored {
            row_var: unsafe { state[1].slice_mut() },
            col_var: unsafe { state[2].slice_mut() },
            rows: shape[nd - 2],
            cols: shape[nd - 1],
        }
    };
    AdafactorTensor {
        h,
        t,
        param: unsafe { p.slice_mut() },
        grad: unsafe { g.slice() },
        moments,
    }
}

/// One Adafactor step of every parameter (C-contiguous float32 or float64 arrays, none
/// empty; `names` naming them in errors), in place, with their gradients, step counts `ts`
/// (after their increment) and state: `variances` (the parameter's shape) for a parameter
/// with fewer than 2 dimensions, `row_vars` and `col_vars` (torch's shapes) for the others,
/// None where a parameter has none of that kind. `groups` holds, per param group in order,
/// `(number of parameters, (lr, beta2_decay, eps1, eps2, d, weight_decay, maximize,
/// foreach))` (the flags 0 or 1), checked by `ferroptim.Adafactor`. Every array is checked
/// before any is modified.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (params, grads, ts, variances, row_vars, col_vars, names, groups))]
pub(crate) fn adafactor_steps(
    py: Python<'_>,
    params: &Bound<'_, PyList>,
    grads: &Bound<'_, PyList>,
    ts: Vec<f64>,
    variances: &Bound<'_, PyList>,
    row_vars: &Bound<'_, PyList>,
    col_vars: &Bound<'_, PyList>,
    names: &Bound<'_, PyList>,
    groups: Vec<(usize, Vec<f64>)>,
) -> PyResult<()> {
    let n = params.len();
    if ts.len() != n || !ts.iter().all(|&t| t >= 1.0 && t.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "ts must hold one step count >= 1 per parameter ({n}), got {ts:?}"
        )));
    }
    let hypers: Vec<AdafactorHyper> = per_tensor(&groups, n, 8)?
        .into_iter()
        .map(|v| AdafactorHyper {
            lr: v[0],
            beta2_decay: v[1],
            eps1: v[2],
            eps2: v[3],
            d: v[4],
            weight_decay: v[5],
            maximize: v[6] != 0.0,
            foreach: v[7] != 0.0,
        })
        .collect();
    let c = check_step(
        "Adafactor",
        params,
        grads,
        names,
        &[
            ("variance", variances),
            ("row_var", row_vars),
            ("col_var", col_vars),
        ],
        |k, shape| {
            let nd = shape.len();
            let mut s = shape.to_vec();
            match (k, nd < 2) {
                (0, true) => Some(s),
                (1, false) => {
                    s[nd - 1] = 1;
                    Some(s)
                }
                (2, false) => {
                    s[nd - 2] = 1;
                    Some(s)
                }
                _ => None,
            }
        },
    )?;
    if let Some(i) = c.params.iter().position(|p| p.len == 0) {
        return Err(PyValueError::new_err(format!(
            "parameter {} is empty; Adafactor divides by its size",
            names.get_item(i)?
        )));
    }
    let (is_f64, shapes, ps, gs, st) = (&c.f64, &c.shapes, &c.params, &c.grads, &c.states);
    maybe_detach(py, Work::Elements(c.total()), || {
        one_at_a_time(|| {
            let (mut t32, mut t64) = (Vec::new(), Vec::new());
            for (i, h) in hypers.iter().enumerate() {
                let state = [st[0][i], st[1][i], st[2][i]];
                // SAFETY: checked above (live, C-contiguous, disjoint); the caller keeps
                // the lists, hence the arrays, alive for the call.
                unsafe {
                    if is_f64[i] {
                        t64.push(tensor::<f64>(*h, ts[i], &shapes[i], ps[i], gs[i], state));
                    } else {
                        t32.push(tensor::<f32>(*h, ts[i], &shapes[i], ps[i], gs[i], state));
                    }
                }
            }
            adafactor::step_many(t32);
            adafactor::step_many(t64);
        });
    });
    Ok(())
}
