//! The per-tensor optimizers' multi-tensor steps (Schedule-Free, Adafactor): every
//! parameter, gradient and state array of a step checked in one walk, before anything is
//! modified, then handed to the core as slices.
//!
//! Arrays are read from NumPy's C struct (as the engine reads them), not through
//! rust-numpy's borrow tracker: a step over a few small tensors would otherwise take a
//! global lock per array. What the tracker guarded is checked here instead: every array the
//! step writes (parameters, state) is writeable, C-contiguous and aligned and overlaps no
//! other, and no gradient overlaps any of them. Steps run one at a time ([`one_at_a_time`]).

use numpy::npyffi::NPY_ORDER;
use numpy::{PyUntypedArray, PyUntypedArrayMethods, PY_ARRAY_API};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::numerics::half::Elem;
use crate::py::arrays::{describe_dtype, layout, overlapping, shape_str};
use crate::py::type_name;

/// Two threads stepping one optimizer at once (the GIL released) take turns instead of
/// racing on its state.
pub(super) use crate::runtime::parallel::one_at_a_time;

/// One array of a step: its data address and element count.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Raw {
    pub data: usize,
    pub len: usize,
}

impl Raw {
    /// The array as a mutable slice.
    ///
    /// # Safety
    /// The array is a live, C-contiguous, aligned array of `T` of `len` elements that no
    /// other live slice overlaps, for `'a`.
    pub unsafe fn slice_mut<'a, T>(self) -> &'a mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        unsafe { std::slice::from_raw_parts_mut(self.data as *mut T, self.len) }
    }

    /// The array as a slice.
    ///
    /// # Safety
    /// As [`Raw::slice_mut`], no mutable slice overlapping it.
    pub unsafe fn slice<'a, T>(self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(self.data as *const T, self.len) }
    }
}

/// A step's arrays, checked: per tensor its dtype (float64 or not), shape, parameter,
/// gradient (a C-contiguous copy kept alive here where the given one was strided) and
/// each kind of state (`Raw::default()` where the tensor has none of that kind).
pub(super) struct Checked<'py> {
    pub f64: Vec<bool>,
    pub shapes: Vec<Vec<usize>>,
    pub params: Vec<Raw>,
    pub grads: Vec<Raw>,
    pub states: Vec<Vec<Raw>>,
    /// Contiguous copies of strided gradients, alive as long as the step reads them.
    copies: Vec<Bound<'py, PyUntypedArray>>,
}

impl Checked<'_> {
    pub fn total(&self) -> usize {
        self.params.iter().map(|r| r.len).sum()
    }
}

fn name_of(names: &Bound<'_, PyList>, i: usize) -> String {
    names
        .get_item(i)
        .and_then(|n| n.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| format!("#{i}"))
}

fn elem_of(l: &crate::py::arrays::Layout<'_>) -> Option<Elem> {
    l.elem.filter(|e| matches!(e, Elem::F32 | Elem::F64))
}

/// Checks a step of `optimizer` over `params` (the optimizer's, in order; `names` name them
/// in messages), `grads` (as many, each a NumPy array of its parameter's dtype and shape;
/// a strided one is copied) and the state lists `states` (`(name, arrays)`: each entry of
/// the shape `state_shape(kind, parameter shape)` and the parameter's dtype, or None where
/// that gives None). Every array written (parameters and state) must be writeable,
/// C-contiguous, aligned and overlap no other; no gradient may overlap one. Errors name the
/// argument; nothing is modified.
pub(super) fn check_step<'py>(
    optimizer: &str,
    params: &Bound<'py, PyList>,
    grads: &Bound<'py, PyList>,
    names: &Bound<'py, PyList>,
    states: &[(&str, &Bound<'py, PyList>)],
    state_shape: impl Fn(usize, &[usize]) -> Option<Vec<usize>>,
) -> PyResult<Checked<'py>> {
    let n = params.len();
    if grads.len() != n {
        return Err(PyValueError::new_err(format!(
            "got {} gradients for {n} parameters",
            grads.len()
        )));
    }
    for (what, list) in states {
        if list.len() != n {
            return Err(PyValueError::new_err(format!(
                "got {} arrays of {what} for {n} parameters",
                list.len()
            )));
        }
    }
    let mut out = Checked {
        f64: Vec::with_capacity(n),
        shapes: Vec::with_capacity(n),
        params: Vec::with_capacity(n),
        grads: Vec::with_capacity(n),
        states: vec![Vec::with_capacity(n); states.len()],
        copies: Vec::new(),
    };
    // (start, end, index) of every array written: parameters 0..n, state k at (k + 1) n + i
    let mut extents: Vec<(usize, usize, usize)> = Vec::with_capacity(n * (1 + states.len()));
    for i in 0..n {
        let p = params.get_item(i)?;
        let p = p.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "parameter {} must be a numpy array, got {}",
                name_of(names, i),
                type_name(&p)
            ))
        })?;
        let pl = layout(p);
        let elem = elem_of(&pl).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{optimizer}'s parameters must be float32 or float64 arrays; {} is {}",
                name_of(names, i),
                describe_dtype(p)
            ))
        })?;
        if !pl.is_c_aligned() || !pl.is_writeable() {
            return Err(PyValueError::new_err(format!(
                "parameter {} must be a writeable C-contiguous array",
                name_of(names, i)
            )));
        }
        let shape = pl.shape.to_vec();
        let len = pl.len();
        let itemsize = elem.itemsize();
        extents.push((pl.data, pl.data + len * itemsize, i));
        out.params.push(Raw { data: pl.data, len });

        let g = grads.get_item(i)?;
        let bad_grad = |got: String| {
            PyValueError::new_err(format!(
                "the gradient of {} must be a {} array of shape {}, got {got}",
                name_of(names, i),
                elem.name(),
                shape_str(&shape)
            ))
        };
        let ga = g
            .cast::<PyUntypedArray>()
            .map_err(|_| bad_grad(type_name(&g)))?;
        let gl = layout(ga);
        if gl.elem != Some(elem) || gl.shape != shape.as_slice() {
            return Err(bad_grad(format!(
                "{} {}",
                describe_dtype(ga),
                shape_str(gl.shape)
            )));
        }
        let data = if gl.is_c_aligned() {
            gl.data
        } else {
            // SAFETY: `ga` is a live ndarray; NewCopy returns a new reference or NULL.
            let copy = unsafe {
                let c =
                    PY_ARRAY_API.PyArray_NewCopy(ga.py(), ga.as_array_ptr(), NPY_ORDER::NPY_CORDER);
                Bound::from_owned_ptr_or_err(ga.py(), c)?.cast_into::<PyUntypedArray>()?
            };
            let data = layout(&copy).data;
            out.copies.push(copy);
            data
        };
        out.grads.push(Raw { data, len });

        for (k, (what, list)) in states.iter().enumerate() {
            let s = list.get_item(i)?;
            let Some(want) = state_shape(k, &shape) else {
                if !s.is_none() {
                    return Err(PyValueError::new_err(format!(
                        "parameter {} has no {what}; pass None",
                        name_of(names, i)
                    )));
                }
                out.states[k].push(Raw::default());
                continue;
            };
            let bad_state = |got: String| {
                PyValueError::new_err(format!(
                    "{what} of {} must be a writeable C-contiguous {} array of shape {}, got {got}",
                    name_of(names, i),
                    elem.name(),
                    shape_str(&want)
                ))
            };
            let sa = s
                .cast::<PyUntypedArray>()
                .map_err(|_| bad_state(type_name(&s)))?;
            let sl = layout(sa);
            if sl.elem != Some(elem)
                || sl.shape != want.as_slice()
                || !sl.is_c_aligned()
                || !sl.is_writeable()
            {
                return Err(bad_state(format!(
                    "{} {}",
                    describe_dtype(sa),
                    shape_str(sl.shape)
                )));
            }
            let slen = sl.len();
            extents.push((sl.data, sl.data + slen * itemsize, (k + 1) * n + i));
            out.states[k].push(Raw {
                data: sl.data,
                len: slen,
            });
        }
        out.f64.push(elem == Elem::F64);
        out.shapes.push(shape);
    }
    let describe = |j: usize| {
        if j < n {
            format!("parameter {}", name_of(names, j))
        } else {
            let (k, i) = (j / n - 1, j % n);
            format!("{} of {}", states[k].0, name_of(names, i))
        }
    };
    extents.retain(|&(s, e, _)| e > s);
    extents.sort_unstable();
    for w in extents.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(PyValueError::new_err(format!(
                "{} and {} share memory; each is updated in place",
                describe(w[0].2),
                describe(w[1].2)
            )));
        }
    }
    for (i, g) in out.grads.iter().enumerate() {
        let itemsize = if out.f64[i] { 8 } else { 4 };
        if let Some(j) = overlapping(&extents, g.data, g.len * itemsize) {
            return Err(PyValueError::new_err(format!(
                "the gradient of {} shares memory with {}",
                name_of(names, i),
                describe(j)
            )));
        }
    }
    Ok(out)
}
