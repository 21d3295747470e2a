//! The exponentially weighted average, the building block of every optimizer here.
//!
//! `v_t = beta * v_{t-1} + (1 - beta) * x_t`, started at `v_0 = 0`, averages roughly the
//! last `1 / (1 - beta)` values. Momentum is an EWA of gradients, RMSprop an EWA of squared
//! gradients, Adam both; each kernel inlines [`ewa`] into its single pass.

use crate::float::Float;

/// One EWA step: `beta * v + one_minus_beta * x`.
///
/// `one_minus_beta` is passed in rather than computed so that it is rounded once, from the
/// `f64` hyper-parameter, exactly as torch rounds `1 - beta` for a float32 tensor. With
/// `one_minus_beta` other than `1 - beta` this is torch's SGD momentum buffer
/// (`momentum * buf + (1 - dampening) * g`).
#[inline(always)]
pub fn ewa<T: Float>(v: T, x: T, beta: T, one_minus_beta: T) -> T {
    beta * v + one_minus_beta * x
}

/// The bias correction of step `t` (1-based): `1 - beta**t`, computed as Python computes
/// `1 - beta ** t` (double precision `pow`), so scalars match torch bit for bit.
#[inline]
pub fn bias_correction(beta: f64, t: u64) -> f64 {
    1.0 - beta.powf(t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewa_of_a_constant_converges_to_it_and_bias_correction_removes_the_start_up_lag() {
        let (beta, x) = (0.9f64, 5.0f64);
        let mut v = 0.0;
        for t in 1..=3u64 {
            v = ewa(v, x, beta, 1.0 - beta);
            // Uncorrected, v_t = x * (1 - beta^t): biased low at the start.
            assert!((v - x * bias_correction(beta, t)).abs() < 1e-12);
            assert!((v / bias_correction(beta, t) - x).abs() < 1e-12);
        }
        for _ in 0..500 {
            v = ewa(v, x, beta, 1.0 - beta);
        }
        assert!((v - x).abs() < 1e-12);
    }

    #[test]
    fn bias_correction_matches_python_pow() {
        // Python: 1 - 0.999 ** 10 == 0.009955119790251765
        assert_eq!(bias_correction(0.999, 10), 0.009955119790251765);
    }
}
