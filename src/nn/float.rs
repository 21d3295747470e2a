//! The element type of the networks ([`NnFloat`]): its arithmetic and its small products.

use super::math;
use crate::numerics::float::Float;

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
    /// As `gemm` in [`gemm`](crate::nn::gemm).
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

/// `NnFloat` for one float type: its vectorizable elementary functions from [`math`] and
/// its small-product kernel.
macro_rules! nn_float {
    ($t:ty, $exp:ident, $ln:ident, $ln_1p:ident, $tanh:ident, $gemm:path) => {
        impl NnFloat for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                math::$exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                math::$ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                math::$ln_1p(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                math::$tanh(self)
            }
            small_gemm!($gemm);
        }
    };
}

nn_float!(
    f32,
    exp_f32,
    ln_f32,
    ln_1p_f32,
    tanh_f32,
    nano_gemm::planless::execute_f32
);
nn_float!(
    f64,
    exp_f64,
    ln_f64,
    ln_1p_f64,
    tanh_f64,
    nano_gemm::planless::execute_f64
);
