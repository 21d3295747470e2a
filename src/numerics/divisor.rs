//! Division by a number fixed before a loop (a bias correction, a mean), correctly rounded as
//! the division instruction rounds it, without a division per element in float32.
//!
//! A float32 division is the slowest arithmetic a kernel does: each 16-lane `vdivps` holds
//! the divider for several cycles, and the divider is shared by every division and square
//! root of a loop (Schedule-Free AdamW's step, with two divisions and a square root per
//! element, was bound by it). For a divisor `d` known in advance, float32 computes
//!
//! ```text
//! q = RN32(RN64(x * RN64(1 / d)))
//! ```
//!
//! a conversion, a float64 product and a conversion back, on the multiply pipes. It equals
//! `RN32(x / d)` whenever `d` is a normal float32 and `|x / d|` is not below the smallest
//! normal float32 `2^-126` (overflow to infinity included):
//!
//! - `RN64(x * RN64(1/d)) = (x / d)(1 + delta)` with `|delta| <= 2^-52 + 2^-106`.
//! - Rounding to float32 can only go wrong if `x / d` and that product straddle a rounding
//!   boundary, a float32 midpoint `m = M 2^(e-24)` (`M` odd, 25 bits; the overflow threshold
//!   is one as well, `M = 2^25 - 1`).
//! - `x = d m` is impossible: the odd part of `d m` is a multiple of `M >= 2^24`, more bits
//!   than a float32 holds. So `x - d m` is a non-zero multiple of the grid of `d m`,
//!   `2^(e_d + e - 47)`, where `e_d` is `d`'s exponent and `e` the quotient's; dividing by
//!   `|d| < 2^(e_d + 1)` leaves `|x/d - m| > 2^(e - 48)`: at least `2^-49` relative to the
//!   quotient, more than the product's error, so it rounds to the same side.
//! - Below `2^-126` the midpoints' `M` can be small and `x = d m` can hold (a tie the product
//!   may not see): those elements take the division ([`Quotient::by_product_is_exact`]).
//!
//! float64 has no wider type to do this in: its "product" is the division itself.

use crate::numerics::float::Float;

/// A divisor `d` with its reciprocal, made once before a loop of [`Quotient::div_by`].
#[derive(Clone, Copy, Debug)]
pub struct Divisor<T> {
    /// The divisor.
    pub d: T,
    /// `RN64(1 / d)` (float32).
    recip: f64,
    /// Below this `|x|` (and above zero) the product may differ from the division: `2^-126
    /// max(|d|, 1)` for a normal float32 `d`, infinity otherwise.
    min: T,
}

/// Division by a [`Divisor`], bit for bit the division `x / d`.
pub trait Quotient: Float {
    /// `d` with what [`Quotient::div_by`] needs.
    fn divisor(d: Self) -> Divisor<Self>;
    /// `x / d` as the product of the module docs: exact only where
    /// [`Quotient::by_product_is_exact`] says so (float64: the division).
    fn div_by(self, d: &Divisor<Self>) -> Self;
    /// `x / d`: the product [`Quotient::div_by`] where `PRODUCT` (the caller checked
    /// [`Quotient::by_product_is_exact`]), the division otherwise; a kernel is compiled once
    /// for each, so each of its loops vectorizes as one path.
    #[inline(always)]
    fn div_as<const PRODUCT: bool>(self, d: &Divisor<Self>) -> Self {
        if PRODUCT {
            self.div_by(d)
        } else {
            self / d.d
        }
    }
    /// Whether [`Quotient::div_by`] equals `x / d`: `x` is not NaN nor below the divisor's
    /// bound (zero is exact). A kernel folds it over a block with `&`.
    #[inline(always)]
    fn by_product_is_exact(self, d: &Divisor<Self>) -> bool {
        self.abs() >= d.min || self == Self::ZERO
    }
}

impl Quotient for f32 {
    fn divisor(d: f32) -> Divisor<f32> {
        let min = if d.is_normal() {
            d.abs().max(1.0) * f32::MIN_POSITIVE
        } else {
            f32::INFINITY
        };
        Divisor {
            d,
            recip: 1.0 / f64::from(d),
            min,
        }
    }
    #[inline(always)]
    fn div_by(self, d: &Divisor<f32>) -> f32 {
        (f64::from(self) * d.recip) as f32
    }
}

impl Quotient for f64 {
    fn divisor(d: f64) -> Divisor<f64> {
        Divisor {
            d,
            recip: 0.0,
            min: 0.0,
        }
    }
    #[inline(always)]
    fn div_by(self, d: &Divisor<f64>) -> f64 {
        self / d.d
    }
    #[inline(always)]
    fn by_product_is_exact(self, _: &Divisor<f64>) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every float32 significand, at exponents that keep the quotient normal or overflow it
    /// (the largest), against `x / d`, for divisors of each kind: Adam's and Schedule-Free's
    /// bias corrections `1 - beta2^k`, all-ones and one-bit significands, and a spread of
    /// random ones.
    #[test]
    fn the_product_equals_the_division_for_every_significand() {
        let mut divisors: Vec<f32> = vec![
            1.0,
            0.75,
            3.0,
            f32::from_bits(0x3fff_ffff),
            1.0 - f32::EPSILON / 2.0,
        ];
        for beta2 in [0.999f64, 0.99, 0.95, 0.9999] {
            for k in [1, 2, 3, 7, 10, 100, 1000, 4321] {
                divisors.push((1.0 - beta2.powi(k)) as f32);
            }
        }
        let mut s = 0x9e37_79b9u32;
        for _ in 0..24 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            // a normal float32 in [2^-20, 2^20)
            divisors.push(f32::from_bits((s & 0x007f_ffff) | ((107 + s % 40) << 23)));
        }
        for &d in &divisors {
            let k = f32::divisor(d);
            for x_exp in [127u32, 27, 227, 254] {
                for m in 0..(1u32 << 23) {
                    let x = f32::from_bits((x_exp << 23) | m);
                    let q = x.div_by(&k);
                    assert!(
                        q.to_bits() == (x / d).to_bits(),
                        "{x:e} / {d:e}: {q:e} against {:e}",
                        x / d
                    );
                }
            }
        }
    }

    #[test]
    fn the_guard_sends_tiny_nan_and_odd_divisors_to_the_division() {
        let exact = |xs: &[f32], d: f32| {
            let d = f32::divisor(d);
            xs.iter().fold(true, |ok, x| ok & x.by_product_is_exact(&d))
        };
        let fine = [0.0, -0.0, 1.0, f32::INFINITY, f32::MIN_POSITIVE];
        assert!(exact(&fine, 0.5));
        assert!(!exact(&[1.0, f32::MIN_POSITIVE / 2.0], 0.5));
        assert!(!exact(&[f32::NAN], 0.5));
        // a divisor above 1 raises the bound: the quotient of 2^-126 by 4 is subnormal
        assert!(!exact(&[f32::MIN_POSITIVE], 4.0));
        // only zero takes the product by a divisor that is not a normal number, and gives
        // the division's bits
        for d in [0.0f32, -f32::MIN_POSITIVE / 4.0, f32::INFINITY, f32::NAN] {
            assert!(!exact(&[1.0], d) && exact(&[0.0, -0.0], d), "{d}");
            for x in [0.0f32, -0.0] {
                assert_eq!(x.div_by(&f32::divisor(d)).to_bits(), (x / d).to_bits());
            }
        }
        // a subnormal tie: 3 2^-149 / 6 is halfway between 0 and 2^-149 (even: 0)
        let tie = f32::from_bits(3);
        assert_eq!(tie / 6.0, 0.0);
        assert!(!exact(&[tie], 6.0));
    }
}
