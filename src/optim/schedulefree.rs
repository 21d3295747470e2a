//! Schedule-Free AdamW and SGD (Defazio et al. 2024) as the `schedulefree` package's
//! `AdamWScheduleFree` and `SGDScheduleFree` run them on the CPU, one parameter at a time.
//!
//! The optimizer keeps two sequences per parameter: `z`, the base optimizer's iterate, and
//! `x`, a weighted average of the `z`s. Training evaluates gradients at their interpolation
//! `y = (1 - beta1) z + beta1 x`, which the parameter holds in train mode; the step updates
//! `y` in place without forming `x`:
//!
//! ```text
//! y = lerp(y, z, ckp1) + lr (beta1 (1 - ckp1) - 1) d      # d: the (normalized) gradient
//! z = z - lr d
//! ```
//!
//! The caller computes the scalars (`ckp1 = weight / weight_sum`, the schedule) in double
//! precision as the package does; each element-wise operation here is the torch CPU kernel's
//! as built for AVX2 and AVX-512 (`lerp_` and `add_(alpha=)` one fused multiply-add each,
//! `addcmul_`'s `v + (value g) g` a product and one fused multiply-add, `mul_`, `div` and
//! `sqrt_` rounded per operation), each scalar rounded to the parameter's dtype as torch
//! rounds a Python number for a tensor. The square root is the correctly rounded one; torch
//! takes its `sqrt` from MKL where it is built with it, which is within an ulp of it. The
//! division by `bias_correction2` is computed, with the division's bits, as a float64 product
//! by its reciprocal ([`crate::numerics::divisor`]): it leaves the divider to the square root
//! and the division by the denominator, which bound the step.

use crate::numerics::divisor::{Divisor, Quotient};
use crate::optim::adafactor::{lerp, AdafactorFloat};
use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
use crate::runtime::simd::{self, multiversion};

/// The parameter types of the steps: Adafactor's (the fused multiply-add and `lerp` torch's
/// kernels use), dividing by a fixed divisor with the division's bits ([`Quotient`]) for
/// AdamW's `bias_correction2`.
pub trait SfFloat: AdafactorFloat + Quotient {}
impl<T: AdafactorFloat + Quotient> SfFloat for T {}

/// The scalars of one Schedule-Free AdamW step of a group (computed by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWHyper {
    /// `beta2` and `1 - beta2` (rounded from the double `1 - beta2`).
    pub beta2: f64,
    pub one_minus_beta2: f64,
    /// `1 - beta2 ** (k + 1)`.
    pub bias_correction2: f64,
    pub eps: f64,
    /// L2 weight decay added to the normalized gradient at `y`.
    pub weight_decay: f64,
    /// The weight of `z` in the average, `weight / weight_sum`.
    pub ckp1: f64,
    /// `lr (beta1 (1 - ckp1) - 1)`, `lr` the scheduled learning rate.
    pub y_alpha: f64,
    /// The scheduled learning rate.
    pub lr: f64,
}

/// The scalars of one Schedule-Free SGD step of a group (computed by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper {
    pub weight_decay: f64,
    /// The weight of `z` in the average, `weight / weight_sum`.
    pub ckp1: f64,
    /// `lr (momentum (1 - ckp1) - 1)`, `lr` the scheduled learning rate.
    pub y_alpha: f64,
    /// The scheduled learning rate.
    pub lr: f64,
}

/// A step's scalars rounded to the parameter's dtype, as torch rounds a Python number for a
/// tensor; `decay` is None without weight decay (the package skips the add then).
#[derive(Clone, Copy)]
struct Scalars<T> {
    beta2: T,
    one_minus_beta2: T,
    bias_correction2: Divisor<T>,
    eps: T,
    decay: Option<T>,
    ckp1: T,
    y_alpha: T,
    neg_lr: T,
}

fn rounded<T: SfFloat>(weight_decay: f64, ckp1: f64, y_alpha: f64, lr: f64) -> Scalars<T> {
    Scalars {
        beta2: T::ZERO,
        one_minus_beta2: T::ZERO,
        bias_correction2: T::divisor(T::ONE),
        eps: T::ZERO,
        decay: (weight_decay != 0.0).then(|| T::from_f64(weight_decay)),
        ckp1: T::from_f64(ckp1),
        y_alpha: T::from_f64(y_alpha),
        neg_lr: -T::from_f64(lr),
    }
}

/// Elements of `adamw_piece`'s blocks: each block's second moments are checked for the
/// product that replaces the division by `bias_correction2`
/// ([`crate::numerics::divisor::Quotient`]) before use.
const BLOCK: usize = 128;

multiversion! {
    fn adamw_piece<T: SfFloat>(k: &Scalars<T>, y: &mut [T], g: &[T], z: &mut [T], v: &mut [T]) {
        let n = y.len();
        let (g, z, v) = (&g[..n], &mut z[..n], &mut v[..n]);
        for (((y, g), z), v) in y
            .chunks_mut(BLOCK)
            .zip(g.chunks(BLOCK))
            .zip(z.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK))
        {
            let (g, v) = (&g[..y.len()], &mut v[..y.len()]);
            let mut product = true;
            for (v, &gi) in v.iter_mut().zip(g) {
                // addcmul_'s `v + (value g) g`, which torch's kernels compute with one fma
                *v = (k.one_minus_beta2 * gi).fma(gi, *v * k.beta2);
                product &= v.by_product_is_exact(&k.bias_correction2);
            }
            if product {
                adamw_block::<T, true>(k, y, g, z, v);
            } else {
                adamw_block::<T, false>(k, y, g, z, v);
            }
        }
    }
}

/// The rest of `adamw_piece` on one block whose second moments `v` are updated.
#[inline(always)]
fn adamw_block<T: SfFloat, const PRODUCT: bool>(
    k: &Scalars<T>,
    y: &mut [T],
    g: &[T],
    z: &mut [T],
    v: &[T],
) {
    let (g, z, v) = (&g[..y.len()], &mut z[..y.len()], &v[..y.len()]);
    for i in 0..y.len() {
        let vhat = v[i].div_as::<PRODUCT>(&k.bias_correction2);
        let mut d = g[i] / (vhat.sqrt() + k.eps);
        if let Some(decay) = k.decay {
            d = decay.fma(y[i], d);
        }
        y[i] = k.y_alpha.fma(d, lerp(y[i], z[i], k.ckp1));
        z[i] = k.neg_lr.fma(d, z[i]);
    }
}

multiversion! {
    fn sgd_piece<T: AdafactorFloat>(k: &Scalars<T>, y: &mut [T], g: &[T], z: &mut [T]) {
        let n = y.len();
        let (g, z) = (&g[..n], &mut z[..n]);
        for i in 0..n {
            let d = match k.decay {
                Some(decay) => decay.fma(y[i], g[i]),
                None => g[i],
            };
            y[i] = k.y_alpha.fma(d, lerp(y[i], z[i], k.ckp1));
            z[i] = k.neg_lr.fma(d, z[i]);
        }
    }
}

multiversion! {
    fn interpolate_piece<T: AdafactorFloat>(p: &mut [T], z: &[T], w: T) {
        let z = &z[..p.len()];
        for (p, &z) in p.iter_mut().zip(z) {
            *p = lerp(*p, z, w);
        }
    }
}

/// One tensor of a multi-tensor Schedule-Free step: the parameter `y` (train mode), its
/// gradient `g` and its state `z` and (AdamW) `v`, `exp_avg_sq`, all of one length (`v`
/// empty for SGD).
pub struct SfTensor<'a, T> {
    pub y: &'a mut [T],
    pub g: &'a [T],
    pub z: &'a mut [T],
    pub v: &'a mut [T],
}

/// The pieces of every tensor, each with its group's scalars, and whether they are worth
/// the pool's threads: `CHUNK_ELEMENTS` elements each, or fewer (down to 4096) where that
/// gives each thread at least four.
#[allow(clippy::type_complexity)]
fn pieces<T: AdafactorFloat, S: Copy>(
    tensors: Vec<(S, SfTensor<'_, T>)>,
) -> (Vec<(S, SfTensor<'_, T>)>, bool) {
    let total: usize = tensors.iter().map(|(_, t)| t.y.len()).sum();
    let threaded = parallel::worth_threads(total);
    let chunk = if threaded {
        (total / (4 * parallel::num_threads()))
            .next_multiple_of(64)
            .clamp(4096, CHUNK_ELEMENTS)
    } else {
        CHUNK_ELEMENTS
    };
    let mut out = Vec::with_capacity(tensors.len() + total / chunk);
    for (k, t) in tensors {
        let n = t.y.len();
        assert!(t.g.len() == n && t.z.len() == n && (t.v.is_empty() || t.v.len() == n));
        let (mut y, mut g, mut z, mut v) = (t.y, t.g, t.z, t.v);
        loop {
            let m = y.len().min(chunk);
            let (y0, y1) = y.split_at_mut(m);
            let (g0, g1) = g.split_at(m);
            let (z0, z1) = z.split_at_mut(m);
            let (v0, v1) = v.split_at_mut(m.min(v.len()));
            out.push((
                k,
                SfTensor {
                    y: y0,
                    g: g0,
                    z: z0,
                    v: v0,
                },
            ));
            (y, g, z, v) = (y1, g1, z1, v1);
            if y.is_empty() {
                break;
            }
        }
    }
    (out, threaded)
}

/// One Schedule-Free AdamW step of every tensor (each with its group's scalars), in
/// place:
///
/// ```text
/// v = beta2 v + ((1 - beta2) g) g
/// d = g / (sqrt(v / bias_correction2) + eps) + weight_decay y
/// y = lerp(y, z, ckp1) + y_alpha d
/// z = z - lr d
/// ```
///
/// All tensors' pieces are shared across the thread pool when there are enough elements
/// in all; every element is computed alike, so the result does not depend on the thread
/// count, the SIMD level or how the tensors are grouped into calls.
pub fn adamw_steps<T: SfFloat>(tensors: Vec<(&AdamWHyper, SfTensor<'_, T>)>) {
    let scalars = |h: &AdamWHyper| Scalars {
        beta2: T::from_f64(h.beta2),
        one_minus_beta2: T::from_f64(h.one_minus_beta2),
        bias_correction2: T::divisor(T::from_f64(h.bias_correction2)),
        eps: T::from_f64(h.eps),
        ..rounded(h.weight_decay, h.ckp1, h.y_alpha, h.lr)
    };
    let tensors = tensors
        .into_iter()
        .map(|(h, t)| {
            assert_eq!(t.v.len(), t.y.len(), "AdamW needs exp_avg_sq");
            (scalars(h), t)
        })
        .collect();
    let (pieces, threaded) = pieces(tensors);
    let level = simd::level();
    parallel::run_each(pieces, threaded, |(k, t)| {
        adamw_piece(level, &k, t.y, t.g, t.z, t.v);
    });
}

/// One Schedule-Free AdamW step of one parameter `y` (train mode): [`adamw_steps`].
#[cfg(test)]
pub fn adamw_step<T: SfFloat>(h: &AdamWHyper, y: &mut [T], g: &[T], z: &mut [T], v: &mut [T]) {
    assert!(y.len() == g.len() && y.len() == z.len() && y.len() == v.len());
    adamw_steps(vec![(h, SfTensor { y, g, z, v })]);
}

/// One Schedule-Free SGD step of every tensor (each with its group's scalars; `v` unused),
/// in place, shared across the pool as [`adamw_steps`] is:
///
/// ```text
/// d = g + weight_decay y
/// y = lerp(y, z, ckp1) + y_alpha d
/// z = z - lr d
/// ```
pub fn sgd_steps<T: SfFloat>(tensors: Vec<(&SgdHyper, SfTensor<'_, T>)>) {
    let tensors = tensors
        .into_iter()
        .map(|(h, t)| {
            let k = rounded::<T>(h.weight_decay, h.ckp1, h.y_alpha, h.lr);
            (k, SfTensor { v: &mut [], ..t })
        })
        .collect();
    let (pieces, threaded) = pieces(tensors);
    let level = simd::level();
    parallel::run_each(pieces, threaded, |(k, t)| {
        sgd_piece(level, &k, t.y, t.g, t.z);
    });
}

/// One Schedule-Free SGD step of one parameter `y` (train mode): [`sgd_steps`].
#[cfg(test)]
pub fn sgd_step<T: SfFloat>(h: &SgdHyper, y: &mut [T], g: &[T], z: &mut [T]) {
    assert!(y.len() == g.len() && y.len() == z.len());
    sgd_steps(vec![(
        h,
        SfTensor {
            y,
            g,
            z,
            v: &mut [],
        },
    )]);
}

/// The train/eval switch: `p = lerp(p, z, w)`, with `w = 1 - 1/beta1` to move the parameter
/// from `y` to `x` (eval) and `w = 1 - beta1` from `x` back to `y` (train).
pub fn interpolate<T: AdafactorFloat>(p: &mut [T], z: &[T], w: f64) {
    assert_eq!(p.len(), z.len());
    let w = T::from_f64(w);
    let level = simd::level();
    let threaded = parallel::worth_threads(p.len());
    let pieces: Vec<_> = p
        .chunks_mut(CHUNK_ELEMENTS)
        .zip(z.chunks(CHUNK_ELEMENTS))
        .collect();
    parallel::run_each(pieces, threaded, |(p, z)| interpolate_piece(level, p, z, w));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lerp_takes_the_branch_by_the_weight() {
        assert_eq!(lerp(1.0f64, 3.0, 0.25), 1.5);
        assert_eq!(lerp(1.0f64, 3.0, 0.75), 2.5);
        assert_eq!(lerp(1.0f64, 3.0, -0.125), 0.75);
    }

    #[test]
    fn sgd_with_ckp1_one_moves_y_to_z_then_steps() {
        // first step: ckp1 = 1, y_alpha = -lr: y = z - lr g, z = z - lr g
        let (mut y, mut z) = (vec![1.0f64, 2.0], vec![1.0f64, 2.0]);
        let h = SgdHyper {
            weight_decay: 0.0,
            ckp1: 1.0,
            y_alpha: -0.5,
            lr: 0.5,
        };
        sgd_step(&h, &mut y, &[2.0, -4.0], &mut z);
        assert_eq!(y, vec![0.0, 4.0]);
        assert_eq!(z, y);
    }

    #[test]
    fn adamw_first_step_normalizes_the_gradient() {
        // v = (1 - b2) g^2, bias_correction2 = 1 - b2: d = g / (|g| + eps) ~ sign(g)
        let (mut y, mut z, mut v) = (vec![0.0f64; 2], vec![0.0f64; 2], vec![0.0f64; 2]);
        let h = AdamWHyper {
            beta2: 0.75,
            one_minus_beta2: 0.25,
            bias_correction2: 0.25,
            eps: 0.0,
            weight_decay: 0.0,
            ckp1: 1.0,
            y_alpha: -0.5,
            lr: 0.5,
        };
        adamw_step(&h, &mut y, &[3.0, -2.0], &mut z, &mut v);
        assert_eq!(v, vec![2.25, 1.0]);
        assert_eq!(y, vec![-0.5, 0.5]);
        assert_eq!(z, y);
    }

    #[test]
    fn interpolate_eval_then_train_returns_near_y() {
        let (mut p, z) = (vec![1.0f64, -2.0], vec![0.5f64, 3.0]);
        interpolate(&mut p, &z, 1.0 - 1.0 / 0.9);
        interpolate(&mut p, &z, 1.0 - 0.9);
        assert!((p[0] - 1.0).abs() < 1e-12 && (p[1] + 2.0).abs() < 1e-12);
    }

    fn filled<T: AdafactorFloat>(n: usize, seed: u64, scale: f64) -> Vec<T> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                T::from_f64(((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale)
            })
            .collect()
    }

    fn adamw_hyper(weight_decay: f64) -> AdamWHyper {
        let (beta1, beta2, lr, ckp1) = (0.9, 0.999, 0.01, 0.25);
        AdamWHyper {
            beta2,
            one_minus_beta2: 1.0 - beta2,
            bias_correction2: 1.0 - beta2 * beta2 * beta2,
            eps: 1e-8,
            weight_decay,
            ckp1,
            y_alpha: lr * (beta1 * (1.0 - ckp1) - 1.0),
            lr,
        }
    }

    #[test]
    fn adamw_element_is_the_formula_with_fused_addcmul_lerp_and_adds() {
        let h = adamw_hyper(0.1);
        let (y0, g, z0, v0) = (0.7f32, -0.3f32, 0.5f32, 0.02f32);
        let (mut y, mut z, mut v) = (vec![y0], vec![z0], vec![v0]);
        adamw_step(&h, &mut y, &[g], &mut z, &mut v);
        let vv = (h.one_minus_beta2 as f32 * g).mul_add(g, v0 * h.beta2 as f32);
        let d = g / ((vv / h.bias_correction2 as f32).sqrt() + h.eps as f32);
        let d = (h.weight_decay as f32).mul_add(y0, d);
        let lerped = (h.ckp1 as f32).mul_add(z0 - y0, y0);
        assert_eq!(v[0], vv);
        assert_eq!(y[0], (h.y_alpha as f32).mul_add(d, lerped));
        assert_eq!(z[0], (-(h.lr as f32)).mul_add(d, z0));
    }

    #[test]
    fn adamw_equals_the_formula_with_the_division_on_blocks_with_tiny_moments() {
        // some blocks hold subnormal second moments (they take the division), the others
        // the product: every element is the formula's, at every SIMD level
        let n = 5 * BLOCK + 7;
        let h = adamw_hyper(0.0);
        let g: Vec<f32> = filled::<f32>(n, 5, 2.0)
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if (i / BLOCK) % 2 == 1 && i % 3 == 0 {
                    0.0
                } else {
                    x
                }
            })
            .collect();
        let v0: Vec<f32> = (0..n)
            .map(|i| match (i / BLOCK) % 2 {
                1 if i % 3 == 0 => f32::from_bits(1 + i as u32),
                _ => (i as f32 + 0.5) * 1e-3,
            })
            .collect();
        let (y0, z0) = (filled::<f32>(n, 6, 2.0), filled::<f32>(n, 7, 2.0));
        let (one_minus_beta2, beta2) = (h.one_minus_beta2 as f32, h.beta2 as f32);
        let (bc2, eps, y_alpha, lr, ckp1) = (
            h.bias_correction2 as f32,
            h.eps as f32,
            h.y_alpha as f32,
            h.lr as f32,
            h.ckp1 as f32,
        );
        let mut want = (y0.clone(), z0.clone(), v0.clone());
        for i in 0..n {
            let vv = (one_minus_beta2 * g[i]).mul_add(g[i], v0[i] * beta2);
            let d = g[i] / ((vv / bc2).sqrt() + eps);
            want.0[i] = y_alpha.mul_add(d, ckp1.mul_add(z0[i] - y0[i], y0[i]));
            want.1[i] = (-lr).mul_add(d, z0[i]);
            want.2[i] = vv;
        }
        assert!(want.2.iter().any(|v| *v != 0.0 && !v.is_normal()));
        let k = Scalars {
            beta2,
            one_minus_beta2,
            bias_correction2: f32::divisor(bc2),
            eps,
            ..rounded::<f32>(h.weight_decay, h.ckp1, h.y_alpha, h.lr)
        };
        for level in simd::supported() {
            let (mut y, mut z, mut v) = (y0.clone(), z0.clone(), v0.clone());
            adamw_piece(level, &k, &mut y, &g, &mut z, &mut v);
            for (got, want) in [(&y, &want.0), (&z, &want.1), (&v, &want.2)] {
                let bits = |x: &Vec<f32>| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(want), "at {level:?}");
            }
        }
    }

    #[test]
    fn every_simd_level_and_thread_split_gives_the_same_bits() {
        // longer than CHUNK_ELEMENTS and not a multiple of any vector width
        let n = CHUNK_ELEMENTS * 2 + 37;
        let (g, y0, z0) = (
            filled::<f32>(n, 1, 8.0),
            filled::<f32>(n, 2, 2.0),
            filled::<f32>(n, 3, 2.0),
        );
        let v0: Vec<f32> = filled::<f32>(n, 4, 1.0).iter().map(|x| x * x).collect();
        for decay in [0.0, 0.05] {
            let h = adamw_hyper(decay);
            let k = Scalars {
                beta2: h.beta2 as f32,
                one_minus_beta2: h.one_minus_beta2 as f32,
                bias_correction2: f32::divisor(h.bias_correction2 as f32),
                eps: h.eps as f32,
                ..rounded::<f32>(h.weight_decay, h.ckp1, h.y_alpha, h.lr)
            };
            let (mut y, mut z, mut v) = (y0.clone(), z0.clone(), v0.clone());
            adamw_step(&h, &mut y, &g, &mut z, &mut v);
            for level in simd::supported() {
                let (mut y1, mut z1, mut v1) = (y0.clone(), z0.clone(), v0.clone());
                adamw_piece(level, &k, &mut y1, &g, &mut z1, &mut v1);
                assert!(y1 == y && z1 == z && v1 == v, "adamw at {level:?}");
            }
            let s = SgdHyper {
                weight_decay: decay,
                ckp1: 0.125,
                y_alpha: -0.9,
                lr: 0.5,
            };
            let (mut y, mut z) = (y0.clone(), z0.clone());
            sgd_step(&s, &mut y, &g, &mut z);
            let k = rounded::<f32>(s.weight_decay, s.ckp1, s.y_alpha, s.lr);
            for level in simd::supported() {
                let (mut y1, mut z1) = (y0.clone(), z0.clone());
                sgd_piece(level, &k, &mut y1, &g, &mut z1);
                assert!(y1 == y && z1 == z, "sgd at {level:?}");
            }
        }
        let mut p = y0.clone();
        interpolate(&mut p, &z0, 1.0 - 1.0 / 0.9);
        for level in simd::supported() {
            let mut p1 = y0.clone();
            interpolate_piece(level, &mut p1, &z0, (1.0 - 1.0 / 0.9f64) as f32);
            assert!(p1 == p, "interpolate at {level:?}");
        }
    }

    #[test]
    fn without_weight_decay_an_infinite_parameter_does_not_poison_the_step() {
        // the package adds weight_decay * y only when weight_decay != 0: 0 * inf is NaN
        let (mut y, mut z) = (vec![f64::INFINITY, 1.0], vec![f64::INFINITY, 1.0]);
        let h = SgdHyper {
            weight_decay: 0.0,
            ckp1: 0.0,
            y_alpha: -1.0,
            lr: 1.0,
        };
        sgd_step(&h, &mut y, &[1.0, 1.0], &mut z);
        assert_eq!(z, vec![f64::INFINITY, 0.0]);
    }

    #[test]
    fn many_tensors_in_one_call_equal_one_call_each_at_any_thread_count() {
        let _threads = crate::test_util::thread_count_lock();
        let sizes = [CHUNK_ELEMENTS * 2 + 37, 5, CHUNK_ELEMENTS - 3, 1];
        let h = [adamw_hyper(0.0), adamw_hyper(0.05)];
        let s = [
            SgdHyper {
                weight_decay: 0.0,
                ckp1: 0.125,
                y_alpha: -0.9,
                lr: 0.5,
            },
            SgdHyper {
                weight_decay: 0.05,
                ckp1: 0.5,
                y_alpha: -0.3,
                lr: 0.25,
            },
        ];
        let init = |k: u64| -> Vec<Vec<f64>> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| filled::<f64>(n, k * 10 + i as u64, 2.0))
                .collect()
        };
        let (g, y0, z0) = (init(1), init(2), init(3));
        let v0: Vec<Vec<f64>> = init(4)
            .iter()
            .map(|v| v.iter().map(|x| x * x).collect())
            .collect();
        let (mut y, mut z, mut v) = (y0.clone(), z0.clone(), v0.clone());
        let (mut ys, mut zs) = (y0.clone(), z0.clone());
        for i in 0..sizes.len() {
            adamw_step(&h[i % 2], &mut y[i], &g[i], &mut z[i], &mut v[i]);
            sgd_step(&s[i % 2], &mut ys[i], &g[i], &mut zs[i]);
        }
        for threads in [1, 2, 3] {
            crate::runtime::parallel::set_num_threads(threads).unwrap();
            let (mut y1, mut z1, mut v1) = (y0.clone(), z0.clone(), v0.clone());
            let tensors = y1
                .iter_mut()
                .zip(z1.iter_mut())
                .zip(v1.iter_mut())
                .zip(&g)
                .enumerate()
                .map(|(i, (((y, z), v), g))| (&h[i % 2], SfTensor { y, g, z, v }))
                .collect();
            adamw_steps(tensors);
            assert!(y1 == y && z1 == z && v1 == v, "adamw, {threads} threads");
            let (mut y1, mut z1) = (y0.clone(), z0.clone());
            let tensors = y1
                .iter_mut()
                .zip(z1.iter_mut())
                .zip(&g)
                .enumerate()
                .map(|(i, ((y, z), g))| {
                    (
                        &s[i % 2],
                        SfTensor {
                            y,
                            g,
                            z,
                            v: &mut [],
                        },
                    )
                })
                .collect();
            sgd_steps(tensors);
            assert!(y1 == ys && z1 == zs, "sgd, {threads} threads");
        }
    }
}
