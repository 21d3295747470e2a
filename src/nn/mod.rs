//! Fully-connected networks: forward pass, cost and backward pass of the lecture's networks,
//! and the epoch loop that trains them with an optimizer — all in Rust.
//!
//! Layout (examples are rows, as in the demo's `net.py` and scikit-learn's `coefs_`):
//! `X (m, n_0)`, `W_l (n_{l-1}, n_l)`, `b_l (n_l,)`, `Z_l = A_{l-1} W_l + b_l`,
//! `A_l = g(Z_l)` for hidden layers and the output activation for the last one.
//! Parameters are passed in the order `W1, b1, W2, b2, ...`.
//!
//! Matrix products go through faer (runtime-dispatched AVX2/AVX-512 kernels), large ones
//! cut into tiles of C by shape alone and spread over the pool; bias and activation are
//! one pass over each layer's output, softmax and cross-entropy one pass over the last.
//! Batches larger than a cache-sized block of rows — and mid-sized ones, in two — are
//! computed block by block, the blocks side by side on the pool, each block's forward and
//! backward passes in a block-sized [`Workspace`] buffer, the blocks' gradients summed in
//! an order fixed by the shape ([`Mlp::blocks`]): memory is bounded by the block, never
//! by the batch, and results are the same bits at every thread count.

mod epoch;
mod math;
mod pointwise;

pub use epoch::{train_epoch, EpochData, StepOutcome, Timing};

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use crate::error::{try_filled, Error, Result};
use crate::numerics::float::Float;
use pointwise::{
    activation_backward, bias_activation, bias_sigmoid, bias_softmax, column_sums,
    sigmoid_delta_and_terms,
};

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
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu,
            "tanh" => Activation::Tanh,
            "sigmoid" | "logistic" => Activation::Sigmoid,
            "identity" => Activation::Identity,
            _ => return None,
        })
    }
}

/// The output layer and its cost.
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
}

impl Output {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sigmoid" | "logistic" => Output::Sigmoid,
            "softmax" => Output::Softmax,
            "identity" => Output::Identity,
            _ => return None,
        })
    }
}

/// The element arithmetic the networks need beyond [`Float`]: `exp`, `ln`, `ln_1p` and
/// `tanh` of both types are the branch-free polynomials of [`math`] (within 1.5 ulp), which
/// vectorize inside the multiversioned passes and give the same bits at every SIMD level:
/// no libm call per element.
pub trait NnFloat: Float + faer::traits::ComplexField {
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    /// `nano-gemm`'s `C = A B` (faer's own path for small products), C row-major `(m, n)`
    /// with row stride `ldc`.
    ///
    /// # Safety
    /// As [`gemm`].
    unsafe fn small_gemm(
        shape: (usize, usize, usize),
        a: *const Self,
        sa: (isize, isize),
        b: *const Self,
        sb: (isize, isize),
        c: *mut Self,
        ldc: usize,
    );
}

/// nano-gemm sums a product whose C is not column-major in depth blocks of this many
/// (64); up to it, a product is computed as its transpose with the same result.
const SMALL_GEMM_DEPTH: usize = 64;

macro_rules! small_gemm {
    ($execute:path) => {
        unsafe fn small_gemm(
            (m, k, n): (usize, usize, usize),
            a: *const Self,
            sa: (isize, isize),
            b: *const Self,
            sb: (isize, isize),
            c: *mut Self,
            ldc: usize,
        ) {
            if k <= SMALL_GEMM_DEPTH {
                // C^T = B^T A^T: C row-major is C^T column-major, which nano-gemm writes in
                // place (no copy of C through a buffer). Each element is the same chain of
                // multiply-adds over the depth as below (one depth block), so the same bits.
                return $execute(
                    n,
                    m,
                    k,
                    c,
                    1,
                    ldc as isize,
                    b,
                    sb.1,
                    sb.0,
                    a,
                    sa.1,
                    sa.0,
                    0.0,
                    1.0,
                    false,
                    false,
                );
            }
            // dst = 0 * dst + 1 * A B.
            $execute(
                m,
                n,
                k,
                c,
                ldc as isize,
                1,
                a,
                sa.0,
                sa.1,
                b,
                sb.0,
                sb.1,
                0.0,
                1.0,
                false,
                false,
            );
        }
    };
}

impl NnFloat for f32 {
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        math::ln_f32(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        math::ln_1p_f32(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        math::tanh_f32(self)
    }
    small_gemm!(nano_gemm::planless::execute_f32);
}

impl NnFloat for f64 {
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f64(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        math::ln_f64(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        math::ln_1p_f64(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        math::tanh_f64(self)
    }
    small_gemm!(nano_gemm::planless::execute_f64);
}

/// `C = A B` through faer (runtime-dispatched AVX2/AVX-512 kernels; small products by its
/// `nano-gemm`), sequential: `A (m, k)` and `B (k, n)` given by (row, column) strides
/// in elements, C row-major with row stride `ldc`.
///
/// # Safety
/// The pointers must address matrices of these shapes and strides; C must not overlap
/// A or B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    c: *mut T,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k <= SMALL_MULS {
        return T::small_gemm((m, k, n), a, (rsa, csa), b, (rsb, csb), c, ldc);
    }
    let a = faer::MatRef::<T>::from_raw_parts(a, m, k, rsa, csa);
    let b = faer::MatRef::<T>::from_raw_parts(b, k, n, rsb, csb);
    let c = faer::MatMut::<T>::from_raw_parts_mut(c, m, n, ldc as isize, 1);
    faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, T::ONE, faer::Par::Seq);
}

/// Products of at most this many multiply-adds go straight to `nano-gemm` (faer's own
/// threshold for it; faer would first try its matrix-vector kernels, slower at this size).
const SMALL_MULS: usize = 16 * 16 * 16;

/// Products of at least twice this many multiply-adds (about 5 us of one core) are cut
/// into tiles of C.
const TILE_MIN_MULS: usize = 1 << 18;
/// The most tiles a product is cut into.
const MAX_TILES: usize = 16;
/// Tiles are at least this many rows and columns (where C has them).
const TILE_MIN_SIDE: usize = 128;

/// How C `(m, n)` of a product with inner size `k` is cut into tiles: `(rows, columns)`
/// per tile. A function of the shape alone, never of the thread count: each tile is the
/// same faer call whichever thread runs it, so results do not depend on the thread count.
fn tiles(m: usize, k: usize, n: usize) -> (usize, usize) {
    let want = (m * k * n / TILE_MIN_MULS).clamp(1, MAX_TILES);
    let row_blocks = want.min(m.div_ceil(TILE_MIN_SIDE));
    let col_blocks = (want / row_blocks).min(n.div_ceil(TILE_MIN_SIDE)).max(1);
    let round = |len: usize, blocks: usize| len.div_ceil(blocks).div_ceil(16) * 16;
    (round(m, row_blocks).min(m), round(n, col_blocks).min(n))
}

/// `C = A B` as [`gemm`] with C row-major `(m, n)`, cut into the [`tiles`] of its shape,
/// computed on the pool when `par` and there are several (the same tiles either way, so the
/// same bits).
///
/// # Safety
/// As [`gemm`].
unsafe fn matmul<T: NnFloat>(
    shape: (usize, usize, usize),
    a: *const T,
    sa: (isize, isize),
    b: *const T,
    sb: (isize, isize),
    c: *mut T,
    par: bool,
) {
    let (m, k, n) = shape;
    let (tr, tc) = tiles(m, k, n);
    if tr >= m && tc >= n {
        return gemm(shape, a, sa, b, sb, c, n);
    }
    let (row_tiles, col_tiles) = (m.div_ceil(tr), n.div_ceil(tc));
    let (a, b, c) = (a as usize, b as usize, c as usize);
    let tile = |t: usize| {
        let (r0, c0) = ((t / col_tiles) * tr, (t % col_tiles) * tc);
        let (rows, cols) = (tr.min(m - r0), tc.min(n - c0));
        let a = (a as *const T).wrapping_offset(r0 as isize * sa.0);
        let b = (b as *const T).wrapping_offset(c0 as isize * sb.1);
        let c = (c as *mut T).wrapping_add(r0 * n + c0);
        // SAFETY: the tiles of C are disjoint; A and B are read only.
        unsafe { gemm((rows, k, cols), a, sa, b, sb, c, n) };
    };
    let count = row_tiles * col_tiles;
    if par {
        on_pool(count, &tile);
    } else {
        (0..count).for_each(tile);
    }
}

/// Runs `work(i)` for every `i < n`: with [`crate::runtime::parallel::for_each_index`] when the pool
/// has several threads, else on this thread alone (not beside a lone worker).
fn on_pool(n: usize, work: &(dyn Fn(usize) + Sync)) {
    if crate::runtime::parallel::num_threads() < 2 {
        (0..n).for_each(work);
    } else {
        crate::runtime::parallel::for_each_index(n, work);
    }
}

/// Element-wise passes over at least twice this many values are cut into blocks of whole
/// rows of about this many, spread over the pool.
const ROW_BLOCK_ELEMENTS: usize = 1 << 15;

/// Runs `f(first, block)` on blocks of whole rows of `out` (`n` values per row; `first` is
/// the block's first element), on the pool when `par`, it has several threads and `out` is
/// large. For element-wise passes, whose results do not depend on the cut.
fn by_row_blocks<T: NnFloat>(
    out: &mut [T],
    n: usize,
    par: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let len = out.len();
    if !par || len < 2 * ROW_BLOCK_ELEMENTS || crate::runtime::parallel::num_threads() < 2 {
        return f(0, out);
    }
    let block = (ROW_BLOCK_ELEMENTS / n.max(1)).max(1) * n;
    let at = out.as_mut_ptr() as usize;
    crate::runtime::parallel::for_each_index(len.div_ceil(block), &|i| {
        let first = i * block;
        let end = (first + block).min(len);
        // SAFETY: the blocks are disjoint parts of `out`, borrowed mutably for this call.
        let part =
            unsafe { std::slice::from_raw_parts_mut((at as *mut T).add(first), end - first) };
        f(first, part);
    });
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
    pub hidden: Activation,
    pub output: Output,
    /// L2 penalty `alpha / 2 * sum_l ||W_l||^2 / m` (biases are not penalised).
    pub alpha: f64,
}

/// The bytes of one block's activations and deltas aimed for: a quarter of a core's L2
/// cache on the machines measured (1 MiB on the AMD EPYC, 1.25-2 MiB on the Intel Xeons),
/// leaving room for the weights, the inputs and the gradients.
const BLOCK_BYTES: usize = 256 << 10;

/// Blocks hold at least this many rows (all of a smaller batch): the wide layers' products
/// are bound by arithmetic, not by the cache, and run faster on long blocks.
const MIN_BLOCK_ROWS: usize = 512;

/// A batch in many blocks is summed in at most this many groups of consecutive blocks.
const MAX_GROUPS: usize = 16;

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
    fn rows_of(&self, b: usize) -> Range<usize> {
        let start = b * self.block;
        start..(start + self.block).min(self.rows)
    }

    /// The blocks of group `g`.
    fn blocks_of(&self, g: usize) -> Range<usize> {
        g * self.count / self.groups..(g + 1) * self.count / self.groups
    }
}

/// The work on one block of a group: `(buffers, group, first of the group, rows)` to the
/// block's share of the cost.
type BlockFn<'a, T> =
    dyn Fn(&mut Buffers<T>, &mut Group<T>, bool, Range<usize>) -> Result<f64> + Sync + 'a;

/// One block's intermediates.
#[derive(Debug, Default)]
struct Buffers<T> {
    rows: usize,
    /// `acts[l - 1]`: `A_l`, `(rows, n_l)`, for `l = 1..=L`.
    acts: Vec<Vec<T>>,
    /// `dJ/dZ` of the layer being back-propagated, and of the one below it.
    delta: [Vec<T>; 2],
    /// The gradients of a block after its group's first, added to the group's (empty
    /// until a batch in several blocks is trained on).
    grads: Vec<Vec<T>>,
}

/// What a group of blocks sums: its gradients (empty until trained on) and data cost.
#[derive(Debug, Default)]
struct Group<T> {
    grads: Vec<Vec<T>>,
    cost: f64,
    error: Option<Error>,
}

/// Every intermediate of a batch's forward and backward passes: one block's buffers per
/// thread that computes blocks at once ([`Mlp::blocks`]), and the gradients of each group
/// of blocks when a batch is in several. Its size is bounded by the block, the thread
/// count and the network, never by a batch's row count; it grows (never shrinks) and is
/// reused from batch to batch.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    blocks: Vec<Mutex<Buffers<T>>>,
    groups: Vec<Mutex<Group<T>>>,
}

/// A workspace holds scratch values only: its clone starts empty.
impl<T> Clone for Workspace<T> {
    fn clone(&self) -> Self {
        Workspace {
            blocks: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// The value behind a lock of a workspace (a panic in another block leaves only scratch
/// values behind it).
fn locked<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value behind a lock held alone.
fn owned<X>(m: &mut Mutex<X>) -> &mut X {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// Some free one of `slots`: there are at least as many as blocks run at once.
fn claim<X>(slots: &[Mutex<X>]) -> MutexGuard<'_, X> {
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
    fn fit(&mut self, net: &Mlp, rows: usize, grads: bool) -> Result<()> {
        if !(self.acts.len() == net.layers() && self.rows >= rows) {
            let rows = rows.max(self.rows);
            // The old buffers go first, so their memory is there for the new ones.
            (self.rows, self.acts, self.delta) = (0, Vec::new(), Default::default());
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
            (self.rows, self.acts) = (rows, acts);
        }
        if grads && self.grads.is_empty() {
            self.grads = net.zero_grads("a block's gradients")?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        let values: usize = (self.acts.iter().chain(&self.delta).chain(&self.grads))
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
        self.reserve(net, &plan, plan.groups, true).map(|_| ())
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
    fn reserve(&mut self, net: &Mlp, plan: &Blocks, tasks: usize, grads: bool) -> Result<usize> {
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
struct Part<'a, T> {
    x: &'a [T],
    rows: usize,
    strides: (isize, isize),
}

impl<'a, T> Inputs<'a, T> {
    /// The rows `r` of inputs with `n` columns.
    fn part(self, r: Range<usize>, n: usize) -> Part<'a, T> {
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
    fn part(self, r: Range<usize>, k: usize) -> Self {
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

/// `acc += part`, element by element.
fn add_into<T: NnFloat, G: AsMut<[T]>>(acc: &mut [G], part: &[Vec<T>]) {
    for (a, p) in acc.iter_mut().zip(part) {
        for (x, &y) in a.as_mut().iter_mut().zip(p) {
            *x += y;
        }
    }
}

impl Mlp {
    /// Checks the shape and functions: at least one layer, every size >= 1, and at least
    /// two outputs for softmax.
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
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::Invalid(format!(
                "alpha must be a finite number >= 0, got {alpha}"
            )));
        }
        Ok(Mlp {
            sizes,
            hidden,
            output,
            alpha,
        })
    }

    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Element counts of `W1, b1, W2, b2, ...`.
    pub fn param_lens(&self) -> Vec<usize> {
        self.param_len_iter().collect()
    }

    fn param_len_iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.sizes.windows(2).flat_map(|w| [w[0] * w[1], w[1]])
    }

    /// Zeroed buffers for `W1, b1, ...`, or `OutOfMemory` naming `what`.
    fn zero_grads<T: NnFloat>(&self, what: &str) -> Result<Vec<Vec<T>>> {
        self.param_len_iter()
            .map(|n| try_filled(n, T::ZERO, || what.to_string()))
            .collect()
    }

    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    fn check_params<P: AsRef<[T]>, T>(&self, params: &[P]) -> Result<()> {
        // Checked once per batch: no allocation.
        if params.len() != 2 * self.layers()
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

    fn check_grads<T, G: AsMut<[T]>>(&self, grads: &mut [G]) -> Result<()> {
        // Checked once per batch: no allocation.
        if grads.len() != 2 * self.layers()
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
    fn check_batch<T, P: AsRef<[T]>>(
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

    /// The most rows of a block for values of `T`: as many as keep one block's activations
    /// and deltas (`sum_l n_l + 2 max_l n_l` values a row) within [`BLOCK_BYTES`], and at
    /// least [`MIN_BLOCK_ROWS`].
    pub fn block_rows<T>(&self) -> usize {
        let widest = self.sizes[1..].iter().copied().max().unwrap_or(0);
        let row = (self.sizes[1..].iter().sum::<usize>() + 2 * widest) * std::mem::size_of::<T>();
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

    /// The forward pass: the outputs `A_L` of every row of `inputs` into `out` (`(rows,
    /// n_L)` row-major), block by block ([`Mlp::blocks`]) on the pool.
    pub fn predict<T: NnFloat, P: AsRef<[T]> + Sync>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        out: &mut [T],
    ) -> Result<()> {
        self.check_params(params)?;
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
            self.forward_block(buf, params, inputs.part(0..rows, n0), true);
            out.copy_from_slice(&buf.acts[last][..rows * k]);
            return Ok(());
        }
        let at = out.as_mut_ptr() as usize;
        let slots = &ws.blocks[..workers];
        on_pool(plan.count, &|b| {
            let r = plan.rows_of(b);
            let mut buf = claim(slots);
            self.forward_block(&mut buf, params, inputs.part(r.clone(), n0), false);
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
        self.check_batch(params, &inputs, &y)?;
        let plan = self.blocks::<T>(inputs.rows);
        let workers = ws.reserve(self, &plan, plan.groups, false)?;
        let (m, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        if plan.count == 1 {
            let buf = owned(&mut ws.blocks[0]);
            self.forward_block(buf, params, inputs.part(0..m, n0), true);
            return self.cost_block(buf, m, y, m);
        }
        Self::over_groups(ws, &plan, workers, &|buf, _, _, r| {
            self.forward_block(buf, params, inputs.part(r.clone(), n0), false);
            self.cost_block(buf, r.len(), y.part(r, k), m)
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
        let (cost, penalty) = self.cost_and_grad(ws, params, inputs, y, grads, None)?;
        Ok(cost + penalty)
    }

    /// [`Mlp::loss_and_grad`] returning the data cost and the L2 penalty
    /// `alpha/(2m) sum ||W||^2` apart, block by block ([`Mlp::blocks`]). With `phases`, adds
    /// the seconds of the forward pass with the cost (`phases[0]`) and of the backward pass
    /// with the penalty (`phases[1]`); a batch in several blocks interleaves them, and its
    /// wall time is split as the calling thread's own blocks split theirs.
    pub fn cost_and_grad<T: NnFloat, P: AsRef<[T]> + Sync, G: AsMut<[T]> + Send>(
        &self,
        ws: &mut Workspace<T>,
        params: &[P],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
        grads: &mut [G],
        phases: Option<&mut [f64; 2]>,
    ) -> Result<(f64, f64)> {
        self.check_grads(grads)?;
        self.check_batch(params, &inputs, &y)?;
        let plan = self.blocks::<T>(inputs.rows);
        let workers = ws.reserve(self, &plan, plan.groups, true)?;
        let (m, n0, k) = (inputs.rows, self.sizes[0], self.outputs());
        let timed = phases.is_some();
        let now = |on: bool| on.then(Instant::now);
        let span = |a: Option<Instant>, b: Option<Instant>| {
            a.zip(b).map_or(0.0, |(a, b)| (b - a).as_secs_f64())
        };
        let t0 = now(timed);
        if plan.count == 1 {
            let buf = owned(&mut ws.blocks[0]);
            let x = inputs.part(0..m, n0);
            self.forward_block(buf, params, x, true);
            let cost = self.cost_block(buf, m, y, m)?;
            let t1 = now(timed);
            self.backward_block(buf, params, x, grads, true);
            let penalty = self.penalty(params, grads, m);
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
            self.forward_block(buf, params, x, false);
            let cost = self.cost_block(buf, r.len(), y.part(r, k), m)?;
            let tb = now(here);
            if first {
                self.backward_block(buf, params, x, &mut group.grads, false);
            } else {
                let mut part = std::mem::take(&mut buf.grads);
                self.backward_block(buf, params, x, &mut part, false);
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
        let penalty = self.penalty(params, grads, m);
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
    fn sum_groups<T: NnFloat, G: AsMut<[T]>>(
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
    /// sigmoid's logits in `buf.delta[1]`). The caller has checked the shapes.
    fn forward_block<T: NnFloat, P: AsRef<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        par: bool,
    ) {
        let rows = x.rows;
        let level = crate::runtime::simd::level();
        let layers = self.layers();
        for l in 1..=layers {
            let (k, n) = (self.sizes[l - 1], self.sizes[l]);
            let w = params[2 * (l - 1)].as_ref();
            let b = params[2 * (l - 1) + 1].as_ref();
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
            match self.output {
                _ if l < layers => by_row_blocks(out, n, par, |_, block| {
                    bias_activation(level, block, b, self.hidden);
                }),
                // The logits stay for the cost: log(1 - p) loses them once p rounds to 1.
                Output::Sigmoid => bias_sigmoid(level, out, &mut buf.delta[1][..rows * n], b),
                Output::Softmax => bias_softmax(level, out, b),
                Output::Identity => bias_activation(level, out, b, Activation::Identity),
            }
        }
    }

    /// The cost of the last forward pass in `buf` (`rows` of a batch of `m`) against `y`:
    /// the block's share of the batch's mean cost, and of `dJ/dZ_L` into `buf.delta[0]`.
    fn cost_block<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        m: usize,
    ) -> Result<f64> {
        if self.output == Output::Sigmoid {
            self.sigmoid_cost_and_delta(buf, rows, y, m)
        } else {
            self.output_delta(buf, rows, y, m)
        }
    }

    /// [`Mlp::cost_block`] for softmax and identity outputs.
    fn output_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        m: usize,
    ) -> Result<f64> {
        let k = self.outputs();
        let a = &buf.acts[buf.acts.len() - 1][..rows * k];
        let d = &mut buf.delta[0][..rows * k];
        let inv_m = T::from_f64(1.0 / m as f64);
        let mut cost = 0.0f64;
        match (self.output, y) {
            (Output::Softmax, Targets::Labels(labels)) => {
                for ((p, dr), &c) in a.chunks_exact(k).zip(d.chunks_exact_mut(k)).zip(labels) {
                    if c < 0 || c as usize >= k {
                        return Err(Error::Invalid(format!(
                            "Y holds class {c}, outside [0, {k}) for {k} output units"
                        )));
                    }
                    let c = c as usize;
                    for (j, (dd, &pp)) in dr.iter_mut().zip(p).enumerate() {
                        let y = if j == c { T::ONE } else { T::ZERO };
                        *dd = (pp - y) * inv_m;
                    }
                    cost -= p[c].ln().to_f64();
                }
            }
            (_, Targets::Labels(_)) => {
                return Err(Error::Invalid(
                    "integer labels need output='softmax'".into(),
                ))
            }
            (out, Targets::Dense(y)) => {
                if out == Output::Softmax {
                    for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                        *dd = (p - t) * inv_m;
                        if t != T::ZERO {
                            cost -= t.to_f64() * p.ln().to_f64();
                        }
                    }
                } else {
                    let inv_mk = T::from_f64(1.0 / (m * k) as f64);
                    for ((dd, &p), &t) in d.iter_mut().zip(a).zip(y) {
                        let r = p - t;
                        *dd = r * inv_mk;
                        cost += 0.5 * r.to_f64() * r.to_f64();
                    }
                    return Ok(cost / (m * k) as f64);
                }
            }
        }
        Ok(cost / m as f64)
    }

    /// Adds `alpha/m W` to each `dW` and returns the penalty `alpha/(2m) sum ||W||^2`.
    fn penalty<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        params: &[P],
        grads: &mut [G],
        rows: usize,
    ) -> f64 {
        if self.alpha == 0.0 {
            return 0.0;
        }
        let alpha_m = self.alpha / rows as f64;
        let am = T::from_f64(alpha_m);
        let mut cost = 0.0;
        for l in (1..=self.layers()).rev() {
            let (gw, w) = (grads[2 * (l - 1)].as_mut(), params[2 * (l - 1)].as_ref());
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
    fn backward_block<T: NnFloat, P: AsRef<[T]>, G: AsMut<[T]>>(
        &self,
        buf: &mut Buffers<T>,
        params: &[P],
        x: Part<'_, T>,
        grads: &mut [G],
        par: bool,
    ) {
        let rows = x.rows;
        let layers = self.layers();
        let level = crate::runtime::simd::level();
        for l in (1..=layers).rev() {
            let (k, n) = (self.sizes[l - 1], self.sizes[l]);
            let (gw, rest) = grads[2 * (l - 1)..].split_at_mut(1);
            let (gw, gb) = (gw[0].as_mut(), rest[0].as_mut());
            let [d, d_below] = &mut buf.delta;
            let d = &d[..rows * n];
            // A^T is (k, rows): A's strides swapped.
            let (a, (rsa, csa)) = if l == 1 {
                (x.x.as_ptr(), x.strides)
            } else {
                (buf.acts[l - 2].as_ptr(), (k as isize, 1))
            };
            let w = params[2 * (l - 1)].as_ref();
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
            column_sums(level, gb, d);
            if l > 1 {
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
                let a = &buf.acts[l - 2][..rows * k];
                by_row_blocks(below, k, par, |at, block| {
                    activation_backward(level, block, &a[at..at + block.len()], self.hidden);
                });
                buf.delta.swap(0, 1);
            }
        }
    }

    /// Sigmoid output: `dJ/dZ = (p - y)/m`, `J = 1/m sum bce(z, y)` from the logits the
    /// forward pass kept in `buf.delta[1]`.
    fn sigmoid_cost_and_delta<T: NnFloat>(
        &self,
        buf: &mut Buffers<T>,
        rows: usize,
        y: Targets<'_, T>,
        m: usize,
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
        let inv_m = T::from_f64(1.0 / m as f64);
        sigmoid_delta_and_terms(crate::runtime::simd::level(), d, z, p, y, inv_m);
        Ok(z.iter().map(|t| t.to_f64()).sum::<f64>() / m as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i + 1) * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    fn problem(net: &Mlp, rows: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
        let params = net
            .param_lens()
            .iter()
            .enumerate()
            .map(|(i, &n)| values(n, i + 1).iter().map(|v| v * 0.7).collect())
            .collect();
        let x = values(rows * net.sizes[0], 99);
        let k = net.outputs();
        let y = values(rows * k, 7)
            .iter()
            .enumerate()
            .map(|(i, v)| match net.output {
                // Softmax targets are distributions: one-hot rows.
                Output::Softmax => f64::from(u8::from(i % k == (i / k) % k)),
                _ => f64::from(u8::from(*v > 0.0)),
            })
            .collect();
        (params, x, y)
    }

    fn cost(
        net: &Mlp,
        ws: &mut Workspace<f64>,
        params: &[Vec<f64>],
        x: &[f64],
        y: &[f64],
        rows: usize,
    ) -> f64 {
        let mut grads: Vec<Vec<f64>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
        let inputs = Inputs {
            x,
            rows,
            transposed: false,
        };
        net.loss_and_grad(ws, params, inputs, Targets::Dense(y), &mut grads)
            .unwrap()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for hidden in [Activation::Tanh, Activation::Sigmoid, Activation::Identity] {
            for output in [Output::Sigmoid, Output::Softmax, Output::Identity] {
                let net = Mlp::new(vec![3, 4, 2], hidden, output, 0.3).unwrap();
                let rows = 5;
                let (mut params, x, y) = problem(&net, rows);
                let mut ws = Workspace::default();
                let mut grads: Vec<Vec<f64>> =
                    net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
                let inputs = Inputs {
                    x: &x,
                    rows,
                    transposed: false,
                };
                net.loss_and_grad(&mut ws, &params, inputs, Targets::Dense(&y), &mut grads)
                    .unwrap();
                let h = 1e-6;
                for p in 0..params.len() {
                    for i in 0..params[p].len() {
                        let old = params[p][i];
                        params[p][i] = old + h;
                        let up = cost(&net, &mut ws, &params, &x, &y, rows);
                        params[p][i] = old - h;
                        let down = cost(&net, &mut ws, &params, &x, &y, rows);
                        params[p][i] = old;
                        let fd = (up - down) / (2.0 * h);
                        assert!(
                            (fd - grads[p][i]).abs() < 1e-6 * (1.0 + fd.abs()),
                            "{hidden:?} {output:?} param {p}[{i}]: {fd} vs {}",
                            grads[p][i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiled_products_do_not_depend_on_the_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        // A^T given by strides, as the backward pass passes it.
        let (m, k, n) = (300, 200, 280);
        let a: Vec<f32> = values(m * k, 1).iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = values(k * n, 2).iter().map(|&v| v as f32).collect();
        let run = |threads| {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let mut c = vec![0f32; m * n];
            // SAFETY: shapes as given, C separate.
            unsafe {
                matmul::<f32>(
                    (m, k, n),
                    a.as_ptr(),
                    (1, m as isize),
                    b.as_ptr(),
                    (n as isize, 1),
                    c.as_mut_ptr(),
                    true,
                );
            };
            c
        };
        let (tr, tc) = tiles(m, k, n);
        assert!(tr < m && tc < n, "the product is cut into tiles both ways");
        let one = run(1);
        for (i, j) in [(0, 0), (m - 1, n - 1), (137, 211)] {
            let exact: f64 = (0..k)
                .map(|p| f64::from(a[p * m + i]) * f64::from(b[p * n + j]))
                .sum();
            assert!((f64::from(one[i * n + j]) - exact).abs() < 1e-3 * (1.0 + exact.abs()));
        }
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        // Wide enough for tiled products and element-wise passes in blocks of rows.
        let net = Mlp::new(
            vec![64, 160, 160, 10],
            Activation::Relu,
            Output::Softmax,
            0.1,
        )
        .unwrap();
        let rows = 700;
        let (params, x, _) = problem(&net, rows);
        let params: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|&v| v as f32 * 0.3).collect())
            .collect();
        let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let labels: Vec<i64> = (0..rows as i64).map(|i| i % 10).collect();
        assert!(rows * 160 >= 2 * ROW_BLOCK_ELEMENTS);
        let run = |threads| {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let mut grads: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.0; n]).collect();
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let cost = net
                .loss_and_grad(
                    &mut Workspace::default(),
                    &params,
                    inputs,
                    Targets::Labels(&labels),
                    &mut grads,
                )
                .unwrap();
            (cost, grads)
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    /// The zeroed gradients of `net`.
    fn zeros<T: NnFloat>(net: &Mlp) -> Vec<Vec<T>> {
        net.zero_grads("test").unwrap()
    }

    /// A batch computed as one block, whatever its size: the block-level passes over one
    /// buffer of every row, on this thread. The cost (penalty included), the gradients and
    /// the outputs.
    fn one_block<T: NnFloat>(
        net: &Mlp,
        params: &[Vec<T>],
        inputs: Inputs<'_, T>,
        y: Targets<'_, T>,
    ) -> (f64, Vec<Vec<T>>, Vec<T>) {
        let rows = inputs.rows;
        let mut buf = Buffers::default();
        buf.fit(net, rows, false).unwrap();
        let x = inputs.part(0..rows, net.sizes[0]);
        net.forward_block(&mut buf, params, x, false);
        let out = buf.acts[net.layers() - 1][..rows * net.outputs()].to_vec();
        let mut cost = net.cost_block(&mut buf, rows, y, rows).unwrap();
        let mut grads = zeros(net);
        net.backward_block(&mut buf, params, x, &mut grads, false);
        cost += net.penalty(params, &mut grads, rows);
        (cost, grads, out)
    }

    /// `(cost, grads, outputs)` of `loss_and_grad` and `predict` at `threads` threads in a
    /// fresh workspace, with the data cost of `forward_cost` checked against
    /// `cost_and_grad`'s, bit for bit.
    fn blocked(
        net: &Mlp,
        params: &[Vec<f64>],
        inputs: Inputs<'_, f64>,
        y: Targets<'_, f64>,
        threads: usize,
    ) -> (f64, Vec<Vec<f64>>, Vec<f64>) {
        crate::runtime::parallel::set_num_threads(threads).unwrap();
        let mut ws = Workspace::default();
        let mut grads = zeros(net);
        let (cost, penalty) = net
            .cost_and_grad(&mut ws, params, inputs, y, &mut grads, None)
            .unwrap();
        let data = net.forward_cost(&mut ws, params, inputs, y).unwrap();
        assert_eq!(data.to_bits(), cost.to_bits(), "forward_cost's cost");
        let mut out = vec![0.0; inputs.rows * net.outputs()];
        net.predict(&mut ws, params, inputs, &mut out).unwrap();
        (cost + penalty, grads, out)
    }

    fn assert_close(a: &(f64, Vec<Vec<f64>>, Vec<f64>), b: &(f64, Vec<Vec<f64>>, Vec<f64>)) {
        assert!((a.0 - b.0).abs() <= 1e-12 * b.0.abs(), "{} vs {}", a.0, b.0);
        for (x, y) in (a.1.iter().flatten().chain(&a.2)).zip(b.1.iter().flatten().chain(&b.2)) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn a_mid_sized_batch_in_two_blocks_equals_one_block_to_rounding_at_every_thread_count() {
        for output in [Output::Sigmoid, Output::Softmax, Output::Identity] {
            let net = Mlp::new(vec![2, 32, 32, 3], Activation::Relu, output, 0.2).unwrap();
            let rows = 515;
            let plan = net.blocks::<f64>(rows);
            assert_eq!((plan.count, plan.block, plan.groups), (2, 258, 2));
            let (params, x, y) = problem(&net, rows);
            let inputs = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let want = one_block(&net, &params, inputs, Targets::Dense(&y));
            let one = blocked(&net, &params, inputs, Targets::Dense(&y), 1);
            assert_close(&one, &want);
            assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 2));
            assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 3));
        }
    }

    #[test]
    fn a_full_batch_in_blocks_equals_itself_at_every_thread_count_and_one_block_to_rounding() {
        // More blocks than groups: each group sums several blocks in order.
        let outputs = [Output::Sigmoid, Output::Softmax, Output::Identity];
        for (output, transposed) in outputs
            .iter()
            .map(|&o| (o, false))
            .chain([(Output::Softmax, true)])
        {
            let net = Mlp::new(vec![3, 8, 5, 2], Activation::Tanh, output, 0.2).unwrap();
            let rows = 17 * net.block_rows::<f64>() + 3;
            let plan = net.blocks::<f64>(rows);
            assert!(
                plan.count > plan.groups && plan.groups == MAX_GROUPS,
                "{plan:?}"
            );
            assert!(plan.block <= net.block_rows::<f64>());
            let (params, x, y) = problem(&net, rows);
            let xt: Vec<f64> = (0..x.len()).map(|i| x[(i % rows) * 3 + i / rows]).collect();
            let rows_major = Inputs {
                x: &x,
                rows,
                transposed: false,
            };
            let inputs = Inputs {
                x: if transposed { &xt } else { &x },
                rows,
                transposed,
            };
            let want = one_block(&net, &params, rows_major, Targets::Dense(&y));
            let one = blocked(&net, &params, inputs, Targets::Dense(&y), 1);
            assert_close(&one, &want);
            assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 2));
            assert_eq!(one, blocked(&net, &params, inputs, Targets::Dense(&y), 3));
        }
    }

    #[test]
    fn a_full_batch_workspace_is_bounded_by_the_block_not_the_rows() {
        let net = Mlp::new(
            vec![64, 256, 256, 10],
            Activation::Relu,
            Output::Softmax,
            0.0,
        )
        .unwrap();
        let params: usize = net.param_lens().iter().sum();
        // What a workspace may hold: per block buffer one block's activations, deltas and
        // gradients; per group one gradient.
        let bound = |ws: &Workspace<f32>, plan: &Blocks| {
            let per_row = 256 + 256 + 10 + 2 * 256;
            4 * (ws.blocks.len() * (plan.block * per_row + params) + plan.groups * params)
        };
        for m in [1_000_000, 10_000_000] {
            let plan = net.blocks::<f32>(m);
            assert!(plan.block <= net.block_rows::<f32>() && plan.groups <= MAX_GROUPS);
            let mut ws = Workspace::<f32>::default();
            ws.fit(&net, m).unwrap();
            assert!(ws.blocks.len() <= MAX_GROUPS);
            assert!(
                ws.bytes() <= bound(&ws, &plan),
                "{m} rows: {} bytes",
                ws.bytes()
            );
            // Not even A1 of every row: 256 values a row.
            assert!(
                ws.bytes() < 1_000_000 * 256 * 4 / 20,
                "{m} rows: {} bytes",
                ws.bytes()
            );
        }
        // A batch trained on in 64 blocks holds at most 16 blocks' buffers (one per thread
        // computing blocks, at most one per group): not the whole batch's.
        let net = Mlp::new(vec![8, 16, 4], Activation::Relu, Output::Identity, 0.0).unwrap();
        let rows = 64 * net.block_rows::<f32>();
        let x = vec![0.5f32; rows * 8];
        let y = vec![0.25f32; rows * 4];
        let p: Vec<Vec<f32>> = net.param_lens().iter().map(|&n| vec![0.1; n]).collect();
        let mut grads = zeros::<f32>(&net);
        let mut ws = Workspace::default();
        let inputs = Inputs {
            x: &x,
            rows,
            transposed: false,
        };
        net.loss_and_grad(&mut ws, &p, inputs, Targets::Dense(&y), &mut grads)
            .unwrap();
        let plan = net.blocks::<f32>(rows);
        let per_row = 16 + 4 + 2 * 16;
        let params: usize = net.param_lens().iter().sum();
        let held = 4 * (ws.blocks.len() * (plan.block * per_row + params) + plan.groups * params);
        assert_eq!(plan.count, 64);
        let unblocked = rows * per_row * 4;
        assert!(
            ws.bytes() <= held && held < unblocked / 2,
            "{} bytes",
            ws.bytes()
        );
    }

    #[test]
    fn tiles_cover_c_and_depend_only_on_the_shape() {
        assert_eq!(tiles(64, 2, 5), (64, 5));
        assert_eq!(tiles(256, 32, 32), (256, 32));
        for (m, k, n) in [
            (1024, 256, 256),
            (256, 1024, 10),
            (64, 1024, 256),
            (1000, 64, 300),
        ] {
            let (tr, tc) = tiles(m, k, n);
            let count = m.div_ceil(tr) * n.div_ceil(tc);
            assert!(
                count > 1 && count <= MAX_TILES,
                "{m}x{k}x{n}: {count} tiles"
            );
        }
    }

    #[test]
    fn labels_out_of_range_are_an_error() {
        let net = Mlp::new(vec![2, 3], Activation::Relu, Output::Softmax, 0.0).unwrap();
        let params = vec![vec![0.1f64; 6], vec![0.0; 3]];
        let mut grads = vec![vec![0.0f64; 6], vec![0.0; 3]];
        let x = [1.0, 2.0];
        let inputs = Inputs {
            x: &x,
            rows: 1,
            transposed: false,
        };
        let r = net.loss_and_grad(
            &mut Workspace::default(),
            &params,
            inputs,
            Targets::Labels(&[3]),
            &mut grads,
        );
        assert!(matches!(r, Err(Error::Invalid(_))));
        assert!(Mlp::new(vec![2, 1], Activation::Relu, Output::Softmax, 0.0).is_err());
    }
}
