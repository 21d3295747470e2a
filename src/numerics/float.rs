//! The two element types every kernel is written for: `f32` and `f64`.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Element type of parameters, gradients and optimizer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// The NumPy name of the type (`"float32"` / `"float64"`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// A floating-point element. Hyper-parameters arrive as `f64` and are rounded once to
/// `Self` per step, as torch does when a Python float meets a float32 tensor.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Debug
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    const DTYPE: Dtype;
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
    /// `jnp.sign` / `torch.sign`: -1, 0 or 1, and NaN for NaN (unlike `f32::signum`, which
    /// is 1 at zero).
    #[inline(always)]
    fn sign(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            -Self::ONE
        } else {
            self
        }
    }
    /// `torch.maximum` / `np.maximum`: NaN if either argument is NaN.
    #[inline(always)]
    fn nan_max(self, other: Self) -> Self {
        // `other > self` is false when either is NaN; `other != other` catches a NaN `other`.
        #[allow(clippy::eq_op)]
        let other_is_nan = other != other;
        if other > self || other_is_nan {
            other
        } else {
            self
        }
    }
}

macro_rules! impl_float {
    ($t:ty, $d:expr) => {
        impl Float for $t {
            const DTYPE: Dtype = $d;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}

impl_float!(f32, Dtype::F32);
impl_float!(f64, Dtype::F64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maximum_propagates_nan_like_numpy() {
        assert_eq!(1.0f32.nan_max(2.0), 2.0);
        assert_eq!(3.0f64.nan_max(2.0), 3.0);
        assert!(f32::NAN.nan_max(2.0).is_nan());
        assert!(2.0f64.nan_max(f64::NAN).is_nan());
    }

    #[test]
    fn from_f64_rounds_to_nearest() {
        assert_eq!(f32::from_f64(0.1), 0.1f32);
        assert_eq!(f64::from_f64(0.1), 0.1f64);
    }
}
