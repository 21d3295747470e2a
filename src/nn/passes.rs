//! The batch-level passes: predict, the forward cost and the gradient of a batch, its rows
//! split into blocks (the passes over one block: `block.rs`).

use std::sync::Mutex;
use std::time::Instant;

use super::gemm::on_pool;
use super::norm::update_running;
use super::workspace::{claim, locked, owned, BlockFn, Blocks};
use super::{DropKey, Inputs, Mlp, NnFloat, Stats, Targets, Workspace};
use crate::error::{Error, Result};

/// `acc += part`, element by element.
fn add_into<T: NnFloat, G: AsMut<[T]>>(acc: &mut [G], part: &[Vec<T>]) {
    for (a, p) in acc.iter_mut().zip(part) {
        for (x, &y) in a.as_mut().iter_mut().zip(p) {
            *x += y;
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
}
