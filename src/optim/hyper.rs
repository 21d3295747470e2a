//! Hyper-parameters of each optimizer, with torch.optim's names, and their valid ranges.
//!
//! Validation lives here, once, and runs both when an optimizer is built and before every
//! step (a user may edit `param_groups` between steps); nothing is modified by a step whose
//! hyper-parameters are invalid.

use crate::error::{Error, Result};

/// Plain SGD, optionally with (Nesterov) momentum, as `torch.optim.SGD`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub maximize: bool,
}

/// The lecture's momentum: `v = beta * v + (1 - beta) * g; p -= lr * v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    pub lr: f64,
    pub beta: f64,
}

/// `torch.optim.RMSprop`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
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

/// `torch.optim.Adam` (`decoupled = false`, L2 weight decay added to the gradient) and
/// `torch.optim.AdamW` (`decoupled = true`, `p *= 1 - lr * weight_decay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    pub decoupled: bool,
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

/// `torch.optim.Adagrad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adagrad {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub initial_accumulator_value: f64,
    pub eps: f64,
    pub maximize: bool,
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

/// `torch.optim.Adadelta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adadelta {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
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

/// `torch.optim.Adamax`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adamax {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
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

/// `torch.optim.NAdam`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NAdam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub decoupled: bool,
    pub maximize: bool,
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

/// `torch.optim.RAdam`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RAdam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    pub maximize: bool,
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

/// Lion (Chen et al. 2023), as optax defines it: `p -= lr * (sign(c) + weight_decay * p)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lion {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
}

/// The hyper-parameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyper {
    Sgd(Sgd),
    Momentum(Momentum),
    RmsProp(RmsProp),
    Adam(Adam),
    Adagrad(Adagrad),
    Adadelta(Adadelta),
    Adamax(Adamax),
    NAdam(NAdam),
    RAdam(RAdam),
    Lion(Lion),
}

/// Which optimizer; fixes the names of the per-tensor state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sgd,
    Momentum,
    RmsProp,
    Adam,
    Adagrad,
    Adadelta,
    Adamax,
    NAdam,
    RAdam,
    Lion,
}

impl Algorithm {
    /// State buffer names, in slot order, as torch names them in `optimizer.state`.
    pub fn slot_names(self) -> &'static [&'static str] {
        match self {
            Algorithm::Sgd => &["momentum_buffer"],
            Algorithm::Momentum => &["velocity"],
            Algorithm::RmsProp => &["square_avg", "momentum_buffer", "grad_avg"],
            Algorithm::Adam => &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
            Algorithm::Adagrad => &["sum"],
            Algorithm::Adadelta => &["square_avg", "acc_delta"],
            Algorithm::Adamax => &["exp_avg", "exp_inf"],
            Algorithm::NAdam | Algorithm::RAdam => &["exp_avg", "exp_avg_sq"],
            Algorithm::Lion => &["exp_avg"],
        }
    }

    /// The name of the slot holding an EWA (or sum) of squared gradients, if any.
    pub fn second_moment(self) -> Option<&'static str> {
        match self {
            Algorithm::Sgd | Algorithm::Momentum | Algorithm::Adamax | Algorithm::Lion => None,
            Algorithm::RmsProp | Algorithm::Adadelta => Some("square_avg"),
            Algorithm::Adagrad => Some("sum"),
            Algorithm::Adam | Algorithm::NAdam | Algorithm::RAdam => Some("exp_avg_sq"),
        }
    }

    /// The name of the per-tensor scalar state, if the algorithm keeps one (NAdam's
    /// running product of momentum coefficients).
    pub fn scalar_name(self) -> Option<&'static str> {
        match self {
            Algorithm::NAdam => Some("mu_product"),
            _ => None,
        }
    }
}

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

impl Hyper {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hyper::Sgd(_) => Algorithm::Sgd,
            Hyper::Momentum(_) => Algorithm::Momentum,
            Hyper::RmsProp(_) => Algorithm::RmsProp,
            Hyper::Adam(_) => Algorithm::Adam,
            Hyper::Adagrad(_) => Algorithm::Adagrad,
            Hyper::Adadelta(_) => Algorithm::Adadelta,
            Hyper::Adamax(_) => Algorithm::Adamax,
            Hyper::NAdam(_) => Algorithm::NAdam,
            Hyper::RAdam(_) => Algorithm::RAdam,
            Hyper::Lion(_) => Algorithm::Lion,
        }
    }

    /// Sets the learning rate (a schedule's value for the coming update).
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Hyper::Sgd(h) => h.lr = lr,
            Hyper::Momentum(h) => h.lr = lr,
            Hyper::RmsProp(h) => h.lr = lr,
            Hyper::Adam(h) => h.lr = lr,
            Hyper::Adagrad(h) => h.lr = lr,
            Hyper::Adadelta(h) => h.lr = lr,
            Hyper::Adamax(h) => h.lr = lr,
            Hyper::NAdam(h) => h.lr = lr,
            Hyper::RAdam(h) => h.lr = lr,
            Hyper::Lion(h) => h.lr = lr,
        }
    }

    /// Which state slots the next step reads or writes.
    pub fn slots_used(&self) -> [bool; MAX_SLOTS] {
        match self {
            Hyper::Sgd(h) => [h.momentum != 0.0, false, false],
            Hyper::Momentum(_) | Hyper::Adagrad(_) | Hyper::Lion(_) => [true, false, false],
            Hyper::RmsProp(h) => [true, h.momentum > 0.0, h.centered],
            Hyper::Adam(h) => [true, true, h.amsgrad],
            Hyper::Adadelta(_) | Hyper::Adamax(_) | Hyper::NAdam(_) | Hyper::RAdam(_) => {
                [true, true, false]
            }
        }
    }

    /// The value a newly created state slot starts at (torch: zero, but Adagrad's sum starts
    /// at `initial_accumulator_value`).
    pub fn slot_initial_value(&self) -> f64 {
        match self {
            Hyper::Adagrad(h) => h.initial_accumulator_value,
            _ => 0.0,
        }
    }

    /// Checks every hyper-parameter of param group `group` against its range.
    pub fn validate(&self, group: usize) -> Result<()> {
        let c = Checker { group };
        match self {
            Hyper::Sgd(h) => {
                c.lr(h.lr)?;
                c.unit("momentum", h.momentum)?;
                c.range(
                    "dampening",
                    h.dampening,
                    (0.0..=1.0).contains(&h.dampening),
                    "a number in [0, 1]",
                )?;
                c.weight_decay(h.weight_decay)?;
                if h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0) {
                    return Err(c.err(
                        "nesterov",
                        "True",
                        "nesterov=True only with momentum > 0 and dampening = 0",
                    ));
                }
                Ok(())
            }
            Hyper::Momentum(h) => {
                c.lr(h.lr)?;
                c.unit("beta", h.beta)
            }
            Hyper::RmsProp(h) => {
                c.lr(h.lr)?;
                c.unit("alpha", h.alpha)?;
                c.eps(h.eps)?;
                c.weight_decay(h.weight_decay)?;
                c.unit("momentum", h.momentum)
            }
            Hyper::Adam(h) => c.adam_like(h.lr, (h.beta1, h.beta2), h.eps, h.weight_decay),
            Hyper::Adagrad(h) => {
                c.lr(h.lr)?;
                c.non_negative("lr_decay", h.lr_decay)?;
                c.weight_decay(h.weight_decay)?;
                c.non_negative("initial_accumulator_value", h.initial_accumulator_value)?;
                c.eps(h.eps)
            }
            Hyper::Adadelta(h) => {
                c.lr(h.lr)?;
                c.range(
                    "rho",
                    h.rho,
                    (0.0..=1.0).contains(&h.rho),
                    "a number in [0, 1]",
                )?;
                c.eps(h.eps)?;
                c.weight_decay(h.weight_decay)
            }
            Hyper::Adamax(h) => c.adam_like(h.lr, (h.beta1, h.beta2), h.eps, h.weight_decay),
            Hyper::NAdam(h) => {
                c.adam_like(h.lr, (h.beta1, h.beta2), h.eps, h.weight_decay)?;
                c.non_negative("momentum_decay", h.momentum_decay)
            }
            Hyper::RAdam(h) => c.adam_like(h.lr, (h.beta1, h.beta2), h.eps, h.weight_decay),
            Hyper::Lion(h) => {
                c.lr(h.lr)?;
                c.betas(h.beta1, h.beta2)?;
                c.weight_decay(h.weight_decay)
            }
        }
    }
}

struct Checker {
    group: usize,
}

impl Checker {
    fn err(&self, name: &'static str, value: &str, expected: &'static str) -> Error {
        Error::Hyper {
            group: self.group,
            name,
            value: value.to_string(),
            expected,
        }
    }

    fn range(&self, name: &'static str, v: f64, ok: bool, expected: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(name, &format!("{v:?}"), expected))
        }
    }

    fn lr(&self, v: f64) -> Result<()> {
        self.range("lr", v, v.is_finite() && v >= 0.0, "a finite number >= 0")
    }

    fn eps(&self, v: f64) -> Result<()> {
        self.range("eps", v, v.is_finite() && v > 0.0, "a finite number > 0")
    }

    fn weight_decay(&self, v: f64) -> Result<()> {
        self.non_negative("weight_decay", v)
    }

    fn non_negative(&self, name: &'static str, v: f64) -> Result<()> {
        self.range(name, v, v.is_finite() && v >= 0.0, "a finite number >= 0")
    }

    fn betas(&self, beta1: f64, beta2: f64) -> Result<()> {
        self.unit("betas[0]", beta1)?;
        self.unit("betas[1]", beta2)
    }

    /// lr, betas, eps and weight decay: the shared hyper-parameters of the Adam family.
    fn adam_like(&self, lr: f64, (beta1, beta2): (f64, f64), eps: f64, wd: f64) -> Result<()> {
        self.lr(lr)?;
        self.betas(beta1, beta2)?;
        self.eps(eps)?;
        self.weight_decay(wd)
    }

    /// A decay rate of an exponentially weighted average.
    fn unit(&self, name: &'static str, v: f64) -> Result<()> {
        self.range(name, v, (0.0..1.0).contains(&v), "a number in [0, 1)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam() -> Adam {
        Adam::TORCH
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Hyper::Adam(adam()).validate(0).is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_parameter_and_group() {
        let bad = [
            Adam { lr: -1.0, ..adam() },
            Adam {
                lr: f64::NAN,
                ..adam()
            },
            Adam {
                beta1: 1.0,
                ..adam()
            },
            Adam {
                beta2: -0.1,
                ..adam()
            },
            Adam { eps: 0.0, ..adam() },
            Adam {
                weight_decay: -1e-3,
                ..adam()
            },
        ];
        let names = ["lr", "lr", "betas[0]", "betas[1]", "eps", "weight_decay"];
        for (h, want) in bad.iter().zip(names) {
            match Hyper::Adam(*h).validate(2) {
                Err(Error::Hyper { group: 2, name, .. }) => assert_eq!(name, want),
                other => panic!("{h:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn nesterov_needs_momentum_and_no_dampening() {
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: true,
            weight_decay: 0.0,
            maximize: false,
        };
        assert!(Hyper::Sgd(sgd).validate(0).is_err());
        assert!(Hyper::Sgd(Sgd {
            momentum: 0.9,
            ..sgd
        })
        .validate(0)
        .is_ok());
        let damped = Sgd {
            momentum: 0.9,
            dampening: 0.1,
            ..sgd
        };
        assert!(Hyper::Sgd(damped).validate(0).is_err());
    }
}
