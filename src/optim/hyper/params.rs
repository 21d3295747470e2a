//! The hyper-parameters of each optimizer: one struct per algorithm (torch.optim's names and
//! defaults), its field table for the bindings and its valid ranges.

use super::{
    Checker, Field, FieldKind, FieldType, HyperParams, Result, Value, MAX_SCALARS, MAX_SLOTS,
};

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
