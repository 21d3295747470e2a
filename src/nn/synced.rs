//! Training with batch norm on a batch in several blocks: layer by layer, every block's
//! part of a step on the pool, the blocks' partial sums combined in block order between the
//! steps, so that each layer normalizes with the whole batch's statistics.

use std::ops::Range;

use super::gemm::on_pool;
use super::norm::{
    affine_sums, backward_factors, batch_norms, block_moments, normalize_backward_rows,
    update_running,
};
use super::workspace::{locked, owned, BlockFn, Blocks, Workspace};
use super::{DropKey, Inputs, Mlp, NnFloat, Targets};
use crate::error::Result;

/// `acc += part`, element by element.
fn add_slice<T: NnFloat>(acc: &mut [T], part: &[T]) {
    for (x, &y) in acc.iter_mut().zip(part) {
        *x += y;
    }
}

impl Mlp {
    /// Runs `step(buffers of block b, group, first of the group, rows of b)` for every block
    /// of `plan`, each block in its own buffer (`ws.blocks[b]`), the groups spread over the
    /// pool and each group's blocks in order; keeps each group's summed cost when `cost`,
    /// and the first error.
    fn each_block<T: NnFloat>(ws: &Workspace<T>, plan: &Blocks, cost: bool, step: &BlockFn<'_, T>) {
        let blocks = &ws.blocks[..plan.count];
        let groups = &ws.groups[..plan.groups];
        on_pool(plan.groups, &|g| {
            let mut group = locked(&groups[g]);
            if group.error.is_some() {
                return;
            }
            let range = plan.blocks_of(g);
            let mut sum = 0.0;
            for b in range.clone() {
                let mut buf = locked(&blocks[b]);
                match step(&mut buf, &mut group, b == range.start, plan.rows_of(b)) {
                    Ok(c) => sum += c,
                    Err(e) => {
                        group.error = Some(e);
                        return;
                    }
                }
            }
            if cost {
                group.cost = sum;
            }
        });
    }

    /// The batch's `[mean, sum of squared deviations]` of `n` columns into `ws.stats[i]`
    /// from the blocks' `[sum, squared deviations from the block's mean]` (in
    /// `moments[i]`), merged in block order as Chan et al.'s parallel variance: `M2 =
    /// sum_b (M2_b + m_b (mean_b - mean)^2)`, robust where the mean is large against the
    /// spread.
    fn merge_moments<T: NnFloat>(
        ws: &mut Workspace<T>,
        plan: &Blocks,
        i: usize,
        n: usize,
        m: usize,
    ) {
        Self::combine(ws, plan, i, 0..n);
        let stats = &mut ws.stats[i];
        let (mean, ssd) = stats.split_at_mut(n);
        for v in mean.iter_mut() {
            *v /= m as f64;
        }
        ssd.fill(0.0);
        for (b, block) in ws.blocks[..plan.count].iter_mut().enumerate() {
            let rows = plan.rows_of(b).len() as f64;
            let mo = &owned(block).moments[i];
            for j in 0..n {
                let d = mo[j] / rows - mean[j];
                ssd[j] += mo[n + j] + rows * d * d;
            }
        }
    }

    /// `ws.stats[i][r] = sum_b ws.blocks[b].moments[i][r]`, the blocks in order.
    fn combine<T: NnFloat>(ws: &mut Workspace<T>, plan: &Blocks, i: usize, r: Range<usize>) {
        let stats = &mut ws.stats[i][r.clone()];
        stats.fill(0.0);
        for b in &mut ws.blocks[..plan.count] {
            for (s, &v) in stats.iter_mut().zip(&owned(b).moments[i][r.clone()]) {
                *s += v;
            }
        }
    }

    /// [`Mlp::cost_and_grad`] in training with batch norm for a batch in several blocks
    /// (`plan`): the data cost, and the gradients (without the penalty) in `grads`. One step
    /// over the blocks per layer and direction, each touching a block's rows once: forward,
    /// step `l` normalizes and activates layer `l - 1` with the batch's statistics, then
    /// computes `Z_l` and the block's column sums and squared deviations (merged over the
    /// blocks between the steps, [`Mlp::merge_moments`]); backward, step `l` finishes `dZ_l`
    /// with the batch's `dgamma` and `dbeta`, then computes layer `l`'s gradients, `dZ~_{l-1}`
    /// and the block's sums for the layer below. Every sum runs in f64 over each block's
    /// rows in order, then over the blocks in order: the plan is a function of the shape
    /// alone, so the results are the same bits at every thread count.
    /// The running statistics, when given, are updated once the cost is computed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn synced_cost_and_grad<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]>>(
        &self,
        ws: &mut Workspace<T>,
        plan: &Blocks,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
        key: Option<DropKey>,
        weights: Option<&[T]>,
        total: f64,
        running: Option<&mut [&mut [T]]>,
    ) -> Result<f64> {
        let bn = self.batch_norm.expect("batch norm");
        ws.reserve_synced(self, plan)?;
        let (m, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        let layers = self.layers();
        let level = crate::runtime::simd::level();
        let drop_of = |r: &Range<usize>| key.map(|key| (key, r.start));
        // Forward: step l finishes layer l - 1 with the batch's statistics, then computes
        // Z_l and its block's moments (the last step also the outputs and the cost).
        for l in 1..=layers {
            let n = self.sizes[l];
            let prev = if l > 1 {
                &ws.factors[l - 2][..2 * self.sizes[l - 1]]
            } else {
                &[][..]
            };
            let last = l == layers;
            Self::each_block(ws, plan, last, &|buf, _, _, r| {
                if l > 1 {
                    buf.norms[l - 2][..prev.len()].copy_from_slice(prev);
                    self.forward_finish(buf, params, r.len(), l - 1, false, drop_of(&r));
                }
                self.forward_product(buf, params, inputs.part(r.clone(), n0), l, false);
                if !last {
                    let z = &buf.acts[l - 1][..r.len() * n];
                    block_moments(level, z, &mut buf.moments[l - 1]);
                    return Ok(0.0);
                }
                self.forward_finish(buf, params, r.len(), l, false, None);
                let w = weights.map(|w| &w[r.clone()]);
                self.cost_block(buf, r.len(), y.part(r, k), w, total)
            });
            if !last {
                Self::merge_moments(ws, plan, l - 1, n, m);
                batch_norms(&ws.stats[l - 1], m, bn.eps, &mut ws.factors[l - 1]);
            }
        }
        for g in &mut ws.groups[..plan.groups] {
            if let Some(e) = owned(g).error.take() {
                return Err(e);
            }
        }
        if let Some(running) = running {
            for (l, pair) in running.chunks_exact_mut(2).enumerate() {
                let (mean, var) = pair.split_at_mut(1);
                update_running(mean[0], var[0], &ws.stats[l], m, bn.momentum);
            }
        }
        // Backward: step l takes dZ~_l to dZ_l with the batch's dgamma and dbeta (below the
        // output layer), then computes layer l's gradients, dZ~_{l-1} and its block's sums.
        for l in (1..=layers).rev() {
            let wi = self.w_index(l);
            let bias = (!self.norm(l)).then_some(wi + 1);
            let n = self.sizes[l];
            let below = self.sizes[l - 1];
            let normed_below = l > 1 && self.norm(l - 1);
            let factors = if l < layers {
                &ws.factors[l - 1][..]
            } else {
                &[][..]
            };
            Self::each_block(ws, plan, false, &|buf, group, first, r| {
                if l < layers {
                    let rows = r.len() * n;
                    let (d, xhat) = (&mut buf.delta[1][..rows], &buf.xhat[l - 1][..rows]);
                    normalize_backward_rows(level, d, xhat, factors);
                    buf.delta.swap(0, 1);
                }
                let (x, drop) = (inputs.part(r.clone(), n0), drop_of(&r));
                if first {
                    self.backward_layer(buf, params, x, &mut group.grads, l, false, drop);
                } else {
                    let mut part = std::mem::take(&mut group.scratch);
                    self.backward_layer(buf, params, x, &mut part, l, false, drop);
                    for i in std::iter::once(wi).chain(bias) {
                        add_slice(&mut group.grads[i], &part[i]);
                    }
                    group.scratch = part;
                }
                if normed_below {
                    let rows = r.len() * below;
                    let (d, xhat) = (&buf.delta[1][..rows], &buf.xhat[l - 2][..rows]);
                    affine_sums(level, d, xhat, &mut buf.moments[l - 2]);
                }
                Ok(0.0)
            });
            if normed_below {
                Self::combine(ws, plan, l - 2, 0..2 * below);
                let gamma = params[self.w_index(l - 1) + 1].as_ref();
                backward_factors(&mut ws.factors[l - 2], gamma, &ws.stats[l - 2], m, true);
            }
        }
        let cost = Self::sum_groups(ws, plan, Some(&mut *grads))?;
        // dgamma and dbeta are the batch's sums, not the groups'.
        for l in 1..layers {
            let (wi, n) = (self.w_index(l), self.sizes[l]);
            let sums = &ws.stats[l - 1];
            for (i, slot) in [(0, wi + 1), (n, wi + 2)] {
                for (g, &s) in grads[slot].as_mut().iter_mut().zip(&sums[i..i + n]) {
                    *g = T::from_f64(s);
                }
            }
        }
        Ok(cost)
    }
}
