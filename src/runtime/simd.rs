//! Runtime choice of the instruction set the kernels run with.
//!
//! Every kernel is written once as a plain loop and compiled several times by
//! [`multiversion!`]: for AVX-512, for AVX2+FMA and for the target's baseline (SSE2 on
//! x86-64, NEON on aarch64). The best level the CPU supports is picked at run time, so one
//! wheel runs on any x86-64 CPU. No kernel writes `mul_add`, and the compiler never fuses a
//! multiply and an add on its own, so every level gives bit-identical results.
//!
//! `FERROPTIM_SIMD=scalar|avx2|avx512` forces a level (read once, at first use). On aarch64
//! the baseline level is named `neon` (`scalar` is accepted for it too).

use std::sync::atomic::{AtomicU8, Ordering};

/// The name of the baseline level: NEON is part of the aarch64 baseline.
const BASELINE: &str = if cfg!(target_arch = "aarch64") {
    "neon"
} else {
    "scalar"
};

/// An instruction-set level a kernel can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The target's baseline instruction set, no runtime-detected extension.
    Scalar = 1,
    /// AVX2 and FMA (x86-64 only).
    Avx2 = 2,
    /// AVX-512 F/VL (x86-64 only).
    Avx512 = 3,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Scalar, Level::Avx2, Level::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => BASELINE,
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<Level> {
        if name.trim().eq_ignore_ascii_case("scalar") {
            return Some(Level::Scalar);
        }
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && Level::Avx2.is_supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            3 => Level::Avx512,
            2 => Level::Avx2,
            _ => Level::Scalar,
        }
    }
}

/// The levels this CPU supports, lowest first.
pub fn supported() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    *supported().last().unwrap_or(&Level::Scalar)
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level kernels run with now: the one set by [`set_level`], else `FERROPTIM_SIMD`,
/// else [`detected`]. An unknown or unsupported `FERROPTIM_SIMD` falls back to [`detected`].
#[inline]
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let chosen = std::env::var("FERROPTIM_SIMD")
                .ok()
                .and_then(|v| Level::parse(&v))
                .filter(|l| l.is_supported())
                .unwrap_or_else(detected);
            LEVEL.store(chosen as u8, Ordering::Relaxed);
            chosen
        }
        v => Level::from_u8(v),
    }
}

/// Forces a level for all later kernel calls.
pub fn set_level(level: Level) -> Result<(), String> {
    if !level.is_supported() {
        return Err(format!(
            "SIMD level {:?} is not supported by this CPU (supported: {})",
            level.name(),
            supported()
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Defines `fn $name(level, args...)` that runs `$body` compiled for `level`.
///
/// The body is an `#[inline(always)]` function inlined into one `#[target_feature]` wrapper
/// per level, so the compiler vectorizes the same source for each instruction set. Callers
/// pass [`level()`] (read once per call into the core); tests pass every supported level.
/// An unsupported `level` runs the baseline build.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident$(<$($T:ident: $bound:path),+>)?($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name$(<$($T: $bound),+>)?(level: $crate::runtime::simd::Level, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body$(<$($T: $bound),+>)?($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512$(<$($T: $bound),+>)?($($arg: $ty),*) $(-> $ret)? {
                    body$(::<$($T),+>)?($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2$(<$($T: $bound),+>)?($($arg: $ty),*) $(-> $ret)? {
                    body$(::<$($T),+>)?($($arg),*)
                }
                // `is_supported` is a cached feature lookup: it keeps this safe function sound
                // for any `level` a caller passes.
                match level {
                    // SAFETY: the CPU has the features the wrapper was compiled for.
                    $crate::runtime::simd::Level::Avx512 if level.is_supported() => return unsafe { avx512$(::<$($T),+>)?($($arg),*) },
                    $crate::runtime::simd::Level::Avx2 if level.is_supported() => return unsafe { avx2$(::<$($T),+>)?($($arg),*) },
                    _ => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            body$(::<$($T),+>)?($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_is_named_neon_on_aarch64_and_scalar_elsewhere() {
        let want = if cfg!(target_arch = "aarch64") {
            "neon"
        } else {
            "scalar"
        };
        assert_eq!(Level::Scalar.name(), want);
        assert_eq!(Level::parse(want), Some(Level::Scalar));
        assert_eq!(Level::parse("scalar"), Some(Level::Scalar));
    }

    #[test]
    fn names_round_trip_and_scalar_is_always_supported() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("sse9"), None);
        assert!(Level::Scalar.is_supported());
        assert_eq!(supported()[0], Level::Scalar);
        assert!(detected().is_supported());
    }
}
