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
use crate::nn::fixed::{FRAC_BITS, to_fixed, to_float};

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

/// Gaussian parameters for a latent, in fixed point (`Q[FRAC_BITS]`, one per element,
/// channel-major) as the integer hyper-synthesis computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaussianParams {
    pub scales: Vec<i32>,
    pub means: Option<Vec<i32>>,
}

impl GaussianParams {
    /// From float parameters (training-time networks; only for measuring what the integer
    /// path costs: floats differ across backends).
    pub fn from_float(scales: &[f32], means: Option<&[f32]>) -> Self {
        Self { scales: scales.iter().map(|&v| to_fixed(v)).collect(), means: means.map(|m| m.iter().map(|&v| to_fixed(v)).collect()) }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    fn mean(&self, i: usize) -> f32 {
        self.means.as_ref().map_or(0.0, |m| to_float(m[i]))
    }
}

/// The integer side of the Gaussian conditional.
#[derive(Debug, Clone)]
pub struct GaussianConditional {
    /// Table scales in fixed point, rounded down: σ ≤ s_i ⇔ σ_q ≤ floor(s_i·2^FRAC_BITS).
    thresholds: Vec<i32>,
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
        let scales: Vec<f64> = (0..SCALE_LEVELS).map(|i| libm::exp(lo + (hi - lo) * i as f64 / (SCALE_LEVELS - 1) as f64)).collect();
        let multiplier = -std_normal_ppf(TAIL_MASS / 2.0);
        let tables = scales
            .iter()
            .map(|&s| {
                let r = libm::ceil(s * multiplier) as i32;
                let pmf: Vec<f64> = (-r..=r).map(|v| std_normal_cdf((v as f64 + 0.5) / s) - std_normal_cdf((v as f64 - 0.5) / s)).collect();
                CdfTable::from_pmf(-r, &pmf).expect("gaussian tables are valid")
            })
            .collect();
        let thresholds = scales.iter().map(|&s| libm::floor(s * (1u64 << FRAC_BITS) as f64) as i32).collect();
        Self { thresholds, tables }
    }

    /// Index of the smallest table scale >= `scale` (fixed point; the last table for anything
    /// larger). Pure integer comparison, so encoder and decoder always agree.
    pub fn index(&self, scale: i32) -> usize {
        let last = self.thresholds.len() - 1;
        self.thresholds[..last].partition_point(|&t| t < scale)
    }

    /// Codes `y` with the per-element parameters; returns ŷ.
    pub fn compress(&self, y: &[f32], params: &GaussianParams, enc: &mut SymbolEncoder) -> Result<Vec<f32>> {
        check_params(params, y.len())?;
        let mut y_hat = Vec::with_capacity(y.len());
        for (i, &v) in y.iter().enumerate() {
            let mean = params.means.as_ref().map_or(0, |m| m[i]);
            y_hat.push(self.encode_one(v, params.scales[i], mean, enc)? as f32 + to_float(mean));
        }
        Ok(y_hat)
    }

    pub fn decompress(&self, params: &GaussianParams, dec: &mut SymbolDecoder) -> Result<Vec<f32>> {
        check_params(params, params.len())?;
        let mut y_hat = Vec::with_capacity(params.len());
        for i in 0..params.len() {
            y_hat.push(self.decode_one(params.scales[i], dec)? as f32 + params.mean(i));
        }
        Ok(y_hat)
    }

    /// Codes one value under N(`mean`, `scale`) (fixed point); returns its symbol round(v − μ).
    pub fn encode_one(&self, v: f32, scale: i32, mean: i32, enc: &mut SymbolEncoder) -> Result<i32> {
        let s = (v - to_float(mean)).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32;
        enc.encode(s, &self.tables[self.index(scale)])?;
        Ok(s)
    }

    /// Decodes one symbol coded by [`encode_one`](Self::encode_one) with the same `scale`.
    pub fn decode_one(&self, scale: i32, dec: &mut SymbolDecoder) -> Result<i32> {
        dec.decode(&self.tables[self.index(scale)])
    }
}

fn check_params(p: &GaussianParams, n: usize) -> Result<()> {
    if p.scales.len() == n && p.means.as_ref().is_none_or(|m| m.len() == n) { Ok(()) } else { Err(crate::error::Error::Format("latent geometry does not match the hyperprior".into())) }
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
        assert_eq!(g.index(0), 0);
        assert_eq!(g.index(i32::MIN), 0);
        assert_eq!(g.index(450), 0);
        assert_eq!(g.index(451), 1);
        assert_eq!(g.index(i32::MAX), SCALE_LEVELS - 1);
        for i in 1..SCALE_LEVELS {
            assert!(g.thresholds[i] > g.thresholds[i - 1]);
        }
    }

    #[test]
    fn ppf_inverts_cdf() {
        assert!((std_normal_ppf(0.5)).abs() < 1e-9);
        assert!((std_normal_cdf(std_normal_ppf(5e-10)) - 5e-10).abs() < 1e-15);
    }
}
