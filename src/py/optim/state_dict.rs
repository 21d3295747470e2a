//! Per-tensor optimizer state to and from the dicts of `state_dict()`: float32 and float64
//! buffers as themselves, 16-bit ones as their bit patterns, master weights by name.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::engine::Param;
use crate::error::try_map;
use crate::numerics::half::{Bf16, F16};
use crate::optim::hyper::Algorithm;
use crate::optim::optimizer::TensorState;

/// How a state element crosses to NumPy: float32/float64 as themselves, bfloat16 and
/// float16 as their `uint16` bit patterns (the Python layer views them as their dtype).
pub(super) trait NumpyElem: Copy + 'static {
    type Raw: numpy::Element + Copy;
    const NAME: &'static str;
    /// 16-bit state also loads from float32 arrays, rounded as the kernels round.
    const FROM_F32: bool = false;
    fn to_raw(self) -> Self::Raw;
    fn from_raw(r: Self::Raw) -> Self;
    fn from_f32(x: f32) -> Self;
}

macro_rules! numpy_elem {
    ($t:ty, $raw:ty, $name:literal, $from_f32:literal, |$x:ident| $to:expr, |$r:ident| $from:expr) => {
        impl NumpyElem for $t {
            type Raw = $raw;
            const NAME: &'static str = $name;
            const FROM_F32: bool = $from_f32;
            #[inline]
            fn from_f32(x: f32) -> Self {
                <$t as crate::numerics::half::Stored<_>>::store(x.into())
            }
            #[inline]
            fn to_raw(self) -> $raw {
                let $x = self;
                $to
            }
            #[inline]
            fn from_raw($r: $raw) -> Self {
                $from
            }
        }
    };
}
numpy_elem!(f32, f32, "float32", false, |x| x, |r| r);
numpy_elem!(f64, f64, "float64", false, |x| x, |r| r);
numpy_elem!(
    Bf16,
    u16,
    "uint16 (bfloat16 bits) or float32",
    true,
    |x| x.0,
    |r| Bf16(r)
);
numpy_elem!(
    F16,
    u16,
    "uint16 (float16 bits) or float32",
    true,
    |x| x.0,
    |r| F16(r)
);

/// The name master weights have in a state dict.
const MASTER: &str = "master_param";

pub(super) fn state_to_dict<'py, S: NumpyElem>(
    py: Python<'py>,
    s: &TensorState<S>,
    algorithm: Algorithm,
    shape: &[usize],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "step"), s.step)?;
    for (name, v) in algorithm.scalar_names().iter().zip(s.scalars) {
        d.set_item(*name, v)?;
    }
    for (slot, name) in s.slots.iter().zip(algorithm.slot_names()) {
        if let Some(buf) = slot {
            let raw = try_map(buf, NumpyElem::to_raw, || {
                format!("the state dict's {name}")
            })?;
            d.set_item(*name, PyArray1::from_vec(py, raw).reshape(shape.to_vec())?)?;
        }
    }
    if let Some(m) = &s.master {
        // Copied into a vector that NumPy then owns: NumPy's own allocation panics on failure.
        let copy = try_map(m, |x| x, || format!("the state dict's {MASTER}"))?;
        d.set_item(
            MASTER,
            PyArray1::from_vec(py, copy).reshape(shape.to_vec())?,
        )?;
    }
    Ok(d)
}

/// A contiguous array of `len` elements of `R` from a state dict, copied.
fn buffer_from<R: numpy::Element + Copy, S>(
    v: &Bound<'_, PyAny>,
    len: usize,
    map: impl Fn(R) -> S,
    err: impl Fn() -> PyErr,
    what: impl FnOnce() -> String,
) -> PyResult<Vec<S>> {
    let arr = v.cast::<PyArrayDyn<R>>().map_err(|_| err())?;
    let view = arr.try_readonly()?;
    let src = view.as_slice().map_err(|_| err())?;
    if src.len() != len {
        return Err(err());
    }
    Ok(try_map(src, map, what)?)
}

pub(super) fn state_from_dict<S: NumpyElem>(
    d: &Bound<'_, PyDict>,
    algorithm: Algorithm,
    param: &Param,
    master: bool,
) -> PyResult<TensorState<S>> {
    let names = algorithm.slot_names();
    let mut s = TensorState::new();
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        if key == "step" {
            s.step = v.extract::<u64>().map_err(|_| {
                PyValueError::new_err(format!(
                    "state 'step' of {} must be an integer >= 0",
                    param.name
                ))
            })?;
            continue;
        }
        if let Some(i) = algorithm.scalar_names().iter().position(|n| *n == key) {
            s.scalars[i] = v.extract::<f64>().map_err(|_| {
                PyValueError::new_err(format!("state '{key}' of {} must be a number", param.name))
            })?;
            continue;
        }
        let err = |dtype: &str| {
            PyValueError::new_err(format!(
                "state '{key}' of {} must be a contiguous {dtype} array of {} elements",
                param.name, param.len
            ))
        };
        if key == MASTER && master {
            let what = || format!("the master weights of {}", param.name);
            s.master = Some(buffer_from(
                &v,
                param.len,
                |x: f32| x,
                || err("float32"),
                what,
            )?);
            continue;
        }
        let slot = names.iter().position(|n| *n == key).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown state '{key}' for {}; expected 'step' and some of '{}'{}",
                param.name,
                names.join("', '"),
                if master { ", and 'master_param'" } else { "" }
            ))
        })?;
        let what = || format!("the state '{key}' of {}", param.name);
        let buf = if S::FROM_F32 && v.cast::<PyArrayDyn<f32>>().is_ok() {
            buffer_from(&v, param.len, S::from_f32, || err(S::NAME), what)?
        } else {
            buffer_from(&v, param.len, S::from_raw, || err(S::NAME), what)?
        };
        s.slots[slot] = Some(buf);
    }
    Ok(s)
}
