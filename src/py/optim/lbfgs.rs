//! The L-BFGS binding: the core's state in one of the two float types, and the objective it
//! calls back: parameter arrays written from the core's flat vector, the Python closure
//! called with the GIL (the only place it is held during a step), its gradients copied in.

use std::collections::VecDeque;
use std::sync::Arc;

use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::numerics::float::Float;
use crate::optim::lbfgs::{axpy, copy, At, LbfgsHyper, LbfgsState, Objective};

/// The closure and the parameters it reads, as the core's [`Objective`].
struct PyObjective<T: Element> {
    params: Vec<Py<PyArrayDyn<T>>>,
    numel: usize,
    evaluate: Py<PyAny>,
}

impl<T: Element + Float> PyObjective<T> {
    /// `f(segment of the flat vector, parameter)` for each parameter, all of them borrowed
    /// writeable first: a borrow that fails changes nothing.
    fn write(&self, py: Python<'_>, f: impl Fn(std::ops::Range<usize>, &mut [T])) -> PyResult<()> {
        let mut rws = Vec::with_capacity(self.params.len());
        for p in &self.params {
            rws.push(p.bind(py).try_readwrite()?);
        }
        let mut at = 0;
        for rw in &mut rws {
            let dst = rw.as_slice_mut()?;
            f(at..at + dst.len(), dst);
            at += dst.len();
        }
        Ok(())
    }

    /// The closure's loss, its gradients copied into `grad` (checked against the
    /// parameters' sizes).
    fn call(&self, py: Python<'_>, grad: &mut [T]) -> PyResult<f64> {
        let out = self.evaluate.bind(py).call0()?;
        let (loss, grads): (f64, Vec<Bound<'_, PyArrayDyn<T>>>) = out.extract()?;
        if grads.len() != self.params.len() {
            return Err(PyValueError::new_err(format!(
                "the closure returned {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        let mut at = 0;
        for g in &grads {
            let ro = g.try_readonly()?;
            let src = ro.as_slice()?;
            if at + src.len() > grad.len() {
                return Err(PyValueError::new_err(
                    "the closure's gradients have more elements than the parameters",
                ));
            }
            copy(&mut grad[at..at + src.len()], src);
            at += src.len();
        }
        if at != grad.len() {
            return Err(PyValueError::new_err(
                "the closure's gradients have fewer elements than the parameters",
            ));
        }
        Ok(loss)
    }
}

impl<T: Element + Float> Objective<T> for PyObjective<T> {
    type Error = PyErr;

    fn numel(&self) -> usize {
        self.numel
    }

    /// Moves the parameters and calls the closure, holding the interpreter once.
    fn evaluate(&mut self, at: At<'_, T>, grad: &mut [T]) -> PyResult<f64> {
        Python::attach(|py| {
            match at {
                At::Here => {}
                At::Point(x) => self.write(py, |r, dst| copy(dst, &x[r]))?,
                At::Moved(alpha, d) => self.write(py, |r, dst| axpy(dst, alpha, &d[r]))?,
            }
            self.call(py, grad)
        })
    }

    fn set(&mut self, x: &[T]) -> PyResult<()> {
        Python::attach(|py| self.write(py, |r, dst| copy(dst, &x[r])))
    }

    fn get(&mut self, x: &mut [T]) -> PyResult<()> {
        Python::attach(|py| {
            let mut at = 0;
            for p in &self.params {
                let ro = p.bind(py).try_readonly()?;
                let src = ro.as_slice()?;
                copy(&mut x[at..at + src.len()], src);
                at += src.len();
            }
            Ok(())
        })
    }

    fn add(&mut self, alpha: T, d: &[T]) -> PyResult<()> {
        Python::attach(|py| self.write(py, |r, dst| axpy(dst, alpha, &d[r])))
    }
}

enum AnyState {
    F32(LbfgsState<f32>),
    F64(LbfgsState<f64>),
}

/// The state of one L-BFGS optimizer over parameters of one float type (see
/// `ferroptim.LBFGS`, which checks every argument before it reaches here).
#[pyclass(module = "ferroptim._core")]
pub struct Lbfgs {
    state: AnyState,
    numel: usize,
}

fn step_as<T: Element + Float>(
    py: Python<'_>,
    state: &mut LbfgsState<T>,
    h: &LbfgsHyper,
    params: &[Bound<'_, PyAny>],
    evaluate: &Bound<'_, PyAny>,
    numel: usize,
) -> PyResult<f64> {
    let mut arrays = Vec::with_capacity(params.len());
    let mut total = 0;
    for p in params {
        let a: Bound<'_, PyArrayDyn<T>> = p.extract().map_err(PyErr::from)?;
        total += a.try_readonly()?.as_slice()?.len();
        arrays.push(a.unbind());
    }
    if total != numel {
        return Err(PyValueError::new_err(format!(
            "the parameters have {total} elements, the optimizer was built for {numel}"
        )));
    }
    let mut obj = PyObjective {
        params: arrays,
        numel,
        evaluate: evaluate.clone().unbind(),
    };
    py.detach(|| state.step(h, &mut obj))
}

fn vector<T: Element + Float>(v: &Bound<'_, PyAny>, n: usize, what: &str) -> PyResult<Vec<T>> {
    let a: Bound<'_, PyArray1<T>> = v.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "state {what} must be a 1-D {} array",
            T::DTYPE.name()
        ))
    })?;
    let out = a.try_readonly()?.as_slice()?.to_vec();
    if out.len() != n {
        return Err(PyValueError::new_err(format!(
            "state {what} must have {n} elements (the parameters'), got {}",
            out.len()
        )));
    }
    Ok(out)
}

fn history<T: Element + Float>(
    v: &Bound<'_, PyAny>,
    n: usize,
    what: &str,
) -> PyResult<VecDeque<Arc<[T]>>> {
    let list = v.cast::<PyList>()?;
    list.iter()
        .enumerate()
        .map(|(i, a)| Ok(Arc::from(vector::<T>(&a, n, &format!("{what}[{i}]"))?)))
        .collect()
}

fn state_to_dict<'py, T: Element + Float>(
    py: Python<'py>,
    s: &LbfgsState<T>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("func_evals", s.func_evals)?;
    d.set_item("n_iter", s.n_iter)?;
    let arrays = |h: &VecDeque<Arc<[T]>>| -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, h.iter().map(|v| PyArray1::from_slice(py, v)))
    };
    if let Some(v) = &s.d {
        d.set_item("d", PyArray1::from_slice(py, v))?;
    }
    if let Some(t) = s.t {
        d.set_item("t", t)?;
    }
    if s.d.is_some() {
        d.set_item("old_dirs", arrays(&s.old_dirs)?)?;
        d.set_item("old_stps", arrays(&s.old_stps)?)?;
        let ro: Vec<T> = s.ro.iter().copied().collect();
        d.set_item("ro", PyArray1::from_vec(py, ro))?;
    }
    if let Some(h) = s.h_diag {
        d.set_item("H_diag", h.to_f64())?;
    }
    if let Some(v) = &s.prev_flat_grad {
        d.set_item("prev_flat_grad", PyArray1::from_slice(py, v))?;
    }
    if let Some(l) = s.prev_loss {
        d.set_item("prev_loss", l)?;
    }
    Ok(d)
}

fn state_from_dict<T: Element + Float>(d: &Bound<'_, PyDict>, n: usize) -> PyResult<LbfgsState<T>> {
    let get = |k: &str| d.get_item(k);
    let mut s = LbfgsState::<T>::default();
    s.func_evals = get("func_evals")?.map_or(Ok(0), |v| v.extract())?;
    s.n_iter = get("n_iter")?.map_or(Ok(0), |v| v.extract())?;
    if let Some(v) = get("d")? {
        s.d = Some(vector(&v, n, "'d'")?.into());
    }
    s.t = get("t")?.map(|v| v.extract()).transpose()?;
    if let Some(v) = get("old_dirs")? {
        s.old_dirs = history(&v, n, "'old_dirs'")?;
    }
    if let Some(v) = get("old_stps")? {
        s.old_stps = history(&v, n, "'old_stps'")?;
    }
    if let Some(v) = get("ro")? {
        s.ro = vector::<T>(&v, s.old_dirs.len(), "'ro'")?.into();
    }
    if s.old_stps.len() != s.old_dirs.len() || s.ro.len() != s.old_dirs.len() {
        return Err(PyValueError::new_err(
            "state 'old_dirs', 'old_stps' and 'ro' must have the same length",
        ));
    }
    s.h_diag = get("H_diag")?
        .map(|v| v.extract::<f64>().map(T::from_f64))
        .transpose()?;
    if let Some(v) = get("prev_flat_grad")? {
        s.prev_flat_grad = Some(vector(&v, n, "'prev_flat_grad'")?.into());
    }
    s.prev_loss = get("prev_loss")?.map(|v| v.extract()).transpose()?;
    if s.n_iter > 0 && (s.d.is_none() || s.t.is_none() || s.prev_flat_grad.is_none()) {
        return Err(PyValueError::new_err(
            "state with n_iter > 0 must have 'd', 't' and 'prev_flat_grad'",
        ));
    }
    Ok(s)
}

#[pymethods]
impl Lbfgs {
    /// A fresh state for `numel` parameter elements of `dtype` ("float32" or "float64").
    #[new]
    fn new(dtype: &str, numel: usize) -> PyResult<Self> {
        let state = match dtype {
            "float32" => AnyState::F32(LbfgsState::default()),
            "float64" => AnyState::F64(LbfgsState::default()),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "dtype must be 'float32' or 'float64', got {dtype:?}"
                )))
            }
        };
        Ok(Lbfgs { state, numel })
    }

    /// One `step`: `params` are the C-contiguous arrays (of the state's dtype) the closure
    /// reads; `evaluate()` returns `(loss, [gradient per parameter])`, same dtypes and sizes.
    /// Returns the first loss. If `evaluate` raises, the parameters and the state are as
    /// they were before the call.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (params, evaluate, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, strong_wolfe, maximize))]
    fn step(
        &mut self,
        py: Python<'_>,
        params: Vec<Bound<'_, PyAny>>,
        evaluate: Bound<'_, PyAny>,
        lr: f64,
        max_iter: u64,
        max_eval: u64,
        tolerance_grad: f64,
        tolerance_change: f64,
        history_size: usize,
        strong_wolfe: bool,
        maximize: bool,
    ) -> PyResult<f64> {
        let h = LbfgsHyper {
            lr,
            max_iter,
            max_eval,
            tolerance_grad,
            tolerance_change,
            history_size,
            strong_wolfe,
            maximize,
        };
        let n = self.numel;
        match &mut self.state {
            AnyState::F32(s) => step_as(py, s, &h, &params, &evaluate, n),
            AnyState::F64(s) => step_as(py, s, &h, &params, &evaluate, n),
        }
    }

    /// The state under torch's names (copies): `func_evals`, `n_iter`, and after the first
    /// iteration `d`, `t`, `old_dirs`, `old_stps`, `ro` (one array), `H_diag` (a float),
    /// `prev_flat_grad`, `prev_loss`.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.state {
            AnyState::F32(s) => state_to_dict(py, s),
            AnyState::F64(s) => state_to_dict(py, s),
        }
    }

    /// Replaces the state with one in `state()`'s layout (arrays of the state's dtype);
    /// nothing changes if it is refused.
    fn set_state(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        self.state = match &self.state {
            AnyState::F32(_) => AnyState::F32(state_from_dict(state, self.numel)?),
            AnyState::F64(_) => AnyState::F64(state_from_dict(state, self.numel)?),
        };
        Ok(())
    }
}
