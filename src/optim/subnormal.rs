//! Float32 updates whose values are subnormal (below 2^-126), at full speed and with the
//! same bits.
//!
//! Intel CPUs take a microcode assist for every multiply, divide or square root with a
//! subnormal operand or result: about 60 ns (150 cycles) on a Sapphire Rapids Xeon, where
//! the instruction otherwise takes a fraction of one (AMD Zen 3: a few ns). Training makes them
//! for good: the moments of a dead `ReLU` unit decay by `beta` every step until they sit at
//! a subnormal that `beta * m` rounds back to itself, and stay there. Flushing them to zero
//! (FTZ/DAZ) would change the results, and torch does not flush.
//!
//! Float64 has no such values where float32 has them, and converting between the two is
//! not assisted. So a tensor (a block of a long one) whose state holds a value below
//! [`TINY`] runs the same kernel in [`Wide32`] arithmetic: each float32 operation
//! computed in float64 and rounded to float32. That is the float32 result bit for bit:
//! rounding an exact result to 53 bits and then to 24 gives the same as rounding it to 24
//! directly for `+ - * /` and `sqrt` (double rounding is innocuous when
//! `53 >= 2 * 24 + 2`, Figueroa 1995), subnormal results included (they have fewer than 24
//! bits).

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::numerics::float::{Dtype, Float};
use crate::numerics::half::{Elem, Stored};
use crate::numerics::mixed::Direct;
use crate::optim::hyper::{split_slots, MAX_SLOTS};
use crate::optim::kernels::{self, Kernel};
use crate::runtime::simd::Level;

/// A float32 value held as a float64, whose arithmetic rounds every result to float32:
/// `a + b` is `f64::from(a) + f64::from(b)` rounded to float32, and so on for `- * /` and
/// `sqrt`. The same values as float32 arithmetic, without subnormal operands.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Wide32(f64);

impl Wide32 {
    #[inline(always)]
    fn round(x: f64) -> Self {
        Wide32(f64::from(x as f32))
    }
}

macro_rules! wide_op {
    ($trait:ident, $method:ident, $op:tt) => {
        impl $trait for Wide32 {
            type Output = Self;
            #[inline(always)]
            fn $method(self, other: Self) -> Self {
                Wide32::round(self.0 $op other.0)
            }
        }
    };
}
wide_op!(Add, add, +);
wide_op!(Sub, sub, -);
wide_op!(Mul, mul, *);
wide_op!(Div, div, /);

impl Neg for Wide32 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Wide32(-self.0)
    }
}

impl Float for Wide32 {
    const DTYPE: Dtype = Dtype::F32;
    const ZERO: Self = Wide32(0.0);
    const ONE: Self = Wide32(1.0);
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        Wide32::round(x)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.0
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Wide32::round(self.0.sqrt())
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Wide32(self.0.abs())
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        self.0.is_finite()
    }
}

/// A float32 buffer element the wide kernels load as a [`Wide32`] (exactly) and store
/// back (exactly: a `Wide32` holds a float32 value). A type of its own, so that `f32`
/// keeps a single `Stored` type.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(transparent)]
struct Narrow(f32);

impl Stored<Wide32> for Narrow {
    const ELEM: Elem = Elem::F32;
    #[inline(always)]
    fn load(self) -> Wide32 {
        Wide32(f64::from(self.0))
    }
    #[inline(always)]
    fn store(x: Wide32) -> Self {
        Narrow(x.0 as f32)
    }
}

fn narrow(xs: &mut [f32]) -> &mut [Narrow] {
    // SAFETY: `Narrow` is `repr(transparent)` over `f32`; the borrow moves to the result.
    unsafe { std::slice::from_raw_parts_mut(xs.as_mut_ptr().cast(), xs.len()) }
}

fn narrow_ref(xs: &[f32]) -> &[Narrow] {
    // SAFETY: as `narrow`.
    unsafe { std::slice::from_raw_parts(xs.as_ptr().cast(), xs.len()) }
}

/// A kernel's constants in [`Wide32`]: the same values (each kernel's constants implement it
/// where they are defined, `kernels::constants!`).
pub(crate) trait Widen {
    type Wide;
    fn widen(self) -> Self::Wide;
}

impl Widen for f32 {
    type Wide = Wide32;
    fn widen(self) -> Wide32 {
        Wide32(f64::from(self))
    }
}

impl Widen for bool {
    type Wide = bool;
    fn widen(self) -> bool {
        self
    }
}

/// Tensors whose state holds a nonzero value below this in magnitude (2^-60) run in
/// [`Wide32`]: the subnormals themselves, and values whose products in a kernel can
/// underflow (the square of a value below 2^-63 is subnormal). Which path a tensor takes
/// changes only the speed, never the bits.
pub const TINY: f32 = 8.673_617e-19;

/// Tensors of at most this many elements are checked for [`TINY`] state values: those of
/// small networks, whose step is mostly fixed costs, so the check (a second pass over the
/// state) adds little. Larger ones take the float32 kernel unchecked and still take the
/// assists: there the check would add a third to an update in cache (Adam on 1,000
/// float32 elements: 0.70-0.84 us without it, 1.13-1.24 us with it); a check fused into
/// the kernels' own pass would not.
pub const MAX_CHECKED: usize = 64;

/// Whether any element of `arrays` is nonzero and below [`TINY`] in magnitude: an
/// integer comparison of the bits without the sign, which takes no assist (NaN and the
/// infinities are above `TINY`'s bits). Branch-free, so it vectorizes; inlined where the
/// tensors are too small to be worth a call into the SIMD dispatch.
#[inline(always)]
pub fn has_tiny(arrays: &[&[f32]]) -> bool {
    // Zero wraps to the largest value; a min-reduction vectorizes to one instruction.
    let smallest = arrays.iter().fold(u32::MAX, |m, xs| {
        xs.iter()
            .fold(m, |m, x| m.min((x.to_bits() & 0x7fff_ffff).wrapping_sub(1)))
    });
    smallest < TINY.to_bits() - 1
}

crate::runtime::simd::multiversion! {
    /// [`has_tiny`] compiled for `level`: one block's check, a fraction of its update.
    fn has_tiny_at(arrays: &[&[f32]]) -> bool {
        has_tiny(arrays)
    }
}

/// A longer tensor's state is checked in this many windows (equal parts, the last
/// shorter), one window per step in turn.
pub const WINDOWS: usize = 16;

/// Which [`WINDOWS`] of a tensor's float32 state held a value below [`TINY`] when last
/// checked, and the window to check next. A hint for speed: the path it picks never
/// changes the bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TinyHint {
    windows: u16,
    next: u8,
}

/// [`kernels::update`] of a float32 parameter with float32 state, in [`Wide32`] where a
/// state slot holds a value below [`TINY`] (where subnormals stay: a dead unit's moments
/// decay to one and stay there; a tiny gradient or parameter costs one assist, not one
/// per step), else in float32: same bits either way. A tensor of at most [`MAX_CHECKED`]
/// elements is checked whole at every step; a longer one with a `hint` has one of its
/// [`WINDOWS`] rechecked per step (a sixteenth of a check pass, so the check costs a few
/// percent of the update) and each window takes the path its last check chose; without a
/// hint (a tensor split across threads) it runs in float32.
///
/// # Panics
/// As [`kernels::update`]: if a used slot or `g` is shorter than `p`.
pub fn update(
    level: Level,
    k: &Kernel<f32>,
    p: &mut [f32],
    g: &[f32],
    state: [&mut [f32]; MAX_SLOTS],
    hint: Option<&mut TinyHint>,
) {
    let n = p.len();
    let [s0, s1, s2] = &state;
    let hint = match hint {
        _ if n <= MAX_CHECKED => {
            let tiny = has_tiny(&[s0, s1, s2]);
            return update_block(level, k, tiny, p, g, state);
        }
        None => return kernels::update(level, k, Direct(p), g, state),
        Some(hint) => hint,
    };
    let window = n.div_ceil(WINDOWS);
    let w = usize::from(hint.next);
    let checked = w * window..((w + 1) * window).min(n);
    let parts = [s0, s1, s2].map(|s| s.get(checked.clone()).unwrap_or(&[]));
    let tiny = has_tiny_at(level, &parts);
    hint.windows = hint.windows & !(1 << w) | u16::from(tiny) << w;
    hint.next = ((w + 1) % WINDOWS) as u8;
    // Runs of windows that take the same path.
    let is_tiny = |w: usize| hint.windows >> w & 1 == 1;
    let (mut p, mut g, mut state, mut w) = (p, g, state, 0);
    while !p.is_empty() {
        let run = (w..WINDOWS)
            .take_while(|&v| is_tiny(v) == is_tiny(w))
            .count();
        let at = (run * window).min(p.len());
        let (block_p, rest_p) = p.split_at_mut(at);
        let (block_g, rest_g) = g.split_at(at.min(g.len()));
        let (block, rest) = split_slots(state, at);
        update_block(level, k, is_tiny(w), block_p, block_g, block);
        (p, g, state, w) = (rest_p, rest_g, rest, w + run);
    }
}

/// One tensor's or block's update: in [`Wide32`] if `tiny`, else in float32.
fn update_block(
    level: Level,
    k: &Kernel<f32>,
    tiny: bool,
    p: &mut [f32],
    g: &[f32],
    state: [&mut [f32]; MAX_SLOTS],
) {
    if tiny {
        let wide = k.widen();
        kernels::update(
            level,
            &wide,
            Direct(narrow(p)),
            narrow_ref(g),
            state.map(narrow),
        );
    } else {
        kernels::update(level, k, Direct(p), g, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::hyper::{self, Hyper};

    /// Values around the float32 subnormal range (if `tiny`) and ordinary ones, with zeros,
    /// NaN and infinities.
    fn values(n: usize, seed: u32, tiny: bool) -> Vec<f32> {
        values_from(n, seed, if tiny { 0 } else { n })
    }

    /// [`values`], tiny from element `tiny_from` on.
    fn values_from(n: usize, seed: u32, tiny_from: usize) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)).rotate_left(7);
                let tiny = i as usize >= tiny_from;
                match h % 11 {
                    1..=3 if !tiny => 0.5,
                    0 => 0.0,
                    1 => f32::from_bits(h % 0x0080_0000), // subnormal
                    2 => -f32::from_bits(h % 0x0180_0000), // around 2^-126
                    3 => f32::from_bits(0x1f00_0000 + h % 0x0100_0000), // near TINY
                    4 if h.is_multiple_of(97) => f32::NAN,
                    5 if h.is_multiple_of(89) => f32::INFINITY,
                    _ => (h % 20_000) as f32 * 1e-4 - 1.0,
                }
            })
            .collect()
    }

    fn hypers() -> Vec<Hyper> {
        let adam = hyper::Adam::TORCH;
        vec![
            Hyper::Adam(adam),
            Hyper::Adam(hyper::Adam {
                amsgrad: true,
                weight_decay: 0.1,
                decoupled: true,
                ..adam
            }),
            Hyper::Sgd(hyper::Sgd {
                lr: 0.1,
                momentum: 0.9,
                dampening: 0.0,
                nesterov: true,
                weight_decay: 1e-3,
                maximize: false,
            }),
            Hyper::RmsProp(hyper::RmsProp {
                momentum: 0.5,
                centered: true,
                ..hyper::RmsProp::TORCH
            }),
            Hyper::NAdam(hyper::NAdam::TORCH),
            Hyper::RAdam(hyper::RAdam::TORCH),
            Hyper::Adagrad(hyper::Adagrad::TORCH),
            Hyper::Adadelta(hyper::Adadelta::TORCH),
            Hyper::Adamax(hyper::Adamax::TORCH),
            Hyper::Lion(hyper::Lion {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: 0.0,
            }),
            Hyper::Momentum(hyper::Momentum { lr: 0.1, beta: 0.9 }),
        ]
    }

    #[test]
    fn wide32_arithmetic_is_float32_arithmetic_bit_for_bit() {
        let (a, b) = (values(20_000, 1, true), values(20_000, 2, true));
        for (&x, &y) in a.iter().zip(&b) {
            let (wx, wy) = (Wide32(f64::from(x)), Wide32(f64::from(y)));
            let same = |w: Wide32, f: f32| {
                let w = w.0 as f32;
                w.to_bits() == f.to_bits() || (w.is_nan() && f.is_nan())
            };
            assert!(same(wx + wy, x + y), "{x:e} + {y:e}");
            assert!(same(wx - wy, x - y), "{x:e} - {y:e}");
            assert!(same(wx * wy, x * y), "{x:e} * {y:e}");
            assert!(same(wx / wy, x / y), "{x:e} / {y:e}");
            assert!(same(wx.sqrt(), x.sqrt()), "sqrt {x:e}");
        }
    }

    #[test]
    fn every_kernel_gives_the_float32_bits_on_subnormal_state_at_every_level() {
        // (length, tiny from): a small tensor on the wide path and on the float32 one; a
        // longer one whose first windows are float32 and the rest wide (the tiny values
        // start inside the seventh of its 103-element windows).
        let cases = [
            (MAX_CHECKED - 3, 0),
            (MAX_CHECKED, MAX_CHECKED),
            (MAX_CHECKED + 5, 0),
            (WINDOWS * 102 + 5, 700),
        ];
        for ((n, tiny_from), h) in cases
            .into_iter()
            .flat_map(|c| hypers().into_iter().map(move |h| (c, h)))
        {
            let tiny = tiny_from < n;
            assert_eq!(has_tiny(&[&values_from(n, 5, tiny_from)]), tiny);
            for t in [1u64, 2, 50] {
                let k = Kernel::<f32>::new(&h, t, [t == 1; MAX_SLOTS]);
                let used = h.slots_used();
                let run = |level: Level, checked: bool| {
                    let mut p = values_from(n, 3, tiny_from);
                    let g = values_from(n, 4, tiny_from);
                    let mut s: Vec<Vec<f32>> = (0..MAX_SLOTS)
                        .map(|i| {
                            if used[i] {
                                // Second moments and accumulators are >= 0.
                                let v = values_from(n, 5 + i as u32, tiny_from);
                                v.iter().map(|v| v.abs()).collect()
                            } else {
                                Vec::new()
                            }
                        })
                        .collect();
                    let [a, b, c] = &mut s[..] else {
                        unreachable!()
                    };
                    // Enough updates for every window to be checked and take its path.
                    let mut hint = TinyHint::default();
                    for _ in 0..=WINDOWS {
                        let state = [&mut a[..], &mut b[..], &mut c[..]];
                        if checked {
                            update(level, &k, &mut p, &g, state, Some(&mut hint));
                        } else {
                            kernels::update(level, &k, Direct(&mut p[..]), &g, state);
                        }
                    }
                    if checked && n > MAX_CHECKED {
                        assert_eq!(hint.windows != 0, tiny, "{h:?} n={n}: {hint:?}");
                    }
                    (p, s)
                };
                let bits = |(p, s): (Vec<f32>, Vec<Vec<f32>>)| {
                    // Any NaN is the same NaN: its payload is not specified.
                    let canon = |x: &f32| if x.is_nan() { u32::MAX } else { x.to_bits() };
                    p.iter()
                        .chain(s.iter().flatten())
                        .map(canon)
                        .collect::<Vec<u32>>()
                };
                let want = bits(run(Level::SCALAR, false));
                for level in crate::runtime::simd::supported() {
                    assert_eq!(bits(run(level, true)), want, "{h:?} t={t} n={n} {level:?}");
                }
            }
        }
    }

    #[test]
    fn has_tiny_finds_subnormals_and_values_below_tiny_but_not_zero() {
        {
            let ordinary = [0.0f32, -0.0, 1.0, TINY, f32::NAN, f32::INFINITY];
            assert!(!has_tiny(&[&ordinary, &[], &ordinary]));
            assert!(has_tiny(&[&ordinary, &[1.0f32, 0.0, -1e-40]]));
            assert!(has_tiny(&[&[TINY / 2.0]]));
            let mut long = vec![1.0f32; 1000];
            long[999] = f32::from_bits(1);
            assert!(has_tiny(&[&ordinary, &long]));
        }
        // The vectorized check, at every level, with one tiny value at every position of an
        // array (vector bodies and tails) and in each slot.
        let ordinary = vec![1.0f32; 515];
        for level in crate::runtime::simd::supported() {
            assert!(!has_tiny_at(level, &[&ordinary, &ordinary, &[]]));
            for slot in 0..2 {
                for i in 0..ordinary.len() {
                    let mut one = ordinary.clone();
                    one[i] = if i % 2 == 0 {
                        -1e-20
                    } else {
                        f32::from_bits(i as u32)
                    };
                    let arrays: [&[f32]; 2] = if slot == 0 {
                        [&one, &ordinary]
                    } else {
                        [&ordinary, &one]
                    };
                    assert!(has_tiny_at(level, &arrays), "{level:?} slot {slot} at {i}");
                }
            }
        }
    }
}
