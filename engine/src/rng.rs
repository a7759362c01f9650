//! Seeded random numbers for everything the CPU side draws (batches, corruption, weights).
//!
//! PCG (`rand_pcg`, the reference implementation of O'Neill's generator) is small, fast and
//! gives the same stream on every platform, native and wasm alike, which the lab's
//! "same seed → same curve" promise needs. We never use the device's own RNG: it is global per
//! device, so two runs sharing a GPU would disturb each other's streams.

use rand::{Rng as _, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// The one random-number generator type the engine uses.
#[derive(Clone, Debug)]
pub struct Rng(Pcg64Mcg);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        Self(Pcg64Mcg::seed_from_u64(seed))
    }

    /// An independent stream derived from this seed and a label (e.g. run index, "init").
    pub fn derive(seed: u64, stream: u64) -> Self {
        // SplitMix64 finaliser mixes the pair so that nearby seeds give unrelated streams.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::seeded(z ^ (z >> 31))
    }

    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::derive(7, 1);
        let mut b = Rng::derive(7, 1);
        let mut c = Rng::derive(7, 2);
        let xa: Vec<usize> = (0..10).map(|_| a.below(1000)).collect();
        let xb: Vec<usize> = (0..10).map(|_| b.below(1000)).collect();
        let xc: Vec<usize> = (0..10).map(|_| c.below(1000)).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::seeded(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }
}
