//! `ferroptim.nn`'s Rust side: a network's shape with its workspaces (`Network`), and the
//! fused epoch (`Network.fit_epoch`) that trains it with an optimizer's `Engine`.

use std::sync::atomic::{AtomicU64, Ordering};

use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{layout, shape_str};
use super::batches::{Batcher, EpochOrder};
use super::lock::Locked;
use super::optim::Engine;
use super::type_name;
use super::{maybe_detach, Work};
use crate::data::orders::EpochOrders;
use crate::error::try_filled;
use crate::nn::{Activation, DropKey, Inputs, Mlp, NnFloat, Output, Stats, Targets, Workspace};
use crate::numerics::float::Dtype;
use crate::optim::optimizer::Tensor;

mod fit;
use fit::FitFlags;

trait Element: NnFloat + numpy::Element {
    fn tensor<'a>(param: &'a mut [Self], grad: &'a [Self]) -> Tensor<'a>;
    fn workspace(ws: &mut Workspaces) -> &mut Workspace<Self>;
}

impl Element for f32 {
    fn tensor<'a>(param: &'a mut [f32], grad: &'a [f32]) -> Tensor<'a> {
        Tensor::F32 { param, grad }
    }
    fn workspace(ws: &mut Workspaces) -> &mut Workspace<f32> {
        &mut ws.f32
    }
}

impl Element for f64 {
    fn tensor<'a>(param: &'a mut [f64], grad: &'a [f64]) -> Tensor<'a> {
        Tensor::F64 { param, grad }
    }
    fn workspace(ws: &mut Workspaces) -> &mut Workspace<f64> {
        &mut ws.f64
    }
}

#[derive(Default)]
struct Workspaces {
    f32: Workspace<f32>,
    f64: Workspace<f64>,
}

/// A fully-connected network's shape and functions, with its reusable workspaces.
///
/// Built by `ferroptim.nn.MLP`; not meant to be used directly. Threads share it as they
/// share an optimizer: a call waits (with the interpreter released) for the one running.
#[pyclass(module = "ferroptim._core", frozen)]
pub struct Network {
    state: Locked<NetState>,
    /// `alpha`'s bits, readable while a fit holds the lock.
    alpha: AtomicU64,
}

const WHAT: &str = "this network";

/// What a call on a network uses or changes, behind its lock.
struct NetState {
    net: Mlp,
    ws: Workspaces,
    /// The epoch order `fit_epoch` trains with, kept for the next call (a fit that returns
    /// to Python every few updates shuffles each epoch once, not once per call), and the
    /// next epoch's, computed ahead.
    orders: EpochOrders,
}

/// An array checked to be C-contiguous, aligned, of dtype `T` and shape `shape`.
fn slice_of<T: Element>(
    a: &Bound<'_, PyAny>,
    name: &str,
    shape: Option<&[usize]>,
    writeable: bool,
) -> PyResult<(usize, usize)> {
    let arr = a.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a numpy.ndarray, got {}",
            type_name(a)
        ))
    })?;
    let l = layout(arr);
    if l.dtype != Some(T::DTYPE) {
        return Err(PyTypeError::new_err(format!(
            "{name} must have dtype {}, got {}",
            T::DTYPE.name(),
            super::arrays::describe_dtype(arr)
        )));
    }
    if let Some(shape) = shape {
        if l.shape != shape {
            return Err(PyValueError::new_err(format!(
                "{name} has shape {}, expected {}",
                shape_str(l.shape),
                shape_str(shape)
            )));
        }
    }
    if !l.is_c_aligned() || (writeable && !l.is_writeable()) {
        return Err(PyValueError::new_err(format!(
            "{name} must be a C-contiguous, aligned{} array",
            if writeable { ", writeable" } else { "" }
        )));
    }
    Ok((l.data, l.len()))
}

fn dtype_of(params: &[Bound<'_, PyAny>]) -> PyResult<Dtype> {
    let first = params
        .first()
        .ok_or_else(|| PyValueError::new_err("no parameters"))?;
    let a = first
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err("parameters must be numpy arrays"))?;
    layout(a)
        .dtype
        .ok_or_else(|| PyTypeError::new_err("parameters must be float32 or float64 arrays"))
}

fn param_names(net: &Mlp) -> Vec<String> {
    (1..=net.layers())
        .flat_map(|l| {
            if net.norm(l) {
                vec![format!("W{l}"), format!("gamma{l}"), format!("beta{l}")]
            } else {
                vec![format!("W{l}"), format!("b{l}")]
            }
        })
        .collect()
}

fn param_shapes(net: &Mlp) -> Vec<Vec<usize>> {
    (1..=net.layers())
        .flat_map(|l| {
            let (k, n) = (net.sizes[l - 1], net.sizes[l]);
            let mut v = vec![vec![k, n], vec![n]];
            if net.norm(l) {
                v.push(vec![n]);
            }
            v
        })
        .collect()
}

/// The names of batch norm's running statistics: `running_mean1, running_var1, ...`.
fn stat_names(net: &Mlp) -> Vec<String> {
    (1..=net.stat_count() / 2)
        .flat_map(|l| [format!("running_mean{l}"), format!("running_var{l}")])
        .collect()
}

/// Slices of `(address, len)` pairs, checked by [`slice_of`] and alive for the call.
///
/// # Safety
/// Each pair must be a live array of `len` values of `T` that nothing writes meanwhile.
unsafe fn read_slices<'a, T>(p: &[(usize, usize)]) -> Vec<&'a [T]> {
    p.iter()
        .map(|&(d, n)| unsafe { std::slice::from_raw_parts(d as *const T, n) })
        .collect()
}

impl NetState {
    /// `(address, len)` of each parameter, checked against the network.
    fn params<T: Element>(
        &self,
        params: &[Bound<'_, PyAny>],
        writeable: bool,
    ) -> PyResult<Vec<(usize, usize)>> {
        let names = param_names(&self.net);
        if params.len() != names.len() {
            return Err(PyValueError::new_err(format!(
                "expected {} parameters ({}), got {}",
                names.len(),
                names.join(", "),
                params.len()
            )));
        }
        params
            .iter()
            .zip(&names)
            .zip(param_shapes(&self.net))
            .map(|((p, n), s)| slice_of::<T>(p, n, Some(&s), writeable))
            .collect()
    }

    /// `(address, len)` of each running statistic, checked against the network.
    fn running<T: Element>(
        &self,
        running: &[Bound<'_, PyAny>],
        writeable: bool,
    ) -> PyResult<Vec<(usize, usize)>> {
        let names = stat_names(&self.net);
        if running.len() != names.len() {
            return Err(PyValueError::new_err(format!(
                "expected {} running statistics ({}), got {}",
                names.len(),
                names.join(", "),
                running.len()
            )));
        }
        running
            .iter()
            .zip(&names)
            .enumerate()
            .map(|(i, (r, name))| {
                slice_of::<T>(r, name, Some(&[self.net.sizes[i / 2 + 1]]), writeable)
            })
            .collect()
    }

    fn inputs<T: Element>(&self, x: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
        let arr = x.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!("X must be a numpy.ndarray, got {}", type_name(x)))
        })?;
        let shape = layout(arr).shape.to_vec();
        let n0 = self.net.sizes[0];
        if shape.len() != 2 || shape[1] != n0 {
            return Err(PyValueError::new_err(format!(
                "X has shape {}, expected (m, {n0})",
                shape_str(&shape)
            )));
        }
        let (data, _) = slice_of::<T>(x, "X", None, false)?;
        Ok((data, shape[0]))
    }

    /// `(labels?, address)` of Y for `rows` examples: int64 labels (rows,) or (rows, k).
    fn targets<T: Element>(
        &self,
        py: Python<'_>,
        y: &Bound<'_, PyAny>,
        rows: usize,
    ) -> PyResult<(bool, usize)> {
        let k = self.net.outputs();
        let ya = y.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!("Y must be a numpy.ndarray, got {}", type_name(y)))
        })?;
        if ya.dtype().is_equiv_to(&numpy::dtype::<i64>(py)) {
            let l = layout(ya);
            if l.shape != [rows] || !l.is_c_aligned() {
                return Err(PyValueError::new_err(format!(
                    "integer labels Y must be a contiguous (m,) int64 array with m = {rows}, got \
                     shape {}",
                    shape_str(l.shape)
                )));
            }
            Ok((true, l.data))
        } else {
            Ok((false, slice_of::<T>(y, "Y", Some(&[rows, k]), false)?.0))
        }
    }

    fn cost_t<T: Element>(
        &mut self,
        py: Python<'_>,
        params: &[Bound<'_, PyAny>],
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        running: &[Bound<'_, PyAny>],
    ) -> PyResult<f64> {
        const CHUNK: usize = 4096;
        let p = self.params::<T>(params, false)?;
        let r = self.running::<T>(running, false)?;
        let (xd, rows) = self.inputs::<T>(x)?;
        if rows == 0 {
            return Err(PyValueError::new_err("X holds no examples"));
        }
        let (labels, y_data) = self.targets::<T>(py, y, rows)?;
        let (n0, k) = (self.net.sizes[0], self.net.outputs());
        // SAFETY: checked above, read only, kept alive by the arguments.
        let ps: Vec<&[T]> = p
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts(d as *const T, n) })
            .collect();
        let xs = unsafe { std::slice::from_raw_parts(xd as *const T, rows * n0) };
        // SAFETY: checked above, read only, kept alive by the arguments.
        let rs: Vec<&[T]> = unsafe { read_slices(&r) };
        let net = &self.net;
        let ws = T::workspace(&mut self.ws);
        py.detach(|| {
            let mut total = 0.0;
            for start in (0..rows).step_by(CHUNK) {
                let r = CHUNK.min(rows - start);
                let targets = if labels {
                    Targets::Labels(unsafe {
                        std::slice::from_raw_parts((y_data as *const i64).add(start), r)
                    })
                } else {
                    Targets::Dense(unsafe {
                        std::slice::from_raw_parts((y_data as *const T).add(start * k), r * k)
                    })
                };
                let inputs = Inputs {
                    x: &xs[start * n0..(start + r) * n0],
                    rows: r,
                    transposed: false,
                };
                total += net.forward_cost_with(ws, &ps, &rs, inputs, targets)? * r as f64;
            }
            Ok::<f64, crate::Error>(total / rows as f64)
        })
        .map_err(Into::into)
    }

    fn forward_t<'py, T: Element>(
        &mut self,
        py: Python<'py>,
        params: &[Bound<'py, PyAny>],
        x: &Bound<'py, PyAny>,
        running: &[Bound<'py, PyAny>],
    ) -> PyResult<Bound<'py, PyArray2<T>>> {
        let p = self.params::<T>(params, false)?;
        let r = self.running::<T>(running, false)?;
        let (xd, rows) = self.inputs::<T>(x)?;
        // SAFETY: checked above: live, contiguous arrays of these lengths, kept alive by
        // the arguments; read only.
        let ps: Vec<&[T]> = p
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts(d as *const T, n) })
            .collect();
        let xs = unsafe { std::slice::from_raw_parts(xd as *const T, rows * self.net.sizes[0]) };
        // SAFETY: as the parameters.
        let rs: Vec<&[T]> = unsafe { read_slices(&r) };
        let k = self.net.outputs();
        let out = PyArray2::<T>::zeros(py, [rows, k], false);
        if rows == 0 {
            return Ok(out);
        }
        let ws = T::workspace(&mut self.ws);
        let net = &self.net;
        let inputs = Inputs {
            x: xs,
            rows,
            transposed: false,
        };
        // SAFETY: `out` is a fresh C-contiguous array nobody else references.
        let dst = unsafe { out.as_slice_mut()? };
        let work = Work::Elements(rows * net.sizes.iter().sum::<usize>());
        maybe_detach(py, work, || net.predict_with(ws, &ps, &rs, inputs, dst))?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn loss_and_grad_t<T: Element>(
        &mut self,
        py: Python<'_>,
        params: &[Bound<'_, PyAny>],
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        grads: &[Bound<'_, PyAny>],
        key: Option<DropKey>,
        weights: Option<&Bound<'_, PyAny>>,
        running: &[Bound<'_, PyAny>],
        training: bool,
    ) -> PyResult<f64> {
        let p = self.params::<T>(params, false)?;
        let g = self.params::<T>(grads, true)?;
        // Training updates the running statistics given; inference reads them.
        let r = if training && running.is_empty() {
            Vec::new()
        } else {
            self.running::<T>(running, training)?
        };
        let (xd, rows) = self.inputs::<T>(x)?;
        if rows == 0 {
            return Err(PyValueError::new_err("X holds no examples"));
        }
        let wd = weights
            .map(|w| slice_of::<T>(w, "sample_weight", Some(&[rows]), false))
            .transpose()?
            .map(|(d, _)| d);
        let (labels, y_data) = self.targets::<T>(py, y, rows)?;
        let k = self.net.outputs();
        // Byte ranges of everything read, then of every output: an output may overlap none
        // of them (nor another output), at any offset.
        let item = std::mem::size_of::<T>();
        let names = param_names(&self.net);
        let span = |d: usize, bytes: usize| d..d + bytes;
        let y_bytes = rows * if labels { 8 } else { k * item };
        let mut taken: Vec<(String, std::ops::Range<usize>)> = p
            .iter()
            .zip(&names)
            .map(|(&(d, n), name)| (format!("params['{name}']"), span(d, n * item)))
            .collect();
        taken.push(("X".into(), span(xd, rows * self.net.sizes[0] * item)));
        taken.push(("Y".into(), span(y_data, y_bytes)));
        if let Some(d) = wd {
            taken.push(("sample_weight".into(), span(d, rows * item)));
        }
        let stat_names = stat_names(&self.net);
        if !training {
            for (&(d, n), name) in r.iter().zip(&stat_names) {
                taken.push((name.clone(), span(d, n * item)));
            }
        }
        let written = g.iter().zip(names.iter().map(|n| format!("grads['{n}']")));
        let written = written.chain(if training {
            r.iter().zip(stat_names.clone()).collect::<Vec<_>>()
        } else {
            Vec::new()
        });
        for (&(d, n), name) in written {
            let out = span(d, n * item);
            if let Some((what, _)) = taken.iter().find(|(_, r)| {
                !out.is_empty() && !r.is_empty() && out.start < r.end && r.start < out.end
            }) {
                return Err(PyValueError::new_err(format!(
                    "{name} shares memory with {what}; pass separate arrays"
                )));
            }
            taken.push((name, out));
        }
        // SAFETY: checked above; gradients are writeable and distinct from the inputs.
        let ps: Vec<&[T]> = p
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts(d as *const T, n) })
            .collect();
        let mut gs: Vec<&mut [T]> = g
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts_mut(d as *mut T, n) })
            .collect();
        let xs = unsafe { std::slice::from_raw_parts(xd as *const T, rows * self.net.sizes[0]) };
        let targets = if labels {
            Targets::Labels(unsafe { std::slice::from_raw_parts(y_data as *const i64, rows) })
        } else {
            Targets::Dense(unsafe { std::slice::from_raw_parts(y_data as *const T, rows * k) })
        };
        let ws = T::workspace(&mut self.ws);
        let net = &self.net;
        let inputs = Inputs {
            x: xs,
            rows,
            transposed: false,
        };
        let work = Work::Elements(rows * net.sizes.iter().sum::<usize>());
        // SAFETY: checked above: written only in training, where they are writeable and
        // distinct from every other array of the call; else read only.
        let (ro, mut rw): (Vec<&[T]>, Vec<&mut [T]>) = if training {
            let rw = r
                .iter()
                .map(|&(d, n)| unsafe { std::slice::from_raw_parts_mut(d as *mut T, n) })
                .collect();
            (Vec::new(), rw)
        } else {
            (unsafe { read_slices(&r) }, Vec::new())
        };
        let cost = maybe_detach(py, work, || {
            // SAFETY: checked above: `rows` values of T, read only, held by the argument.
            let w = wd.map(|d| unsafe { std::slice::from_raw_parts(d as *const T, rows) });
            let stats = if training {
                Stats::Batch((!rw.is_empty()).then_some(&mut rw[..]))
            } else {
                Stats::Running(&ro)
            };
            net.loss_and_grad_with(ws, &ps, inputs, targets, &mut gs, key, w, stats)
        })?;
        Ok(cost)
    }
}

#[pymethods]
impl Network {
    #[new]
    #[pyo3(signature = (sizes, hidden, output, alpha = 0.0, dropout = Vec::new(), huber_delta = 1.0, batch_norm = None))]
    fn new(
        sizes: Vec<usize>,
        hidden: Vec<String>,
        output: &str,
        alpha: f64,
        dropout: Vec<f64>,
        huber_delta: f64,
        batch_norm: Option<(f64, f64)>,
    ) -> PyResult<Self> {
        let quoted = |names: Vec<&str>| {
            let names: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
            let (last, rest) = names.split_last().expect("names");
            format!("{} or {last}", rest.join(", "))
        };
        let hidden = hidden
            .iter()
            .map(|h| {
                Activation::parse(h).ok_or_else(|| {
                    let names = Activation::ALL.iter().map(|(n, _)| *n).collect();
                    PyValueError::new_err(format!("hidden must be {}, got {h:?}", quoted(names)))
                })
            })
            .collect::<PyResult<Vec<Activation>>>()?;
        let output = Output::parse(output).ok_or_else(|| {
            let names = Output::ALL.iter().map(|(n, _)| *n).collect();
            PyValueError::new_err(format!("output must be {}, got {output:?}", quoted(names)))
        })?;
        let first = *hidden.first().unwrap_or(&Activation::Identity);
        let net = Mlp::new(sizes, first, output, alpha)?
            .with_hidden(&hidden)?
            .with_huber_delta(huber_delta)?
            .with_dropout(&dropout)?;
        let net = match batch_norm {
            Some((momentum, eps)) => net.with_batch_norm(momentum, eps)?,
            None => net,
        };
        Ok(Network {
            alpha: AtomicU64::new(net.alpha.to_bits()),
            state: Locked::new(NetState {
                net,
                ws: Workspaces::default(),
                orders: EpochOrders::default(),
            }),
        })
    }

    /// The L2 penalty coefficient alpha (>= 0).
    #[getter]
    fn get_alpha(&self) -> f64 {
        f64::from_bits(self.alpha.load(Ordering::Acquire))
    }

    #[setter]
    fn set_alpha(&self, py: Python<'_>, alpha: f64) -> PyResult<()> {
        let mut st = self.state.lock(py, WHAT)?;
        st.net.set_alpha(alpha)?;
        self.alpha.store(st.net.alpha.to_bits(), Ordering::Release);
        Ok(())
    }

    /// The dropout rate of each hidden layer (empty without dropout).
    #[getter]
    fn dropout(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        Ok(self.state.lock(py, WHAT)?.net.dropout.clone())
    }

    /// Batch norm's `(momentum, eps)` (None without batch norm).
    #[getter]
    fn batch_norm(&self, py: Python<'_>) -> PyResult<Option<(f64, f64)>> {
        let bn = self.state.lock(py, WHAT)?.net.batch_norm;
        Ok(bn.map(|b| (b.momentum, b.eps)))
    }

    /// The dropout masks of batch `position` of `epoch` under `seed` for `rows` rows: one
    /// (rows, `n_l`) bool array per hidden layer, True where the unit is kept (all True at
    /// rate 0) — what training multiplies by `1 / keep_prob`.
    fn dropout_masks<'py>(
        &self,
        py: Python<'py>,
        rows: usize,
        key: (u64, u64, u64),
    ) -> PyResult<Vec<Bound<'py, PyArray2<bool>>>> {
        let net = self.state.lock(py, WHAT)?.net.clone();
        let key = DropKey {
            seed: key.0,
            epoch: key.1,
            position: key.2,
        };
        (1..net.layers())
            .map(|l| {
                let (n, rate) = (net.sizes[l], net.rate(l));
                let mut v = try_filled(rows * n, true, || format!("the masks of layer {l}"))?;
                for (i, row) in v.chunks_exact_mut(n.max(1)).enumerate() {
                    let rk = key.row_key(l, i);
                    for (j, b) in row.iter_mut().enumerate() {
                        *b = Mlp::keep(rk, j, rate);
                    }
                }
                PyArray1::from_vec(py, v).reshape([rows, n])
            })
            .collect()
    }

    /// The output activations `A_L` for the rows of `X` (a new (m, `n_L`) array); batch
    /// norm normalizes with the `running` statistics (`[running_mean1, running_var1, ...]`).
    #[pyo3(signature = (params, x, running = Vec::new()))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        params: Vec<Bound<'py, PyAny>>,
        x: Bound<'py, PyAny>,
        running: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dtype_of(&params)?;
        let mut st = self.state.lock(py, WHAT)?;
        Ok(match dtype {
            Dtype::F32 => st.forward_t::<f32>(py, &params, &x, &running)?.into_any(),
            Dtype::F64 => st.forward_t::<f64>(py, &params, &x, &running)?.into_any(),
        })
    }

    /// The cost of the batch `(X, Y)` (data cost plus L2 penalty); writes `dJ/dparam` into
    /// `grads` (arrays shaped like `params`). With `dropout_key = (seed, epoch, position)`,
    /// dropout applies with the masks training draws for that batch; without, none. With
    /// `sample_weight` ((m,) of the dtype), the weighted mean cost. Batch norm: with
    /// `training`, the batch's statistics, and the `running` statistics (if given) updated;
    /// else the `running` statistics.
    #[pyo3(signature = (params, x, y, grads, dropout_key = None, sample_weight = None, running = Vec::new(), training = false))]
    #[allow(clippy::too_many_arguments)]
    fn loss_and_grad(
        &self,
        py: Python<'_>,
        params: Vec<Bound<'_, PyAny>>,
        x: Bound<'_, PyAny>,
        y: Bound<'_, PyAny>,
        grads: Vec<Bound<'_, PyAny>>,
        dropout_key: Option<(u64, u64, u64)>,
        sample_weight: Option<Bound<'_, PyAny>>,
        running: Vec<Bound<'_, PyAny>>,
        training: bool,
    ) -> PyResult<f64> {
        let w = sample_weight.as_ref();
        let key = dropout_key.map(|(seed, epoch, position)| DropKey {
            seed,
            epoch,
            position,
        });
        let dtype = dtype_of(&params)?;
        let mut st = self.state.lock(py, WHAT)?;
        match dtype {
            Dtype::F32 => {
                st.loss_and_grad_t::<f32>(py, &params, &x, &y, &grads, key, w, &running, training)
            }
            Dtype::F64 => {
                st.loss_and_grad_t::<f64>(py, &params, &x, &y, &grads, key, w, &running, training)
            }
        }
    }

    /// The mean data cost of `(X, Y)` (no L2 penalty), in chunks of rows; batch norm with
    /// the `running` statistics.
    #[pyo3(signature = (params, x, y, running = Vec::new()))]
    fn cost(
        &self,
        py: Python<'_>,
        params: Vec<Bound<'_, PyAny>>,
        x: Bound<'_, PyAny>,
        y: Bound<'_, PyAny>,
        running: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        let dtype = dtype_of(&params)?;
        let mut st = self.state.lock(py, WHAT)?;
        match dtype {
            Dtype::F32 => st.cost_t::<f32>(py, &params, &x, &y, &running),
            Dtype::F64 => st.cost_t::<f64>(py, &params, &x, &y, &running),
        }
    }

    /// Whether every element of a C-contiguous float array is finite (one SIMD pass, GIL
    /// released).
    #[staticmethod]
    fn all_finite(py: Python<'_>, x: Bound<'_, PyAny>) -> PyResult<bool> {
        let level = crate::runtime::simd::level();
        let a = x.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!("expected a numpy.ndarray, got {}", type_name(&x)))
        })?;
        let l = layout(a);
        if !l.is_c_aligned() {
            return Err(PyValueError::new_err("expected a C-contiguous array"));
        }
        let (data, len) = (l.data, l.len());
        // SAFETY: a live contiguous array of `len` elements of its dtype, held by `x`.
        Ok(match l.dtype {
            Some(Dtype::F32) => py.detach(|| {
                crate::optim::kernels::all_finite(level, unsafe {
                    std::slice::from_raw_parts(data as *const f32, len)
                })
            }),
            Some(Dtype::F64) => py.detach(|| {
                crate::optim::kernels::all_finite(level, unsafe {
                    std::slice::from_raw_parts(data as *const f64, len)
                })
            }),
            None => return Err(PyTypeError::new_err("expected a float32 or float64 array")),
        })
    }

    /// Trains on batches `start..stop` of one epoch with the GIL released: returns
    /// `(costs, done, interrupted, timing, error)`. It stops after a complete update on
    /// Ctrl-C, or when `interrupt.pending` becomes true (checked about every millisecond).
    /// With `dropout = (seed, epoch, offset)`, batch `j` trains with the dropout masks of
    /// `(seed, epoch, offset + j)`. With `weighted`, the batcher's third array holds a
    /// weight per sample (the weighted mean cost). Batch norm normalizes each batch with
    /// its statistics and updates the `running` statistics.
    #[pyo3(signature = (params, engine, groups, batcher, order, *, batch_size, drop_last, start, stop, lrs, x_transposed, y_transposed, labels, timing, interrupt = None, dropout = None, weighted = false, running = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn fit_epoch<'py>(
        &self,
        py: Python<'py>,
        params: Vec<Bound<'py, PyAny>>,
        engine: PyRef<'py, Engine>,
        groups: Bound<'py, PyAny>,
        batcher: PyRef<'py, Batcher>,
        order: EpochOrder,
        batch_size: usize,
        drop_last: bool,
        start: usize,
        stop: Option<usize>,
        lrs: Option<Vec<Vec<f64>>>,
        x_transposed: bool,
        y_transposed: bool,
        labels: bool,
        timing: bool,
        interrupt: Option<Py<PyAny>>,
        dropout: Option<(u64, u64, u64)>,
        weighted: bool,
        running: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let order = order.spec(batcher.samples());
        let flags = FitFlags {
            batch_size,
            drop_last,
            start,
            stop,
            x_transposed,
            y_transposed,
            labels,
            timing,
            interrupt,
            dropout,
            weighted,
            running,
        };
        let engine = &*engine;
        let dtype = dtype_of(&params)?;
        let mut st = self.state.lock(py, WHAT)?;
        match dtype {
            Dtype::F32 => {
                st.fit_epoch_t::<f32>(py, &params, engine, &groups, &batcher, order, lrs, flags)
            }
            Dtype::F64 => {
                st.fit_epoch_t::<f64>(py, &params, engine, &groups, &batcher, order, lrs, flags)
            }
        }
    }
}
