//! The Schedule-Free bindings: the AdamW or SGD step of every parameter with its state in
//! one call, and the train/eval interpolation; the GIL released for large work.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use pyo3::exceptions::PyValueError;
use pyo3::types::PyList;

use super::many::{check_step, one_at_a_time, Raw};
use super::typed_array;
use crate::optim::adafactor::AdafactorFloat;
use crate::optim::schedulefree::{self, AdamWHyper, SfTensor, SgdHyper};
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

/// Each tensor's group's values, from `(count, values)` per group (the counts adding up to
/// `n`, each group's values `width` numbers).
pub(super) fn per_tensor(
    groups: &[(usize, Vec<f64>)],
    n: usize,
    width: usize,
) -> PyResult<Vec<&[f64]>> {
    let mut out = Vec::with_capacity(n);
    for (count, values) in groups {
        if values.len() != width {
            return Err(PyValueError::new_err(format!(
                "each group's scalars are {width} numbers, got {}",
                values.len()
            )));
        }
        out.extend(std::iter::repeat_n(values.as_slice(), *count));
    }
    if out.len() != n {
        return Err(PyValueError::new_err(format!(
            "the groups count {} parameters, not {n}",
            out.len()
        )));
    }
    Ok(out)
}

/// A tensor of a checked step as the core takes it.
///
/// # Safety
/// `Raw`s from one [`check_step`] whose arrays are still alive and unresized.
unsafe fn tensor<'a, T>(y: Raw, g: Raw, z: Raw, v: Raw) -> SfTensor<'a, T> {
    unsafe {
        SfTensor {
            y: y.slice_mut(),
            g: g.slice(),
            z: z.slice_mut(),
            v: v.slice_mut(),
        }
    }
}

/// One Schedule-Free AdamW step of every parameter (holding `y`; C-contiguous float32 or
/// float64 arrays, `names` naming them in errors) in place, with their gradients and state
/// `zs`, `exp_avg_sqs` (the parameter's dtype and shape). `groups` holds, per param group
/// in order, `(number of parameters, (beta2, 1 - beta2, 1 - beta2 ** (k + 1), eps,
/// weight_decay, ckp1, y_alpha, lr))`, computed by `ferroptim.ScheduleFreeAdamW`. Every
/// array is checked before any is modified.
#[pyfunction]
#[pyo3(signature = (params, grads, zs, exp_avg_sqs, names, groups))]
pub(crate) fn schedulefree_adamw_steps(
    py: Python<'_>,
    params: &Bound<'_, PyList>,
    grads: &Bound<'_, PyList>,
    zs: &Bound<'_, PyList>,
    exp_avg_sqs: &Bound<'_, PyList>,
    names: &Bound<'_, PyList>,
    groups: Vec<(usize, Vec<f64>)>,
) -> PyResult<()> {
    let n = params.len();
    let hypers: Vec<AdamWHyper> = per_tensor(&groups, n, 8)?
        .into_iter()
        .map(|v| AdamWHyper {
            beta2: v[0],
            one_minus_beta2: v[1],
            bias_correction2: v[2],
            eps: v[3],
            weight_decay: v[4],
            ckp1: v[5],
            y_alpha: v[6],
            lr: v[7],
        })
        .collect();
    let c = check_step(
        "ScheduleFreeAdamW",
        params,
        grads,
        names,
        &[("z", zs), ("exp_avg_sq", exp_avg_sqs)],
        |_, shape| Some(shape.to_vec()),
    )?;
    let (is_f64, ps, gs, st) = (&c.f64, &c.params, &c.grads, &c.states);
    maybe_detach(py, Work::Elements(c.total()), || {
        one_at_a_time(|| {
            let (mut t32, mut t64) = (Vec::new(), Vec::new());
            for (i, h) in hypers.iter().enumerate() {
                // SAFETY: checked above (live, C-contiguous, disjoint); the caller keeps
                // the lists, hence the arrays, alive for the call.
                unsafe {
                    if is_f64[i] {
                        t64.push((h, tensor::<f64>(ps[i], gs[i], st[0][i], st[1][i])));
                    } else {
                        t32.push((h, tensor::<f32>(ps[i], gs[i], st[0][i], st[1][i])));
                    }
                }
            }
            schedulefree::adamw_steps(t32);
            schedulefree::adamw_steps(t64);
        });
    });
    Ok(())
}

/// One Schedule-Free SGD step of every parameter (holding `y`), in place, with their
/// gradients and state `zs`, as [`schedulefree_adamw_steps`]; `groups` holds per group
/// `(number of parameters, (weight_decay, ckp1, y_alpha, lr))`.
#[pyfunction]
#[pyo3(signature = (params, grads, zs, names, groups))]
pub(crate) fn schedulefree_sgd_steps(
    py: Python<'_>,
    params: &Bound<'_, PyList>,
    grads: &Bound<'_, PyList>,
    zs: &Bound<'_, PyList>,
    names: &Bound<'_, PyList>,
    groups: Vec<(usize, Vec<f64>)>,
) -> PyResult<()> {
    let n = params.len();
    let hypers: Vec<SgdHyper> = per_tensor(&groups, n, 4)?
        .into_iter()
        .map(|v| SgdHyper {
            weight_decay: v[0],
            ckp1: v[1],
            y_alpha: v[2],
            lr: v[3],
        })
        .collect();
    let c = check_step(
        "ScheduleFreeSGD",
        params,
        grads,
        names,
        &[("z", zs)],
        |_, shape| Some(shape.to_vec()),
    )?;
    let (is_f64, ps, gs, st) = (&c.f64, &c.params, &c.grads, &c.states);
    maybe_detach(py, Work::Elements(c.total()), || {
        one_at_a_time(|| {
            let (mut t32, mut t64) = (Vec::new(), Vec::new());
            let none = Raw::default();
            for (i, h) in hypers.iter().enumerate() {
                // SAFETY: as in `schedulefree_adamw_steps`.
                unsafe {
                    if is_f64[i] {
                        t64.push((h, tensor::<f64>(ps[i], gs[i], st[0][i], none)));
                    } else {
                        t32.push((h, tensor::<f32>(ps[i], gs[i], st[0][i], none)));
                    }
                }
            }
            schedulefree::sgd_steps(t32);
            schedulefree::sgd_steps(t64);
        });
    });
    Ok(())
}
