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

pub(crate) mod params;
pub use params::*;

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
