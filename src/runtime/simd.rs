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
use std::sync::OnceLock;

/// The name of the baseline level: NEON is part of the aarch64 baseline.
const BASELINE: &str = if cfg!(target_arch = "aarch64") {
    "neon"
} else {
    "scalar"
};

/// An instruction set a kernel can be compiled for. Naming one says nothing about the CPU:
/// [`Isa::level`] turns it into a [`Level`] when the CPU runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The target's baseline instruction set, no runtime-detected extension.
    Scalar = 1,
    /// AVX2 and FMA (x86-64 only).
    Avx2 = 2,
    /// AVX-512 F/VL (x86-64 only).
    Avx512 = 3,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => BASELINE,
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<Isa> {
        if name.trim().eq_ignore_ascii_case("scalar") {
            return Some(Isa::Scalar);
        }
        Isa::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// This instruction set as a [`Level`], if this CPU runs it (detected once per process).
    pub fn level(self) -> Option<Level> {
        (self <= cpu().best).then_some(Level(self))
    }

    /// Whether this CPU can run the instruction set.
    pub fn is_supported(self) -> bool {
        self.level().is_some()
    }

    fn from_u8(v: u8) -> Isa {
        match v {
            3 => Isa::Avx512,
            2 => Isa::Avx2,
            _ => Isa::Scalar,
        }
    }
}

/// An instruction set this CPU runs: made only by [`Isa::level`] (which consults the CPU,
/// detected once) or as [`Level::SCALAR`], so a kernel that takes one runs the matching
/// build without checking the CPU again (as matrixmultiply's and pulp's `Arch` do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(Isa);

impl Level {
    /// The baseline, which every CPU of the target runs.
    pub const SCALAR: Level = Level(Isa::Scalar);

    /// The instruction set.
    #[inline]
    pub fn isa(self) -> Isa {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Whether this CPU rounds float32 to bfloat16 with AVX-512 BF16 at this level: the level
    /// is AVX-512 and the CPU has the BF16, DQ and BW extensions (AMD Zen 4 and later, Intel
    /// Cooper Lake and Sapphire Rapids and later).
    #[inline]
    pub fn has_bf16_rounding(self) -> bool {
        self.0 == Isa::Avx512 && cpu().bf16
    }
}

/// What the CPU runs, detected once.
struct Cpu {
    /// The best instruction set (every lower one is run too).
    best: Isa,
    /// AVX-512 BF16, DQ and BW, beside `best == Avx512`.
    bf16: bool,
}

fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            let avx512 = avx2 && has!("avx512f") && has!("avx512vl");
            let best = match (avx2, avx512) {
                (_, true) => Isa::Avx512,
                (true, false) => Isa::Avx2,
                _ => Isa::Scalar,
            };
            Cpu {
                best,
                bf16: avx512 && has!("avx512bf16") && has!("avx512dq") && has!("avx512bw"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Cpu {
            best: Isa::Scalar,
            bf16: false,
        }
    })
}

/// The levels this CPU supports, lowest first.
pub fn supported() -> Vec<Level> {
    Isa::ALL.into_iter().filter_map(Isa::level).collect()
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    Level(cpu().best)
}

/// The chosen level's [`Isa`] as a number; 0 until first chosen. Only a [`Level`] is stored.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level kernels run with now: the one set by [`set_level`], else `FERROPTIM_SIMD`,
/// else [`detected`]. An unknown or unsupported `FERROPTIM_SIMD` falls back to [`detected`].
#[inline]
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let chosen = std::env::var("FERROPTIM_SIMD")
                .ok()
                .and_then(|v| Isa::parse(&v))
                .and_then(Isa::level)
                .unwrap_or_else(detected);
            LEVEL.store(chosen.0 as u8, Ordering::Relaxed);
            chosen
        }
        // Only levels are stored, so the instruction set is one this CPU runs.
        v => Level(Isa::from_u8(v)),
    }
}

/// Forces a level for all later kernel calls; an error names the levels this CPU supports.
pub fn set_level(isa: Isa) -> Result<(), String> {
    let level = isa.level().ok_or_else(|| {
        format!(
            "SIMD level {:?} is not supported by this CPU (supported: {})",
            isa.name(),
            supported()
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    LEVEL.store(level.0 as u8, Ordering::Relaxed);
    Ok(())
}

/// Defines `fn $name(level, args...)` that runs `$body` compiled for `level`.
///
/// The body is an `#[inline(always)]` function inlined into one `#[target_feature]` wrapper
/// per level, so the compiler vectorizes the same source for each instruction set. Callers
/// pass [`level()`] (read once per call into the core); tests pass every supported level.
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
                // A `Level` exists only for an instruction set the CPU runs: no check here.
                match level.isa() {
                    // SAFETY: the CPU has the features the wrapper was compiled for.
                    $crate::runtime::simd::Isa::Avx512 => return unsafe { avx512$(::<$($T),+>)?($($arg),*) },
                    $crate::runtime::simd::Isa::Avx2 => return unsafe { avx2$(::<$($T),+>)?($($arg),*) },
                    $crate::runtime::simd::Isa::Scalar => {}
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
        assert_eq!(Isa::Scalar.name(), want);
        assert_eq!(Level::SCALAR.name(), want);
        assert_eq!(Isa::parse(want), Some(Isa::Scalar));
        assert_eq!(Isa::parse("scalar"), Some(Isa::Scalar));
    }

    #[test]
    fn names_round_trip_and_scalar_is_always_supported() {
        for l in Isa::ALL {
            assert_eq!(Isa::parse(l.name()), Some(l));
        }
        assert_eq!(Isa::parse(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("sse9"), None);
        assert_eq!(Isa::Scalar.level(), Some(Level::SCALAR));
        assert_eq!(supported()[0], Level::SCALAR);
        assert!(detected().isa().is_supported());
    }

    #[test]
    fn a_level_exists_only_for_what_the_cpu_runs() {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            assert_eq!(Isa::Avx2.level().is_some(), avx2);
            let avx512 = avx2 && has!("avx512f") && has!("avx512vl");
            assert_eq!(Isa::Avx512.level().is_some(), avx512);
            let bf16 = avx512 && has!("avx512bf16") && has!("avx512dq") && has!("avx512bw");
            assert_eq!(detected().has_bf16_rounding(), bf16);
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(supported(), [Level::SCALAR]);
        assert!(!Level::SCALAR.has_bf16_rounding());
        // Every supported level is below the detected one, and set_level refuses the others.
        let best = detected();
        for isa in Isa::ALL {
            assert_eq!(isa.level().is_some(), isa <= best.isa());
            if isa > best.isa() {
                assert!(set_level(isa)
                    .unwrap_err()
                    .contains("not supported by this CPU"));
            }
        }
    }
}
