//! bfloat16 and float16 storage: 16-bit buffers that kernels widen to `f32` on load and
//! round back to 16 bits on store, inside their single pass.
//!
//! Both conversions are written as integer and float operations without branches, so the
//! compiler vectorizes them with the kernel at every SIMD level (a bfloat16 load is a 16-bit
//! shift; a store is five integer operations per lane) and every level gives the same bits.
//! Stores round to nearest, ties to even, as `ml_dtypes` and NumPy do; a NaN stays a quiet
//! NaN of its sign. Adam with bfloat16 state on a CPU with AVX-512 BF16 rounds with
//! `vcvtneps2bf16` instead, and with these operations where that instruction would differ
//! (subnormals, NaNs): see [`crate::optim::bf16`].

use std::fmt::Debug;

use crate::numerics::float::{Dtype, Float};

/// A bfloat16 number (the upper half of a float32) as its bit pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Bf16(pub u16);

/// An IEEE 754 binary16 number (NumPy's float16) as its bit pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct F16(pub u16);

impl Bf16 {
    /// Rounds to nearest, ties to even; NaN becomes the quiet NaN `0x7fc0` of its sign.
    #[inline(always)]
    pub fn from_f32(x: f32) -> Self {
        // Selecting before the shift and testing NaN with one float compare: nine vector
        // operations per lane with the narrowing store, ten with an integer NaN test.
        let b = x.to_bits();
        let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1));
        let quiet = (b & 0x8000_0000) | 0x7fc0_0000;
        Bf16((if x.is_nan() { quiet } else { rounded } >> 16) as u16)
    }

    /// Exact: bfloat16 is float32 with the low 16 mantissa bits zero.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }
}

impl F16 {
    /// Rounds to nearest, ties to even, subnormals included; magnitudes from 65520 up
    /// become infinity; NaN becomes the quiet NaN `0x7e00` of its sign.
    #[inline(always)]
    pub fn from_f32(x: f32) -> Self {
        // F. Giesen's branch-free float_to_half_fast3_rtne.
        const F32_INF: u32 = 255 << 23;
        const F16_OVERFLOW: u32 = (127 + 16) << 23;
        const SMALLEST_NORMAL: u32 = (127 - 14) << 23;
        // 0.5: adding it leaves a subnormal's mantissa, rounded by the FPU, in the low bits.
        const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
        let b = x.to_bits();
        let sign = b & 0x8000_0000;
        let a = b ^ sign;
        let big = if a > F32_INF { 0x7e00 } else { 0x7c00 };
        let sub = (f32::from_bits(a) + f32::from_bits(DENORM_MAGIC))
            .to_bits()
            .wrapping_sub(DENORM_MAGIC);
        let mant_odd = (a >> 13) & 1;
        // Re-bias the exponent (15 - 127) and round the 13 dropped bits.
        let normal = a.wrapping_sub(112 << 23).wrapping_add(0xfff + mant_odd) >> 13;
        let h = if a >= F16_OVERFLOW {
            big
        } else if a < SMALLEST_NORMAL {
            sub
        } else {
            normal
        };
        F16((h | (sign >> 16)) as u16)
    }

    /// Exact (every float16 is a float32).
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        const TWO_POW_112: u32 = (127 + 112) << 23;
        let h = u32::from(self.0);
        let sign = (h & 0x8000) << 16;
        let em = (h & 0x7fff) << 13;
        // A float16 exponent e read as a float32 one is e - 127 instead of e - 15: scaling by
        // 2**112 fixes normals and turns subnormals into normals, exactly.
        let scaled = (f32::from_bits(em) * f32::from_bits(TWO_POW_112)).to_bits();
        let special = em | 0x7f80_0000;
        let bits = if h & 0x7c00 == 0x7c00 {
            special
        } else {
            scaled
        };
        f32::from_bits(bits | sign)
    }
}

/// The element type of a parameter or state buffer as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F64,
    Bf16,
    F16,
}

impl Elem {
    /// The NumPy / `ml_dtypes` name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float32",
            Elem::F64 => "float64",
            Elem::Bf16 => "bfloat16",
            Elem::F16 => "float16",
        }
    }

    pub fn parse(name: &str) -> Option<Elem> {
        [Elem::F32, Elem::F64, Elem::Bf16, Elem::F16]
            .into_iter()
            .find(|e| e.name() == name)
    }

    pub fn itemsize(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F64 => 8,
            Elem::Bf16 | Elem::F16 => 2,
        }
    }

    /// The type the kernels compute in: 16-bit values are widened to float32.
    pub fn compute(self) -> Dtype {
        match self {
            Elem::F64 => Dtype::F64,
            _ => Dtype::F32,
        }
    }

    pub fn is_16bit(self) -> bool {
        matches!(self, Elem::Bf16 | Elem::F16)
    }
}

impl From<Dtype> for Elem {
    fn from(d: Dtype) -> Elem {
        match d {
            Dtype::F32 => Elem::F32,
            Dtype::F64 => Elem::F64,
        }
    }
}

/// How a buffer element of this type is read as, and written from, a `T` (the type the
/// kernel computes in): `T` itself, or a 16-bit float widened to `f32` and rounded back.
pub trait Stored<T>: Copy + Send + Sync + Default + Debug + PartialEq + 'static {
    const ELEM: Elem;
    /// Whether the range holds squared gradients: float16's does not (below 6e-8 they are
    /// zero, above 65504 infinite), so it is refused for second moments.
    const WIDE: bool = true;
    fn load(self) -> T;
    fn store(x: T) -> Self;
}

impl<T: Float> Stored<T> for T {
    const ELEM: Elem = match T::DTYPE {
        Dtype::F32 => Elem::F32,
        Dtype::F64 => Elem::F64,
    };
    #[inline(always)]
    fn load(self) -> T {
        self
    }
    #[inline(always)]
    fn store(x: T) -> Self {
        x
    }
}

impl Stored<f32> for Bf16 {
    const ELEM: Elem = Elem::Bf16;
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn store(x: f32) -> Self {
        Bf16::from_f32(x)
    }
}

impl Stored<f32> for F16 {
    const ELEM: Elem = Elem::F16;
    const WIDE: bool = false;
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn store(x: f32) -> Self {
        F16::from_f32(x)
    }
}

/// Converts `src` to `dst` element by element (`dst[i] = D::store(src[i].load())`), in the
/// optimizer's chunks on the thread pool for large arrays: master weights from a 16-bit
/// parameter, or a 16-bit array from float32.
///
/// # Panics
/// If the lengths differ.
pub fn convert<A: Stored<f32>, B: Stored<f32>>(src: &[A], dst: &mut [B]) {
    use crate::runtime::parallel::{self, CHUNK_ELEMENTS};
    assert_eq!(src.len(), dst.len(), "arrays differ in length");
    let level = crate::runtime::simd::level();
    let pieces: Vec<(&[A], &mut [B])> = src
        .chunks(CHUNK_ELEMENTS)
        .zip(dst.chunks_mut(CHUNK_ELEMENTS))
        .collect();
    parallel::run_each(
        pieces,
        parallel::worth_threads(src.len()),
        |(s, d): (&[A], &mut [B])| convert_piece(level, s, d),
    );
}

crate::runtime::simd::multiversion! {
    fn convert_piece<A: Stored<f32>, B: Stored<f32>>(src: &[A], dst: &mut [B]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = B::store(s.load());
        }
    }
}

crate::runtime::simd::multiversion! {
    /// Whether every element of a 16-bit array is finite (its exponent is not all ones).
    pub fn all_finite_16<H: Bits16>(x: &[H]) -> bool {
        const BLOCK: usize = 1024;
        x.chunks(BLOCK).all(|block| {
            let mut bad = false;
            for &v in block {
                bad |= v.bits() & H::EXP_MASK == H::EXP_MASK;
            }
            !bad
        })
    }
}

/// A 16-bit float as its bits.
pub trait Bits16: Stored<f32> {
    /// The bits of the exponent field.
    const EXP_MASK: u16;
    fn bits(self) -> u16;
}

impl Bits16 for Bf16 {
    const EXP_MASK: u16 = 0x7f80;
    #[inline(always)]
    fn bits(self) -> u16 {
        self.0
    }
}

impl Bits16 for F16 {
    const EXP_MASK: u16 = 0x7c00;
    #[inline(always)]
    fn bits(self) -> u16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simd;

    /// Float32 values that exercise every rounding case: ties both ways, subnormals of
    /// both formats, overflow, infinities and NaNs, plus a sweep of bit patterns.
    fn samples() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65519.99,
            65520.0,
            1e10,
            -1e10,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            -1e-45,
            6e-8,
            3e-8,
            2.98e-8,
            6.1e-5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0x3f80_8000), // a bfloat16 tie, rounds down to even
            f32::from_bits(0x3f81_8000), // a tie that rounds up to even
            f32::from_bits(0x3f80_1000), // a float16 tie
            f32::from_bits(0x3f80_3000),
        ];
        let mut s = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push(f32::from_bits(s));
        }
        v
    }

    /// Round to nearest even by exact arithmetic on f64: the nearest representable
    /// value of a format with `mant` explicit bits, minimum exponent `emin`, max `max`.
    fn reference(x: f32, mant: i32, emin: i32, max: f64) -> f64 {
        let x = f64::from(x);
        let e = if x == 0.0 {
            emin
        } else {
            (x.abs().log2().floor() as i32).max(emin)
        };
        let ulp = 2f64.powi(e - mant);
        let q = x / ulp;
        let r = q.round();
        let r = if (q - q.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
            r - q.signum()
        } else {
            r
        };
        let y = r * ulp;
        // Beyond max + ulp/2 at the top binade, the value rounds to infinity.
        let top = 2f64.powi((max.log2().floor()) as i32 - mant);
        if y.abs() > max || x.abs() >= max + top / 2.0 {
            f64::INFINITY.copysign(x)
        } else {
            y
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_and_exact_on_widening() {
        let bf_max = f64::from(f32::from_bits(0x7f7f_0000));
        for x in samples() {
            let b = Bf16::from_f32(x);
            let h = F16::from_f32(x);
            if x.is_nan() {
                assert_eq!(b.0 & 0x7fff, 0x7fc0, "{x:?}");
                assert_eq!(h.0 & 0x7fff, 0x7e00, "{x:?}");
                assert_eq!(b.0 >> 15, (x.to_bits() >> 31) as u16);
                continue;
            }
            let rb = reference(x, 7, -126, bf_max);
            assert_eq!(f64::from(b.to_f32()), rb, "bfloat16 of {x:?}");
            let rh = reference(x, 10, -14, 65504.0);
            assert_eq!(f64::from(h.to_f32()), rh, "float16 of {x:?} ({:#x})", h.0);
            // Zeros keep their sign.
            assert_eq!(b.to_f32().to_bits() >> 31, x.to_bits() >> 31);
            assert_eq!(h.to_f32().to_bits() >> 31, x.to_bits() >> 31);
        }
    }

    #[test]
    fn every_16_bit_pattern_survives_widen_then_round() {
        for bits in 0..=u16::MAX {
            let (b, h) = (Bf16(bits), F16(bits));
            if b.to_f32().is_nan() {
                assert!(Bf16::from_f32(b.to_f32()).to_f32().is_nan());
            } else {
                assert_eq!(Bf16::from_f32(b.to_f32()), b);
            }
            if h.to_f32().is_nan() {
                assert!(F16::from_f32(h.to_f32()).to_f32().is_nan());
            } else {
                assert_eq!(F16::from_f32(h.to_f32()), h, "{bits:#x}");
            }
        }
    }

    #[test]
    fn conversions_give_the_same_bits_at_every_level() {
        let xs = samples();
        let mut want_b = vec![Bf16::default(); xs.len()];
        let mut want_h = vec![F16::default(); xs.len()];
        convert_piece(simd::Level::SCALAR, &xs, &mut want_b);
        convert_piece(simd::Level::SCALAR, &xs, &mut want_h);
        for level in simd::supported() {
            let (mut b, mut h) = (want_b.clone(), want_h.clone());
            b.fill(Bf16(1));
            h.fill(F16(1));
            convert_piece(level, &xs, &mut b);
            convert_piece(level, &xs, &mut h);
            assert_eq!(b, want_b, "{level:?}");
            assert_eq!(h, want_h, "{level:?}");
            let mut back = vec![0.0f32; xs.len()];
            convert_piece(level, &h, &mut back);
            assert!(back
                .iter()
                .zip(&want_h)
                .all(|(a, h)| a.to_bits() == h.to_f32().to_bits()));
        }
        assert!(xs
            .iter()
            .zip(&want_b)
            .all(|(&x, b)| *b == Bf16::from_f32(x)));
    }

    #[test]
    fn all_finite_16_finds_infinities_and_nans() {
        for level in simd::supported() {
            let mut x = vec![F16::from_f32(65504.0); 3000];
            assert!(all_finite_16(level, &x));
            x[2999] = F16::from_f32(f32::INFINITY);
            assert!(!all_finite_16(level, &x));
            let mut y = vec![Bf16::from_f32(1e38); 3000];
            assert!(all_finite_16(level, &y));
            y[7] = Bf16::from_f32(f32::NAN);
            assert!(!all_finite_16(level, &y));
        }
    }
}
