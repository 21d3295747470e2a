//! Hyper-parameters of each optimizer, with torch.optim's names, and their valid ranges.
//!
//! Validation lives here, once: [`Hyper::validate`] runs when an optimizer is built and
//! once per step (a user may edit `param_groups` between steps), through
//! `Optimizer::validate`, whose token the step takes without checking again; a fused
//! training loop validates once per call and then only each scheduled `lr` ([`check_lr`]).
//! Nothing is modified by a step whose hyper-parameters are invalid.

use crate::error::{Error, Result};

/// How the bindings read one param-group entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A number (`float`, or an `int` that fits one).
    Number,
    /// `True` or `False`.
    Flag,
    /// A pair of numbers (`betas`).
    Pair,
}

/// One param-group entry an optimizer reads besides `lr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub key: &'static str,
    pub kind: FieldKind,
}

/// A value read for a [`Field`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Flag(bool),
    Pair(f64, f64),
}

/// A struct field's type as a param-group entry.
pub trait FieldType: Sized {
    const KIND: FieldKind;
    /// The value read for a field of this kind (the bindings read by [`Self::KIND`]).
    fn from_value(v: Value) -> Self;
}

impl FieldType for f64 {
    const KIND: FieldKind = FieldKind::Number;
    fn from_value(v: Value) -> Self {
        match v {
            Value::Number(x) => x,
            _ => unreachable!("a number field read as {v:?}"),
        }
    }
}

impl FieldType for (f64, f64) {
    const KIND: FieldKind = FieldKind::Pair;
    fn from_value(v: Value) -> Self {
        match v {
            Value::Pair(a, b) => (a, b),
            _ => unreachable!("a pair field read as {v:?}"),
        }
    }
}

impl FieldType for bool {
    const KIND: FieldKind = FieldKind::Flag;
    fn from_value(v: Value) -> Self {
        match v {
            Value::Flag(b) => b,
            _ => unreachable!("a flag field read as {v:?}"),
        }
    }
}

/// At most this many fields per optimizer (besides `lr`).
pub const MAX_FIELDS: usize = 8;

/// Defines one optimizer's hyper-parameter struct — `lr`, then `betas` read as the pair
/// `(beta1, beta2)` where present, then the fields read from the param group under their
/// keys, then fields the registry sets (`@fixed`, false when read) — with its field table
/// [`Self::FIELDS`], its state slot names [`Self::SLOTS`] and `from_values`: one home for
/// each fact the bindings and the state need.
macro_rules! hyper_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            slots: [$($slot:literal),*],
            $(@betas($b1:ident, $b2:ident),)?
            $($field:ident: $ty:ty = $key:literal,)*
            $(@fixed[$($fixed:ident),*],)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            pub lr: f64,
            $(pub $b1: f64, pub $b2: f64,)?
            $(pub $field: $ty,)*
            $($(pub $fixed: bool,)*)?
        }

        impl $name {
            /// The param-group entries read besides `lr`, in the order of `from_values`.
            pub const FIELDS: &'static [Field] = &[
                $(Field { key: hyper_params!(@betas $b1), kind: FieldKind::Pair },)?
                $(Field { key: $key, kind: <$ty as FieldType>::KIND },)*
            ];

            /// State buffer names, in slot order, as torch names them in `optimizer.state`.
            pub const SLOTS: &'static [&'static str] = &[$($slot),*];

            /// The hyper-parameters from `lr` and the values read for [`Self::FIELDS`].
            pub fn from_values(lr: f64, values: &[Value]) -> Self {
                let mut values = values.iter().copied();
                let mut next = || values.next().expect("one value per field");
                $(let (($b1, $b2),) = (match next() {
                    Value::Pair(a, b) => (a, b),
                    v => unreachable!("betas read as {v:?}"),
                },);)?
                $(let $field = <$ty as FieldType>::from_value(next());)*
                $name {
                    lr,
                    $($b1, $b2,)?
                    $($field,)*
                    $($($fixed: false,)*)?
                }
            }
        }
    };
    (@betas $b1:ident) => {
        "betas"
    };
}

/// What each optimizer's hyper-parameter struct says about its state and its ranges;
/// [`Hyper`] dispatches to it, so an optimizer's facts sit beside its struct.
pub trait HyperParams: Copy {
    /// The name of the slot holding an EWA (or sum) of squared gradients, if any.
    const SECOND_MOMENT: Option<&'static str> = None;
    /// The names of the per-tensor scalar state the algorithm keeps, at most
    /// [`MAX_SCALARS`] (NAdam's running product of momentum coefficients; ASGD's `eta`
    /// and `mu`).
    const SCALARS: &'static [&'static str] = &[];

    /// Which state slots the next step reads or writes.
    fn slots_used(&self) -> [bool; MAX_SLOTS];

    /// The value newly created state slot `slot` starts at (torch: zero, but Adagrad's
    /// sum starts at `initial_accumulator_value` and Rprop's step sizes at `lr`).
    fn slot_initial_value(&self, _slot: usize) -> f64 {
        0.0
    }

    /// Checks every hyper-parameter against its range (errors name `c`'s param group).
    fn validate(&self, c: &Checker) -> Result<()>;
}

hyper_params! {
    /// Plain SGD, optionally with (Nesterov) momentum, as `torch.optim.SGD`.
    pub struct Sgd {
        slots: ["momentum_buffer"],
        momentum: f64 = "momentum",
        dampening: f64 = "dampening",
        nesterov: bool = "nesterov",
        weight_decay: f64 = "weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Sgd {
    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [self.momentum != 0.0, false, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.unit("momentum", self.momentum)?;
        c.range(
            "dampening",
            self.dampening,
            (0.0..=1.0).contains(&self.dampening),
            "a number in [0, 1]",
        )?;
        c.weight_decay(self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(c.err(
                "nesterov",
                "True",
                "nesterov=True only with momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }
}

hyper_params! {
    /// The lecture's momentum: `v = beta * v + (1 - beta) * g; p -= lr * v`.
    pub struct Momentum {
        slots: ["velocity"],
        beta: f64 = "beta",
    }
}

impl HyperParams for Momentum {
    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.unit("beta", self.beta)
    }
}

hyper_params! {
    /// `torch.optim.RMSprop`.
    pub struct RmsProp {
        slots: ["square_avg", "momentum_buffer", "grad_avg"],
        alpha: f64 = "alpha",
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        momentum: f64 = "momentum",
        centered: bool = "centered",
        maximize: bool = "maximize",
    }
}

impl HyperParams for RmsProp {
    const SECOND_MOMENT: Option<&'static str> = Some("square_avg");

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, self.momentum > 0.0, self.centered]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.unit("alpha", self.alpha)?;
        c.eps(self.eps)?;
        c.weight_decay(self.weight_decay)?;
        c.unit("momentum", self.momentum)
    }
}

impl RmsProp {
    /// `torch.optim.RMSprop`'s defaults: lr 1e-2, alpha 0.99, eps 1e-8.
    pub const TORCH: RmsProp = RmsProp {
        lr: 1e-2,
        alpha: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.0,
        centered: false,
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.Adam` (`decoupled = false`, L2 weight decay added to the gradient) and
    /// `torch.optim.AdamW` (`decoupled = true`, `p *= 1 - lr * weight_decay`; set by the
    /// registry's "adamw").
    pub struct Adam {
        slots: ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        @betas(beta1, beta2),
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        amsgrad: bool = "amsgrad",
        maximize: bool = "maximize",
        @fixed[decoupled],
    }
}

impl HyperParams for Adam {
    const SECOND_MOMENT: Option<&'static str> = Some("exp_avg_sq");

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, self.amsgrad]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.adam_like(
            self.lr,
            (self.beta1, self.beta2),
            self.eps,
            self.weight_decay,
        )
    }
}

impl Adam {
    /// `torch.optim.Adam`'s defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub const TORCH: Adam = Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        amsgrad: false,
        maximize: false,
        decoupled: false,
    };
}

hyper_params! {
    /// `torch.optim.Adagrad`.
    pub struct Adagrad {
        slots: ["sum"],
        lr_decay: f64 = "lr_decay",
        weight_decay: f64 = "weight_decay",
        initial_accumulator_value: f64 = "initial_accumulator_value",
        eps: f64 = "eps",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Adagrad {
    const SECOND_MOMENT: Option<&'static str> = Some("sum");

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn slot_initial_value(&self, _slot: usize) -> f64 {
        self.initial_accumulator_value
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.non_negative("lr_decay", self.lr_decay)?;
        c.weight_decay(self.weight_decay)?;
        c.non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        c.eps(self.eps)
    }
}

impl Adagrad {
    /// `torch.optim.Adagrad`'s defaults: lr 1e-2, eps 1e-10.
    pub const TORCH: Adagrad = Adagrad {
        lr: 1e-2,
        lr_decay: 0.0,
        weight_decay: 0.0,
        initial_accumulator_value: 0.0,
        eps: 1e-10,
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.Adadelta`.
    pub struct Adadelta {
        slots: ["square_avg", "acc_delta"],
        rho: f64 = "rho",
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Adadelta {
    const SECOND_MOMENT: Option<&'static str> = Some("square_avg");

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.range(
            "rho",
            self.rho,
            (0.0..=1.0).contains(&self.rho),
            "a number in [0, 1]",
        )?;
        c.eps(self.eps)?;
        c.weight_decay(self.weight_decay)
    }
}

impl Adadelta {
    /// `torch.optim.Adadelta`'s defaults: lr 1, rho 0.9, eps 1e-6.
    pub const TORCH: Adadelta = Adadelta {
        lr: 1.0,
        rho: 0.9,
        eps: 1e-6,
        weight_decay: 0.0,
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.Adamax`.
    pub struct Adamax {
        slots: ["exp_avg", "exp_inf"],
        @betas(beta1, beta2),
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Adamax {
    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.adam_like(
            self.lr,
            (self.beta1, self.beta2),
            self.eps,
            self.weight_decay,
        )
    }
}

impl Adamax {
    /// `torch.optim.Adamax`'s defaults: lr 2e-3, betas (0.9, 0.999), eps 1e-8.
    pub const TORCH: Adamax = Adamax {
        lr: 2e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.NAdam`.
    pub struct NAdam {
        slots: ["exp_avg", "exp_avg_sq"],
        @betas(beta1, beta2),
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        momentum_decay: f64 = "momentum_decay",
        decoupled: bool = "decoupled_weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for NAdam {
    const SECOND_MOMENT: Option<&'static str> = Some("exp_avg_sq");
    const SCALARS: &'static [&'static str] = &["mu_product"];

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.adam_like(
            self.lr,
            (self.beta1, self.beta2),
            self.eps,
            self.weight_decay,
        )?;
        c.non_negative("momentum_decay", self.momentum_decay)
    }
}

impl NAdam {
    /// `torch.optim.NAdam`'s defaults: lr 2e-3, betas (0.9, 0.999), eps 1e-8, `momentum_decay` 4e-3.
    pub const TORCH: NAdam = NAdam {
        lr: 2e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum_decay: 4e-3,
        decoupled: false,
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.RAdam`.
    pub struct RAdam {
        slots: ["exp_avg", "exp_avg_sq"],
        @betas(beta1, beta2),
        eps: f64 = "eps",
        weight_decay: f64 = "weight_decay",
        decoupled: bool = "decoupled_weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for RAdam {
    const SECOND_MOMENT: Option<&'static str> = Some("exp_avg_sq");

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.adam_like(
            self.lr,
            (self.beta1, self.beta2),
            self.eps,
            self.weight_decay,
        )
    }
}

impl RAdam {
    /// `torch.optim.RAdam`'s defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
    pub const TORCH: RAdam = RAdam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        maximize: false,
    };
}

hyper_params! {
    /// Lion (Chen et al. 2023), as optax defines it: `p -= lr * (sign(c) + weight_decay * p)`.
    pub struct Lion {
        slots: ["exp_avg"],
        @betas(beta1, beta2),
        weight_decay: f64 = "weight_decay",
    }
}

impl HyperParams for Lion {
    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.betas(self.beta1, self.beta2)?;
        c.weight_decay(self.weight_decay)
    }
}

hyper_params! {
    /// `torch.optim.Rprop`: each element's step size grows by `etas.1` while its gradient
    /// keeps its sign and shrinks by `etas.0` when the sign flips, within `step_sizes`.
    pub struct Rprop {
        slots: ["prev", "step_size"],
        etas: (f64, f64) = "etas",
        step_sizes: (f64, f64) = "step_sizes",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Rprop {
    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    /// `prev` starts at zero, `step_size` at the learning rate (torch's `full_like(p, lr)`).
    fn slot_initial_value(&self, slot: usize) -> f64 {
        if slot == 1 {
            self.lr
        } else {
            0.0
        }
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        let (minus, plus) = self.etas;
        if !(minus > 0.0 && minus < 1.0 && plus > 1.0 && plus.is_finite()) {
            return Err(c.err(
                "etas",
                &format!("({minus:?}, {plus:?})"),
                "(etaminus, etaplus) with 0 < etaminus < 1 < etaplus, finite",
            ));
        }
        let (lo, hi) = self.step_sizes;
        if !(lo >= 0.0 && lo <= hi && !hi.is_nan()) {
            return Err(c.err(
                "step_sizes",
                &format!("({lo:?}, {hi:?})"),
                "(min, max) with 0 <= min <= max",
            ));
        }
        Ok(())
    }
}

impl Rprop {
    /// `torch.optim.Rprop`'s defaults: lr 1e-2, etas (0.5, 1.2), step sizes (1e-6, 50).
    pub const TORCH: Rprop = Rprop {
        lr: 1e-2,
        etas: (0.5, 1.2),
        step_sizes: (1e-6, 50.0),
        maximize: false,
    };
}

hyper_params! {
    /// `torch.optim.ASGD`: SGD with a decaying step `eta` and a running average `ax` of
    /// the iterates (Polyak-Ruppert averaging from step `t0` on).
    pub struct Asgd {
        slots: ["ax"],
        lambd: f64 = "lambd",
        alpha: f64 = "alpha",
        t0: f64 = "t0",
        weight_decay: f64 = "weight_decay",
        maximize: bool = "maximize",
    }
}

impl HyperParams for Asgd {
    const SCALARS: &'static [&'static str] = &["eta", "mu"];

    fn slots_used(&self) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn validate(&self, c: &Checker) -> Result<()> {
        c.lr(self.lr)?;
        c.non_negative("lambd", self.lambd)?;
        c.range(
            "alpha",
            self.alpha,
            self.alpha.is_finite(),
            "a finite number",
        )?;
        c.range("t0", self.t0, self.t0.is_finite(), "a finite number")?;
        c.weight_decay(self.weight_decay)
    }
}

impl Asgd {
    /// `torch.optim.ASGD`'s defaults: lr 1e-2, lambd 1e-4, alpha 0.75, t0 1e6.
    pub const TORCH: Asgd = Asgd {
        lr: 1e-2,
        lambd: 1e-4,
        alpha: 0.75,
        t0: 1e6,
        weight_decay: 0.0,
        maximize: false,
    };

    /// `eta` and `mu` after update `t` (torch computes them in `f64` and keeps them as
    /// float32 scalar tensors, the default dtype): `lr / (1 + lambd * lr * t) ** alpha`
    /// and `1 / max(1, t - t0)`.
    pub fn scalars_after(&self, t: u64) -> [f64; MAX_SCALARS] {
        let t = t as f64;
        let eta = self.lr / (1.0 + self.lambd * self.lr * t).powf(self.alpha);
        let mu = 1.0 / (t - self.t0).max(1.0);
        [f64::from(eta as f32), f64::from(mu as f32)]
    }
}

/// One optimizer the bindings can build: the name Python gives, the entries it reads,
/// and the [`Hyper`] it makes of them.
pub struct Entry {
    pub name: &'static str,
    pub algorithm: Algorithm,
    pub fields: &'static [Field],
    pub build: fn(f64, &[Value]) -> Hyper,
}

/// Defines, from one line per optimizer (`Struct: "name" [{ field: value }], ...;`), the
/// [`Hyper`] and [`Algorithm`] enums, their dispatch to each struct's [`HyperParams`], and
/// the [`OPTIMIZERS`] registry (a name with `{ ... }` builds the struct with those fields
/// set, as "adamw" sets Adam's `decoupled`).
macro_rules! optimizers {
    ($($variant:ident: $($name:literal $({ $($field:ident: $value:expr),* })?),+;)*) => {
        /// The hyper-parameters of one param group.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Hyper {
            $($variant($variant),)*
        }

        /// Which optimizer; fixes the names of the per-tensor state.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Algorithm {
            $($variant,)*
        }

        /// Every optimizer, by name: the one registry the bindings read.
        pub const OPTIMIZERS: &[Entry] = &[
            $($(Entry {
                name: $name,
                algorithm: Algorithm::$variant,
                fields: $variant::FIELDS,
                build: |lr, v| {
                    #[allow(unused_mut)]
                    let mut h = $variant::from_values(lr, v);
                    $($(h.$field = $value;)*)?
                    Hyper::$variant(h)
                },
            },)+)*
        ];

        impl Algorithm {
            /// State buffer names, in slot order, as torch names them in `optimizer.state`.
            pub fn slot_names(self) -> &'static [&'static str] {
                match self {
                    $(Algorithm::$variant => $variant::SLOTS,)*
                }
            }

            /// The name of the slot holding an EWA (or sum) of squared gradients, if any.
            pub fn second_moment(self) -> Option<&'static str> {
                match self {
                    $(Algorithm::$variant => <$variant as HyperParams>::SECOND_MOMENT,)*
                }
            }

            /// The names of the per-tensor scalar state, in order (NAdam's running
            /// product of momentum coefficients; ASGD's `eta` and `mu`).
            pub fn scalar_names(self) -> &'static [&'static str] {
                match self {
                    $(Algorithm::$variant => <$variant as HyperParams>::SCALARS,)*
                }
            }
        }

        impl Hyper {
            pub fn algorithm(&self) -> Algorithm {
                match self {
                    $(Hyper::$variant(_) => Algorithm::$variant,)*
                }
            }

            /// Sets the learning rate (a schedule's value for the coming update).
            pub fn set_lr(&mut self, lr: f64) {
                match self {
                    $(Hyper::$variant(h) => h.lr = lr,)*
                }
            }

            /// Which state slots the next step reads or writes.
            pub fn slots_used(&self) -> [bool; MAX_SLOTS] {
                match self {
                    $(Hyper::$variant(h) => h.slots_used(),)*
                }
            }

            /// The value newly created state slot `slot` starts at.
            pub fn slot_initial_value(&self, slot: usize) -> f64 {
                match self {
                    $(Hyper::$variant(h) => h.slot_initial_value(slot),)*
                }
            }

            /// Checks every hyper-parameter of param group `group` against its range.
            pub fn validate(&self, group: usize) -> Result<()> {
                let c = Checker { group };
                match self {
                    $(Hyper::$variant(h) => h.validate(&c),)*
                }
            }
        }
    };
}

optimizers! {
    Sgd: "sgd";
    Momentum: "momentum";
    RmsProp: "rmsprop";
    Adam: "adam", "adamw" { decoupled: true };
    Adagrad: "adagrad";
    Adadelta: "adadelta";
    Adamax: "adamax";
    NAdam: "nadam";
    RAdam: "radam";
    Lion: "lion";
    Rprop: "rprop";
    Asgd: "asgd";
}

/// The registry's entry for `name`.
pub fn optimizer(name: &str) -> Option<&'static Entry> {
    OPTIMIZERS.iter().find(|e| e.name == name)
}

/// At most this many per-tensor scalars ([`HyperParams::SCALARS`]).
pub const MAX_SCALARS: usize = 2;

/// At most this many state buffers per tensor.
pub const MAX_SLOTS: usize = 3;

/// A tensor's state slots, one per [`MAX_SLOTS`]; unused ones are empty.
pub type Slots<'a, S> = [&'a mut [S]; MAX_SLOTS];

/// [`Slots`] split at element `at`: the first `at` elements of each slot, and the rest
/// (an empty slot stays empty in both).
pub fn split_slots<S>(slots: Slots<'_, S>, at: usize) -> (Slots<'_, S>, Slots<'_, S>) {
    let mut head: Slots<'_, S> = Default::default();
    let mut tail: Slots<'_, S> = Default::default();
    for (i, s) in slots.into_iter().enumerate() {
        (head[i], tail[i]) = s.split_at_mut(at.min(s.len()));
    }
    (head, tail)
}

/// Checks a learning rate of param group `group` (a schedule's value for the coming update)
/// as [`Hyper::validate`] checks `lr`.
pub fn check_lr(group: usize, lr: f64) -> Result<()> {
    Checker { group }.lr(lr)
}

/// Checks values against ranges; its errors name the param group.
pub struct Checker {
    group: usize,
}

impl Checker {
    pub fn err(&self, name: &'static str, value: &str, expected: &'static str) -> Error {
        Error::Hyper {
            group: self.group,
            name,
            value: value.to_string(),
            expected,
        }
    }

    pub fn range(
        &self,
        name: &'static str,
        v: f64,
        ok: bool,
        expected: &'static str,
    ) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(name, &format!("{v:?}"), expected))
        }
    }

    pub fn lr(&self, v: f64) -> Result<()> {
        self.range("lr", v, v.is_finite() && v >= 0.0, "a finite number >= 0")
    }

    pub fn eps(&self, v: f64) -> Result<()> {
        self.range("eps", v, v.is_finite() && v > 0.0, "a finite number > 0")
    }

    pub fn weight_decay(&self, v: f64) -> Result<()> {
        self.non_negative("weight_decay", v)
    }

    pub fn non_negative(&self, name: &'static str, v: f64) -> Result<()> {
        self.range(name, v, v.is_finite() && v >= 0.0, "a finite number >= 0")
    }

    pub fn betas(&self, beta1: f64, beta2: f64) -> Result<()> {
        self.unit("betas[0]", beta1)?;
        self.unit("betas[1]", beta2)
    }

    /// lr, betas, eps and weight decay: the shared hyper-parameters of the Adam family.
    pub fn adam_like(&self, lr: f64, (beta1, beta2): (f64, f64), eps: f64, wd: f64) -> Result<()> {
        self.lr(lr)?;
        self.betas(beta1, beta2)?;
        self.eps(eps)?;
        self.weight_decay(wd)
    }

    /// A decay rate of an exponentially weighted average.
    pub fn unit(&self, name: &'static str, v: f64) -> Result<()> {
        self.range(name, v, (0.0..1.0).contains(&v), "a number in [0, 1)")
    }
}

#[cfg(test)]
mod tests;
