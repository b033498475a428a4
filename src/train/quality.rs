//! Which quality level each training sample trains at (`--quality-weights`).
//!
//! One gain-conditioned model learns every rate point at once, each sample at a level drawn at
//! random: uniformly by default, or level q with probability w_q / Σw, to spend more steps
//! where the rate-distortion curve is worst. Every draw consumes exactly one `u64` of the
//! run's generator, whatever the weights, so two arms of an A/B that differ only in their
//! weights see the same crops.

use rand::Rng;

use crate::error::{Error, Result};

/// Draws quality levels with fixed integer weights.
#[derive(Debug, Clone)]
pub struct QualitySampler {
    /// Running sums of the weights: level q is drawn for r in `cumulative[q-1]..cumulative[q]`.
    cumulative: Vec<u64>,
}

impl QualitySampler {
    /// `weights` has one entry per level (empty: uniform over `levels`); at least one must be
    /// non-zero.
    pub fn new(weights: &[u32], levels: usize) -> Result<Self> {
        let weights = if weights.is_empty() { vec![1; levels] } else { weights.to_vec() };
        if weights.len() != levels {
            return Err(Error::Unsupported(format!("--quality-weights has {} weights for {levels} quality levels", weights.len())));
        }
        let mut sum = 0u64;
        let cumulative: Vec<u64> = weights
            .iter()
            .map(|&w| {
                sum += w as u64;
                sum
            })
            .collect();
        if cumulative.last().is_none_or(|&total| total == 0) {
            return Err(Error::Unsupported("--quality-weights: at least one level needs a weight above 0".into()));
        }
        Ok(Self { cumulative })
    }

    /// One level, from one `u64` of `rng` (multiply-shift onto the total weight; its bias,
    /// under total / 2⁶⁴, is nil for any weights a user types).
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let total = *self.cumulative.last().expect("checked in new");
        let r = ((rng.r#gen::<u64>() as u128 * total as u128) >> 64) as u64;
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// The probability of each level.
    pub fn probabilities(&self) -> Vec<f64> {
        let total = *self.cumulative.last().expect("checked in new") as f64;
        let mut previous = 0;
        self.cumulative.iter().map(|&c| (c - std::mem::replace(&mut previous, c)) as f64 / total).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn frequencies(sampler: &QualitySampler, draws: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0usize; sampler.probabilities().len()];
        for _ in 0..draws {
            counts[sampler.draw(&mut rng)] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn levels_are_drawn_in_proportion_to_their_weights() {
        let sampler = QualitySampler::new(&[1, 0, 2, 5], 4).unwrap();
        assert_eq!(sampler.probabilities(), vec![0.125, 0.0, 0.25, 0.625]);
        let seen = frequencies(&sampler, 40_000);
        assert_eq!(seen[1], 0.0, "a level of weight 0 is never drawn");
        for (p, f) in sampler.probabilities().iter().zip(&seen) {
            assert!((p - f).abs() < 0.01, "expected {p}, drew {f}");
        }
        let uniform = frequencies(&QualitySampler::new(&[], 8).unwrap(), 40_000);
        assert!(uniform.iter().all(|f| (f - 0.125).abs() < 0.01), "{uniform:?}");
    }

    #[test]
    fn every_draw_takes_one_number_so_arms_see_the_same_crops() {
        let (uniform, skewed) = (QualitySampler::new(&[], 8).unwrap(), QualitySampler::new(&[1, 1, 1, 1, 3, 3, 3, 3], 8).unwrap());
        let (mut a, mut b) = (StdRng::seed_from_u64(3), StdRng::seed_from_u64(3));
        for _ in 0..100 {
            uniform.draw(&mut a);
            skewed.draw(&mut b);
            assert_eq!(a.r#gen::<u32>(), b.r#gen::<u32>());
        }
    }

    #[test]
    fn bad_weights_are_refused() {
        assert!(QualitySampler::new(&[1, 2], 8).is_err(), "wrong count");
        assert!(QualitySampler::new(&[0, 0], 2).is_err(), "all zero");
        assert!(QualitySampler::new(&[], 0).is_err(), "no levels");
    }
}
