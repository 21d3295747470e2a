//! An engine locked for the fused training loop of `ferroptim.nn`: the loop reads the
//! parameters and hyper-parameters once, then applies each batch's update without Python.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::engine::{Engine, Mutable, NanPolicy};
use crate::numerics::float::Dtype;
use crate::numerics::half::Elem;
use crate::optim::ops::{self, clip_coefficient, AnySlice, Norm};
use crate::optim::optimizer::{first_nonfinite, Tensor, Validated};
use crate::py::lock::Guard;

/// What [`Engine::apply`] did.
pub(crate) enum Applied {
    Done,
    Skipped,
    /// A non-finite gradient under `nan_policy='raise'`: the parameter's name.
    NonFinite(String),
    Failed(crate::Error),
}

/// The parameters and hyper-parameters a fused training loop steps with.
pub(crate) struct FitView {
    /// `(data address, elements, dtype)` of each parameter, in engine order.
    pub params: Vec<(usize, usize, Dtype)>,
    /// Validated once for the whole loop; a schedule changes only `lr` ([`Validated::set_lr`]).
    pub hypers: Validated,
    /// Each group's update count now (the step its schedule is evaluated at next).
    pub group_steps: Vec<u64>,
}

/// An engine locked for a fused training loop: other threads wait until it is dropped.
pub(crate) struct FitSession<'a> {
    engine: &'a Engine,
    st: Guard<'a, Mutable>,
}

// SAFETY: a session is carried into `Python::detach`, whose closure runs on the calling
// thread, so the lock is taken and released by one thread.
unsafe impl Send for FitSession<'_> {}

impl Engine {
    /// Re-checks the parameters, reads the groups' hyper-parameters and locks the engine,
    /// for a loop that then calls [`FitSession::apply`] with the GIL released.
    pub(crate) fn fit_view(
        &self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
    ) -> PyResult<(FitView, FitSession<'_>)> {
        self.recheck_params(py)?;
        let params = self
            .params
            .iter()
            .map(|p| match p.elem {
                Elem::F32 => Ok((p.data, p.len, Dtype::F32)),
                Elem::F64 => Ok((p.data, p.len, Dtype::F64)),
                Elem::Bf16 | Elem::F16 => Err(PyTypeError::new_err(format!(
                    "parameter {} is {}: the fused training loop takes float32 or float64 \
                     parameters",
                    p.name,
                    p.elem.name()
                ))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        let (st, hypers) = self.lock_with_hypers(py, groups)?;
        let view = FitView {
            params,
            hypers,
            group_steps: self.group_steps(&st),
        };
        Ok((view, FitSession { engine: self, st }))
    }
}

impl FitSession<'_> {
    /// Each param group's update count (0 for an empty group).
    pub(crate) fn group_steps(&self) -> Vec<u64> {
        self.engine.group_steps(&self.st)
    }

    /// One update as `step` makes it — `nan_policy`, `max_grad_norm`, the fused kernel —
    /// without Python: `tensors` in parameter order, checked by the caller.
    pub(crate) fn apply(&mut self, tensors: Vec<Tensor<'_>>, hypers: &Validated) -> Applied {
        let engine = self.engine;
        let st = &mut *self.st;
        if engine.nan_policy != NanPolicy::Propagate {
            if let Some(i) = first_nonfinite(&tensors) {
                if engine.nan_policy == NanPolicy::Raise {
                    return Applied::NonFinite(engine.params[i].name.clone());
                }
                st.skipped_steps += 1;
                return Applied::Skipped;
            }
        }
        let mut grad_scale = 1.0;
        if let Some(max_norm) = st.max_grad_norm {
            let grads: Vec<AnySlice<'_>> = tensors.iter().map(Tensor::grad).collect();
            let norm = ops::norm_any(&grads, Norm::L2);
            grad_scale = clip_coefficient(max_norm, norm);
            st.last_grad_norm = Some(norm);
        }
        match st.core.step(tensors, hypers, grad_scale) {
            Ok(()) => Applied::Done,
            Err(e) => Applied::Failed(e),
        }
    }
}
