//! The forward pass, the cost and the backward pass of a batch, block by block.

use std::sync::Mutex;
use std::time::Instant;

use super::gemm::{by_row_blocks, matmul, on_pool};
use super::model::Part;
use super::norm::{
    affine_grads, backward_factors, batch_moments, batch_norms, normalize_backward_rows,
    normalize_rows, running_norms, update_running,
};
use super::pointwise::{
    activation_backward, bias_activation, bias_sigmoid, bias_softmax, column_sums,
    sigmoid_delta_and_terms,
};
use super::workspace::{claim, locked, owned, BlockFn, Blocks, Buffers};
use super::{Activation, DropKey, Inputs, Mlp, NnFloat, Output, Stats, Targets, Workspace};
use crate::error::{Error, Result};
use crate::runtime::simd::multiversion;

/// `acc += part`, element by element.
fn add_into<T: NnFloat, G: AsMut<[T]>>(acc: &mut [G], part: &[Vec<T>]) {
    for (a, p) in acc.iter_mut().zip(part) {
        for (x, &y) in a.as_mut().iter_mut().zip(p) {
            *x += y;
        }
    }
}

/// `v *= mask / keep_prob` for the rows of hidden layer `l` in `block` (`n` units a row,
/// the first being row `row0` of the batch): the mask of [`Mlp::keep`], `keep_prob = 1 -
/// rate`; a dropped value becomes `v * 0`.
pub(super) fn dropout_rows<T: NnFloat>(
    block: &mut [T],
    n: usize,
    key: DropKey,
    l: usize,
    row0: usize,
    rate: f64,
) {
    let scale: T = Mlp::keep_scale(rate);
    let level = crate::runtime::simd::level();
    let threshold = Mlp::keep_threshold(rate);
    for (i, row) in block.chunks_exact_mut(n).enumerate() {
        dropout_row(level, row, key.row_key(l, row0 + i), threshold, scale);
    }
}

multiversion! {
    /// One row of [`dropout_rows`]: unit `j` kept when [`Mlp::keep`]'s 53 bits are at least
    /// `threshold` ([`Mlp::keep_threshold`], the same test in integers), vectorized over
    /// the units.
    fn dropout_row<T: NnFloat>(row: &mut [T], row_key: u64, threshold: u64, scale: T) {
        use crate::data::permutation::{mix, GAMMA};
        for (j, v) in row.iter_mut().enumerate() {
            let h = mix(row_key ^ (j as u64).wrapping_add(1).wrapping_mul(GAMMA));
            *v *= if (h >> 11) >= threshold { scale } else { T::ZERO };
        }
    }
}

impl Mlp {
    /// The forward pass: the outputs `A_L` of every row of `inputs` into `out` (`(rows,
    /// n_L)` row-major), block by block ([`Mlp::blocks`]) on the pool. A network with
    /// batch norm needs [`Mlp::predict_with`].
    pub fn predict<T: NnFloat, P: AsRef<[T]> + Sync>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        out: &mut [T],
    ) -> Result<()> {
        self.predict_with(ws, params, &[], inputs, out)
    }

    /// [`Mlp::predict`] with batch norm's running statistics `running` (`[mean_1, var_1,
    /// ...]`, [`Stats::Running`]; empty without batch norm).
    pub fn predict_with<T: NnFloat, P: AsRef<[T]> + Sync>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        running: &[&[T]],
        inputs: Inputs<'_, T>,
        out: &mut [T],
    ) -> Result<()> {
        self.check_params(params)?;
        self.check_stats(running)?;
        let run = Some(running);
        let (rows, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        if inputs.x.len() != rows * n0 {
            return Err(Error::Mismatch("X does not match its row count".into()));
        }
        if out.len() != rows * k {
            return Err(Error::Mismatch("the output does not match X's rows".into()));
        }
        if rows == 0 {
            return Ok(());
        }
        let plan = self.blocks::<T>(rows);
        let workers = ws.reserve(self, &plan, plan.count, false)?;
        let last = self.layers() - 1;
        if plan.count == 1 {
            let buf = owned(&mut ws.blocks[0]);
            self.forward_block(buf, params, inputs.part(0..rows, n0), true, None, run);
            out.copy_from_slice(&buf.acts[last][..rows * k]);
            return Ok(());
        }
        let at = out.as_mut_ptr() as usize;
        let slots = &ws.blocks[..workers];
        on_pool(plan.count, &|b| {
            let r = plan.rows_of(b);
            let mut buf = claim(slots);
            self.forward_block(
                &mut buf,
                params,
                inputs.part(r.clone(), n0),
                false,
                None,
                run,
            );
            // SAFETY: the blocks' rows are disjoint parts of `out`, borrowed mutably for
            // this call.
            let dst = unsafe {
                std::slice::from_raw_parts_mut((at as *mut T).add(r.start * k), r.len() * k)
            };
            dst.copy_from_slice(&buf.acts[last][..r.len() * k]);
        });
        Ok(())
    }

    /// The data cost `J` of a batch (no penalty), block by block ([`Mlp::blocks`]): the same
    /// bits as [`Mlp::cost_and_grad`]'s.
    pub fn forward_cost<T: NnFloat, P: AsRef<[T]> + Sync>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
    ) -> Result<f64> {
        self.forward_cost_with(ws, params, &[], inputs, y)
    }

    /// [`Mlp::forward_cost`] with batch norm's running statistics ([`Mlp::predict_with`]).
    pub fn forward_cost_with<T: NnFloat, P: AsRef<[T]> + Sync>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        running: &[&[T]],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
    ) -> Result<f64> {
        self.check_batch(params, &inputs, &y)?;
        self.check_stats(running)?;
        let run = Some(running);
        let plan = self.blocks::<T>(inputs.rows);
        let workers = ws.reserve(self, &plan, plan.groups, false)?;
        let (m, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        if plan.count == 1 {
            let buf = owned(&mut ws.blocks[0]);
            self.forward_block(buf, params, inputs.part(0..m, n0), true, None, run);
            return self.cost_block(buf, m, y, None, m as f64);
        }
        Self::over_groups(ws, &plan, workers, &|buf, _, _, r| {
            self.forward_block(buf, params, inputs.part(r.clone(), n0), false, None, run);
            self.cost_block(buf, r.len(), y.part(r, k), None, m as f64)
        });
        Self::sum_groups::<T, Vec<T>>(ws, &plan, None)
    }

    /// The cost `J` of a batch and its gradient `dJ/dparam` into `grads` (`W1, b1, ...`).
    ///
    /// Sigmoid outputs: the cost is computed from the logits (`softplus(z) - y z`), which
    /// stays finite when `p` rounds to 0 or 1.
    pub fn loss_and_grad<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
    ) -> Result<f64> {
        self.loss_and_grad_with(ws, params, inputs, y, grads, None, None, Stats::Batch(None))
    }

    /// [`Mlp::loss_and_grad`] with dropout drawn by `key` (none without a key, or without
    /// dropout rates): the masks of batch `key.position` of epoch `key.epoch`, as
    /// [`Mlp::cost_and_grad`] draws them in training; and with `weights`, one per row,
    /// the weighted mean cost ([`Mlp::cost_and_grad`]); batch norm with `stats`.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grad_with<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
        key: Option<DropKey>,
        weights: Option<&[T]>,
        stats: Stats<'_, '_, T>,
    ) -> Result<f64> {
        let (cost, penalty) =
            self.cost_and_grad(ws, params, inputs, y, grads, None, key, weights, stats)?;
        Ok(cost + penalty)
    }

    /// [`Mlp::loss_and_grad`] returning the data cost and the L2 penalty
    /// `alpha/(2m) sum ||W||^2` apart, block by block ([`Mlp::blocks`]). With `phases`, adds
    /// the seconds of the forward pass with the cost (`phases[0]`) and of the backward pass
    /// with the penalty (`phases[1]`); a batch in several blocks interleaves them, and its
    /// wall time is split as the calling thread's own blocks split theirs. With `key` and
    /// dropout rates, inverted dropout after each hidden layer's activation: `A_l *= mask /
    /// keep_prob` forward, `dA_l *= mask / keep_prob` backward, the masks of
    /// [`Mlp::keep`] for the batch's rows (the same bits in every cut into blocks).
    ///
    /// With `weights` (one `w_i >= 0` per row), scikit-learn's weighted mean: `m` becomes
    /// `s = sum_i w_i` (summed in f64 in row order) and each row's cost and `dJ/dZ_L` are
    /// multiplied by `w_i` — `J = sum_i w_i loss_i / s + alpha/(2s) sum ||W||^2`; weights
    /// all 1 give the same bits as none. A batch whose weights sum to 0 has cost 0 and a
    /// zero gradient.
    ///
    /// With batch norm ([`super::BatchNorm`]), `stats` says which statistics normalize:
    /// [`Stats::Batch`] the batch's (the batch needs 2 rows at least; a batch in several
    /// blocks is computed layer by layer, [`Mlp::synced_cost_and_grad`], every block's
    /// buffers live at once), the running statistics given then updated once the cost is
    /// computed; [`Stats::Running`] the running statistics (a per-row affine map).
    /// Backward, `dgamma = sum_i dZ~_i xhat_i`, `dbeta = sum_i dZ~_i` and, with the batch's
    /// statistics, `dZ = gamma / sqrt(var + eps) (dZ~ - dbeta / m - xhat dgamma / m)`
    /// (with the running ones, `dZ = gamma / sqrt(var + eps) dZ~`).
    #[allow(clippy::too_many_arguments)]
    pub fn cost_and_grad<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
        phases: Option<&mut [f64; 2]>,
        key: Option<DropKey>,
        weights: Option<&[T]>,
        stats: Stats<'_, '_, T>,
    ) -> Result<(f64, f64)> {
        let key = key.filter(|_| !self.dropout.is_empty());
        self.check_grads(grads)?;
        self.check_batch(params, &inputs, &y)?;
        let (run, update, train) = match stats {
            Stats::Running(r) => {
                self.check_stats(r)?;
                (Some(r), None, false)
            }
            Stats::Batch(u) => {
                if let Some(u) = &u {
                    self.check_stats(u)?;
                }
                (None, u, true)
            }
        };
        let train_bn = train && self.batch_norm.is_some();
        if train_bn && inputs.rows < 2 {
            return Err(Error::Invalid(format!(
                "batch norm in training needs more than 1 example per batch (torch: \"Expected \
                 more than 1 value per channel when training\"), got {}",
                inputs.rows
            )));
        }
        if weights.is_some_and(|w| w.len() != inputs.rows) {
            return Err(Error::Mismatch(
                "the sample weights do not match X's rows".into(),
            ));
        }
        let total = weights.map_or(inputs.rows as f64, |w| {
            w.iter().map(|v| v.to_f64()).sum::<f64>()
        });
        let plan = self.blocks::<T>(inputs.rows);
        let (m, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        let timed = phases.is_some();
        let now = |on: bool| on.then(Instant::now);
        let span = |a: Option<Instant>, b: Option<Instant>| {
            a.zip(b).map_or(0.0, |(a, b)| (b - a).as_secs_f64())
        };
        let t0 = now(timed);
        if train_bn && plan.count > 1 {
            // Forward and backward interleave layer by layer: the time counts as backward.
            let cost = self.synced_cost_and_grad(
                ws, &plan, params, inputs, y, grads, key, weights, total, update,
            )?;
            let penalty = self.penalty(params, grads, total);
            if let Some(p) = phases {
                p[1] += span(t0, now(true));
            }
            return Ok((cost, penalty));
        }
        let workers = ws.reserve(self, &plan, plan.groups, true)?;
        if plan.count == 1 {
            let buf = owned(&mut ws.blocks[0]);
            let x = inputs.part(0..m, n0);
            let drop = key.map(|k| (k, 0));
            self.forward_block(buf, params, x, true, drop, run);
            let cost = self.cost_block(buf, m, y, weights, total)?;
            if let (true, Some(running), Some(bn)) = (train_bn, update, self.batch_norm) {
                for (l, pair) in running.chunks_exact_mut(2).enumerate() {
                    let (mean, var) = pair.split_at_mut(1);
                    update_running(mean[0], var[0], &buf.moments[l], m, bn.momentum);
                }
            }
            let t1 = now(timed);
            self.backward_block(buf, params, x, grads, true, drop, train_bn);
            let penalty = self.penalty(params, grads, total);
            if let Some(p) = phases {
                p[0] += span(t0, t1);
                p[1] += span(t1, now(true));
            }
            return Ok((cost, penalty));
        }
        // The calling thread's own forward and backward seconds.
        let caller = std::thread::current().id();
        let own = Mutex::new([0.0f64; 2]);
        Self::over_groups(ws, &plan, workers, &|buf, group, first, r| {
            let here = timed && std::thread::current().id() == caller;
            let ta = now(here);
            let x = inputs.part(r.clone(), n0);
            let drop = key.map(|k| (k, r.start));
            self.forward_block(buf, params, x, false, drop, run);
            let w = weights.map(|w| &w[r.clone()]);
            let cost = self.cost_block(buf, r.len(), y.part(r, k), w, total)?;
            let tb = now(here);
            if first {
                self.backward_block(buf, params, x, &mut group.grads, false, drop, train_bn);
            } else {
                let mut part = std::mem::take(&mut buf.grads);
                self.backward_block(buf, params, x, &mut part, false, drop, train_bn);
                add_into(&mut group.grads, &part);
                buf.grads = part;
            }
            if here {
                let mut own = locked(&own);
                own[0] += span(ta, tb);
                own[1] += span(tb, now(true));
            }
            Ok(cost)
        });
        let t1 = now(timed);
        let cost = Self::sum_groups(ws, &plan, Some(grads))?;
        let penalty = self.penalty(params, grads, total);
        if let Some(p) = phases {
            let wall = span(t0, t1);
            let [f, b] = *locked(&own);
            let share = if f + b > 0.0 { f / (f + b) } else { 1.0 };
            p[0] += wall * share;
            p[1] += wall * (1.0 - share) + span(t1, now(true));
        }
        Ok((cost, penalty))
    }

    /// Runs `block(buffers, group, first, rows)` for every block of every group of `plan`
    /// (`first` for a group's first block) — the groups spread over the pool, each group's
    /// blocks in order on one thread — and keeps each group's summed cost (or its first
    /// error).
    fn over_groups<T: NnFloat>(
        ws: &Workspace<T>,
        plan: &Blocks,
        workers: usize,
        block: &BlockFn<'_, T>,
    ) {
        let slots = &ws.blocks[..workers];
        let groups = &ws.groups[..plan.groups];
        on_pool(plan.groups, &|g| {
            let mut buf = claim(slots);
            let mut group = locked(&groups[g]);
            let mut cost = 0.0;
            group.error = None;
            let blocks = plan.blocks_of(g);
            for b in blocks.clone() {
                match block(&mut buf, &mut group, b == blocks.start, plan.rows_of(b)) {
                    Ok(c) => cost += c,
                    Err(e) => {
                        group.error = Some(e);
                        return;
                    }
                }
            }
            group.cost = cost;
        });
    }

    /// The groups' costs (and gradients, into `grads`, when given) after [`Mlp::over_groups`],
    /// summed in a fixed pairwise tree over the group index: at stride 1, 2, 4, ... group
    /// `g` adds group `g + stride` for every `g` a multiple of twice the stride, until
    /// groups 0 and `stride` are left, whose sum is the batch's. The first group's error, if
    /// any.
    pub(super) fn sum_groups<T: NnFloat, G: AsMut<[T]>>(
        ws: &mut Workspace<T>,
        plan: &Blocks,
        grads: Option<&mut [G]>,
    ) -> Result<f64> {
        let groups = &mut ws.groups[..plan.groups];
        for g in groups.iter_mut() {
            if let Some(e) = owned(g).error.take() {
                return Err(e);
            }
        }
        let n = groups.len();
        let mut stride = 1;
        while 2 * stride < n {
            for g in (0..n - stride).step_by(2 * stride) {
                let (low, high) = groups.split_at_mut(g + stride);
                let (a, b) = (owned(&mut low[g]), owned(&mut high[0]));
                a.cost += b.cost;
                if grads.is_some() {
                    add_into(&mut a.grads, &b.grads);
                }
            }
            stride *= 2;
        }
        let (low, high) = groups.split_at_mut(stride);
        let (a, b) = (owned(&mut low[0]), owned(&mut high[0]));
        if let Some(grads) = grads {
            for ((out, x), y) in grads.iter_mut().zip(&a.grads).zip(&b.grads) {
                for ((o, &x), &y) in out.as_mut().iter_mut().zip(x).zip(y) {
                    *o = x + y;
                }
            }
        }
        Ok(a.cost + b.cost)
    }

    /// The forward pass of one block into `buf`: every `A_l` (the output activations last;
    /// sigmoid's logits in `buf.delta[1]`). The caller has checked the shapes. With
    /// `drop = (key, first row)`, the hidden layers with a dropout rate keep their
    /// activations in `buf.kept` and pass on `A_l * mask / keep_prob` (the block's rows
    /// being the batch's from `first row` on). Batch-normalized layers normalize with
    /// `running` (`[mean_1, var_1, ...]`), or with the block's own statistics when None
    /// (training: the block is the whole batch), keeping `xhat` and the factors in `buf`.
    pub(super) fn forward_block<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        par: bool,
        drop: Option<(DropKey, usize)>,
        running: Option<&[&[T]]>,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        for l in 1..=self.layers() {
            self.forward_product(buf, params, x, l, par);
            if let (true, Some(bn)) = (self.norm(l), self.batch_norm) {
                let (nb, mo) = (&mut buf.norms[l - 1], &mut buf.moments[l - 1]);
                if let Some(r) = running {
                    running_norms(r[2 * (l - 1)], r[2 * l - 1], bn.eps, nb);
                } else {
                    batch_moments(level, &buf.acts[l - 1][..rows * self.sizes[l]], mo);
                    batch_norms(mo, rows, bn.eps, nb);
                }
            }
            self.forward_finish(buf, params, rows, l, par, drop);
        }
    }

    /// `Z_l = A_{l-1} W_l` of one block (the rows of `x`) into `buf.acts[l - 1]`.
    pub(super) fn forward_product<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        l: usize,
        par: bool,
    ) {
        let rows = x.rows;
        let (k, n) = (self.sizes[l - 1], self.sizes[l]);
        let w = params[self.w_index(l)].as_ref();
        let (below, rest) = buf.acts.split_at_mut(l - 1);
        let out = &mut rest[0][..rows * n];
        let (a, sa) = if l == 1 {
            (x.x.as_ptr(), x.strides)
        } else {
            (below[l - 2].as_ptr(), (k as isize, 1))
        };
        // SAFETY: A is (rows, k) with these strides, W (k, n) row-major, out (rows, n).
        unsafe {
            matmul::<T>(
                (rows, k, n),
                a,
                sa,
                w.as_ptr(),
                (n as isize, 1),
                out.as_mut_ptr(),
                par,
            );
        };
    }

    /// Layer `l` of one block of `rows` rows after its product: a hidden layer's batch norm
    /// (with the `mu` and `1 / sqrt(var + eps)` in `buf.norms[l - 1]`), bias (or beta),
    /// activation and dropout (`drop` as for [`Mlp::forward_block`]); the output layer's
    /// activation.
    pub(super) fn forward_finish<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        rows: usize,
        l: usize,
        par: bool,
        drop: Option<(DropKey, usize)>,
    ) {
        let level = crate::runtime::simd::level();
        let layers = self.layers();
        let n = self.sizes[l];
        let (wi, normed) = (self.w_index(l), self.norm(l));
        // The bias, or beta after gamma.
        let b = params[wi + 1 + usize::from(normed)].as_ref();
        let out = &mut buf.acts[l - 1][..rows * n];
        let (mut xhat_at, mut norms, mut gamma): (usize, &[T], &[T]) = (0, &[], &[]);
        if normed {
            xhat_at = buf.xhat[l - 1].as_mut_ptr() as usize;
            (norms, gamma) = (&buf.norms[l - 1], params[wi + 1].as_ref());
        }
        let rate = if l < layers { self.rate(l) } else { 0.0 };
        let kept = match drop {
            Some(_) if rate > 0.0 => buf.kept[l - 1].as_mut_ptr() as usize,
            _ => 0,
        };
        match self.output {
            _ if l < layers => by_row_blocks(out, n, par, |at, block| {
                if xhat_at != 0 {
                    // SAFETY: `xhat` holds `rows * n` values; the blocks are disjoint.
                    let xhat = unsafe {
                        std::slice::from_raw_parts_mut((xhat_at as *mut T).add(at), block.len())
                    };
                    normalize_rows(level, block, xhat, norms, gamma);
                }
                bias_activation(level, block, b, self.activation(l));
                if let (Some((key, row0)), true) = (drop, kept != 0) {
                    // SAFETY: `kept` holds `rows * n` values; the blocks are disjoint.
                    let kept = unsafe {
                        std::slice::from_raw_parts_mut((kept as *mut T).add(at), block.len())
                    };
                    kept.copy_from_slice(block);
                    dropout_rows(block, n, key, l, row0 + at / n, rate);
                }
            }),
            // The logits stay for the cost: log(1 - p) loses them once p rounds to 1.
            Output::Sigmoid => bias_sigmoid(level, out, &mut buf.delta[1][..rows * n], b),
            Output::Softmax => bias_softmax(level, out, b),
            Output::Identity | Output::Huber => {
                bias_activation(level, out, b, Activation::Identity);
            }
            Output::Poisson => {
                // The logits stay for the cost: log(exp(z)) loses them once exp(z)
                // rounds to 0 or infinity.
                bias_activation(level, out, b, Activation::Identity);
                let z = &mut buf.delta[1][..rows * n];
                z.copy_from_slice(out);
                for v in out.iter_mut() {
                    *v = v.exp();
                }
            }
        }
    }

    /// The cost of the last forward pass in `buf` (`rows` of a batch of `m` rows, or of
    /// weights summing to `m`) against `y`: the block's share of the batch's mean cost, and
    /// of `dJ/dZ_L` into `buf.delta[0]`; with `w`, the block's rows' weights multiply each
    /// row's cost and `dJ/dZ_L` (see [`Mlp::cost_and_grad`]).
    pub(super) fn cost_block<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let cost = match self.output {
            Output::Sigmoid => self.sigmoid_cost_and_delta(buf, rows, y, w, m)?,
            Output::Poisson => self.poisson_cost_and_delta(buf, rows, y, w, m)?,
            _ => self.output_delta(buf, rows, y, w, m)?,
        };
        // Weights summing to 0: no cost, and (1/m infinite) no gradient.
        if m == 0.0 {
            buf.delta[0][..rows * self.outputs()].fill(T::ZERO);
            return Ok(0.0);
        }
        Ok(cost)
    }

    /// [`Mlp::cost_block`] for softmax, identity and Huber outputs.
    fn output_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let a = &buf.acts[buf.acts.len() - 1][..rows * k];
        let d = &mut buf.delta[0][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        // Row i's weight (1 without weights: the same bits as none).
        let wt = |i: usize| w.map_or(T::ONE, |w| w[i]);
        let mut cost = 0.0f64;
        match (self.output, y) {
            (Output::Softmax, Targets::Labels(labels)) => {
                for (i, ((p, dr), &c)) in
                    (a.chunks_exact(k).zip(d.chunks_exact_mut(k)).zip(labels)).enumerate()
                {
                    if c < 0 || c as usize >= k {
                        return Err(Error::Invalid(format!(
                            "Y holds class {c}, outside [0, {k}) for {k} output units"
                        )));
                    }
                    let c = c as usize;
                    let f = inv_m * wt(i);
                    for (j, (dd, &pp)) in dr.iter_mut().zip(p).enumerate() {
                        let y = if j == c { T::ONE } else { T::ZERO };
                        *dd = (pp - y) * f;
                    }
                    cost -= wt(i).to_f64() * p[c].ln().to_f64();
                }
            }
            (_, Targets::Labels(_)) => {
                return Err(Error::Invalid(
                    "integer labels need output='softmax'".into(),
                ))
            }
            (out, Targets::Dense(y)) => {
                let rows_of = a
                    .chunks_exact(k)
                    .zip(d.chunks_exact_mut(k))
                    .zip(y.chunks_exact(k));
                if out == Output::Softmax {
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_m * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            *dd = (p - t) * f;
                            if t != T::ZERO {
                                cost -= wi * (t.to_f64() * p.ln().to_f64());
                            }
                        }
                    }
                } else if out == Output::Huber {
                    let inv_mk = T::from_f64(1.0 / (m * k as f64));
                    let (delta, df) = (T::from_f64(self.huber_delta), self.huber_delta);
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_mk * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            let r = p - t;
                            let (g, h) = if r < delta && T::ZERO - r < delta {
                                (r, 0.5 * r.to_f64() * r.to_f64())
                            } else {
                                let g = if r > T::ZERO { delta } else { -delta };
                                (g, df * (r.to_f64().abs() - 0.5 * df))
                            };
                            *dd = g * f;
                            cost += wi * h;
                        }
                    }
                    return Ok(cost / (m * k as f64));
                } else {
                    let inv_mk = T::from_f64(1.0 / (m * k as f64));
                    for (i, ((pr, dr), yr)) in rows_of.enumerate() {
                        let (f, wi) = (inv_mk * wt(i), wt(i).to_f64());
                        for ((dd, &p), &t) in dr.iter_mut().zip(pr).zip(yr) {
                            let r = p - t;
                            *dd = r * f;
                            cost += wi * (0.5 * r.to_f64() * r.to_f64());
                        }
                    }
                    return Ok(cost / (m * k as f64));
                }
            }
        }
        Ok(cost / m)
    }

    /// Adds `alpha/m W` to each `dW` and returns the penalty `alpha/(2m) sum ||W||^2` (`m`
    /// the rows, or the sum of the weights; none for 0).
    pub(super) fn penalty<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        params: &[P],
        grads: &mut [G],
        rows: f64,
    ) -> f64 {
        if self.alpha == 0.0 || rows == 0.0 {
            return 0.0;
        }
        let alpha_m = self.alpha / rows;
        let am = T::from_f64(alpha_m);
        let mut cost = 0.0;
        for l in (1..=self.layers()).rev() {
            let wi = self.w_index(l);
            let (gw, w) = (grads[wi].as_mut(), params[wi].as_ref());
            let mut sq = 0.0f64;
            for (g, &wv) in gw.iter_mut().zip(w) {
                *g += am * wv;
                sq += wv.to_f64() * wv.to_f64();
            }
            cost += 0.5 * alpha_m * sq;
        }
        cost
    }

    /// The data part of the gradient of one block (the rows of `x`, which the last
    /// [`Mlp::forward_block`] and [`Mlp::cost_block`] into `buf` saw), into `grads`.
    /// `drop` as given to that forward pass; `train` when it normalized with the batch's
    /// statistics ([`Mlp::cost_and_grad`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_block<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        grads: &mut [G],
        par: bool,
        drop: Option<(DropKey, usize)>,
        train: bool,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        for l in (1..=self.layers()).rev() {
            self.backward_layer(buf, params, x, grads, l, par, drop);
            if l == 1 {
                break;
            }
            if self.norm(l - 1) {
                let k = self.sizes[l - 1];
                let wb = self.w_index(l - 1);
                let (gg, gbeta) = grads[wb + 1..wb + 3].split_at_mut(1);
                let (gg, gbeta) = (gg[0].as_mut(), gbeta[0].as_mut());
                let below = &mut buf.delta[1][..rows * k];
                let xhat = &buf.xhat[l - 2][..rows * k];
                affine_grads(level, below, xhat, &mut buf.moments[l - 2], gg, gbeta);
                let gamma = params[wb + 1].as_ref();
                backward_factors(
                    &mut buf.norms[l - 2],
                    gamma,
                    &buf.moments[l - 2],
                    rows,
                    train,
                );
                let norms = &buf.norms[l - 2];
                by_row_blocks(below, k, par, |at, block| {
                    normalize_backward_rows(level, block, &xhat[at..at + block.len()], norms);
                });
            }
            buf.delta.swap(0, 1);
        }
    }

    /// Layer `l`'s share of [`Mlp::backward_block`]: from `dZ_l` in `buf.delta[0]`, `dW_l =
    /// A_{l-1}^T dZ_l` (and `db_l`, without batch norm) into `grads`, and for `l > 1` `dZ~_{l-1}
    /// = dZ_l W_l^T`, through dropout and `g'`, into `buf.delta[1]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_layer<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        grads: &mut [G],
        l: usize,
        par: bool,
        drop: Option<(DropKey, usize)>,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        let (k, n) = (self.sizes[l - 1], self.sizes[l]);
        let wi = self.w_index(l);
        let (gw, rest) = grads[wi..].split_at_mut(1);
        let (gw, gb) = (gw[0].as_mut(), rest[0].as_mut());
        let [d, d_below] = &mut buf.delta;
        let d = &d[..rows * n];
        // A^T is (k, rows): A's strides swapped.
        let (a, (rsa, csa)) = if l == 1 {
            (x.x.as_ptr(), x.strides)
        } else {
            (buf.acts[l - 2].as_ptr(), (k as isize, 1))
        };
        let w = params[wi].as_ref();
        // dW = A^T dZ.
        // SAFETY: shapes and strides as described; gw does not overlap A or dZ.
        unsafe {
            matmul::<T>(
                (k, rows, n),
                a,
                (csa, rsa),
                d.as_ptr(),
                (n as isize, 1),
                gw.as_mut_ptr(),
                par,
            );
        };
        if !self.norm(l) {
            column_sums(level, gb, d);
        }
        if l == 1 {
            return;
        }
        let below = &mut d_below[..rows * k];
        // dA_{l-1} = dZ_l W_l^T: W^T is (n, k) with strides (1, n).
        // SAFETY: as above; `below` is a separate buffer.
        unsafe {
            matmul::<T>(
                (rows, n, k),
                d.as_ptr(),
                (n as isize, 1),
                w.as_ptr(),
                (1, n as isize),
                below.as_mut_ptr(),
                par,
            );
        };
        let rate = self.rate(l - 1);
        let dropped = drop.filter(|_| rate > 0.0);
        // g'(Z) from the activations before dropout.
        let a = match dropped {
            Some(_) => &buf.kept[l - 2][..rows * k],
            None => &buf.acts[l - 2][..rows * k],
        };
        by_row_blocks(below, k, par, |at, block| {
            if let Some((key, row0)) = dropped {
                dropout_rows(block, k, key, l - 1, row0 + at / k, rate);
            }
            let g = self.activation(l - 1);
            activation_backward(level, block, &a[at..at + block.len()], g);
        });
    }

    /// Sigmoid output: `dJ/dZ = (p - y)/m`, `J = 1/m sum bce(z, y)` from the logits the
    /// forward pass kept in `buf.delta[1]`.
    fn sigmoid_cost_and_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let Targets::Dense(y) = y else {
            return Err(Error::Invalid(
                "integer labels need output='softmax'".into(),
            ));
        };
        let l = self.layers();
        let [d, z] = &mut buf.delta;
        let (z, d) = (&mut z[..rows * k], &mut d[..rows * k]);
        let p = &buf.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        sigmoid_delta_and_terms(crate::runtime::simd::level(), d, z, p, y, inv_m);
        if let Some(w) = w {
            for ((dr, zr), &wi) in d.chunks_exact_mut(k).zip(z.chunks_exact_mut(k)).zip(w) {
                for v in dr.iter_mut().chain(zr.iter_mut()) {
                    *v *= wi;
                }
            }
        }
        Ok(z.iter().map(|t| t.to_f64()).sum::<f64>() / m)
    }

    /// Poisson output ([`Output::Poisson`]): `dJ/dZ = (a - y)/m`, `J = 1/m sum (y (log y -
    /// z) - y + exp(z))` from the logits the forward pass kept in `buf.delta[1]`, each
    /// term in f64; with `w`, each row's terms and `dJ/dZ` times its weight. A target
    /// below 0 is an error.
    fn poisson_cost_and_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        w: Option<&[T]>,
        m: f64,
    ) -> Result<f64> {
        let k = self.outputs();
        let Targets::Dense(y) = y else {
            return Err(Error::Invalid(
                "integer labels need output='softmax'".into(),
            ));
        };
        if let Some(&t) = y[..rows * k].iter().find(|&&t| {
            t.partial_cmp(&T::ZERO)
                .is_none_or(std::cmp::Ordering::is_lt)
        }) {
            return Err(Error::Invalid(format!(
                "Y holds {}; the Poisson loss needs targets >= 0",
                t.to_f64()
            )));
        }
        let l = self.layers();
        let [d, z] = &mut buf.delta;
        let (z, d) = (&z[..rows * k], &mut d[..rows * k]);
        let a = &buf.acts[l - 1][..rows * k];
        let inv_m = T::from_f64(1.0 / m);
        let mut cost = 0.0f64;
        for (i, (((dr, zr), ar), yr)) in d
            .chunks_exact_mut(k)
            .zip(z.chunks_exact(k))
            .zip(a.chunks_exact(k))
            .zip(y.chunks_exact(k))
            .enumerate()
        {
            let wi = w.map_or(T::ONE, |w| w[i]);
            let f = inv_m * wi;
            let mut row = 0.0f64;
            for (((dd, &zz), &aa), &t) in dr.iter_mut().zip(zr).zip(ar).zip(yr) {
                *dd = (aa - t) * f;
                let (t, zz) = (t.to_f64(), zz.to_f64());
                let xlogy = if t > 0.0 { t * (t.ln() - zz) } else { 0.0 };
                row += xlogy - t + aa.to_f64();
            }
            cost += wi.to_f64() * row;
        }
        Ok(cost / m)
    }
}
