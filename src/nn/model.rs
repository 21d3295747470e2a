//! A network's shape and functions ([`Mlp`], [`Activation`], [`Output`]), its batches
//! ([`Inputs`], [`Targets`]) and the checks of its parameters and batches.

use std::ops::Range;

use super::NnFloat;
use crate::error::{try_filled, Error, Result};

/// A hidden-layer activation `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(z, 0)`.
    Relu,
    /// `z` if `z > 0` else `0.01 z` (torch's default slope).
    LeakyRelu,
    Tanh,
    /// `1 / (1 + exp(-z))`.
    Sigmoid,
    Identity,
}

/// Slope of `leaky_relu` for `z <= 0`.
pub const LEAKY_SLOPE: f64 = 0.01;

impl Activation {
    /// Every hidden activation by name: the one list that parsing, the bindings' error, the
    /// Python layer (`ferroptim.nn.HIDDEN`) and the tests read.
    pub const ALL: [(&'static str, Activation); 5] = [
        ("relu", Activation::Relu),
        ("leaky_relu", Activation::LeakyRelu),
        ("tanh", Activation::Tanh),
        ("sigmoid", Activation::Sigmoid),
        ("identity", Activation::Identity),
    ];

    /// The activation named `s` ([`Self::ALL`], or scikit-learn's "logistic" for sigmoid).
    pub fn parse(s: &str) -> Option<Self> {
        if s == "logistic" {
            return Some(Activation::Sigmoid);
        }
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, a)| a)
    }
}

/// The output layer and its cost (`m` rows, `k` outputs; `a` the outputs, `z` the logits
/// `Z_L`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Sigmoid outputs, binary cross-entropy summed over outputs, mean over examples:
    /// `J = 1/m sum_i sum_k softplus(z) - y z`.
    Sigmoid,
    /// Softmax, categorical cross-entropy: `J = -1/m sum_i sum_k y_ik log p_ik`.
    Softmax,
    /// Identity, mean squared error over every element, halved (scikit-learn's
    /// `squared_loss`): `J = 1/(2 m k) sum (a - y)^2`.
    Identity,
    /// Identity, Huber loss of the residual `r = a - y` at [`Mlp::huber_delta`] `d`, mean
    /// over every element (torch's `HuberLoss(delta=d)`): `J = 1/(m k) sum h(r)` with
    /// `h(r) = r^2 / 2` for `|r| < d`, else `d (|r| - d / 2)`; `dJ/dZ_L = clip(r, -d, d) /
    /// (m k)`.
    Huber,
    /// `a = exp(z)` (log link), half Poisson deviance summed over outputs, mean over
    /// examples (scikit-learn's `MLPRegressor(loss="poisson")`, constant terms included):
    /// `J = 1/m sum_i sum_k (y log(y / a) - y + a)` (`0 log 0 = 0`), computed as
    /// `y (log y - z) - y + exp(z)`; `dJ/dZ_L = (a - y) / m`. Targets must be `>= 0`.
    Poisson,
}

impl Output {
    /// Every output by the name the bindings take (scikit-learn's "logistic" is also read
    /// as sigmoid).
    pub const ALL: [(&'static str, Output); 5] = [
        ("sigmoid", Output::Sigmoid),
        ("softmax", Output::Softmax),
        ("identity", Output::Identity),
        ("huber", Output::Huber),
        ("poisson", Output::Poisson),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        if s == "logistic" {
            return Some(Output::Sigmoid);
        }
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, o)| o)
    }
}

/// Targets of one batch, row `i` for example `i`.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, T> {
    /// `(rows, k)` values: 0/1 (or probabilities) for sigmoid, one-hot (or probabilities)
    /// for softmax, real values for identity.
    Dense(&'a [T]),
    /// Class indices in `[0, k)` for softmax, one per row.
    Labels(&'a [i64]),
}

/// A network's shape and functions (no parameters: those live in the caller's arrays).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub sizes: Vec<usize>,
    /// The activation of each hidden layer (`layers - 1` of them): `hidden[l - 1]` for
    /// layer `l` ([`Mlp::activation`]).
    pub hidden: Vec<Activation>,
    pub output: Output,
    /// The Huber loss' threshold `d > 0` ([`Output::Huber`]; 1 by default, unused by the
    /// other outputs).
    pub huber_delta: f64,
    /// L2 penalty `alpha / 2 * sum_l ||W_l||^2 / m` (biases are not penalised).
    pub alpha: f64,
    /// The dropout rate of each hidden layer (`layers - 1` rates in `[0, 1)`; empty: none).
    /// Training only, and only when a [`DropKey`] is given: see [`Mlp::keep`].
    pub dropout: Vec<f64>,
    /// Batch normalization of every hidden layer (None: none); see [`BatchNorm`].
    pub batch_norm: Option<BatchNorm>,
}

/// Batch normalization of each hidden layer before its activation, as the course places it
/// and torch's `nn.BatchNorm1d` computes it: `Z_l = A_{l-1} W_l` (no bias: `beta_l` takes
/// its role), `Z~_l = gamma_l (Z_l - mu) / sqrt(var + eps) + beta_l`, `A_l = g(Z~_l)`.
/// In training `mu` and `var` are the batch's column mean and biased variance (summed in
/// f64 in row order), and the running statistics move towards them:
/// `running_mean = momentum mu + (1 - momentum) running_mean`, `running_var = momentum
/// var m / (m - 1) + (1 - momentum) running_var` (the unbiased variance); in inference the
/// running statistics replace them ([`Stats`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// The running statistics' update rate, in [0, 1] (torch's default 0.1).
    pub momentum: f64,
    /// Added to the variance, > 0 (torch's default 1e-5).
    pub eps: f64,
}

/// Which statistics the batch-normalized layers use (one `(mean, var)` pair of `n_l`
/// values per hidden layer: `[mean_1, var_1, mean_2, var_2, ...]`; none without batch norm).
#[derive(Debug)]
pub enum Stats<'a, 'b, T> {
    /// Inference: the running statistics given.
    Running(&'a [&'b [T]]),
    /// Training: the batch's statistics (a batch needs at least 2 rows), and the running
    /// statistics given updated with them once the batch's cost is computed.
    Batch(Option<&'a mut [&'b mut [T]]>),
}

/// Which masks a batch's dropout draws: the model's `seed`, the `epoch` and the batch's
/// `position` in it. With the row of the batch, the layer and the unit, they are all the
/// mask's bit depends on ([`Mlp::keep`]): the same bits at every thread count, in every
/// cut of the batch into blocks, and on resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropKey {
    pub seed: u64,
    pub epoch: u64,
    pub position: u64,
}

impl DropKey {
    /// The key of hidden layer `l` (1-based) and row `row` of the batch: [`Mlp::keep`]
    /// hashes it with the unit.
    pub fn row_key(&self, l: usize, row: usize) -> u64 {
        use crate::data::permutation::{mix, GAMMA};
        let mut h = mix(self.seed.wrapping_add(GAMMA));
        for v in [self.epoch, self.position, l as u64, row as u64] {
            h = mix(h ^ mix(v.wrapping_add(1).wrapping_mul(GAMMA)));
        }
        h
    }
}

/// A batch of inputs: `x[i * n_0 + j]` (row-major, `transposed == false`) or
/// `x[j * rows + i]` (the lecture's column layout, `transposed == true`).
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a, T> {
    pub x: &'a [T],
    pub rows: usize,
    pub transposed: bool,
}

/// The inputs of one block: `rows` rows from `x`, which starts at the block's first
/// element, with `(row, column)` strides in elements.
#[derive(Clone, Copy, Debug)]
pub(super) struct Part<'a, T> {
    pub(super) x: &'a [T],
    pub(super) rows: usize,
    pub(super) strides: (isize, isize),
}

impl<'a, T> Inputs<'a, T> {
    /// The rows `r` of inputs with `n` columns.
    pub(super) fn part(self, r: Range<usize>, n: usize) -> Part<'a, T> {
        if self.transposed {
            Part {
                x: &self.x[r.start..],
                rows: r.len(),
                strides: (1, self.rows as isize),
            }
        } else {
            Part {
                x: &self.x[r.start * n..r.end * n],
                rows: r.len(),
                strides: (n as isize, 1),
            }
        }
    }
}

impl<T> Targets<'_, T> {
    /// The rows `r` (`k` values per row when dense).
    pub(super) fn part(self, r: Range<usize>, k: usize) -> Self {
        match self {
            Targets::Dense(y) => Targets::Dense(&y[r.start * k..r.end * k]),
            Targets::Labels(y) => Targets::Labels(&y[r]),
        }
    }

    /// Whether there are `rows` targets of `k` values (or labels).
    fn fits(&self, rows: usize, k: usize) -> bool {
        match self {
            Targets::Dense(y) => y.len() == rows * k,
            Targets::Labels(y) => y.len() == rows,
        }
    }
}

impl Mlp {
    /// Checks the shape and functions: at least one layer, every size >= 1, and at least
    /// two outputs for softmax. Every hidden layer gets the activation `hidden`
    /// ([`Mlp::with_hidden`] sets one per layer).
    pub fn new(sizes: Vec<usize>, hidden: Activation, output: Output, alpha: f64) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::Invalid(format!(
                "layer_sizes must hold at least two sizes, each >= 1, got {sizes:?}"
            )));
        }
        if output == Output::Softmax && sizes[sizes.len() - 1] < 2 {
            return Err(Error::Invalid(
                "output='softmax' needs at least 2 output units; use output='sigmoid' for one"
                    .into(),
            ));
        }
        Self::check_alpha(alpha)?;
        let hidden = vec![hidden; sizes.len() - 2];
        Ok(Mlp {
            sizes,
            hidden,
            output,
            huber_delta: 1.0,
            alpha,
            dropout: Vec::new(),
            batch_norm: None,
        })
    }

    fn check_alpha(alpha: f64) -> Result<()> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::Invalid(format!(
                "alpha must be a finite number >= 0, got {alpha}"
            )));
        }
        Ok(())
    }

    /// Sets the L2 penalty coefficient (a finite number >= 0; unchanged on error).
    pub fn set_alpha(&mut self, alpha: f64) -> Result<()> {
        Self::check_alpha(alpha)?;
        self.alpha = alpha;
        Ok(())
    }

    /// The network with the hidden activations `hidden`: one for every hidden layer, or one
    /// for all of them.
    pub fn with_hidden(mut self, hidden: &[Activation]) -> Result<Self> {
        let n = self.layers() - 1;
        self.hidden = match hidden.len() {
            1 => vec![hidden[0]; n],
            h if h == n => hidden.to_vec(),
            h => {
                return Err(Error::Invalid(format!(
                    "hidden must be one activation or one per hidden layer ({n}), got {h}"
                )))
            }
        };
        Ok(self)
    }

    /// The network with the Huber threshold `delta` (finite, > 0; see [`Output::Huber`]).
    pub fn with_huber_delta(mut self, delta: f64) -> Result<Self> {
        if !(delta.is_finite() && delta > 0.0) {
            return Err(Error::Invalid(format!(
                "huber_delta must be a finite number > 0, got {delta}"
            )));
        }
        self.huber_delta = delta;
        Ok(self)
    }

    /// The activation of hidden layer `l` (1-based, `l < layers`).
    #[inline]
    pub fn activation(&self, l: usize) -> Activation {
        self.hidden[l - 1]
    }

    /// The network with dropout rates `rates`: one for every hidden layer, or one for all
    /// of them; each in `[0, 1)`. All zero (or none) is no dropout.
    pub fn with_dropout(mut self, rates: &[f64]) -> Result<Self> {
        let hidden = self.layers() - 1;
        let rates: Vec<f64> = match rates.len() {
            0 => Vec::new(),
            1 => vec![rates[0]; hidden],
            n if n == hidden => rates.to_vec(),
            n => {
                return Err(Error::Invalid(format!(
                    "dropout must be one rate or one per hidden layer ({hidden}), got {n} rates"
                )))
            }
        };
        if let Some(r) = rates.iter().find(|r| !(**r >= 0.0 && **r < 1.0)) {
            return Err(Error::Invalid(format!(
                "dropout rates must be in [0, 1), got {r}"
            )));
        }
        self.dropout = if rates.iter().all(|&r| r == 0.0) {
            Vec::new()
        } else {
            rates
        };
        Ok(self)
    }

    /// The network with batch normalization of every hidden layer ([`BatchNorm`]):
    /// `momentum` in [0, 1], `eps` finite and > 0; at least one hidden layer.
    pub fn with_batch_norm(mut self, momentum: f64, eps: f64) -> Result<Self> {
        if self.layers() < 2 {
            return Err(Error::Invalid(
                "batch_norm needs at least one hidden layer to normalize".into(),
            ));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::Invalid(format!(
                "batch_norm_momentum must be in [0, 1], got {momentum}"
            )));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::Invalid(format!(
                "batch_norm_eps must be a finite number > 0, got {eps}"
            )));
        }
        self.batch_norm = Some(BatchNorm { momentum, eps });
        Ok(self)
    }

    /// Whether layer `l` (1-based) is batch-normalized: a hidden layer of a network with
    /// batch norm.
    #[inline]
    pub fn norm(&self, l: usize) -> bool {
        self.batch_norm.is_some() && l < self.layers()
    }

    /// The index of `W_l` among the parameters: `W_l, b_l` per layer, or `W_l, gamma_l,
    /// beta_l` per batch-normalized layer (then `b_L` last).
    #[inline]
    pub fn w_index(&self, l: usize) -> usize {
        (l - 1) * if self.batch_norm.is_some() { 3 } else { 2 }
    }

    /// The number of running-statistics arrays: `mean_l, var_l` per batch-normalized layer.
    pub fn stat_count(&self) -> usize {
        if self.batch_norm.is_some() {
            2 * (self.layers() - 1)
        } else {
            0
        }
    }

    /// Checks running statistics `[mean_1, var_1, ...]` against the network: one `n_l`
    /// pair per batch-normalized layer.
    pub(super) fn check_stats<S: AsRef<[T]>, T>(&self, stats: &[S]) -> Result<()> {
        if stats.len() != self.stat_count()
            || stats
                .iter()
                .enumerate()
                .any(|(i, s)| s.as_ref().len() != self.sizes[i / 2 + 1])
        {
            return Err(Error::Mismatch(
                "the running statistics do not match layer_sizes".into(),
            ));
        }
        Ok(())
    }

    /// The dropout rate of hidden layer `l` (1-based; 0 without dropout).
    pub fn rate(&self, l: usize) -> f64 {
        self.dropout.get(l - 1).copied().unwrap_or(0.0)
    }

    /// Whether unit `unit` of hidden layer `l` is kept in the row whose
    /// [`DropKey::row_key`] is `row_key`, at rate `rate`: a uniform `u` in `[0, 1)` from 53
    /// bits of a hash of the key and the unit, kept when `u >= rate` (probability
    /// `1 - rate`).
    #[inline]
    pub fn keep(row_key: u64, unit: usize, rate: f64) -> bool {
        use crate::data::permutation::{mix, GAMMA};
        let h = mix(row_key ^ (unit as u64).wrapping_add(1).wrapping_mul(GAMMA));
        (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64) >= rate
    }

    /// [`Mlp::keep`]'s test in integers: `u * 2^-53 >= rate` (both exact) holds exactly
    /// when `u >= ceil(rate * 2^53)`, for the 53-bit `u = h >> 11`.
    pub fn keep_threshold(rate: f64) -> u64 {
        (rate * (1u64 << 53) as f64).ceil() as u64
    }

    /// The inverted-dropout factor of a kept unit at rate `rate`: `1 / (1 - rate)`,
    /// computed in f64 and rounded once to `T`.
    pub fn keep_scale<T: NnFloat>(rate: f64) -> T {
        T::from_f64(1.0 / (1.0 - rate))
    }

    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Element counts of `W1, b1, W2, b2, ...` (`W_l, gamma_l, beta_l` for a
    /// batch-normalized layer: [`Mlp::w_index`]).
    pub fn param_lens(&self) -> Vec<usize> {
        self.param_len_iter().collect()
    }

    pub(super) fn param_len_iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.sizes.windows(2).enumerate().flat_map(move |(i, w)| {
            let gamma = self.norm(i + 1).then_some(w[1]);
            [Some(w[0] * w[1]), gamma, Some(w[1])].into_iter().flatten()
        })
    }

    /// Zeroed buffers for `W1, b1, ...`, or `OutOfMemory` naming `what`.
    pub(super) fn zero_grads<T: NnFloat>(&self, what: &str) -> Result<Vec<Vec<T>>> {
        self.param_len_iter()
            .map(|n| try_filled(n, T::ZERO, || what.to_string()))
            .collect()
    }

    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    pub(super) fn check_params<P: AsRef<[T]>, T>(&self, params: &[P]) -> Result<()> {
        // Checked once per batch: no allocation.
        if params.len() != self.param_len_iter().count()
            || params
                .iter()
                .zip(self.param_len_iter())
                .any(|(p, n)| p.as_ref().len() != n)
        {
            return Err(Error::Mismatch(
                "parameters do not match layer_sizes".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn check_grads<T, G: AsMut<[T]>>(&self, grads: &mut [G]) -> Result<()> {
        // Checked once per batch: no allocation.
        if grads.len() != self.param_len_iter().count()
            || grads
                .iter_mut()
                .zip(self.param_len_iter())
                .any(|(g, n)| g.as_mut().len() != n)
        {
            return Err(Error::Mismatch("gradients do not match layer_sizes".into()));
        }
        Ok(())
    }

    /// Checks a batch of at least one example: the parameters, X's length, and Y's.
    pub(super) fn check_batch<T, P: AsRef<[T]>>(
        &self,
        params: &[P],
        inputs: &Inputs<'_, T>,
        y: &Targets<'_, T>,
    ) -> Result<()> {
        self.check_params(params)?;
        if inputs.rows == 0 {
            return Err(Error::Invalid("a batch needs at least one example".into()));
        }
        if inputs.x.len() != inputs.rows * self.sizes[0] {
            return Err(Error::Mismatch("X does not match its row count".into()));
        }
        if !y.fits(inputs.rows, self.outputs()) {
            return Err(Error::Mismatch("Y does not match X's rows".into()));
        }
        Ok(())
    }
}
