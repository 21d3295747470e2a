//! The fused epoch of a network: `Network.fit_epoch`'s body, the updates of one Rust call
//! with the interpreter released (forward, backward and the optimizer's step per batch,
//! Ctrl-C polled about every millisecond).

use numpy::PyArray1;
use pyo3::exceptions::{PyFloatingPointError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{Element, NetState};
use crate::data::orders::OrderSpec;
use crate::error::try_filled;
use crate::nn::{self, EpochData, StepOutcome, Timing};
use crate::optim::optimizer::Tensor;
use crate::py::batches::Batcher;
use crate::py::optim::{Applied, Engine};
use crate::py::{maybe_detach, Work};

/// `fit_epoch`'s flags, as one value.
pub(super) struct FitFlags<'py> {
    pub(super) batch_size: usize,
    pub(super) drop_last: bool,
    pub(super) start: usize,
    pub(super) stop: Option<usize>,
    pub(super) x_transposed: bool,
    pub(super) y_transposed: bool,
    pub(super) labels: bool,
    pub(super) timing: bool,
    pub(super) interrupt: Option<Py<PyAny>>,
    pub(super) dropout: Option<(u64, u64, u64)>,
    pub(super) weighted: bool,
    /// Batch norm's running statistics, updated by each batch.
    pub(super) running: Vec<Bound<'py, PyAny>>,
}

impl NetState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fit_epoch_t<'py, T: Element>(
        &mut self,
        py: Python<'py>,
        params: &[Bound<'py, PyAny>],
        engine: &Engine,
        groups: &Bound<'py, PyAny>,
        batcher: &Batcher,
        spec: OrderSpec,
        lrs: Option<Vec<Vec<f64>>>,
        flags: FitFlags<'py>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let p = self.params::<T>(params, true)?;
        let r = self.running::<T>(&flags.running, true)?;
        let overlaps = |a: (usize, usize), b: (usize, usize)| {
            let item = std::mem::size_of::<T>();
            a.1 > 0 && b.1 > 0 && a.0 < b.0 + b.1 * item && b.0 < a.0 + a.1 * item
        };
        if r.iter()
            .any(|&a| p.iter().chain(&r).filter(|&&b| overlaps(a, b)).count() > 1)
        {
            return Err(PyValueError::new_err(
                "the running statistics share memory with each other or the parameters",
            ));
        }
        let (view, mut session) = engine.fit_view(py, groups)?;
        // Which of the model's parameters each engine tensor is.
        if view.params.len() != p.len() {
            return Err(PyValueError::new_err(format!(
                "optimizer: it was built on {} arrays, but the model has {} parameters; \
                 build it on model.params",
                view.params.len(),
                p.len()
            )));
        }
        let mut model_index = Vec::with_capacity(p.len());
        for &(d, n, dt) in &view.params {
            match p.iter().position(|&(pd, pn)| pd == d && pn == n) {
                Some(i) if dt == T::DTYPE && !model_index.contains(&i) => model_index.push(i),
                _ => {
                    return Err(PyValueError::new_err(
                        "optimizer: it was built on other arrays than model.params; build it \
                         on model.params (the same arrays, not copies)",
                    ))
                }
            }
        }
        // The optimizer holds the model's parameters in the model's order (the usual case).
        let in_order = model_index.iter().enumerate().all(|(j, &i)| i == j);
        let n_groups = view.hypers.len();
        let sources = batcher.sources_for_fit(py)?;
        let orders = &mut self.orders;
        let order = maybe_detach(py, Work::Samples(spec.samples), || orders.get(spec))?;
        // The sources' rows must be what the network reads.
        let k = self.net.outputs();
        let item = std::mem::size_of::<T>();
        let y_row = if flags.labels { 8 } else { k * item };
        if sources.len() != 2 + usize::from(flags.weighted)
            || sources[0].batch_bytes(1) != self.net.sizes[0] * item
            || sources[1].batch_bytes(1) != y_row
            || (flags.weighted && sources[2].batch_bytes(1) != item)
        {
            return Err(PyValueError::new_err(
                "the batches' arrays do not match the network's input and output sizes",
            ));
        }
        let b = flags.batch_size.max(1);
        let num_batches = order.num_batches(b, flags.drop_last);
        let stop = flags.stop.unwrap_or(num_batches).min(num_batches);
        if flags.start > stop {
            return Err(PyValueError::new_err(format!(
                "cannot start epoch {} at batch {}: it has {num_batches} batches",
                spec.epoch, flags.start
            )));
        }
        let updates = stop - flags.start;
        if let Some(lrs) = &lrs {
            if lrs.len() != n_groups || lrs.iter().any(|l| l.len() < updates) {
                return Err(PyValueError::new_err(format!(
                    "lrs must hold {updates} learning rates for each of the {n_groups} param groups"
                )));
            }
        }
        let data = EpochData {
            sources,
            order,
            batch_size: b,
            batches: flags.start..stop,
            x_transposed: flags.x_transposed,
            y_transposed: flags.y_transposed,
            labels: flags.labels,
            weighted: flags.weighted,
            dropout: flags.dropout,
        };
        let lens = self.net.param_lens();
        let mut grads: Vec<Vec<T>> = lens
            .iter()
            .map(|&n| try_filled(n, T::ZERO, || "the gradients fit computes".to_string()))
            .collect::<crate::Result<_>>()?;
        // SAFETY: the parameters are live, writeable, contiguous and disjoint (the engine
        // checked them, and they are the model's arrays), held by `params` for this call.
        let mut ps: Vec<&mut [T]> = p
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts_mut(d as *mut T, n) })
            .collect();
        // SAFETY: checked above: live, writeable, distinct arrays held by `flags`.
        let mut rs: Vec<&mut [T]> = r
            .iter()
            .map(|&(d, n)| unsafe { std::slice::from_raw_parts_mut(d as *mut T, n) })
            .collect();
        let mut hypers = view.hypers.clone();
        let base = view.group_steps.clone();
        let mut failure: Option<PyErr> = None;
        let mut costs: Vec<f64> = Vec::with_capacity(updates);
        let mut timing = Timing::default();
        let net = &self.net;
        let ws = T::workspace(&mut self.ws);
        let interrupt = flags.interrupt;
        let (report, failure) = py.detach(|| {
            let mut step = |params: &mut [&mut [T]], grads: &[Vec<T>]| -> StepOutcome {
                if let Some(lrs) = &lrs {
                    let steps = session.group_steps();
                    for (g, lrs) in lrs.iter().enumerate() {
                        if let Err(e) = hypers.set_lr(g, lrs[(steps[g] - base[g]) as usize]) {
                            failure = Some(e.into());
                            return StepOutcome::Abort;
                        }
                    }
                }
                let tensors: Vec<Tensor<'_>> = if in_order {
                    params
                        .iter_mut()
                        .zip(grads)
                        .map(|(p, g)| T::tensor(p, g))
                        .collect()
                } else {
                    let mut slots: Vec<Option<&mut [T]>> =
                        params.iter_mut().map(|p| Some(&mut **p)).collect();
                    model_index
                        .iter()
                        .map(|&i| T::tensor(slots[i].take().expect("distinct"), &grads[i]))
                        .collect()
                };
                match session.apply(tensors, &hypers) {
                    Applied::Done => StepOutcome::Applied,
                    Applied::Skipped => StepOutcome::Skipped,
                    Applied::NonFinite(name) => {
                        failure = Some(PyFloatingPointError::new_err(format!(
                            "gradient for {name} contains NaN or infinity; training stopped \
                             before that update (earlier updates stay applied)"
                        )));
                        StepOutcome::Abort
                    }
                    Applied::Failed(e) => {
                        failure = Some(e.into());
                        StepOutcome::Abort
                    }
                }
            };
            let mut interrupted = false;
            let mut raised: Option<PyErr> = None;
            let mut poll = || {
                let stop = Python::attach(|py| {
                    // The installed SIGINT handler runs here: one that raises (the default
                    // handler's KeyboardInterrupt) stops the loop and its error is raised
                    // once the model's counters are updated; one that returns lets training
                    // go on. A handler that holds Ctrl-C for fit sets `interrupt.pending`.
                    if let Err(e) = py.check_signals() {
                        raised = Some(e);
                        return true;
                    }
                    interrupt.as_ref().is_some_and(|f| {
                        f.bind(py)
                            .getattr("pending")
                            .and_then(|v| v.is_truthy())
                            .unwrap_or(false)
                    })
                });
                interrupted |= stop && raised.is_none();
                stop
            };
            let report = nn::train_epoch(
                net,
                ws,
                &mut ps,
                &mut grads,
                &mut rs,
                &data,
                &mut costs,
                flags.timing.then_some(&mut timing),
                &mut step,
                &mut poll,
            );
            (report.map(|r| (r, interrupted)), failure.or(raised))
        });
        // An error mid-epoch (a label out of range, a file that shrank) leaves the updates
        // before it applied: report them (one cost each) with the error, so the caller's
        // position counts them.
        let (done, interrupted, failure) = match report {
            Ok((r, interrupted)) => (r.done, interrupted, failure),
            Err(e) => (costs.len(), false, Some(PyErr::from(e))),
        };
        // Recorded before returning: a Python signal handler may raise as soon as this call
        // returns, before the caller has read `done` from the tuple.
        if let Some(f) = &interrupt {
            f.bind(py).setattr(pyo3::intern!(py, "done"), done)?;
        }
        let costs = PyArray1::from_vec(py, costs);
        let timing = if flags.timing {
            Some((timing.gather, timing.forward, timing.backward, timing.step))
        } else {
            None
        };
        let err = failure.map(|e| e.value(py).clone().into_any().unbind());
        (costs, done, interrupted, timing, err).into_pyobject(py)
    }
}
