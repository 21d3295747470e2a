//! How a batch is cut into blocks of rows ([`Mlp::blocks`]) and the buffers that hold
//! them ([`Workspace`]).

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use super::gemm::{ROW_BLOCK_ELEMENTS, TILE_MIN_MULS};
use super::{Mlp, NnFloat};
use crate::error::{try_filled, Error, Result};

/// The bytes of one block's activations and deltas aimed for: a quarter of a core's L2
/// cache on the machines measured (1 MiB on the AMD EPYC, 1.25-2 MiB on the Intel Xeons),
/// leaving room for the weights, the inputs and the gradients.
const BLOCK_BYTES: usize = 256 << 10;

/// Blocks hold at least this many rows (all of a smaller batch): the wide layers' products
/// are bound by arithmetic, not by the cache, and run faster on long blocks.
const MIN_BLOCK_ROWS: usize = 512;

/// A batch in many blocks is summed in at most this many groups of consecutive blocks.
pub(super) const MAX_GROUPS: usize = 16;

/// The groups' gradients take at most this many bytes (beyond 2 groups).
const GROUP_GRADS_BYTES: usize = 64 << 20;

/// Batches whose forward products take at least this many multiply-adds are computed in
/// two blocks at least, side by side on the pool (see [`Mlp::blocks`]).
const SPLIT_MIN_MULS: usize = 1 << 17;

/// How a batch is cut into blocks of rows, and the blocks into groups (see
/// [`Mlp::blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    /// The batch's rows.
    pub rows: usize,
    /// Rows per block (the last block may hold fewer).
    pub block: usize,
    /// The number of blocks.
    pub count: usize,
    /// The number of groups of consecutive blocks.
    pub groups: usize,
}

impl Blocks {
    /// The rows of block `b`.
    pub(super) fn rows_of(&self, b: usize) -> Range<usize> {
        let start = b * self.block;
        start..(start + self.block).min(self.rows)
    }

    /// The blocks of group `g`.
    pub(super) fn blocks_of(&self, g: usize) -> Range<usize> {
        g * self.count / self.groups..(g + 1) * self.count / self.groups
    }
}

/// The work on one block of a group: `(buffers, group, first of the group, rows)` to the
/// block's share of the cost.
pub(super) type BlockFn<'a, T> =
    dyn Fn(&mut Buffers<T>, &mut Group<T>, bool, Range<usize>) -> Result<f64> + Sync + 'a;

/// One block's intermediates.
#[derive(Debug, Default)]
pub(super) struct Buffers<T> {
    rows: usize,
    /// `acts[l - 1]`: `A_l`, `(rows, n_l)`, for `l = 1..=L`.
    pub(super) acts: Vec<Vec<T>>,
    /// `kept[l - 1]`: hidden layer `l`'s activations before dropout, `(rows, n_l)`, for the
    /// backward pass's `g'(Z_l)` (empty for a layer without dropout; no entries when the
    /// network has none) — `acts[l - 1]` holds them after.
    pub(super) kept: Vec<Vec<T>>,
    /// `xhat[l - 1]`: batch-normalized layer `l`'s `(Z_l - mu) / sqrt(var + eps)`,
    /// `(rows, n_l)`, for the backward pass (no entries without batch norm).
    pub(super) xhat: Vec<Vec<T>>,
    /// `norms[l - 1]`: the `mu` and `1 / sqrt(var + eps)` batch-normalized layer `l` used,
    /// then the backward pass' factors (`5 n_l` values, [`super::norm`]).
    pub(super) norms: Vec<Vec<T>>,
    /// `moments[l - 1]`: the batch's column means and sums of squared deviations of `Z_l`
    /// in f64 (`2 n_l` values; training only).
    pub(super) moments: Vec<Vec<f64>>,
    /// `dJ/dZ` of the layer being back-propagated, and of the one below it.
    pub(super) delta: [Vec<T>; 2],
    /// The gradients of a block after its group's first, added to the group's (empty
    /// until a batch in several blocks is trained on).
    pub(super) grads: Vec<Vec<T>>,
}

/// What a group of blocks sums: its gradients (empty until trained on) and data cost.
#[derive(Debug, Default)]
pub(super) struct Group<T> {
    pub(super) grads: Vec<Vec<T>>,
    /// The gradients of a block after the group's first, in training with batch norm
    /// ([`Mlp::synced_cost_and_grad`]; empty until then).
    pub(super) scratch: Vec<Vec<T>>,
    pub(super) cost: f64,
    pub(super) error: Option<Error>,
}

/// Every intermediate of a batch's forward and backward passes: one block's buffers per
/// thread that computes blocks at once ([`Mlp::blocks`]), and the gradients of each group
/// of blocks when a batch is in several. Its size is bounded by the block, the thread
/// count and the network, never by a batch's row count; it grows (never shrinks) and is
/// reused from batch to batch.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    pub(super) blocks: Vec<Mutex<Buffers<T>>>,
    pub(super) groups: Vec<Mutex<Group<T>>>,
    /// Per batch-normalized layer, the batch's sums over the blocks (`2 n_l` values in
    /// f64: `[mean, sum of squared deviations]`, then `[dgamma, dbeta]`) and the factors of
    /// its normalization (`5 n_l` values), in training with batch norm in several blocks.
    pub(super) stats: Vec<Vec<f64>>,
    pub(super) factors: Vec<Vec<T>>,
}

/// A workspace holds scratch values only: its clone starts empty.
impl<T> Clone for Workspace<T> {
    fn clone(&self) -> Self {
        Workspace {
            blocks: Vec::new(),
            groups: Vec::new(),
            stats: Vec::new(),
            factors: Vec::new(),
        }
    }
}

/// The value behind a lock of a workspace (a panic in another block leaves only scratch
/// values behind it).
pub(super) fn locked<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value behind a lock held alone.
pub(super) fn owned<X>(m: &mut Mutex<X>) -> &mut X {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// Some free one of `slots`: there are at least as many as blocks run at once.
pub(super) fn claim<X>(slots: &[Mutex<X>]) -> MutexGuard<'_, X> {
    loop {
        for s in slots {
            match s.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        std::hint::spin_loop();
    }
}

impl<T: NnFloat> Buffers<T> {
    /// Grows (never shrinks) the buffers to hold `rows` examples of `net`: one activation
    /// per layer (`rows * n_l` values) and two deltas of the widest layer; and a block's
    /// gradients when `grads`.
    ///
    /// # Errors
    /// `OutOfMemory` naming the buffer and the row count, the buffers left empty.
    pub(super) fn fit(&mut self, net: &Mlp, rows: usize, grads: bool) -> Result<()> {
        if !(self.acts.len() == net.layers()
            && self.rows >= rows
            && self.kept.len() == net.dropout.len()
            && self.xhat.len() == net.stat_count() / 2)
        {
            let rows = rows.max(self.rows);
            // The old buffers go first, so their memory is there for the new ones.
            (self.rows, self.acts, self.delta) = (0, Vec::new(), Default::default());
            self.kept = Vec::new();
            (self.xhat, self.norms, self.moments) = Default::default();
            let buffer = |width: usize, what: String| {
                try_filled(rows.saturating_mul(width), T::ZERO, || {
                    format!("{what} of {rows} rows")
                })
            };
            let widest = net.sizes[1..].iter().copied().max().unwrap_or(0);
            let acts = net.sizes[1..]
                .iter()
                .enumerate()
                .map(|(l, &n)| buffer(n, format!("the activations A{}", l + 1)))
                .collect::<Result<_>>()?;
            let delta = || buffer(widest, "a backward-pass delta".to_string());
            self.delta = [delta()?, delta()?];
            let kept = (net.dropout.iter().enumerate())
                .map(|(l, &rate)| {
                    if rate > 0.0 {
                        buffer(net.sizes[l + 1], format!("A{} before dropout", l + 1))
                    } else {
                        Ok(Vec::new())
                    }
                })
                .collect::<Result<_>>()?;
            let hidden = net.stat_count() / 2;
            let xhat = (1..=hidden)
                .map(|l| buffer(net.sizes[l], format!("the normalized Z{l}")))
                .collect::<Result<_>>()?;
            let stats =
                |l: usize| try_filled(5 * net.sizes[l], T::ZERO, || format!("batch norm {l}"));
            let norms = (1..=hidden).map(stats).collect::<Result<_>>()?;
            let moments = (1..=hidden)
                .map(|l| try_filled(2 * net.sizes[l], 0.0f64, || format!("batch norm {l}")))
                .collect::<Result<_>>()?;
            (self.xhat, self.norms, self.moments) = (xhat, norms, moments);
            (self.rows, self.acts, self.kept) = (rows, acts, kept);
        }
        if grads && self.grads.is_empty() {
            self.grads = net.zero_grads("a block's gradients")?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        let values: usize = (self.acts.iter().chain(&self.kept).chain(&self.xhat))
            .chain(&self.delta)
            .chain(&self.grads)
            .map(Vec::capacity)
            .sum();
        values * std::mem::size_of::<T>()
    }
}

impl<T: NnFloat> Workspace<T> {
    /// Sizes the workspace for training `net` on batches of up to `rows` examples (what
    /// [`Mlp::cost_and_grad`] does first; a smaller batch may cut its blocks otherwise and
    /// grow it once).
    ///
    /// # Errors
    /// `OutOfMemory` naming the buffer.
    pub fn fit(&mut self, net: &Mlp, rows: usize) -> Result<()> {
        let plan = net.blocks::<T>(rows);
        if net.batch_norm.is_some() && plan.count > 1 {
            return self.reserve_synced(net, &plan);
        }
        self.reserve(net, &plan, plan.groups, true).map(|_| ())
    }

    /// Sizes the workspace for training with batch norm on a batch in several blocks
    /// ([`Mlp::synced_cost_and_grad`]): one buffer per block (all of them live at once: the
    /// memory grows with the batch), each group's gradients and scratch, and the batch's
    /// sums and factors; clears the groups' errors.
    pub(super) fn reserve_synced(&mut self, net: &Mlp, plan: &Blocks) -> Result<()> {
        if self.blocks.len() < plan.count {
            self.blocks.resize_with(plan.count, Mutex::default);
        }
        for b in &mut self.blocks[..plan.count] {
            owned(b).fit(net, plan.block, false)?;
        }
        if self.groups.len() < plan.groups {
            self.groups.resize_with(plan.groups, Mutex::default);
        }
        for g in &mut self.groups[..plan.groups] {
            let g = owned(g);
            g.error = None;
            if g.grads.is_empty() {
                g.grads = net.zero_grads("a group of blocks' gradients")?;
            }
            if g.scratch.is_empty() {
                g.scratch = net.zero_grads("a block's gradients")?;
            }
        }
        let hidden = net.stat_count() / 2;
        if self.stats.len() != hidden {
            let width = |l: usize| net.sizes[l + 1];
            self.stats = (0..hidden)
                .map(|l| try_filled(2 * width(l), 0.0f64, || "batch norm's sums".to_string()))
                .collect::<Result<_>>()?;
            self.factors = (0..hidden)
                .map(|l| try_filled(5 * width(l), T::ZERO, || "batch norm's factors".to_string()))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// The bytes the workspace holds: one block's activations and deltas (and gradients)
    /// per thread that computes blocks, and one gradient per group of blocks.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(|b| locked(b).bytes()).sum();
        let groups: usize = (self.groups.iter())
            .map(|g| locked(g).grads.iter().map(Vec::capacity).sum::<usize>())
            .sum();
        blocks + groups * std::mem::size_of::<T>()
    }

    /// Sizes the buffers for `plan` run as `tasks` tasks on the pool (with the groups'
    /// gradients and the blocks' when `grads`); returns how many block buffers they use:
    /// one for a batch in one block, else one per thread that may run a task at once.
    pub(super) fn reserve(
        &mut self,
        net: &Mlp,
        plan: &Blocks,
        tasks: usize,
        grads: bool,
    ) -> Result<usize> {
        let spread = plan.count > 1;
        let threads = crate::runtime::parallel::num_threads();
        let workers = if spread && threads > 1 {
            // The caller drains the tasks beside every worker of the pool.
            tasks.min(threads + 1)
        } else {
            1
        };
        if self.blocks.len() < workers {
            self.blocks.resize_with(workers, Mutex::default);
        }
        for b in &mut self.blocks[..workers] {
            owned(b).fit(net, plan.block, grads && spread)?;
        }
        if spread {
            if self.groups.len() < plan.groups {
                self.groups.resize_with(plan.groups, Mutex::default);
            }
            for g in &mut self.groups[..plan.groups] {
                let g = owned(g);
                if grads && g.grads.is_empty() {
                    g.grads = net.zero_grads("a group of blocks' gradients")?;
                }
            }
        }
        Ok(workers)
    }
}

impl Mlp {
    /// The most rows of a block for values of `T`: as many as keep one block's activations
    /// and deltas (`sum_l n_l + 2 max_l n_l` values a row) within [`BLOCK_BYTES`], and at
    /// least [`MIN_BLOCK_ROWS`].
    pub fn block_rows<T>(&self) -> usize {
        let widest = self.sizes[1..].iter().copied().max().unwrap_or(0);
        let normed: usize = self.sizes[1..self.sizes.len() - 1].iter().sum();
        let normed = if self.batch_norm.is_some() { normed } else { 0 };
        let row = (self.sizes[1..].iter().sum::<usize>() + normed + 2 * widest)
            * std::mem::size_of::<T>();
        (BLOCK_BYTES / row.max(1)).max(MIN_BLOCK_ROWS)
    }

    /// How a batch of `rows` examples with values of `T` is computed: in blocks of equal
    /// rows (the last may hold fewer), as few as hold at most [`Mlp::block_rows`] rows each
    /// — and two for a mid-sized batch whose forward products take at least
    /// [`SPLIT_MIN_MULS`] multiply-adds while each half stays too small for its products to
    /// be cut into tiles (or its element-wise passes into blocks of rows). A batch in
    /// several blocks runs them on the pool, each block's forward and backward passes one
    /// after the other in a block-sized buffer; the blocks' gradients and costs are summed
    /// in order within groups of consecutive blocks (at most [`MAX_GROUPS`], their
    /// gradients within [`GROUP_GRADS_BYTES`]), and the groups' in a fixed pairwise tree
    /// over the group index. A function of the shape alone, never of the thread count, so
    /// results are the same bits at every thread count.
    pub fn blocks<T>(&self, rows: usize) -> Blocks {
        let mut count = rows.div_ceil(self.block_rows::<T>());
        if count == 1 && self.split_pays(rows) {
            count = 2;
        }
        let block = rows.div_ceil(count.max(1));
        let count = rows.checked_div(block).map_or(0, |_| rows.div_ceil(block));
        let param_bytes = self.param_len_iter().sum::<usize>() * std::mem::size_of::<T>();
        let groups = count
            .min(MAX_GROUPS)
            .min((GROUP_GRADS_BYTES / param_bytes.max(1)).max(2));
        Blocks {
            rows,
            block,
            count,
            groups,
        }
    }

    /// Whether a batch of `rows` that fits one block is computed in two (see
    /// [`Mlp::blocks`]).
    fn split_pays(&self, rows: usize) -> bool {
        let first = rows.div_ceil(2);
        let muls: usize = self.sizes.windows(2).map(|w| w[0] * w[1]).sum();
        let small = self.sizes.windows(2).all(|w| {
            first.saturating_mul(w[0] * w[1]) < 2 * TILE_MIN_MULS
                && first.saturating_mul(w[1]) < 2 * ROW_BLOCK_ELEMENTS
        });
        rows >= 2 && rows.saturating_mul(muls) >= SPLIT_MIN_MULS && small
    }
}
