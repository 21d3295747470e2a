//! Multi-tensor apply: one call updates every tensor of a step.
//!
//! The optimizer owns each tensor's state (step count, EWA buffers and, for a 16-bit
//! parameter, its float32 master weights); parameters and gradients are borrowed for the
//! duration of a step. Large steps are cut into chunks that run on the thread pool; every
//! element is computed by the same code whichever thread runs it, so results are
//! bit-identical for any thread count.

use crate::error::{try_filled, Error, Result};
use crate::numerics::float::{Dtype, Float};
use crate::numerics::half::{self, Bf16, Bits16, Elem, Stored, F16};
use crate::numerics::mixed::{Direct, Master, Params};
use crate::optim::bf16;
use crate::optim::hyper::{self, Algorithm, Hyper, MAX_SCALARS, MAX_SLOTS};
use crate::optim::kernels::{self, Kernel, StepScalars, TensorScalars};
use crate::optim::subnormal;
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, Level};

mod tensor;
pub use tensor::{first_nonfinite, Storage, Tensor};

/// The state of one tensor: its update count, its EWA buffers (`None` until first used),
/// for NAdam the running product of momentum coefficients, and the master weights of a
/// 16-bit parameter (`None` until its first step); for float32 state, where it holds
/// values below [`subnormal::TINY`] (a speed hint, not saved and not compared: it never
/// changes the bits).
#[derive(Clone, Debug)]
pub struct TensorState<S> {
    pub step: u64,
    pub slots: [Option<Vec<S>>; MAX_SLOTS],
    /// The per-tensor scalars named by `Algorithm::scalar_names` (NAdam's `mu_product`;
    /// ASGD's `eta` and `mu`); 1 before the first step and where unused.
    pub scalars: [f64; MAX_SCALARS],
    pub master: Option<Vec<f32>>,
    pub tiny: subnormal::TinyHint,
}

impl<S> TensorState<S> {
    pub fn new() -> Self {
        TensorState {
            step: 0,
            slots: Default::default(),
            scalars: [1.0; MAX_SCALARS],
            master: None,
            tiny: subnormal::TinyHint::default(),
        }
    }
}

impl<S: PartialEq> PartialEq for TensorState<S> {
    fn eq(&self, other: &Self) -> bool {
        (self.step, &self.slots, self.scalars, &self.master)
            == (other.step, &other.slots, other.scalars, &other.master)
    }
}

impl<S> Default for TensorState<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// A tensor's state, by the element type of its buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    F32(TensorState<f32>),
    F64(TensorState<f64>),
    Bf16(TensorState<Bf16>),
    F16(TensorState<F16>),
}

/// Runs `$body` with `$s` bound to the `TensorState` of any `State`.
macro_rules! with_state {
    ($state:expr, $s:ident => $body:expr) => {
        match $state {
            State::F32($s) => $body,
            State::F64($s) => $body,
            State::Bf16($s) => $body,
            State::F16($s) => $body,
        }
    };
}

impl State {
    /// An empty state with buffers of `elem`.
    pub fn new(elem: Elem) -> Self {
        match elem {
            Elem::F32 => State::F32(TensorState::new()),
            Elem::F64 => State::F64(TensorState::new()),
            Elem::Bf16 => State::Bf16(TensorState::new()),
            Elem::F16 => State::F16(TensorState::new()),
        }
    }

    /// The element type of the buffers.
    pub fn elem(&self) -> Elem {
        match self {
            State::F32(_) => Elem::F32,
            State::F64(_) => Elem::F64,
            State::Bf16(_) => Elem::Bf16,
            State::F16(_) => Elem::F16,
        }
    }

    pub fn step(&self) -> u64 {
        with_state!(self, s => s.step)
    }

    pub fn master(&self) -> Option<&[f32]> {
        with_state!(self, s => s.master.as_deref())
    }

    fn fits(&self, len: usize, master: bool) -> bool {
        with_state!(self, s => slots_fit(&s.slots, len)
            && s.master.as_ref().is_none_or(|m| master && m.len() == len))
    }

    fn allocate(&mut self, hyper: &Hyper, len: usize, master: bool, name: &str) -> Result<Fresh> {
        with_state!(self, s => s.allocate(hyper, len, master, name))
    }

    /// Whether the state has every slot `hyper` uses, and master weights if `master`.
    fn complete(&self, hyper: &Hyper, master: bool) -> bool {
        with_state!(self, s => (!master || s.master.is_some())
            && s.slots.iter().zip(hyper.slots_used()).all(|(slot, used)| !used || slot.is_some()))
    }

    fn release(&mut self, fresh: Fresh) {
        with_state!(self, s => s.release(fresh));
    }
}

/// What `allocate` created for a step: state slots, and the master weights.
#[derive(Clone, Copy, Debug, Default)]
struct Fresh {
    slots: [bool; MAX_SLOTS],
    master: bool,
}

/// One tensor's (or one chunk's) work for a step.
struct Job<'a, T, P: Params<T>, S>
where
    T: Float,
{
    kernel: Kernel<T>,
    param: P,
    grad: &'a [P::Grad],
    slots: [&'a mut [S]; MAX_SLOTS],
    /// Where the tensor's float32 state was tiny ([`subnormal::update`]); `None` for the
    /// pieces of a tensor split across threads.
    tiny: Option<&'a mut subnormal::TinyHint>,
}

impl<'a, T: Float, P: Params<T> + 'a, S: Stored<T>> Job<'a, T, P, S> {
    fn run(self, level: Level) {
        kernels::update(level, &self.kernel, self.param, self.grad, self.slots);
    }

    /// Cuts the job into pieces of at most `CHUNK_ELEMENTS` elements, each wrapped by `wrap`.
    fn chunks<J>(self, out: &mut Vec<J>, wrap: impl Fn(Self) -> J) {
        // Pieces of a split tensor carry no hint (`tiny: None`); a whole one keeps its own.
        let mut rest = self;
        while rest.param.len() > CHUNK_ELEMENTS {
            let (param, param_rest) = rest.param.split_at(CHUNK_ELEMENTS);
            let (grad, grad_rest) = rest.grad.split_at(CHUNK_ELEMENTS);
            let (slots, slots_rest) = hyper::split_slots(rest.slots, CHUNK_ELEMENTS);
            out.push(wrap(Job {
                kernel: rest.kernel,
                param,
                grad,
                slots,
                tiny: None,
            }));
            rest = Job {
                kernel: rest.kernel,
                param: param_rest,
                grad: grad_rest,
                slots: slots_rest,
                tiny: None,
            };
        }
        out.push(wrap(rest));
    }
}

impl<S: Copy> TensorState<S> {
    /// Allocates the slots `hyper` needs and does not have yet, and the master weights if
    /// `master` and not made yet; returns which. On failure removes those it allocated and
    /// names the tensor and slot.
    fn allocate<T: Float>(
        &mut self,
        hyper: &Hyper,
        len: usize,
        master: bool,
        tensor: &str,
    ) -> Result<Fresh>
    where
        S: Stored<T>,
    {
        let used = hyper.slots_used();
        let names = hyper.algorithm().slot_names();
        let mut fresh = Fresh::default();
        if master && self.master.is_none() {
            self.master = Some(try_filled(len, 0.0f32, || {
                format!("the master weights of {tensor}")
            })?);
            fresh.master = true;
        }
        for i in 0..MAX_SLOTS {
            if used[i] && self.slots[i].is_none() {
                let init = S::store(T::from_f64(hyper.slot_initial_value(i)));
                match try_filled(len, init, || {
                    format!("the state '{}' of {tensor}", names[i])
                }) {
                    Ok(buf) => {
                        self.slots[i] = Some(buf);
                        fresh.slots[i] = true;
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

    /// Removes what `allocate` created for a step that is not taken.
    fn release(&mut self, fresh: Fresh) {
        for (slot, fresh) in self.slots.iter_mut().zip(fresh.slots) {
            if fresh {
                *slot = None;
            }
        }
        if fresh.master {
            self.master = None;
        }
    }

    /// Counts the step and returns the job doing it (after `allocate`): `param` makes the
    /// kernel's view of the parameter from the master weights (when kept).
    /// `memo` caches the step scalars of the tensor's group by step number.
    #[allow(clippy::too_many_arguments)]
    fn prepare<'a, T: Float, P: Params<T>>(
        &'a mut self,
        hyper: &Hyper,
        fresh: Fresh,
        memo: &mut Option<(u64, StepScalars)>,
        grad_scale: f64,
        param: impl FnOnce(Option<&'a mut [f32]>) -> P,
        grad: &'a [P::Grad],
    ) -> Job<'a, T, P, S>
    where
        S: Stored<T>,
    {
        let TensorState {
            step,
            slots: state_slots,
            scalars: own,
            master,
            tiny,
        } = self;
        let used = hyper.slots_used();
        if let (Hyper::Asgd(h), 0) = (hyper, *step) {
            // torch starts `eta` at lr as a float32 scalar tensor, `mu` at 1.
            *own = [f64::from(h.lr as f32), 1.0];
        }
        *step += 1;
        let scalars = match *memo {
            Some((t, sc)) if t == *step => sc,
            _ => {
                let sc = StepScalars::new(hyper, *step);
                *memo = Some((*step, sc));
                sc
            }
        };
        if let StepScalars::NAdam { mu, .. } = scalars {
            // torch keeps mu_product as a float32 scalar tensor (the default dtype), so
            // each product is rounded to float32.
            own[0] = f64::from(own[0] as f32 * mu as f32);
        }
        let ts = TensorScalars {
            grad_scale,
            fresh: fresh.slots,
            scalars: *own,
        };
        let kernel = Kernel::build(hyper, &scalars, &ts);
        if let Hyper::Asgd(h) = hyper {
            // This step used the `eta` and `mu` the last one left; these are for the next.
            *own = h.scalars_after(*step);
        }
        let mut slots: [&mut [S]; MAX_SLOTS] = Default::default();
        for ((dst, slot), used) in slots.iter_mut().zip(state_slots.iter_mut()).zip(used) {
            if let (Some(buf), true) = (slot, used) {
                *dst = buf.as_mut_slice();
            }
        }
        Job {
            kernel,
            param: param(master.as_deref_mut()),
            grad,
            slots,
            tiny: Some(tiny),
        }
    }
}

/// Hyper-parameters, one per param group, that passed [`Optimizer::validate`] — the only
/// way to make one (besides [`Validated::set_lr`], which checks the one value it changes) —
/// so [`Optimizer::step`] takes them without checking them again.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    hypers: Vec<Hyper>,
    algorithm: Algorithm,
}

impl Validated {
    /// The hyper-parameters, one per param group.
    pub fn hypers(&self) -> &[Hyper] {
        &self.hypers
    }

    pub fn len(&self) -> usize {
        self.hypers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hypers.is_empty()
    }

    /// Sets param group `group`'s learning rate (a schedule's value for the coming update),
    /// checking only it: the other hyper-parameters are unchanged, so still valid.
    ///
    /// # Panics
    /// If there is no param group `group`.
    pub fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        hyper::check_lr(group, lr)?;
        self.hypers[group].set_lr(lr);
        Ok(())
    }
}

/// An optimizer over a fixed list of tensors, each in one param group.
#[derive(Clone, Debug)]
pub struct Optimizer {
    algorithm: Algorithm,
    /// One more than the largest group index (the param groups a step needs).
    groups: usize,
    group_of: Vec<usize>,
    lens: Vec<usize>,
    storage: Vec<Storage>,
    states: Vec<State>,
    /// How errors name each tensor.
    names: Vec<String>,
    /// The fewest elements a step shares with the pool's workers.
    parallel_min: usize,
}

impl Optimizer {
    /// An optimizer for tensors of the given dtypes and lengths, each with state of its own
    /// dtype; tensor `i` belongs to param group `group_of[i]`.
    ///
    /// # Panics
    /// If `dtypes`, `lens` and `group_of` differ in length.
    pub fn new(algorithm: Algorithm, dtypes: &[Dtype], lens: &[usize], group_of: &[usize]) -> Self {
        let storage: Vec<Storage> = dtypes.iter().map(|&d| Storage::plain(d)).collect();
        Self::with_storage(algorithm, &storage, lens, group_of)
            .expect("a plain float32/float64 layout is valid")
    }

    /// An optimizer for tensors stored as `storage` says (16-bit parameters or state,
    /// master weights), each checked by [`Storage::check`].
    ///
    /// # Panics
    /// If `storage`, `lens` and `group_of` differ in length.
    pub fn with_storage(
        algorithm: Algorithm,
        storage: &[Storage],
        lens: &[usize],
        group_of: &[usize],
    ) -> Result<Self> {
        assert!(storage.len() == lens.len() && lens.len() == group_of.len());
        for s in storage {
            s.check(algorithm)?;
        }
        Ok(Optimizer {
            algorithm,
            groups: group_of.iter().max().map_or(0, |&g| g + 1),
            group_of: group_of.to_vec(),
            lens: lens.to_vec(),
            storage: storage.to_vec(),
            states: storage.iter().map(|s| State::new(s.state)).collect(),
            names: (0..lens.len()).map(|i| format!("tensor {i}")).collect(),
            parallel_min: parallel::PARALLEL_MIN_ELEMENTS,
        })
    }

    /// The fewest elements (all tensors together) a step shares with the pool's workers
    /// (default [`parallel::PARALLEL_MIN_ELEMENTS`]); below, it runs on the calling thread.
    /// A caller whose own thread pool runs right before and after each step (torch's, in a
    /// torch training loop) raises it: there the two pools contend for the cores.
    pub fn parallel_min(&self) -> usize {
        self.parallel_min
    }

    /// Sets [`Self::parallel_min`].
    pub fn set_parallel_min(&mut self, elements: usize) {
        self.parallel_min = elements;
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

    pub fn storage(&self) -> &[Storage] {
        &self.storage
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
        for (i, new) in states.iter().enumerate() {
            let st = self.storage[i];
            if new.elem() != st.state || !new.fits(self.lens[i], st.master) {
                return Err(Error::Mismatch(format!(
                    "state of tensor {i} does not match its dtype {} and {} elements",
                    st.state.name(),
                    self.lens[i]
                )));
            }
        }
        self.states = states;
        Ok(())
    }

    /// Checks that `hypers` (one per param group) are all valid for this optimizer; the
    /// token [`Optimizer::step`] takes.
    pub fn validate(&self, hypers: Vec<Hyper>) -> Result<Validated> {
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
        if self.groups > hypers.len() {
            return Err(Error::Mismatch(format!(
                "a tensor belongs to param group {} but only {} groups were given",
                self.groups - 1,
                hypers.len()
            )));
        }
        Ok(Validated {
            hypers,
            algorithm: self.algorithm,
        })
    }

    /// The core's own guard of its safe API (kernels index state by the tensor's length, the
    /// bfloat16 kernel with unchecked vector loads): a few comparisons per tensor. The
    /// bindings' walk has already checked count, dtype and shape with the user's names.
    fn check_tensors(&self, tensors: &[Tensor<'_>]) -> Result<()> {
        if tensors.len() != self.states.len() {
            return Err(Error::Mismatch(format!(
                "expected {} tensors, got {}",
                self.states.len(),
                tensors.len()
            )));
        }
        for (i, t) in tensors.iter().enumerate() {
            let param = self.storage[i].param;
            if t.elem() != param || t.len() != self.lens[i] || t.grad_len() != t.len() {
                return Err(Error::Mismatch(format!(
                    "tensor {i}: expected {} parameter and gradient of {} elements",
                    param.name(),
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
        hypers: &Validated,
        grad_scale: f64,
    ) -> Result<()> {
        // A token of another optimizer (two comparisons, not a re-validation).
        if hypers.algorithm != self.algorithm || hypers.len() < self.groups {
            return Err(Error::Mismatch(format!(
                "hyper-parameters validated for {:?} with {} groups, but this optimizer is {:?} \
                 with {}",
                hypers.algorithm,
                hypers.len(),
                self.algorithm,
                self.groups
            )));
        }
        let hypers = hypers.hypers();
        self.check_tensors(&tensors)?;
        if let Some(i) = self.states.iter().position(|s| s.step() == u64::MAX) {
            return Err(Error::Invalid(format!(
                "the step count of {} is at its maximum 2**64 - 1",
                self.names[i]
            )));
        }
        let fresh = self.allocate(hypers)?;
        let total: usize = self.lens.iter().sum();
        let level = simd::level();
        // Small steps run each tensor's job as soon as it is made (no list of jobs).
        let threaded = total >= self.parallel_min && parallel::worth_threads(total);
        let mut jobs = Vec::with_capacity(if threaded { tensors.len() } else { 0 });
        let mut few_groups = [None; 4];
        let mut many_groups = Vec::new();
        let memo: &mut [Option<(u64, StepScalars)>] = if hypers.len() <= few_groups.len() {
            &mut few_groups[..hypers.len()]
        } else {
            many_groups.resize(hypers.len(), None);
            &mut many_groups
        };
        for (i, ((t, state), &g)) in tensors
            .into_iter()
            .zip(&mut self.states)
            .zip(&self.group_of)
            .enumerate()
        {
            let (h, m) = (&hypers[g], &mut memo[g]);
            let fresh = fresh.get(i).copied().unwrap_or_default();
            let job = match (t, state) {
                (Tensor::F32 { param, grad }, State::F32(s)) => {
                    AnyJob::F32(s.prepare(h, fresh, m, grad_scale, |_| Direct(param), grad))
                }
                (Tensor::F64 { param, grad }, State::F64(s)) => {
                    AnyJob::F64(s.prepare(h, fresh, m, grad_scale, |_| Direct(param), grad))
                }
                (Tensor::F32 { param, grad }, State::Bf16(s)) => {
                    AnyJob::Bf16(s.prepare(h, fresh, m, grad_scale, |_| Direct(param), grad))
                }
                (Tensor::F32 { param, grad }, State::F16(s)) => {
                    AnyJob::boxed(s.prepare(h, fresh, m, grad_scale, |_| Direct(param), grad))
                }
                (Tensor::Bf16 { param, grad }, state) => {
                    half_job(state, param, grad, (h, fresh, m, grad_scale))
                }
                (Tensor::F16 { param, grad }, state) => {
                    half_job(state, param, grad, (h, fresh, m, grad_scale))
                }
                _ => unreachable!("types checked above"),
            };
            if threaded {
                jobs.push(job);
            } else {
                job.run(level);
            }
        }
        if threaded {
            run_threaded(jobs, level);
        }
        Ok(())
    }

    /// Allocates the state every tensor's step needs and does not have yet (all of it, or
    /// none: running out of memory changes nothing). Returns what each tensor got, or an
    /// empty list when nothing was missing (every step after the first).
    fn allocate(&mut self, hypers: &[Hyper]) -> Result<Vec<Fresh>> {
        let complete =
            |(i, s): (usize, &State)| s.complete(&hypers[self.group_of[i]], self.storage[i].master);
        if self.states.iter().enumerate().all(complete) {
            return Ok(Vec::new());
        }
        let mut fresh = Vec::with_capacity(self.states.len());
        for (i, state) in self.states.iter_mut().enumerate() {
            let (h, len, name) = (&hypers[self.group_of[i]], self.lens[i], &self.names[i]);
            match state.allocate(h, len, self.storage[i].master, name) {
                Ok(f) => fresh.push(f),
                Err(e) => {
                    for (state, f) in self.states.iter_mut().zip(fresh) {
                        state.release(f);
                    }
                    return Err(e);
                }
            }
        }
        Ok(fresh)
    }
}

/// The job of a 16-bit parameter, with or without master weights (made from the parameter
/// when `fresh.master`), for each state type.
fn half_job<'a, H: Bits16>(
    state: &'a mut State,
    param: &'a mut [H],
    grad: &'a [H],
    (h, fresh, memo, grad_scale): (&Hyper, Fresh, &mut Option<(u64, StepScalars)>, f64),
) -> AnyJob<'a> {
    // `Master` when the state holds master weights, else `Direct`: one closure per case.
    macro_rules! job {
        ($s:expr) => {
            if $s.master.is_some() {
                AnyJob::boxed($s.prepare(
                    h,
                    fresh,
                    memo,
                    grad_scale,
                    |m| {
                        let master = m.expect("allocated");
                        if fresh.master {
                            half::convert(param, master);
                        }
                        Master { master, param }
                    },
                    grad,
                ))
            } else {
                AnyJob::boxed($s.prepare(h, fresh, memo, grad_scale, |_| Direct(param), grad))
            }
        };
    }
    match state {
        State::F32(s) => job!(s),
        State::Bf16(s) => job!(s),
        State::F16(s) => job!(s),
        State::F64(_) => unreachable!("checked by Storage::check"),
    }
}

fn slots_fit<T>(slots: &[Option<Vec<T>>; MAX_SLOTS], len: usize) -> bool {
    slots.iter().flatten().all(|s| s.len() == len)
}

/// A mixed-precision job behind a box: one allocation per tensor keeps [`AnyJob`] one
/// enum without a variant per type combination.
trait DynJob<'a>: Send {
    fn run(self: Box<Self>, level: Level);
    fn chunks(self: Box<Self>, out: &mut Vec<AnyJob<'a>>);
}

impl<'a, T: Float, P: Params<T> + 'a, S: Stored<T>> DynJob<'a> for Job<'a, T, P, S> {
    fn run(self: Box<Self>, level: Level) {
        Job::run(*self, level);
    }

    fn chunks(self: Box<Self>, out: &mut Vec<AnyJob<'a>>) {
        Job::chunks(*self, out, AnyJob::boxed);
    }
}

/// A job of any type.
enum AnyJob<'a> {
    F32(Job<'a, f32, Direct<'a, f32>, f32>),
    F64(Job<'a, f64, Direct<'a, f64>, f64>),
    /// A float32 parameter with bfloat16 state: [`bf16::update`].
    Bf16(Job<'a, f32, Direct<'a, f32>, Bf16>),
    Mixed(Box<dyn DynJob<'a> + 'a>),
}

impl<'a> AnyJob<'a> {
    fn boxed<T: Float, P: Params<T> + 'a, S: Stored<T>>(j: Job<'a, T, P, S>) -> Self {
        AnyJob::Mixed(Box::new(j))
    }

    fn run(self, level: Level) {
        match self {
            AnyJob::F32(j) => {
                subnormal::update(level, &j.kernel, j.param.0, j.grad, j.slots, j.tiny);
            }
            AnyJob::F64(j) => j.run(level),
            AnyJob::Bf16(j) => bf16::update(level, &j.kernel, j.param.0, j.grad, j.slots),
            AnyJob::Mixed(j) => j.run(level),
        }
    }
}

/// Runs the jobs in chunks on the pool.
fn run_threaded(jobs: Vec<AnyJob<'_>>, level: Level) {
    let mut chunks = Vec::new();
    for job in jobs {
        match job {
            AnyJob::F32(j) => j.chunks(&mut chunks, AnyJob::F32),
            AnyJob::F64(j) => j.chunks(&mut chunks, AnyJob::F64),
            AnyJob::Bf16(j) => j.chunks(&mut chunks, AnyJob::Bf16),
            AnyJob::Mixed(j) => j.chunks(&mut chunks),
        }
    }
    parallel::run_each(chunks, true, |j| j.run(level));
}

#[cfg(test)]
mod tests;
