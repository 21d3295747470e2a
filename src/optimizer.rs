//! Multi-tensor apply: one call updates every tensor of a step.
//!
//! The optimizer owns each tensor's state (step count and EWA buffers); parameters and
//! gradients are borrowed for the duration of a step. Large steps are cut into chunks that
//! run on the thread pool; every element is computed by the same code whichever thread runs
//! it, so results are bit-identical for any thread count.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{try_filled, Error, Result};
use crate::float::{Dtype, Float};
use crate::hyper::{Algorithm, Hyper, MAX_SLOTS};
use crate::kernels::{self, Kernel, StepScalars, TensorScalars};
use crate::ops::Slice;
use crate::parallel::{self, CHUNK_ELEMENTS};
use crate::simd::{self, Level};

/// One tensor of a step: its parameter (updated in place) and its gradient.
pub enum Tensor<'a> {
    F32 {
        param: &'a mut [f32],
        grad: &'a [f32],
    },
    F64 {
        param: &'a mut [f64],
        grad: &'a [f64],
    },
}

impl Tensor<'_> {
    pub fn dtype(&self) -> Dtype {
        match self {
            Tensor::F32 { .. } => Dtype::F32,
            Tensor::F64 { .. } => Dtype::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Tensor::F32 { param, .. } => param.len(),
            Tensor::F64 { param, .. } => param.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gradient, read-only.
    pub fn grad(&self) -> Slice<'_> {
        match self {
            Tensor::F32 { grad, .. } => Slice::F32(grad),
            Tensor::F64 { grad, .. } => Slice::F64(grad),
        }
    }
}

/// The state of one tensor: its update count, its EWA buffers (`None` until first used)
/// and, for NAdam, the running product of momentum coefficients.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorState<T> {
    pub step: u64,
    pub slots: [Option<Vec<T>>; MAX_SLOTS],
    /// NAdam's `mu_product`; 1 before the first step and for the other algorithms.
    pub scalar: f64,
}

impl<T> TensorState<T> {
    pub fn new() -> Self {
        TensorState {
            step: 0,
            slots: Default::default(),
            scalar: 1.0,
        }
    }
}

impl<T> Default for TensorState<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A tensor's state in its parameter's dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    F32(TensorState<f32>),
    F64(TensorState<f64>),
}

impl State {
    pub fn new(dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => State::F32(TensorState::new()),
            Dtype::F64 => State::F64(TensorState::new()),
        }
    }

    pub fn dtype(&self) -> Dtype {
        match self {
            State::F32(_) => Dtype::F32,
            State::F64(_) => Dtype::F64,
        }
    }

    pub fn step(&self) -> u64 {
        match self {
            State::F32(s) => s.step,
            State::F64(s) => s.step,
        }
    }
}

/// One tensor's (or one chunk's) work for a step.
struct Job<'a, T> {
    kernel: Kernel<T>,
    param: &'a mut [T],
    grad: &'a [T],
    slots: [&'a mut [T]; MAX_SLOTS],
}

impl<'a, T: Float> Job<'a, T> {
    fn run(self, level: Level) {
        kernels::update(level, &self.kernel, self.param, self.grad, self.slots);
    }

    /// Cuts the job into pieces of at most `CHUNK_ELEMENTS` elements, each wrapped by `wrap`.
    fn chunks<J>(self, out: &mut Vec<J>, wrap: fn(Job<'a, T>) -> J) {
        let mut rest = self;
        while rest.param.len() > CHUNK_ELEMENTS {
            let (param, param_rest) = rest.param.split_at_mut(CHUNK_ELEMENTS);
            let (grad, grad_rest) = rest.grad.split_at(CHUNK_ELEMENTS);
            let mut slots: [&mut [T]; MAX_SLOTS] = Default::default();
            let mut slots_rest: [&mut [T]; MAX_SLOTS] = Default::default();
            for (i, s) in rest.slots.into_iter().enumerate() {
                // Unused slots are empty and stay empty.
                let at = CHUNK_ELEMENTS.min(s.len());
                (slots[i], slots_rest[i]) = s.split_at_mut(at);
            }
            out.push(wrap(Job {
                kernel: rest.kernel,
                param,
                grad,
                slots,
            }));
            rest = Job {
                kernel: rest.kernel,
                param: param_rest,
                grad: grad_rest,
                slots: slots_rest,
            };
        }
        out.push(wrap(rest));
    }
}

impl<T: Float> TensorState<T> {
    /// Allocates the slots `hyper` needs and does not have yet; returns which. On failure
    /// removes those it allocated and names the tensor and slot.
    fn allocate(&mut self, hyper: &Hyper, len: usize, tensor: &str) -> Result<[bool; MAX_SLOTS]> {
        let used = hyper.slots_used();
        let names = hyper.algorithm().slot_names();
        let mut fresh = [false; MAX_SLOTS];
        for i in 0..MAX_SLOTS {
            if used[i] && self.slots[i].is_none() {
                let init = T::from_f64(hyper.slot_initial_value());
                match try_filled(len, init, || {
                    format!("the state '{}' of {tensor}", names[i])
                }) {
                    Ok(buf) => {
                        self.slots[i] = Some(buf);
                        fresh[i] = true;
                    }
                    Err(e) => {
                        self.release(fresh);
                        return Err(e);
                    }
                }
            }
        }
        Ok(fresh)
    }

    /// Removes the slots `allocate` created for a step that is not taken.
    fn release(&mut self, fresh: [bool; MAX_SLOTS]) {
        for (slot, fresh) in self.slots.iter_mut().zip(fresh) {
            if fresh {
                *slot = None;
            }
        }
    }

    /// Counts the step and returns the job doing it (after `allocate`).
    /// `memo` caches the step scalars of the tensor's group by step number.
    #[allow(clippy::too_many_arguments)]
    fn prepare<'a>(
        &'a mut self,
        hyper: &Hyper,
        fresh: [bool; MAX_SLOTS],
        memo: &mut Option<(u64, StepScalars)>,
        grad_scale: f64,
        param: &'a mut [T],
        grad: &'a [T],
    ) -> Job<'a, T> {
        let used = hyper.slots_used();
        self.step += 1;
        let scalars = match *memo {
            Some((t, sc)) if t == self.step => sc,
            _ => {
                let sc = StepScalars::new(hyper, self.step);
                *memo = Some((self.step, sc));
                sc
            }
        };
        if let StepScalars::NAdam { mu, .. } = scalars {
            // torch keeps mu_product as a float32 scalar tensor (the default dtype), so
            // each product is rounded to float32.
            self.scalar = f64::from(self.scalar as f32 * mu as f32);
        }
        let ts = TensorScalars {
            grad_scale,
            fresh,
            mu_product: self.scalar,
        };
        let kernel = Kernel::build(hyper, &scalars, &ts);
        let mut slots: [&mut [T]; MAX_SLOTS] = Default::default();
        for ((dst, slot), used) in slots.iter_mut().zip(self.slots.iter_mut()).zip(used) {
            if let (Some(buf), true) = (slot, used) {
                *dst = buf.as_mut_slice();
            }
        }
        Job {
            kernel,
            param,
            grad,
            slots,
        }
    }
}

/// An optimizer over a fixed list of tensors, each in one param group.
#[derive(Clone, Debug)]
pub struct Optimizer {
    algorithm: Algorithm,
    group_of: Vec<usize>,
    lens: Vec<usize>,
    states: Vec<State>,
    /// How errors name each tensor.
    names: Vec<String>,
}

impl Optimizer {
    /// An optimizer for tensors of the given dtypes and lengths; tensor `i` belongs to param
    /// group `group_of[i]`.
    ///
    /// # Panics
    /// If `dtypes`, `lens` and `group_of` differ in length.
    pub fn new(algorithm: Algorithm, dtypes: &[Dtype], lens: &[usize], group_of: &[usize]) -> Self {
        assert!(dtypes.len() == lens.len() && lens.len() == group_of.len());
        Optimizer {
            algorithm,
            group_of: group_of.to_vec(),
            lens: lens.to_vec(),
            states: dtypes.iter().map(|&d| State::new(d)).collect(),
            names: (0..lens.len()).map(|i| format!("tensor {i}")).collect(),
        }
    }

    /// Names the tensors in error messages (one name each).
    ///
    /// # Panics
    /// If `names` does not have one name per tensor.
    pub fn with_names(mut self, names: Vec<String>) -> Self {
        assert_eq!(names.len(), self.lens.len());
        self.names = names;
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn states(&self) -> &[State] {
        &self.states
    }

    pub fn group_of(&self) -> &[usize] {
        &self.group_of
    }

    /// Replaces every tensor's state at once, after checking each fits its tensor.
    pub fn set_states(&mut self, states: Vec<State>) -> Result<()> {
        if states.len() != self.states.len() {
            return Err(Error::Mismatch(format!(
                "expected state for {} tensors, got {}",
                self.states.len(),
                states.len()
            )));
        }
        for (i, (new, old)) in states.iter().zip(&self.states).enumerate() {
            let ok = new.dtype() == old.dtype()
                && match new {
                    State::F32(s) => slots_fit(&s.slots, self.lens[i]),
                    State::F64(s) => slots_fit(&s.slots, self.lens[i]),
                };
            if !ok {
                return Err(Error::Mismatch(format!(
                    "state of tensor {i} does not match its dtype {} and {} elements",
                    old.dtype().name(),
                    self.lens[i]
                )));
            }
        }
        self.states = states;
        Ok(())
    }

    /// Checks that `hypers` (one per param group) are all valid for this optimizer.
    pub fn validate(&self, hypers: &[Hyper]) -> Result<()> {
        for (g, h) in hypers.iter().enumerate() {
            if h.algorithm() != self.algorithm {
                return Err(Error::Mismatch(format!(
                    "param group {g} has hyper-parameters of {:?}, expected {:?}",
                    h.algorithm(),
                    self.algorithm
                )));
            }
            h.validate(g)?;
        }
        if let Some(&g) = self.group_of.iter().find(|&&g| g >= hypers.len()) {
            return Err(Error::Mismatch(format!(
                "a tensor belongs to param group {g} but only {} groups were given",
                hypers.len()
            )));
        }
        Ok(())
    }

    fn check_tensors(&self, tensors: &[Tensor<'_>]) -> Result<()> {
        if tensors.len() != self.states.len() {
            return Err(Error::Mismatch(format!(
                "expected {} tensors, got {}",
                self.states.len(),
                tensors.len()
            )));
        }
        for (i, t) in tensors.iter().enumerate() {
            let grad_len = match t {
                Tensor::F32 { grad, .. } => grad.len(),
                Tensor::F64 { grad, .. } => grad.len(),
            };
            if t.dtype() != self.states[i].dtype() || t.len() != self.lens[i] || grad_len != t.len()
            {
                return Err(Error::Mismatch(format!(
                    "tensor {i}: expected {} parameter and gradient of {} elements",
                    self.states[i].dtype().name(),
                    self.lens[i]
                )));
            }
        }
        Ok(())
    }

    /// Applies one update to every tensor, with every gradient multiplied by `grad_scale`
    /// (a clipping coefficient; 1 for none). Everything is checked first: on error nothing —
    /// parameters, state, step counts — has changed.
    pub fn step(
        &mut self,
        tensors: Vec<Tensor<'_>>,
        hypers: &[Hyper],
        grad_scale: f64,
    ) -> Result<()> {
        self.validate(hypers)?;
        self.check_tensors(&tensors)?;
        if let Some(i) = self.states.iter().position(|s| s.step() == u64::MAX) {
            return Err(Error::Invalid(format!(
                "the step count of {} is at its maximum 2**64 - 1",
                self.names[i]
            )));
        }
        // Every allocation first, so that running out of memory changes nothing.
        let mut fresh = Vec::with_capacity(tensors.len());
        for (i, state) in self.states.iter_mut().enumerate() {
            let (h, len, name) = (&hypers[self.group_of[i]], self.lens[i], &self.names[i]);
            let made = match state {
                State::F32(s) => s.allocate(h, len, name),
                State::F64(s) => s.allocate(h, len, name),
            };
            match made {
                Ok(f) => fresh.push(f),
                Err(e) => {
                    for (state, f) in self.states.iter_mut().zip(fresh) {
                        match state {
                            State::F32(s) => s.release(f),
                            State::F64(s) => s.release(f),
                        }
                    }
                    return Err(e);
                }
            }
        }
        let total: usize = self.lens.iter().sum();
        let mut jobs = Vec::with_capacity(tensors.len());
        let mut memo = vec![None; hypers.len()];
        for (((t, state), &g), fresh) in tensors
            .into_iter()
            .zip(&mut self.states)
            .zip(&self.group_of)
            .zip(fresh)
        {
            let (h, m) = (&hypers[g], &mut memo[g]);
            jobs.push(match (t, state) {
                (Tensor::F32 { param, grad }, State::F32(s)) => {
                    AnyJob::F32(s.prepare(h, fresh, m, grad_scale, param, grad))
                }
                (Tensor::F64 { param, grad }, State::F64(s)) => {
                    AnyJob::F64(s.prepare(h, fresh, m, grad_scale, param, grad))
                }
                _ => unreachable!("dtypes checked above"),
            });
        }
        run(jobs, total);
        Ok(())
    }
}

fn slots_fit<T>(slots: &[Option<Vec<T>>; MAX_SLOTS], len: usize) -> bool {
    slots.iter().flatten().all(|s| s.len() == len)
}

/// A job of either dtype.
enum AnyJob<'a> {
    F32(Job<'a, f32>),
    F64(Job<'a, f64>),
}

impl AnyJob<'_> {
    fn run(self, level: Level) {
        match self {
            AnyJob::F32(j) => j.run(level),
            AnyJob::F64(j) => j.run(level),
        }
    }
}

fn run(jobs: Vec<AnyJob<'_>>, total: usize) {
    let level = simd::level();
    if !parallel::worth_threads(total) {
        for j in jobs {
            j.run(level);
        }
        return;
    }
    let mut chunks = Vec::new();
    for job in jobs {
        match job {
            AnyJob::F32(j) => j.chunks(&mut chunks, AnyJob::F32),
            AnyJob::F64(j) => j.chunks(&mut chunks, AnyJob::F64),
        }
    }
    parallel::run_each(chunks, true, |j| j.run(level));
}

/// The index of the first tensor whose gradient holds a NaN or an infinity.
pub fn first_nonfinite(tensors: &[Tensor<'_>]) -> Option<usize> {
    let level = simd::level();
    let finite = |t: &Tensor<'_>, range: std::ops::Range<usize>| match t {
        Tensor::F32 { grad, .. } => kernels::all_finite(level, &grad[range]),
        Tensor::F64 { grad, .. } => kernels::all_finite(level, &grad[range]),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyper;

    fn adam(lr: f64) -> Hyper {
        Hyper::Adam(hyper::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled: false,
        })
    }

    fn values(n: usize, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7919 % 1000) as f64 / 500.0 - 1.0) * scale)
            .collect()
    }

    /// Runs `steps` steps over mixed-dtype tensors; returns parameters and state.
    fn train(lens: &[usize], steps: u64) -> (Vec<f32>, Vec<f64>, Vec<State>) {
        let dtypes: Vec<Dtype> = (0..lens.len())
            .map(|i| if i % 2 == 0 { Dtype::F32 } else { Dtype::F64 })
            .collect();
        let groups: Vec<usize> = (0..lens.len()).map(|i| i % 2).collect();
        let mut opt = Optimizer::new(Algorithm::Adam, &dtypes, lens, &groups);
        let mut p32: Vec<Vec<f32>> = Vec::new();
        let mut p64: Vec<Vec<f64>> = Vec::new();
        for (i, &n) in lens.iter().enumerate() {
            if i % 2 == 0 {
                p32.push(values(n, 1.0).iter().map(|&x| x as f32).collect());
            } else {
                p64.push(values(n, 1.0));
            }
        }
        for t in 0..steps {
            let g64: Vec<Vec<f64>> = lens.iter().map(|&n| values(n, 0.1 + t as f64)).collect();
            let g32: Vec<Vec<f32>> = g64
                .iter()
                .map(|g| g.iter().map(|&x| x as f32).collect())
                .collect();
            let (mut i32_, mut i64_) = (p32.iter_mut(), p64.iter_mut());
            let tensors = (0..lens.len())
                .map(|i| {
                    if i % 2 == 0 {
                        Tensor::F32 {
                            param: i32_.next().unwrap(),
                            grad: &g32[i],
                        }
                    } else {
                        Tensor::F64 {
                            param: i64_.next().unwrap(),
                            grad: &g64[i],
                        }
                    }
                })
                .collect();
            opt.step(tensors, &[adam(1e-2), adam(1e-3)], 1.0).unwrap();
        }
        (p32.concat(), p64.concat(), opt.states)
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        // Large enough to be split into chunks and run in parallel.
        let lens = [3 * CHUNK_ELEMENTS + 5, 100, 2 * CHUNK_ELEMENTS, 0, 1];
        crate::parallel::set_num_threads(1).unwrap();
        let one = train(&lens, 3);
        crate::parallel::set_num_threads(4).unwrap();
        let four = train(&lens, 3);
        assert_eq!(one, four);
        assert!(one.2.iter().all(|s| s.step() == 3));
    }

    #[test]
    fn a_failed_step_changes_nothing() {
        let mut opt = Optimizer::new(Algorithm::Adam, &[Dtype::F64], &[2], &[0]);
        let mut p = vec![1.0, 2.0];
        let g = vec![0.5, 0.5];
        let before = opt.states.clone();
        let bad = opt.step(
            vec![Tensor::F64 {
                param: &mut p,
                grad: &g,
            }],
            &[adam(-1.0)],
            1.0,
        );
        assert!(matches!(bad, Err(Error::Hyper { name: "lr", .. })));
        let short = opt.step(
            vec![Tensor::F64 {
                param: &mut p,
                grad: &g[..1],
            }],
            &[adam(0.1)],
            1.0,
        );
        assert!(matches!(short, Err(Error::Mismatch(_))));
        assert_eq!(
            (p.as_slice(), &opt.states),
            ([1.0, 2.0].as_slice(), &before)
        );
    }

    #[test]
    fn a_state_that_cannot_be_allocated_is_an_error_naming_it() {
        let mut s = TensorState::<f32>::new();
        let err = s
            .allocate(&adam(1e-3), 1 << 60, "parameter 'W'")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "could not allocate {} bytes for the state 'exp_avg' of parameter 'W'",
                4u64 << 60
            )
        );
        assert_eq!(s, TensorState::new());
    }

    #[test]
    fn the_step_count_does_not_wrap() {
        let mut opt = Optimizer::new(Algorithm::Adam, &[Dtype::F64], &[2], &[0])
            .with_names(vec!["parameter 'W'".into()]);
        let mut state = TensorState::<f64>::new();
        state.step = u64::MAX;
        opt.set_states(vec![State::F64(state)]).unwrap();
        let before = opt.states.clone();
        let (mut p, g) = (vec![1.0, 2.0], vec![0.5, 0.5]);
        let err = opt
            .step(
                vec![Tensor::F64 {
                    param: &mut p,
                    grad: &g,
                }],
                &[adam(1e-3)],
                1.0,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("step count of parameter 'W'"),
            "{err}"
        );
        assert_eq!(
            (p.as_slice(), &opt.states),
            ([1.0, 2.0].as_slice(), &before)
        );
    }

    #[test]
    fn first_nonfinite_names_the_tensor() {
        let (mut a, mut b) = (vec![0.0f32; 10], vec![0.0f64; 70_000]);
        let ga = vec![1.0f32; 10];
        let mut gb = vec![1.0f64; 70_000];
        gb[69_999] = f64::NAN;
        let tensors = vec![
            Tensor::F32 {
                param: &mut a,
                grad: &ga,
            },
            Tensor::F64 {
                param: &mut b,
                grad: &gb,
            },
        ];
        assert_eq!(first_nonfinite(&tensors), Some(1));
    }
}
