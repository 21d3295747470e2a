//! Mixed precision: how an update kernel reads and writes a parameter stored as float32 or
//! float64, as 16 bits, or as 16 bits with a float32 master copy.
//!
//! The kernels in [`crate::optim::kernels`] are generic over the parameter access ([`Params`]) and
//! the state's element type ([`Stored`]): a bfloat16 moment is widened to float32 in the
//! kernel's registers, updated, and rounded once on store, in the same single pass over
//! memory as a float32 one. With master weights the parameter's float32 copy is what the
//! kernel updates; the 16-bit array the user holds is written (not read) with its rounding.

use crate::numerics::float::Float;
use crate::numerics::half::Stored;

/// A parameter as one update kernel sees it: `len` elements it loads as `T`, and stores.
pub trait Params<T: Float>: Sized + Send {
    /// The gradient's element type: the parameter's as the user holds it.
    type Grad: Stored<T>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `n` elements (so the kernel's loop knows every index is in bounds).
    ///
    /// # Panics
    /// If there are fewer than `n`.
    fn prefix(self, n: usize) -> Self;
    fn split_at(self, mid: usize) -> (Self, Self);
    fn load(&self, i: usize) -> T;
    fn store(&mut self, i: usize, x: T);
}

/// A parameter updated where it is stored: float32 / float64, or 16 bits without master
/// weights (each step's result rounded to 16 bits, so updates below half a unit in the
/// last place are lost).
pub struct Direct<'a, S>(pub &'a mut [S]);

impl<T: Float, S: Stored<T>> Params<T> for Direct<'_, S> {
    type Grad = S;
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn prefix(self, n: usize) -> Self {
        Direct(&mut self.0[..n])
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.0.split_at_mut(mid);
        (Direct(a), Direct(b))
    }
    #[inline(always)]
    fn load(&self, i: usize) -> T {
        self.0[i].load()
    }
    #[inline(always)]
    fn store(&mut self, i: usize, x: T) {
        self.0[i] = S::store(x);
    }
}

/// A 16-bit parameter with float32 master weights: the kernel updates `master` and writes
/// its rounding to `param`.
pub struct Master<'a, H> {
    pub master: &'a mut [f32],
    pub param: &'a mut [H],
}

impl<H: Stored<f32>> Params<f32> for Master<'_, H> {
    type Grad = H;
    #[inline(always)]
    fn len(&self) -> usize {
        self.master.len()
    }
    #[inline(always)]
    fn prefix(self, n: usize) -> Self {
        Master {
            master: &mut self.master[..n],
            param: &mut self.param[..n],
        }
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (m0, m1) = self.master.split_at_mut(mid);
        let (p0, p1) = self.param.split_at_mut(mid);
        (
            Master {
                master: m0,
                param: p0,
            },
            Master {
                master: m1,
                param: p1,
            },
        )
    }
    #[inline(always)]
    fn load(&self, i: usize) -> f32 {
        self.master[i]
    }
    #[inline(always)]
    fn store(&mut self, i: usize, x: f32) {
        self.master[i] = x;
        self.param[i] = H::store(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::half::{Bf16, F16};
    use crate::optim::hyper::{self, Hyper};
    use crate::optim::kernels::{update, Kernel};
    use crate::runtime::simd::{self, Level};

    fn data(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn adam() -> Hyper {
        Hyper::Adam(hyper::Adam {
            lr: 1e-2,
            ..hyper::Adam::TORCH
        })
    }

    /// Adam written out in float32 with each moment rounded to bfloat16 after its update.
    fn adam_bf16_reference(p: &mut [f32], g: &[f32], m: &mut [Bf16], v: &mut [Bf16], t: u64) {
        let (lr, b1, b2, eps) = (1e-2f64, 0.9f64, 0.999f64, 1e-8f64);
        let bc1 = 1.0 - b1.powf(t as f64);
        let c = crate::optim::ewa::py_pow_half(1.0 - b2.powf(t as f64));
        let neg_step = (-(lr / bc1 * c)) as f32;
        let eps_c = (eps * c) as f32;
        for i in 0..p.len() {
            let mi = b1 as f32 * m[i].to_f32() + (1.0 - b1) as f32 * g[i];
            let vi = b2 as f32 * v[i].to_f32() + ((1.0 - b2) as f32 * g[i]) * g[i];
            p[i] += (neg_step * mi) / (vi.sqrt() + eps_c);
            m[i] = Bf16::from_f32(mi);
            v[i] = Bf16::from_f32(vi);
        }
    }

    #[test]
    fn bfloat16_state_computes_in_float32_and_rounds_once_on_store() {
        let n = 1003;
        let (mut p, mut m, mut v) = (data(n, 1, 1.0), vec![Bf16(0); n], vec![Bf16(0); n]);
        let (mut rp, mut rm, mut rv) = (p.clone(), m.clone(), v.clone());
        for t in 1..=10 {
            let g = data(n, 100 + t as u32, 0.1);
            let k = Kernel::<f32>::new(&adam(), t, [false; 3]);
            update(
                simd::level(),
                &k,
                Direct(&mut p),
                &g,
                [&mut m, &mut v, &mut []],
            );
            adam_bf16_reference(&mut rp, &g, &mut rm, &mut rv, t);
        }
        // The reference evaluates the same expression; only the kernel's stored moments
        // are read back rounded, so the moments agree bit for bit.
        assert_eq!((&m, &v), (&rm, &rv));
        assert!(p.iter().zip(&rp).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn master_weights_keep_updates_a_16_bit_parameter_would_lose() {
        // 1 + 1e-4 is 1 in float16 (its spacing near 1 is 1e-3): without master weights
        // the parameter never moves; with them the float32 copy accumulates the steps.
        let h = Hyper::Sgd(hyper::Sgd {
            lr: 1e-4,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            maximize: false,
        });
        let g = vec![F16::from_f32(-1.0); 4];
        let mut direct = vec![F16::from_f32(1.0); 4];
        let mut param = direct.clone();
        let mut master = vec![1.0f32; 4];
        for t in 1..=20 {
            let k = Kernel::<f32>::new(&h, t, [false; 3]);
            update::<f32, _, f32>(
                Level::SCALAR,
                &k,
                Direct(&mut direct),
                &g,
                Default::default(),
            );
            let p = Master {
                master: &mut master,
                param: &mut param,
            };
            update::<f32, _, f32>(Level::SCALAR, &k, p, &g, Default::default());
        }
        assert_eq!(direct[0].to_f32(), 1.0);
        assert!((master[0] - 1.002).abs() < 1e-6, "{}", master[0]);
        assert_eq!(param[0], F16::from_f32(master[0]));
    }

    #[test]
    fn mixed_kernels_give_identical_bits_at_every_level() {
        let n = 1000 + 7;
        let hypers = [
            adam(),
            Hyper::Sgd(hyper::Sgd {
                lr: 0.1,
                momentum: 0.9,
                dampening: 0.0,
                nesterov: true,
                weight_decay: 0.01,
                maximize: false,
            }),
            Hyper::Lion(hyper::Lion {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: 0.1,
            }),
        ];
        for h in &hypers {
            let mut results = Vec::new();
            for level in simd::supported() {
                let mut master = data(n, 3, 1.0);
                let mut param: Vec<F16> = master.iter().map(|&x| F16::from_f32(x)).collect();
                let mut s = vec![vec![Bf16(0); n]; 3];
                for t in 1..=6u64 {
                    let g: Vec<F16> = data(n, t as u32, 1.0)
                        .iter()
                        .map(|&x| F16::from_f32(x))
                        .collect();
                    let k = Kernel::<f32>::new(h, t, [t == 1; 3]);
                    let [a, b, c] = &mut s[..] else {
                        unreachable!()
                    };
                    let p = Master {
                        master: &mut master,
                        param: &mut param,
                    };
                    update(level, &k, p, &g, [a, b, c]);
                }
                let bits: Vec<u32> = master
                    .iter()
                    .map(|x| x.to_bits())
                    .chain(param.iter().map(|x| u32::from(x.0)))
                    .chain(s.concat().iter().map(|x| u32::from(x.0)))
                    .collect();
                results.push(bits);
            }
            assert!(results.windows(2).all(|w| w[0] == w[1]), "{h:?}");
        }
    }
}
