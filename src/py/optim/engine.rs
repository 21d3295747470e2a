//! The optimizer engine: NumPy arrays in, slices to the core.
//!
//! Arrays are read straight from NumPy's C struct instead of through rust-numpy's borrow
//! tracker (one global lock per borrow): the engine checks once, at construction, that
//! parameters are writeable, aligned, C-contiguous and pairwise disjoint, and each step
//! re-reads a handful of fields to confirm nothing of that changed and that no gradient
//! overlaps a parameter. That keeps a step over a few small tensors at a few microseconds
//! with the same guarantees.

use numpy::npyffi::NPY_ORDER;
use numpy::{PyUntypedArray, PyUntypedArrayMethods, PY_ARRAY_API};
use pyo3::exceptions::{PyFloatingPointError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString, PyTuple};

use super::groups::{parse_kind, GroupReader, Kind};
use super::state_dict::{state_from_dict, state_to_dict};
use crate::numerics::half::{Bf16, Elem, F16};
use crate::optim::hyper::Hyper;
use crate::optim::ops::{self, clip_coefficient, AnySlice, Norm};
use crate::optim::optimizer::{first_nonfinite, Optimizer, State, Storage, Tensor, Validated};
use crate::py::arrays::{
    check_array_of, describe_dtype, disjoint_byte_extents, layout, numpy_scalar_as_array,
    overlapping, shape_str, Layout,
};
use crate::py::lock::{Guard, Locked};
use crate::py::{maybe_detach, type_name, Work};

/// A parameter as checked at construction.
pub(super) struct Param {
    pub(super) array: Py<PyUntypedArray>,
    pub(super) name: String,
    pub(super) data: usize,
    pub(super) len: usize,
    pub(super) elem: Elem,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum NanPolicy {
    Propagate,
    Raise,
    Skip,
}

impl NanPolicy {
    fn parse(s: &str) -> PyResult<Self> {
        match s {
            "propagate" => Ok(NanPolicy::Propagate),
            "raise" => Ok(NanPolicy::Raise),
            "skip" => Ok(NanPolicy::Skip),
            _ => Err(PyValueError::new_err(format!(
                "nan_policy must be 'propagate', 'raise' or 'skip', got {s:?}"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            NanPolicy::Propagate => "propagate",
            NanPolicy::Raise => "raise",
            NanPolicy::Skip => "skip",
        }
    }
}

/// The Rust side of a ferroptim optimizer: parameters, their state, and the fused step.
///
/// Built by the Python optimizer classes; not meant to be used directly.
#[pyclass(module = "ferroptim._core", frozen)]
pub struct Engine {
    kind: Kind,
    /// `kind.fields`' keys as Python strings (read from every group at every step).
    field_keys: Vec<Py<PyString>>,
    pub(super) params: Vec<Param>,
    /// `(start, end, index)` of each non-empty parameter's bytes, sorted by start.
    extents: Vec<(usize, usize, usize)>,
    /// The first tensor of each param group (whose step count drives a schedule).
    group_first: Vec<Option<usize>>,
    pub(super) nan_policy: NanPolicy,
    /// The parameters' keys when they were given by name: gradients may then come as a dict.
    keys: Option<Vec<Py<PyAny>>>,
    /// Each param group's `"params"` object, when given: every read of the groups confirms
    /// that each still holds it (a group replaced or appended by hand would otherwise be
    /// ignored).
    param_lists: Option<Vec<Py<PyAny>>>,
    /// How each parameter and its state are stored (fixed at construction).
    storage: Vec<Storage>,
    /// Everything a step changes, behind one lock: threads sharing the optimizer take turns.
    state: Locked<Mutable>,
}

/// The part of an engine that steps change.
pub(super) struct Mutable {
    pub(super) core: Optimizer,
    pub(super) skipped_steps: u64,
    /// Clip the global 2-norm of the gradients to this inside the step (torch's
    /// `clip_grad_norm_` rule), if set.
    pub(super) max_grad_norm: Option<f64>,
    /// The global gradient norm of the last step, before clipping (when clipping).
    pub(super) last_grad_norm: Option<f64>,
}

/// How a lock conflict names the engine.
const WHAT: &str = "this optimizer";

impl Param {
    /// Confirms that `l`, the array's header read now, still describes the array checked at
    /// construction.
    fn recheck(&self, l: &Layout<'_>) -> PyResult<()> {
        if l.data != self.data
            || l.elem != Some(self.elem)
            || l.len() != self.len
            || !l.is_c_aligned()
        {
            return Err(PyValueError::new_err(format!(
                "parameter {} was resized, re-typed or re-strided since the optimizer was \
                 created; create a new optimizer for it",
                self.name
            )));
        }
        if !l.is_writeable() {
            return Err(PyValueError::new_err(format!(
                "parameter {} has become read-only; parameters are updated in place",
                self.name
            )));
        }
        Ok(())
    }
}

fn check_param(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Param> {
    let a = check_array_of(obj, &format!("parameter {name}"), true, true)?;
    Ok(Param {
        array: a.array.unbind(),
        name: name.to_string(),
        data: a.data,
        len: a.len,
        elem: a.elem,
    })
}

fn check_max_grad_norm(value: Option<f64>) -> PyResult<()> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(PyValueError::new_err(format!(
            "max_grad_norm must be a finite number >= 0 or None, got {v}"
        ))),
        _ => Ok(()),
    }
}

/// A gradient that passed its checks, kept alive (and copied if it was not contiguous).
struct Grad<'py> {
    array: Bound<'py, PyUntypedArray>,
    data: usize,
    nbytes: usize,
}

impl Engine {
    /// Checks gradient `i` against its parameter, after confirming the parameter still is
    /// the array checked at construction ([`Param::recheck`]): each array's header is
    /// read once.
    fn check_grad<'py>(&self, i: usize, obj: &Bound<'py, PyAny>) -> PyResult<Grad<'py>> {
        let p = &self.params[i];
        let param = p.array.bind(obj.py());
        let pl = layout(param);
        p.recheck(&pl)?;
        let scalar = match obj.cast::<PyUntypedArray>() {
            Ok(_) => None,
            Err(_) => numpy_scalar_as_array(obj)?,
        };
        let obj = scalar.as_ref().unwrap_or(obj);
        let a = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "gradient for {} must be a numpy.ndarray, got {}",
                p.name,
                type_name(obj)
            ))
        })?;
        let l = layout(a);
        if l.elem != Some(p.elem) {
            return Err(PyTypeError::new_err(format!(
                "gradient for {} has dtype {}, expected {} like its parameter",
                p.name,
                describe_dtype(a),
                p.elem.name()
            )));
        }
        if l.shape != pl.shape {
            return Err(PyValueError::new_err(format!(
                "gradient for {} has shape {}, expected {} like its parameter",
                p.name,
                shape_str(l.shape),
                shape_str(pl.shape)
            )));
        }
        if l.is_c_aligned() {
            return Ok(Grad {
                array: a.clone(),
                data: l.data,
                nbytes: l.nbytes(),
            });
        }
        // SAFETY: `a` is a live ndarray; NewCopy returns a new reference or NULL.
        let array = unsafe {
            let copy =
                PY_ARRAY_API.PyArray_NewCopy(obj.py(), a.as_array_ptr(), NPY_ORDER::NPY_CORDER);
            Bound::from_owned_ptr_or_err(obj.py(), copy)?.cast_into::<PyUntypedArray>()?
        };
        let l = layout(&array);
        let (data, nbytes) = (l.data, l.nbytes());
        Ok(Grad {
            array,
            data,
            nbytes,
        })
    }

    /// The gradients of `grads` (list, tuple or dict keyed like the parameters), in
    /// parameter order, each checked against its parameter (itself re-checked): the one walk
    /// over the parameters a step makes.
    fn collect_grads<'py>(&self, grads: &Bound<'py, PyAny>) -> PyResult<Vec<Grad<'py>>> {
        let grads: Vec<Bound<'py, PyAny>> = if let Ok(l) = grads.cast::<PyList>() {
            l.iter().collect()
        } else if let Ok(t) = grads.cast::<PyTuple>() {
            t.iter().collect()
        } else if let Ok(d) = grads.cast::<PyDict>() {
            self.grads_from_dict(d)?
        } else {
            return Err(PyTypeError::new_err(format!(
                "grads must be a list or tuple of arrays in parameter order, or a dict keyed like \
                 the parameters; got {}",
                type_name(grads)
            )));
        };
        if grads.len() != self.params.len() {
            return Err(PyValueError::new_err(format!(
                "expected {} gradients (one per parameter), got {}",
                self.params.len(),
                grads.len()
            )));
        }
        // No Python code runs in this walk (casts, header reads and NumPy's C copies; the dict
        // lookups that may call `__eq__` ran above), so a parameter re-checked here is still
        // as checked when the step takes its pointer.
        let checked = grads
            .iter()
            .enumerate()
            .map(|(i, g)| self.check_grad(i, g))
            .collect::<PyResult<Vec<_>>>()?;
        for (i, g) in checked.iter().enumerate() {
            if let Some(j) = overlapping(&self.extents, g.data, g.nbytes) {
                return Err(PyValueError::new_err(format!(
                    "gradient for {} shares memory with parameter {}; pass a separate array",
                    self.params[i].name, self.params[j].name
                )));
            }
        }
        Ok(checked)
    }

    /// The gradients of a dict keyed like the parameters, in parameter order.
    fn grads_from_dict<'py>(&self, d: &Bound<'py, PyDict>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let py = d.py();
        let keys = self.keys.as_ref().ok_or_else(|| {
            PyTypeError::new_err(
                "grads is a dict but the parameters were given as a list; pass the gradients \
                 as a list in parameter order",
            )
        })?;
        let mut grads = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for k in keys {
            match d.get_item(k.bind(py))? {
                Some(g) => grads.push(g),
                None => missing.push(k.bind(py).clone()),
            }
        }
        if !missing.is_empty() {
            return Err(PyValueError::new_err(format!(
                "grads has no gradient for parameter(s) {}",
                PyList::new(py, missing)?.repr()?
            )));
        }
        if d.len() != keys.len() {
            let mut extra = Vec::new();
            for k in d.keys() {
                if !keys.iter().any(|p| p.bind(py).eq(&k).unwrap_or(false)) {
                    extra.push(k);
                }
            }
            return Err(PyValueError::new_err(format!(
                "grads has entries for unknown parameter(s) {}",
                PyList::new(py, extra)?.repr()?
            )));
        }
        Ok(grads)
    }

    /// Confirms each parameter still is the array checked at construction.
    pub(super) fn recheck_params(&self, py: Python<'_>) -> PyResult<()> {
        for p in &self.params {
            p.recheck(&layout(p.array.bind(py)))?;
        }
        Ok(())
    }

    /// The step count of each param group's first tensor (which drives its schedule).
    pub(super) fn group_steps(&self, st: &Mutable) -> Vec<u64> {
        self.group_first
            .iter()
            .map(|first| first.map_or(0, |i| st.core.states()[i].step()))
            .collect()
    }

    /// Confirms that the `n` param groups `groups` are the optimizer's: as many as it was
    /// built with, each still holding its `"params"` object (when the engine was given them).
    fn check_param_lists<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        groups: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
    ) -> PyResult<()> {
        let Some(lists) = &self.param_lists else {
            return Ok(());
        };
        if n != lists.len() {
            return Err(PyValueError::new_err(format!(
                "param_groups has {n} groups but the optimizer was built with {}; add groups \
                 with add_param_group(), not param_groups.append()",
                lists.len()
            )));
        }
        let key = intern!(py, "params");
        for (i, (g, ps)) in groups.zip(lists).enumerate() {
            let g = g?;
            let holds = match g.cast::<PyDict>() {
                Ok(d) => d.get_item(key)?.is_some_and(|p| p.is(ps.bind(py))),
                Err(_) => {
                    g.cast::<PyMapping>().is_ok()
                        && g.call_method1(intern!(py, "get"), (key,))?.is(ps.bind(py))
                }
            };
            if !holds {
                return Err(PyValueError::new_err(format!(
                    "param_groups[{i}] no longer holds the optimizer's parameters (its dict or \
                     its 'params' entry was replaced); the parameters are fixed: add parameters \
                     with optimizer.add_param_group({{'params': [...]}})"
                )));
            }
        }
        Ok(())
    }

    /// Reads every group's hyper-parameters for update `steps[g]` (calling schedules:
    /// Python code, so this runs without the lock and before any pointer is taken).
    fn read_hypers(&self, groups: &Bound<'_, PyAny>, steps: &[u64]) -> PyResult<Vec<Hyper>> {
        let groups = groups
            .cast::<PyList>()
            .map_err(|_| PyTypeError::new_err("param_groups must be a list of dicts"))?;
        self.check_param_lists(groups.py(), groups.len(), groups.iter().map(Ok))?;
        if groups.len() != self.group_first.len() {
            return Err(PyValueError::new_err(format!(
                "expected {} param groups, got {}",
                self.group_first.len(),
                groups.len()
            )));
        }
        groups
            .iter()
            .enumerate()
            .map(|(index, g)| {
                let group = g.cast::<PyDict>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "param_groups[{index}] must be a dict, got {}",
                        type_name(&g)
                    ))
                })?;
                GroupReader {
                    group,
                    index,
                    keys: &self.field_keys,
                }
                .read(self.kind, steps[index])
            })
            .collect()
    }

    /// The lock, and the hyper-parameters read (and validated, once) for the step counts it
    /// holds: schedules are called unlocked (one may read this optimizer), then read again if
    /// another thread stepped meanwhile.
    pub(super) fn lock_with_hypers<'a>(
        &'a self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
    ) -> PyResult<(Guard<'a, Mutable>, Validated)> {
        loop {
            let steps = self.group_steps(&*self.state.lock(py, WHAT)?);
            let hypers = self.read_hypers(groups, &steps)?;
            let st = self.state.lock(py, WHAT)?;
            if self.group_steps(&st) == steps {
                let hypers = st.core.validate(hypers)?;
                return Ok((st, hypers));
            }
        }
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (kind, params, names, group_of, n_groups, nan_policy = "propagate", keys = None, max_grad_norm = None, state_dtype = None, master_weights = None, param_lists = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        kind: &str,
        params: Vec<Bound<'_, PyAny>>,
        names: Vec<String>,
        group_of: Vec<usize>,
        n_groups: usize,
        nan_policy: &str,
        keys: Option<Vec<Py<PyAny>>>,
        max_grad_norm: Option<f64>,
        state_dtype: Option<&str>,
        master_weights: Option<bool>,
        param_lists: Option<Vec<Py<PyAny>>>,
    ) -> PyResult<Self> {
        let state_elem = state_dtype
            .map(|name| {
                Elem::parse(name).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "state_dtype must be None, 'float32', 'float64', 'bfloat16' or \
                         'float16', got {name:?}"
                    ))
                })
            })
            .transpose()?;
        check_max_grad_norm(max_grad_norm)?;
        let kind = parse_kind(kind)?;
        let nan_policy = NanPolicy::parse(nan_policy)?;
        if names.len() != params.len()
            || group_of.len() != params.len()
            || keys.as_ref().is_some_and(|k| k.len() != params.len())
            || param_lists.as_ref().is_some_and(|l| l.len() != n_groups)
        {
            return Err(PyValueError::new_err(
                "params, names and group_of differ in length (or param_lists from n_groups)",
            ));
        }
        if let Some(&g) = group_of.iter().find(|&&g| g >= n_groups) {
            return Err(PyValueError::new_err(format!(
                "group index {g} out of range"
            )));
        }
        let mut checked: Vec<Param> = Vec::with_capacity(params.len());
        for (i, (obj, name)) in params.iter().zip(&names).enumerate() {
            if let Some(j) = params[..i].iter().position(|o| o.is(obj)) {
                return Err(PyValueError::new_err(format!(
                    "parameter {name} is the same array as {}; pass each parameter once",
                    names[j]
                )));
            }
            checked.push(check_param(obj, name)?);
        }
        let bytes: Vec<(usize, usize)> = checked
            .iter()
            .map(|p| (p.data, p.len * p.elem.itemsize()))
            .collect();
        let extents = disjoint_byte_extents(&bytes, &names, "parameters")?;
        let mut group_first = vec![None; n_groups];
        for (i, &g) in group_of.iter().enumerate().rev() {
            group_first[g] = Some(i);
        }
        // 16-bit parameters are computed in float32, so their state defaults to float32.
        let storage: Vec<Storage> = checked
            .iter()
            .map(|p| Storage {
                param: p.elem,
                state: state_elem.unwrap_or(match p.elem {
                    Elem::F64 => Elem::F64,
                    _ => Elem::F32,
                }),
                master: p.elem.is_16bit() && master_weights.unwrap_or(true),
            })
            .collect();
        let lens: Vec<usize> = checked.iter().map(|p| p.len).collect();
        let core = Optimizer::with_storage(kind.algorithm, &storage, &lens, &group_of)?
            .with_names(names.iter().map(|n| format!("parameter {n}")).collect());
        Ok(Engine {
            kind,
            field_keys: kind
                .fields
                .iter()
                .map(|f| PyString::intern(py, f.key).unbind())
                .collect(),
            params: checked,
            extents,
            group_first,
            nan_policy,
            keys,
            param_lists,
            storage,
            state: Locked::new(Mutable {
                core,
                skipped_steps: 0,
                max_grad_norm,
                last_grad_norm: None,
            }),
        })
    }

    /// Checks that `groups` (any sequence) are the optimizer's param groups, each holding
    /// its parameters (raises like `step` would), without reading hyper-parameters.
    fn check_param_groups(&self, groups: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = groups.len()?;
        self.check_param_lists(groups.py(), n, (0..n).map(|i| groups.get_item(i)))
    }

    /// Checks the hyper-parameters of every group (raises like `step` would).
    fn check_groups(&self, py: Python<'_>, groups: &Bound<'_, PyAny>) -> PyResult<()> {
        self.lock_with_hypers(py, groups).map(|_| ())
    }

    /// One update of every parameter from `grads` times `grad_scale` (1/k turns an
    /// accumulated sum of k gradients into their mean); returns False when the step was
    /// skipped because a gradient was not finite (`nan_policy='skip'`).
    #[pyo3(signature = (grads, groups, grad_scale = 1.0))]
    fn step(
        &self,
        py: Python<'_>,
        grads: &Bound<'_, PyAny>,
        groups: &Bound<'_, PyAny>,
        grad_scale: f64,
    ) -> PyResult<bool> {
        // Schedules first: they are Python code and may resize, re-type or free any array,
        // so every array is checked, and every pointer taken, after the last of them ran.
        let (mut st, hypers) = self.lock_with_hypers(py, groups)?;
        let st = &mut *st;
        let checked = self.collect_grads(grads)?;

        // SAFETY: every parameter is a live, writeable, aligned, C-contiguous array of
        // `len` elements of its dtype (checked at construction and again by `collect_grads`,
        // after the last Python code of this call ran), parameters are pairwise disjoint, and no gradient overlaps a parameter; `self.params` and
        // `checked` keep all of them alive for the rest of this call.
        let tensors: Vec<Tensor<'_>> = self
            .params
            .iter()
            .zip(&checked)
            .map(|(p, g)| unsafe {
                use std::slice::{from_raw_parts, from_raw_parts_mut};
                // Bf16 and F16 are `repr(transparent)` over the arrays' 16-bit elements.
                match p.elem {
                    Elem::F32 => Tensor::F32 {
                        param: from_raw_parts_mut(p.data as *mut f32, p.len),
                        grad: from_raw_parts(g.data as *const f32, p.len),
                    },
                    Elem::F64 => Tensor::F64 {
                        param: from_raw_parts_mut(p.data as *mut f64, p.len),
                        grad: from_raw_parts(g.data as *const f64, p.len),
                    },
                    Elem::Bf16 => Tensor::Bf16 {
                        param: from_raw_parts_mut(p.data as *mut Bf16, p.len),
                        grad: from_raw_parts(g.data as *const Bf16, p.len),
                    },
                    Elem::F16 => Tensor::F16 {
                        param: from_raw_parts_mut(p.data as *mut F16, p.len),
                        grad: from_raw_parts(g.data as *const F16, p.len),
                    },
                }
            })
            .collect();
        let total: usize = self.params.iter().map(|p| p.len).sum();
        let work = Work::Elements(total);

        if self.nan_policy != NanPolicy::Propagate {
            let bad = maybe_detach(py, work, || first_nonfinite(&tensors));
            if let Some(i) = bad {
                if self.nan_policy == NanPolicy::Raise {
                    return Err(PyFloatingPointError::new_err(format!(
                        "gradient for {} contains NaN or infinity; the step was not applied \
                         and nothing was changed",
                        self.params[i].name
                    )));
                }
                st.skipped_steps += 1;
                return Ok(false);
            }
        }
        let mut grad_scale = grad_scale;
        if let Some(max_norm) = st.max_grad_norm {
            let grads: Vec<AnySlice<'_>> = tensors.iter().map(Tensor::grad).collect();
            let norm = maybe_detach(py, work, || ops::norm_any(&grads, Norm::L2));
            let norm = norm * grad_scale;
            grad_scale *= clip_coefficient(max_norm, norm);
            st.last_grad_norm = Some(norm);
        }
        let core = &mut st.core;
        maybe_detach(py, work, || core.step(tensors, &hypers, grad_scale))?;
        Ok(true)
    }

    /// The gradients `step` would use, checked and in parameter order (non-contiguous ones
    /// copied), without stepping.
    fn check_grads<'py>(
        &self,
        grads: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyUntypedArray>>> {
        Ok(self
            .collect_grads(grads)?
            .into_iter()
            .map(|g| g.array)
            .collect())
    }

    /// The state of parameter `i`: {'step': int, <buffer name>: ndarray, ...} (copies).
    fn state<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyDict>> {
        let p = self
            .params
            .get(i)
            .ok_or_else(|| PyValueError::new_err(format!("no parameter {i}")))?;
        let shape = layout(p.array.bind(py)).shape.to_vec();
        let st = self.state.lock(py, WHAT)?;
        let algorithm = st.core.algorithm();
        match &st.core.states()[i] {
            State::F32(s) => state_to_dict(py, s, algorithm, &shape),
            State::F64(s) => state_to_dict(py, s, algorithm, &shape),
            State::Bf16(s) => state_to_dict(py, s, algorithm, &shape),
            State::F16(s) => state_to_dict(py, s, algorithm, &shape),
        }
    }

    /// Replaces every parameter's state (a list of dicts as `state` returns), all or nothing.
    fn set_states(&self, py: Python<'_>, states: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
        if states.len() != self.params.len() {
            return Err(PyValueError::new_err(format!(
                "expected state for {} parameters, got {}",
                self.params.len(),
                states.len()
            )));
        }
        let algorithm = self.kind.algorithm;
        let new = states
            .iter()
            .zip(&self.params)
            .zip(&self.storage)
            .map(|((d, p), st)| {
                let m = st.master;
                Ok(match st.state {
                    Elem::F32 => State::F32(state_from_dict(d, algorithm, p, m)?),
                    Elem::F64 => State::F64(state_from_dict(d, algorithm, p, m)?),
                    Elem::Bf16 => State::Bf16(state_from_dict(d, algorithm, p, m)?),
                    Elem::F16 => State::F16(state_from_dict(d, algorithm, p, m)?),
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.state.lock(py, WHAT)?.core.set_states(new)?;
        Ok(())
    }

    /// Each param group's lr for its next `n` updates, or None when no group's lr is a
    /// schedule (then every update takes the numbers in `param_groups`): what `fit` passes to
    /// its Rust loop, read as the step reads a group's lr (see `GroupReader::lrs`).
    #[pyo3(name = "learning_rates")]
    fn learning_rates_py(
        &self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
        n: usize,
    ) -> PyResult<Option<Vec<Vec<f64>>>> {
        let groups = groups
            .cast::<PyList>()
            .map_err(|_| PyTypeError::new_err("param_groups must be a list of dicts"))?;
        let lr = intern!(py, "lr");
        let mut dicts = Vec::with_capacity(groups.len());
        for (index, g) in groups.iter().enumerate() {
            dicts.push(g.cast_into::<PyDict>().map_err(|g| {
                PyTypeError::new_err(format!(
                    "param_groups[{index}] must be a dict, got {}",
                    type_name(&g.into_inner())
                ))
            })?);
        }
        let mut any_schedule = false;
        for d in &dicts {
            any_schedule |= d.get_item(lr)?.is_some_and(|v| v.is_callable());
        }
        if !any_schedule {
            return Ok(None);
        }
        let steps = self.group_steps(&*self.state.lock(py, WHAT)?);
        dicts
            .iter()
            .enumerate()
            .map(|(index, group)| {
                let reader = GroupReader {
                    group,
                    index,
                    keys: &self.field_keys,
                };
                reader.lrs(steps.get(index).copied().unwrap_or(0), n)
            })
            .collect::<PyResult<Vec<_>>>()
            .map(Some)
    }

    /// Each param group's update count: the step its lr schedule is evaluated at next.
    #[pyo3(name = "group_steps")]
    pub(super) fn group_steps_py(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        Ok(self.group_steps(&*self.state.lock(py, WHAT)?))
    }

    /// Each parameter's state dtype: 'float32', 'float64', 'bfloat16' or 'float16' (16-bit
    /// state crosses to Python as uint16 bit patterns).
    #[getter]
    fn state_dtypes(&self) -> Vec<&'static str> {
        self.storage.iter().map(|s| s.state.name()).collect()
    }

    /// Whether each parameter has float32 master weights (16-bit parameters only).
    #[getter]
    fn master_weights(&self) -> Vec<bool> {
        self.storage.iter().map(|s| s.master).collect()
    }

    /// The names of the per-parameter scalar state (NAdam's `mu_product`; ASGD's `eta`
    /// and `mu`).
    #[getter]
    fn scalar_state_names(&self) -> Vec<&'static str> {
        self.kind.algorithm.scalar_names().to_vec()
    }

    /// The gradient-norm limit applied inside each step (None: no clipping).
    #[getter]
    fn get_max_grad_norm(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.state.lock(py, WHAT)?.max_grad_norm)
    }

    #[setter]
    fn set_max_grad_norm(&self, py: Python<'_>, value: Option<f64>) -> PyResult<()> {
        check_max_grad_norm(value)?;
        self.state.lock(py, WHAT)?.max_grad_norm = value;
        Ok(())
    }

    /// The global 2-norm of the last step's gradients, before clipping (None if the
    /// optimizer does not clip or has not stepped).
    #[getter]
    fn last_grad_norm(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.state.lock(py, WHAT)?.last_grad_norm)
    }

    #[getter]
    fn nan_policy(&self) -> &'static str {
        self.nan_policy.name()
    }

    #[getter]
    fn get_skipped_steps(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.state.lock(py, WHAT)?.skipped_steps)
    }

    #[setter]
    fn set_skipped_steps(&self, py: Python<'_>, n: u64) -> PyResult<()> {
        self.state.lock(py, WHAT)?.skipped_steps = n;
        Ok(())
    }

    /// The fewest elements (all parameters together) a step shares with ferroptim's
    /// worker threads; smaller steps run on the calling thread.
    #[getter]
    fn get_parallel_min_elements(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.lock(py, WHAT)?.core.parallel_min())
    }

    #[setter]
    fn set_parallel_min_elements(&self, py: Python<'_>, elements: usize) -> PyResult<()> {
        self.state.lock(py, WHAT)?.core.set_parallel_min(elements);
        Ok(())
    }
}
