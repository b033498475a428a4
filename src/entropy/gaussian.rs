//! Gaussian conditional: a latent coded with a Gaussian whose scale (and mean) come from a
//! hyper-decoder.
//!
//! ```text
//!  training:   y ──(+U)──► ỹ ;  p(ỹ | μ, σ) = Φ((½−|ỹ−μ|)/σ) − Φ((−½−|ỹ−μ|)/σ)
//!  compress:   σ ──► table index i (smallest table scale >= σ);  s = round(y − μ)
//!              s ──range coder(table_i)──► bytes ;  ŷ = s + μ
//!  decompress: σ ──► i ;  bytes ──► s ;  ŷ = s + μ
//! ```
//! The 64 tables are built from the fixed log-spaced scale table with `libm` (pure software
//! f64, identical on every machine), then quantized to integers.

use burn::prelude::*;

use super::coder::{CdfTable, SymbolDecoder, SymbolEncoder};
use crate::error::Result;

pub const SCALE_MIN: f64 = 0.11;
pub const SCALE_MAX: f64 = 256.0;
pub const SCALE_LEVELS: usize = 64;
const TAIL_MASS: f64 = 1e-9;
const LIKELIHOOD_FLOOR: f64 = 1e-9;

/// Likelihood of noisy latents under N(μ, σ) integrated over unit bins (training).
pub fn gaussian_likelihood(y: Tensor<4>, scales: Tensor<4>, means: Option<Tensor<4>>) -> Tensor<4> {
    let scales = scales.clamp_min(SCALE_MIN);
    let v = match means {
        Some(m) => (y - m).abs(),
        None => y.abs(),
    };
    let upper = std_cdf((v.clone().neg().add_scalar(0.5)) / scales.clone());
    let lower = std_cdf((v.neg().sub_scalar(0.5)) / scales);
    (upper - lower).clamp_min(LIKELIHOOD_FLOOR)
}

fn std_cdf(x: Tensor<4>) -> Tensor<4> {
    x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5)
}

/// The integer side of the Gaussian conditional.
#[derive(Debug, Clone)]
pub struct GaussianConditional {
    scale_table: Vec<f32>,
    tables: Vec<CdfTable>,
}

impl Default for GaussianConditional {
    fn default() -> Self {
        Self::new()
    }
}

impl GaussianConditional {
    pub fn new() -> Self {
        let (lo, hi) = (libm::log(SCALE_MIN), libm::log(SCALE_MAX));
        let scales: Vec<f64> = (0..SCALE_LEVELS)
            .map(|i| libm::exp(lo + (hi - lo) * i as f64 / (SCALE_LEVELS - 1) as f64))
            .collect();
        let multiplier = -std_normal_ppf(TAIL_MASS / 2.0);
        let tables = scales
            .iter()
            .map(|&s| {
                let r = libm::ceil(s * multiplier) as i32;
                let pmf: Vec<f64> = (-r..=r)
                    .map(|v| std_normal_cdf((v as f64 + 0.5) / s) - std_normal_cdf((v as f64 - 0.5) / s))
                    .collect();
                CdfTable::from_pmf(-r, &pmf).expect("gaussian tables are valid")
            })
            .collect();
        Self { scale_table: scales.iter().map(|&s| s as f32).collect(), tables }
    }

    /// Index of the smallest table scale >= `scale` (the last one for anything larger).
    /// NaN maps to the widest table.
    pub fn index(&self, scale: f32) -> usize {
        let last = self.scale_table.len() - 1;
        self.scale_table[..last].iter().filter(|&&t| !(scale <= t)).count()
    }

    /// Codes `y` given per-element scales and optional means (all the same layout); returns ŷ.
    pub fn compress(&self, y: &[f32], scales: &[f32], means: Option<&[f32]>, enc: &mut SymbolEncoder) -> Result<Vec<f32>> {
        let mut y_hat = Vec::with_capacity(y.len());
        for i in 0..y.len() {
            let mu = means.map_or(0.0, |m| m[i]);
            let s = (y[i] - mu).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32;
            enc.encode(s, &self.tables[self.index(scales[i])])?;
            y_hat.push(s as f32 + mu);
        }
        Ok(y_hat)
    }

    pub fn decompress(&self, scales: &[f32], means: Option<&[f32]>, dec: &mut SymbolDecoder) -> Result<Vec<f32>> {
        let mut y_hat = Vec::with_capacity(scales.len());
        for i in 0..scales.len() {
            let mu = means.map_or(0.0, |m| m[i]);
            y_hat.push(dec.decode(&self.tables[self.index(scales[i])])? as f32 + mu);
        }
        Ok(y_hat)
    }
}

fn std_normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Inverse of the standard normal CDF by bisection (only used to size the tables).
fn std_normal_ppf(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if std_normal_cdf(mid) < p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_picks_smallest_covering_scale() {
        let g = GaussianConditional::new();
        assert_eq!(g.index(0.0), 0);
        assert_eq!(g.index(0.11), 0);
        assert_eq!(g.index(0.1101), 1);
        assert_eq!(g.index(1e9), SCALE_LEVELS - 1);
        assert_eq!(g.index(f32::NAN), SCALE_LEVELS - 1);
        for i in 1..SCALE_LEVELS {
            assert!(g.scale_table[i] > g.scale_table[i - 1]);
        }
    }

    #[test]
    fn ppf_inverts_cdf() {
        assert!((std_normal_ppf(0.5)).abs() < 1e-9);
        assert!((std_normal_cdf(std_normal_ppf(5e-10)) - 5e-10).abs() < 1e-15);
    }
}
