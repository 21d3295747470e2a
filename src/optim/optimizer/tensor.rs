//! The tensors of a step: a parameter and its gradient of one element type ([`Tensor`]),
//! how each is stored ([`Storage`]), and the finite check of their gradients.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::numerics::float::Dtype;
use crate::numerics::half::{self, Bf16, Elem, F16};
use crate::optim::hyper::Algorithm;
use crate::optim::kernels;
use crate::optim::ops::{AnySlice, Slice};
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd;

/// One tensor of a step: its parameter (updated in place) and its gradient, of one type.
pub enum Tensor<'a> {
    F32 {
        param: &'a mut [f32],
        grad: &'a [f32],
    },
    F64 {
        param: &'a mut [f64],
        grad: &'a [f64],
    },
    Bf16 {
        param: &'a mut [Bf16],
        grad: &'a [Bf16],
    },
    F16 {
        param: &'a mut [F16],
        grad: &'a [F16],
    },
}

impl Tensor<'_> {
    /// The parameter's element type.
    pub fn elem(&self) -> Elem {
        match self {
            Tensor::F32 { .. } => Elem::F32,
            Tensor::F64 { .. } => Elem::F64,
            Tensor::Bf16 { .. } => Elem::Bf16,
            Tensor::F16 { .. } => Elem::F16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Tensor::F32 { param, .. } => param.len(),
            Tensor::F64 { param, .. } => param.len(),
            Tensor::Bf16 { param, .. } => param.len(),
            Tensor::F16 { param, .. } => param.len(),
        }
    }

    pub(super) fn grad_len(&self) -> usize {
        match self {
            Tensor::F32 { grad, .. } => grad.len(),
            Tensor::F64 { grad, .. } => grad.len(),
            Tensor::Bf16 { grad, .. } => grad.len(),
            Tensor::F16 { grad, .. } => grad.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gradient, read-only.
    pub fn grad(&self) -> AnySlice<'_> {
        match self {
            Tensor::F32 { grad, .. } => AnySlice::Float(Slice::F32(grad)),
            Tensor::F64 { grad, .. } => AnySlice::Float(Slice::F64(grad)),
            Tensor::Bf16 { grad, .. } => AnySlice::Bf16(grad),
            Tensor::F16 { grad, .. } => AnySlice::F16(grad),
        }
    }
}

/// How one tensor is stored: its parameter's element type, its state's, and whether a
/// float32 master copy of a 16-bit parameter is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    pub param: Elem,
    pub state: Elem,
    pub master: bool,
}

impl Storage {
    /// A float32 / float64 parameter with state of its own dtype.
    pub fn plain(d: Dtype) -> Self {
        Storage {
            param: d.into(),
            state: d.into(),
            master: false,
        }
    }

    /// Checks that `algorithm` can keep a tensor this way; the error names `state_dtype` /
    /// `master_weights` and why.
    pub fn check(self, algorithm: Algorithm) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        match (self.param, self.state) {
            (Elem::F64, Elem::F64) => {}
            (Elem::F64, state) => {
                return bad(format!(
                    "state_dtype={:?} needs float32, float16 or bfloat16 parameters; float64 \
                     parameters keep float64 state",
                    state.name()
                ))
            }
            (param, Elem::F64) => {
                return bad(format!(
                    "state_dtype='float64' needs float64 parameters, not {}",
                    param.name()
                ))
            }
            _ => {}
        }
        if self.master && !self.param.is_16bit() {
            return bad(format!(
                "master_weights=True is for float16 and bfloat16 parameters; {} parameters are \
                 updated in their own precision",
                self.param.name()
            ));
        }
        if let (Elem::F16, Some(slot)) = (self.state, algorithm.second_moment()) {
            return bad(format!(
                "state_dtype='float16' cannot hold the second moment '{slot}' of {algorithm:?}: \
                 squared gradients below 6e-8 round to zero in float16 and those above 65504 \
                 to infinity; use state_dtype='bfloat16' (float32's range) or float32"
            ));
        }
        Ok(())
    }
}

/// The index of the first tensor whose gradient holds a NaN or an infinity.
pub fn first_nonfinite(tensors: &[Tensor<'_>]) -> Option<usize> {
    let level = simd::level();
    let finite = |t: &Tensor<'_>, range: std::ops::Range<usize>| match t {
        Tensor::F32 { grad, .. } => kernels::all_finite(level, &grad[range]),
        Tensor::F64 { grad, .. } => kernels::all_finite(level, &grad[range]),
        Tensor::Bf16 { grad, .. } => half::all_finite_16(level, &grad[range]),
        Tensor::F16 { grad, .. } => half::all_finite_16(level, &grad[range]),
    };
    let total: usize = tensors.iter().map(Tensor::len).sum();
    if !parallel::worth_threads(total) {
        return tensors.iter().position(|t| !finite(t, 0..t.len()));
    }
    let pieces: Vec<(usize, std::ops::Range<usize>)> = tensors
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            (0..t.len())
                .step_by(CHUNK_ELEMENTS)
                .map(move |s| (i, s..(s + CHUNK_ELEMENTS).min(t.len())))
        })
        .collect();
    let bad: Vec<AtomicBool> = pieces.iter().map(|_| AtomicBool::new(false)).collect();
    parallel::for_each_index(pieces.len(), &|k| {
        let (i, range) = pieces[k].clone();
        bad[k].store(!finite(&tensors[i], range), Ordering::Relaxed);
    });
    bad.iter()
        .position(|b| b.load(Ordering::Relaxed))
        .map(|k| pieces[k].0)
}
