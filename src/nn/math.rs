//! The elementary functions of the networks — `exp`, `ln`, `ln_1p`, `tanh` — for float32 and
//! float64, as Cephes/fdlibm-style range reductions and polynomials written in plain
//! arithmetic: no libm call, no `mul_add`, no branch (every special case is a select), so
//! the compiler vectorizes them inside the [`multiversion!`](crate::runtime::simd::multiversion)
//! loops of [`pointwise`](super::pointwise) and every SIMD level computes the same bits
//! (the compiler never fuses a multiply and an add on its own).
//!
//! Accuracy, in ulps of the result (`|got - exact| / ulp(exact)`), as the tests below assert
//! over the whole float range — a sweep of bit patterns of every sign and exponent, a dense
//! grid where the function varies, subnormals, ±0, ±inf, NaN — with the worst they measured
//! in parentheses. float32, against float64 libm: `exp` ≤ 1 (0.94), `ln` ≤ 1 (0.79),
//! `ln_1p` ≤ 1.5 (1.44), `tanh` ≤ 1.5 (1.22). float64, against a double-double reference
//! written in the tests: `exp` ≤ 1.5 (1.48), `ln` ≤ 1 (0.76), `ln_1p` ≤ 1.5 (1.44),
//! `tanh` ≤ 1.5 (1.13). `exp` is 0 where `e^x` would be below the smallest normal number
//! (x < -86.64 in float32, x < -708.39 in float64): no subnormal results, which would be
//! slow in the layers after.

/// `e^x` in float32 (Cephes `expf`): `x = n ln 2 + r`, `|r| <= ln 2 / 2`, `e^r` by a
/// degree-7 polynomial, times `2^n` built in the exponent bits. 0 below -86.64 (where
/// `e^x < 2.6e-38`, near the smallest normal float32), +inf above 88.72, NaN for NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.722_83;
    const LO: f32 = -86.643_4;
    // 1.5 * 2^23: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(LO, HI); // NaN stays NaN
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2^(n - 1) * 2, so that n = 128 (x near HI) stays finite; n >= -125 above LO.
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((n + 126) << 23) as u32);
    let e = y * scale * 2.0;
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else {
        e
    }
}

/// `ln x` in float32 (Cephes `logf`): `x = 2^e m`, `m` in `[sqrt(1/2), sqrt(2))`, `ln m` by
/// a degree-9 polynomial in `m - 1`. Subnormal inputs are scaled first; `ln 0 = -inf`,
/// `ln(+inf) = +inf`, NaN for negative numbers and NaN.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    let e0 = ((bits >> 23) & 0xff) as i32 - 126 - if tiny { 23 } else { 0 };
    // The mantissa as a number in [0.5, 1).
    let m0 = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let low = m0 < SQRT_HALF;
    let e = (if low { e0 - 1 } else { e0 }) as f32;
    let m = if low { m0 + m0 - 1.0 } else { m0 - 1.0 };
    let z = m * m;
    let p = (((((((7.037_683_6e-2 * m - 1.151_461e-1) * m + 1.167_699_9e-1) * m
        - 1.242_014_1e-1)
        * m
        + 1.424_932_3e-1)
        * m
        - 1.666_805_7e-1)
        * m
        + 2.000_071_4e-1)
        * m
        - 2.499_999_4e-1)
        * m
        + 3.333_333e-1;
    let y = p * m * z + e * -2.121_944_4e-4 - 0.5 * z;
    let r = m + y + e * 0.693_359_4;
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x.is_nan() || x < 0.0 {
        f32::NAN
    } else if x == f32::INFINITY {
        x
    } else {
        r
    }
}

/// `ln(1 + x)` as `ln u + c / u`, `u = 1 + x` rounded and `c` its rounding error (exact),
/// through [`ln_f32`]: accurate for small `x` too (`x` itself where `u` rounds to 1).
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    // The rounding error of `1 + x`, exact (Fast2Sum, the larger operand first).
    let c = if x.abs() > 1.0 {
        1.0 - (u - x)
    } else {
        x - (u - 1.0)
    };
    let y = ln_f32(u) + c / u;
    if u == 1.0 {
        x
    } else if u == 0.0 || u == f32::INFINITY {
        ln_f32(u)
    } else {
        y
    }
}

/// `tanh x` in float32: for `|x| < 0.625` Cephes `tanhf`'s odd polynomial
/// `x + x z P(z)`, `z = x^2` (exact for tiny and subnormal `x`, sign of zero kept); above,
/// `1 - 2 / (e^{2|x|} + 1)` through [`exp_f32`], which is 1 once `e^{2|x|}` overflows; the
/// sign of `x` is copied onto the result. NaN for NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    let p = (((-0.005_704_988_7 * z + 0.020_639_088) * z - 0.053_739_715) * z + 0.133_314_42) * z
        - 0.333_332_8;
    let small = a + a * z * p;
    let large = 1.0 - 2.0 / (exp_f32(a + a) + 1.0);
    let t = if a < 0.625 { small } else { large };
    t.copysign(x)
}

/// `e^x` in float64 (Cephes `exp`): `x = n ln 2 + r`, `|r| <= ln 2 / 2`,
/// `e^r = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2))`, times `2^n` as two powers of two built in
/// the exponent bits (each a normal number for every `n` reached). 0 below
/// `ln(2^-1022) = -708.39` (no subnormal results), +inf above `ln(f64::MAX) = 709.78`,
/// NaN for NaN.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    const HI: f64 = 709.782_712_893_384;
    const LO: f64 = -708.396_418_532_264_1;
    // 1.5 * 2^52: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // ln 2 in two parts; n * LN2_HI is exact.
    const LN2_HI: f64 = 0.693_145_751_953_125;
    const LN2_LO: f64 = 1.428_606_820_309_417_3e-6;
    let xc = x.clamp(LO, HI); // NaN stays NaN
    let t = xc * std::f64::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let rr = r * r;
    let p = r * ((0.000_126_177_193_074_810_58 * rr + 0.030_299_440_770_744_195) * rr + 1.0);
    let q = ((3.001_985_051_386_644_6e-6 * rr + 0.002_524_483_403_496_841) * rr
        + 0.227_265_548_208_155_03)
        * rr
        + 2.0;
    let y = 1.0 + 2.0 * (p / (q - p));
    // n is in [-1022, 1024]: 2^n = 2^h * 2^(n - h), h = floor(n / 2), both normal.
    let n = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let h = n >> 1;
    let s1 = f64::from_bits(((h + 1023) << 52) as u64);
    let s2 = f64::from_bits(((n - h + 1023) << 52) as u64);
    let e = y * s1 * s2;
    if x > HI {
        f64::INFINITY
    } else if x < LO {
        0.0
    } else {
        e
    }
}

/// `ln x` in float64 (fdlibm/musl `log`): `x = 2^k (1 + f)`, `1 + f` in
/// `[sqrt(1/2), sqrt(2))`, `s = f / (2 + f)`,
/// `ln(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2))` with `R` of degree 7. Subnormal inputs are
/// scaled first; `ln 0 = -inf`, `ln(+inf) = +inf`, NaN for negative numbers and NaN.
#[inline(always)]
pub fn ln_f64(x: f64) -> f64 {
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5 * 2^52, to turn the integer k into a float without an i64 -> f64 conversion
    // (which AVX2 lacks).
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // The high 32 bits of sqrt(1/2)'s bit pattern.
    const SQRT_HALF_HI: u64 = 0x3fe6_a09e;
    let tiny = x < f64::MIN_POSITIVE;
    let xs = if tiny {
        x * 18_014_398_509_481_984.0
    } else {
        x
    }; // 2^54
       // Add (1 - sqrt(1/2))'s exponent and mantissa offset so that k is the exponent of
       // x / sqrt(1/2) and the mantissa, taken back down, lands in [sqrt(1/2), sqrt(2)).
    let bits = xs
        .to_bits()
        .wrapping_add((0x3ff0_0000 - SQRT_HALF_HI) << 32);
    let k = (bits >> 52) as i64 - 1023 - if tiny { 54 } else { 0 };
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) + (SQRT_HALF_HI << 32));
    let dk = f64::from_bits((ROUND.to_bits() as i64 + k) as u64) - ROUND;
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w
        * (0.399_999_999_994_094_2 + w * (0.222_221_984_321_497_84 + w * 0.153_138_376_992_093_73));
    let t2 = z
        * (0.666_666_666_666_673_5
            + w * (0.285_714_287_436_623_9
                + w * (0.181_835_721_616_180_5 + w * 0.147_981_986_051_165_86)));
    let r = t2 + t1;
    let y = s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI;
    if x == 0.0 {
        f64::NEG_INFINITY
    } else if x.is_nan() || x < 0.0 {
        f64::NAN
    } else if x == f64::INFINITY {
        x
    } else {
        y
    }
}

/// `ln(1 + x)` as `ln u + c / u`, `u = 1 + x` rounded and `c` its rounding error (exact),
/// through [`ln_f64`]: accurate for small `x` too (`x` itself where `u` rounds to 1).
#[inline(always)]
pub fn ln_1p_f64(x: f64) -> f64 {
    let u = 1.0 + x;
    // The rounding error of `1 + x`, exact (Fast2Sum, the larger operand first).
    let c = if x.abs() > 1.0 {
        1.0 - (u - x)
    } else {
        x - (u - 1.0)
    };
    let y = ln_f64(u) + c / u;
    if u == 1.0 {
        x
    } else if u == 0.0 || u == f64::INFINITY {
        ln_f64(u)
    } else {
        y
    }
}

/// `tanh x` in float64: for `|x| < 0.625` Cephes `tanh`'s odd rational function
/// `x + x z P(z) / Q(z)`, `z = x^2` (exact for tiny and subnormal `x`, sign of zero kept);
/// above, `1 - 2 / (e^{2|x|} + 1)` through [`exp_f64`], which is 1 once `e^{2|x|}`
/// overflows; the sign of `x` is copied onto the result. NaN for NaN.
#[inline(always)]
pub fn tanh_f64(x: f64) -> f64 {
    let a = x.abs();
    let z = a * a;
    let p = (-0.964_399_179_425_052_3 * z - 99.287_723_100_191_85) * z - 1_614.687_684_417_084_5;
    let q =
        ((z + 112.811_678_491_632_93) * z + 2_235.488_390_601_004_5) * z + 4_844.063_053_251_255;
    let small = a + a * z * (p / q);
    let large = 1.0 - 2.0 / (exp_f64(a + a) + 1.0);
    let t = if a < 0.625 { small } else { large };
    t.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A double-double `hi + lo`, `|lo| <= ulp(hi) / 2`: about 106 bits, the reference the
    /// float64 functions are measured against.
    #[derive(Clone, Copy, Debug)]
    struct Dd(f64, f64);

    fn two_sum(a: f64, b: f64) -> Dd {
        let s = a + b;
        let bb = s - a;
        Dd(s, (a - (s - bb)) + (b - bb))
    }

    fn quick_two_sum(a: f64, b: f64) -> Dd {
        let s = a + b;
        Dd(s, b - (s - a))
    }

    impl Dd {
        fn from(x: f64) -> Dd {
            Dd(x, 0.0)
        }
        fn add(self, o: Dd) -> Dd {
            let s = two_sum(self.0, o.0);
            let t = two_sum(self.1, o.1);
            let u = quick_two_sum(s.0, s.1 + t.0);
            quick_two_sum(u.0, u.1 + t.1)
        }
        fn neg(self) -> Dd {
            Dd(-self.0, -self.1)
        }
        fn sub(self, o: Dd) -> Dd {
            self.add(o.neg())
        }
        fn mul(self, o: Dd) -> Dd {
            let p = self.0 * o.0;
            let e = self.0.mul_add(o.0, -p) + (self.0 * o.1 + self.1 * o.0);
            quick_two_sum(p, e)
        }
        fn div(self, o: Dd) -> Dd {
            let q1 = self.0 / o.0;
            let r = self.sub(o.mul(Dd::from(q1)));
            let q2 = r.0 / o.0;
            let r = r.sub(o.mul(Dd::from(q2)));
            let q3 = r.0 / o.0;
            quick_two_sum(q1, q2).add(Dd::from(q3))
        }
        fn scale(self, p: f64) -> Dd {
            Dd(self.0 * p, self.1 * p)
        }
    }

    /// ln 2 to 106 bits.
    const LN2: Dd = Dd(std::f64::consts::LN_2, 2.319_046_813_846_299_6e-17);

    /// `e^r - 1` for `|r| <= 0.5`, relatively accurate for small `r`: the Taylor series of
    /// `e^s - 1`, `s = r / 2^8`, then `e^{2s} - 1 = (e^s - 1)(e^s - 1 + 2)` eight times.
    fn expm1_dd(r: Dd) -> Dd {
        if r.0.abs() < 1e-200 {
            // r^2 / 2 is below 1e-200 r: e^r - 1 = r (and r / 2^8 could lose bits).
            return r;
        }
        let s = r.scale(1.0 / 256.0);
        let mut term = s;
        let mut sum = s;
        for k in 2..20 {
            term = term.mul(s).div(Dd::from(f64::from(k)));
            sum = sum.add(term);
            if term.0.abs() <= 1e-34 * sum.0.abs() {
                break;
            }
        }
        for _ in 0..8 {
            sum = sum.mul(sum.add(Dd::from(2.0)));
        }
        sum
    }

    /// `e^x` for a finite `x` whose result is a normal float64: `x = n ln 2 + r`.
    fn exp_dd(x: f64) -> Dd {
        let n = (x / std::f64::consts::LN_2).round();
        let r = Dd::from(x).sub(LN2.mul(Dd::from(n)));
        let e = Dd::from(1.0).add(expm1_dd(r));
        // 2^n in two factors, each normal.
        let h = (n / 2.0).floor();
        e.scale(2f64.powi(h as i32))
            .scale(2f64.powi((n - h) as i32))
    }

    /// `ln(1 + d)` for `|d| <= 0.5` by a Newton step on `expm1` from libm's `ln_1p` (within
    /// an ulp: the step squares its relative error).
    fn ln1p_small_dd(d: Dd) -> Dd {
        let y = Dd::from(d.0.ln_1p());
        let em = expm1_dd(y);
        y.sub(em.sub(d).div(Dd::from(1.0).add(em)))
    }

    /// `ln x` for a positive finite `x`: `x = 2^k m`, `m` in `[sqrt(1/2), sqrt(2))`,
    /// `k ln 2 + ln(1 + (m - 1))` (`m - 1` exact).
    fn ln_dd(x: f64) -> Dd {
        let (xs, k0) = if x < f64::MIN_POSITIVE {
            (x * 2f64.powi(64), -64)
        } else {
            (x, 0)
        };
        let bits = xs.to_bits();
        let mut k = ((bits >> 52) as i32 - 1023 + k0) as f64;
        // The mantissa in [1, 2).
        let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
        if m >= std::f64::consts::SQRT_2 {
            m /= 2.0;
            k += 1.0;
        }
        LN2.mul(Dd::from(k)).add(ln1p_small_dd(Dd::from(m - 1.0)))
    }

    /// `ln(1 + x)` for `x > -1`: small `x` directly, else `ln(u_hi) + u_lo / u_hi` with
    /// `u = 1 + x` exact in double-double.
    fn ln1p_dd(x: f64) -> Dd {
        if x.abs() <= 0.4 {
            return ln1p_small_dd(Dd::from(x));
        }
        let u = two_sum(1.0, x);
        ln_dd(u.0).add(Dd::from(u.1 / u.0))
    }

    /// `tanh x = expm1(2x) / (expm1(2x) + 2)`, for finite `x`.
    fn tanh_dd(x: f64) -> Dd {
        let a = x.abs();
        let t = if a > 30.0 {
            // 1 - 2 e^{-2a} to far below half an ulp of 1.
            Dd(1.0, -2.0 * (-2.0 * a).exp())
        } else {
            let em = if a <= 0.25 {
                expm1_dd(Dd::from(2.0 * a))
            } else {
                exp_dd(2.0 * a).sub(Dd::from(1.0))
            };
            em.div(em.add(Dd::from(2.0)))
        };
        if x < 0.0 {
            t.neg()
        } else {
            t
        }
    }

    /// The spacing of `T` at `|w|` (`mant` explicit mantissa bits, `min_exp` of the smallest
    /// normal): `2^(e - mant)` for `|w|` in `[2^e, 2^(e+1))`, the subnormal spacing below.
    fn ulp_at(w: f64, mant: i32, min_exp: i32) -> f64 {
        let e = (w.abs().log2().floor() as i32).max(min_exp) - mant;
        // In two factors: `powi` of a large negative power goes through an overflowing 2^-e.
        2f64.powi(e / 2) * 2f64.powi(e - e / 2)
    }

    /// `|got - want|` in ulps of float64 at `want` (0 when both are the same non-finite
    /// value or zero); +inf for a non-finite mismatch.
    fn ulps64(got: f64, want: Dd) -> f64 {
        if got == want.0 && (want.1 == 0.0 || !got.is_finite()) {
            return 0.0;
        }
        if !got.is_finite() || !want.0.is_finite() {
            return f64::INFINITY;
        }
        let diff = (got - want.0) - want.1;
        diff.abs() / ulp_at(want.0, 52, -1022)
    }

    /// `|got - want|` in ulps of float32 at `want` (the float64 reference, within 2^-29 of
    /// a float32 ulp).
    fn ulps32(got: f32, want: f64) -> f64 {
        let g = f64::from(got);
        if g == want || (got.is_nan() && want.is_nan()) {
            return 0.0;
        }
        if !g.is_finite() || !want.is_finite() {
            // Saturation: the float32 result of a value beyond f32::MAX.
            if g.is_infinite() && want.abs() >= f64::from(f32::MAX) && g.signum() == want.signum() {
                return 0.0;
            }
            return f64::INFINITY;
        }
        (g - want).abs() / ulp_at(want, 23, -126)
    }

    /// Float32 inputs over the whole range: every `step`-th bit pattern of either sign,
    /// every subnormal power of two, and the special values.
    fn f32_points(step: u32) -> Vec<f32> {
        let mut v = Vec::new();
        let mut b: u32 = 0;
        while b < 0x7f80_0000 {
            v.push(f32::from_bits(b));
            v.push(-f32::from_bits(b));
            b += step;
        }
        for i in 0..23 {
            v.push(f32::from_bits(1 << i));
            v.push(-f32::from_bits(1 << i));
        }
        v.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        v
    }

    /// Float64 inputs: every `step`-th bit pattern of either sign, a dense uniform grid of
    /// `dense` points on `[lo, hi]`, subnormal powers of two and the special values.
    fn f64_points(step: u64, lo: f64, hi: f64, dense: u32) -> Vec<f64> {
        let mut v = Vec::new();
        let mut b: u64 = 0;
        while b < 0x7ff0_0000_0000_0000 {
            v.push(f64::from_bits(b));
            v.push(-f64::from_bits(b));
            b += step;
        }
        for i in 0..=dense {
            v.push(lo + (hi - lo) * f64::from(i) / f64::from(dense));
        }
        for i in (0..52).step_by(3) {
            v.push(f64::from_bits(1 << i));
            v.push(-f64::from_bits(1 << i));
        }
        v.extend([
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]);
        v
    }

    /// The worst error in ulps of `f` against `want` over `xs`, and where.
    fn worst<X: Copy + std::fmt::Debug>(xs: &[X], err: impl Fn(X) -> f64) -> (f64, X) {
        let mut w = (0.0, xs[0]);
        for &x in xs {
            let e = err(x);
            assert!(e.is_finite(), "non-finite error at {x:?}: {e}");
            if e > w.0 {
                w = (e, x);
            }
        }
        w
    }

    /// Same bits, NaN's payload aside.
    fn same32(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn same64(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn float32_functions_are_within_their_ulps_over_the_whole_range() {
        let xs = f32_points(997);
        let exp = worst(&xs, |x| {
            let want = f64::from(x).exp();
            if want < f64::from(f32::MIN_POSITIVE) * 2.0 {
                // The documented flush: 0 where e^x is below 2^-125.
                assert_eq!(exp_f32(x), 0.0, "exp({x})");
                return 0.0;
            }
            ulps32(exp_f32(x), want)
        });
        let ln = worst(&xs, |x| ulps32(ln_f32(x), f64::from(x).ln()));
        let ln_1p = worst(&xs, |x| ulps32(ln_1p_f32(x), f64::from(x).ln_1p()));
        let tanh = worst(&xs, |x| ulps32(tanh_f32(x), f64::from(x).tanh()));
        println!("float32 worst ulps: exp {exp:?} ln {ln:?} ln_1p {ln_1p:?} tanh {tanh:?}");
        assert!(exp.0 <= 1.0, "exp {exp:?}");
        assert!(ln.0 <= 1.0, "ln {ln:?}");
        assert!(ln_1p.0 <= 1.5, "ln_1p {ln_1p:?}");
        assert!(tanh.0 <= 1.5, "tanh {tanh:?}");
    }

    #[test]
    fn float64_functions_are_within_their_ulps_of_a_double_double_reference() {
        let exp = worst(&f64_points(1 << 46, -745.0, 710.0, 50_000), |x| {
            let got = exp_f64(x);
            if x.is_nan() {
                return if got.is_nan() { 0.0 } else { f64::INFINITY };
            }
            if x > 709.782_712_893_384 {
                return if got == f64::INFINITY {
                    0.0
                } else {
                    f64::INFINITY
                };
            }
            if x < -708.396_418_532_264_1 {
                // The documented flush: 0 where e^x is below 2^-1022.
                return if got == 0.0 { 0.0 } else { f64::INFINITY };
            }
            ulps64(got, exp_dd(x))
        });
        let ln = worst(&f64_points(1 << 46, 0.0, 4.0, 50_000), |x| {
            let got = ln_f64(x);
            if x.is_nan() || x < 0.0 {
                return if got.is_nan() { 0.0 } else { f64::INFINITY };
            }
            if x == 0.0 || x == f64::INFINITY {
                let want = if x == 0.0 { f64::NEG_INFINITY } else { x };
                return if got == want { 0.0 } else { f64::INFINITY };
            }
            ulps64(got, ln_dd(x))
        });
        let ln_1p = worst(&f64_points(1 << 46, -1.0, 3.0, 50_000), |x| {
            let got = ln_1p_f64(x);
            if x.is_nan() || x < -1.0 {
                return if got.is_nan() { 0.0 } else { f64::INFINITY };
            }
            if x == -1.0 {
                return if got == f64::NEG_INFINITY {
                    0.0
                } else {
                    f64::INFINITY
                };
            }
            if x == f64::INFINITY || x == 0.0 {
                return if same64(got, x) { 0.0 } else { f64::INFINITY };
            }
            ulps64(got, ln1p_dd(x))
        });
        let tanh = worst(&f64_points(1 << 46, -20.0, 20.0, 50_000), |x| {
            let got = tanh_f64(x);
            if !x.is_finite() || x == 0.0 {
                return if same64(got, x.signum()) || same64(got, x) {
                    0.0
                } else {
                    f64::INFINITY
                };
            }
            ulps64(got, tanh_dd(x))
        });
        println!("float64 worst ulps: exp {exp:?} ln {ln:?} ln_1p {ln_1p:?} tanh {tanh:?}");
        assert!(exp.0 <= 1.5, "exp {exp:?}");
        assert!(ln.0 <= 1.0, "ln {ln:?}");
        assert!(ln_1p.0 <= 1.5, "ln_1p {ln_1p:?}");
        assert!(tanh.0 <= 1.5, "tanh {tanh:?}");
    }

    #[test]
    fn special_values_are_exact() {
        for (x, t) in [
            (0.0f32, 0.0f32),
            (-0.0, -0.0),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, -1.0),
            (1e-45, 1e-45),
            (-1e-40, -1e-40),
            (1e-20, 1e-20),
            (9.1, 1.0),
            (-50.0, -1.0),
        ] {
            assert!(same32(tanh_f32(x), t), "tanh({x}) = {}", tanh_f32(x));
        }
        assert!(tanh_f32(f32::NAN).is_nan() && tanh_f32(-f32::NAN).is_nan());
        for (x, t) in [
            (0.0f64, 0.0f64),
            (-0.0, -0.0),
            (f64::INFINITY, 1.0),
            (f64::NEG_INFINITY, -1.0),
            (5e-324, 5e-324),
            (-1e-310, -1e-310),
            (1e-160, 1e-160),
            (19.1, 1.0),
            (-400.0, -1.0),
        ] {
            assert!(same64(tanh_f64(x), t), "tanh({x}) = {}", tanh_f64(x));
        }
        assert!(tanh_f64(f64::NAN).is_nan());
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(-0.0), 1.0);
        assert_eq!(exp_f64(5e-324), 1.0);
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_f64(-709.0), 0.0);
        assert_eq!(exp_f64(710.0), f64::INFINITY);
        assert!(exp_f64(709.78).is_finite());
        assert!(exp_f64(f64::NAN).is_nan());
        assert_eq!(ln_f64(1.0), 0.0);
        assert_eq!(ln_f64(0.0), f64::NEG_INFINITY);
        assert_eq!(ln_f64(-0.0), f64::NEG_INFINITY);
        assert_eq!(ln_f64(f64::INFINITY), f64::INFINITY);
        assert!(ln_f64(-1.0).is_nan() && ln_f64(f64::NAN).is_nan());
        assert_eq!(ln_f64(5e-324), -744.440_071_921_381_2);
        assert!(same64(ln_1p_f64(-0.0), -0.0) && same64(ln_1p_f64(5e-324), 5e-324));
        assert_eq!(ln_1p_f64(-1.0), f64::NEG_INFINITY);
        assert_eq!(ln_1p_f64(f64::INFINITY), f64::INFINITY);
        assert!(ln_1p_f64(-2.0).is_nan() && ln_1p_f64(f64::NAN).is_nan());
        assert!(same32(ln_1p_f32(-0.0), -0.0) && same32(ln_1p_f32(1e-45), 1e-45));
        assert_eq!(ln_1p_f32(-1.0), f32::NEG_INFINITY);
    }

    /// The networks' arithmetic ([`NnFloat`](super::NnFloat)) is these functions, not libm's
    /// (which differ from them in the last bit here and there).
    #[test]
    fn nn_float_is_these_functions() {
        use super::super::NnFloat;
        for x in f32_points(99_991) {
            assert!(same32(NnFloat::exp(x), exp_f32(x)), "exp({x})");
            assert!(same32(NnFloat::ln(x), ln_f32(x)), "ln({x})");
            assert!(same32(NnFloat::ln_1p(x), ln_1p_f32(x)), "ln_1p({x})");
            assert!(same32(NnFloat::tanh(x), tanh_f32(x)), "tanh({x})");
        }
        for x in f64_points(1 << 52, -30.0, 30.0, 10_000) {
            assert!(same64(NnFloat::exp(x), exp_f64(x)), "exp({x})");
            assert!(same64(NnFloat::ln(x), ln_f64(x)), "ln({x})");
            assert!(same64(NnFloat::ln_1p(x), ln_1p_f64(x)), "ln_1p({x})");
            assert!(same64(NnFloat::tanh(x), tanh_f64(x)), "tanh({x})");
        }
    }
}
