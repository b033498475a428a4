//! Entropy bottleneck: the per-channel non-parametric density of Ballé et al. 2018 (appendix 6.1).
//!
//! ```text
//!  training:   z ──(+U(-½,½))──► z̃ ──► p(z̃) = c(z̃+½) − c(z̃−½)         (c: learned monotone CDF)
//!  export:     c  ──bisection──► median m, tails  ──► integer table per channel (BottleneckTables)
//!  compress:   z ──► s = round(z − m) ──range coder(table_c)──► bytes
//!  decompress: bytes ──► s ──► ẑ = s + m
//! ```
//! The learned density is evaluated with floats only at export time; the shipped weight file
//! carries the integer tables and medians, so the decoder never evaluates the network.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{sigmoid, softplus};

use super::coder::{CdfTable, SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};

const FILTERS: [usize; 4] = [3, 3, 3, 3];
const INIT_SCALE: f64 = 10.0;
/// Probability mass left outside each channel's table (goes to the escape symbol).
const TAIL_MASS: f64 = 1e-9;
const LIKELIHOOD_FLOOR: f64 = 1e-9;
/// Widest table per channel; anything beyond escapes.
const MAX_TABLE: i64 = 4096;

#[derive(Module, Debug)]
pub struct EntropyBottleneck {
    matrices: Vec<Param<Tensor<3>>>,
    biases: Vec<Param<Tensor<3>>>,
    factors: Vec<Param<Tensor<3>>>,
}

impl EntropyBottleneck {
    pub fn new(channels: usize, device: &Device) -> Self {
        let dims: Vec<usize> = std::iter::once(1).chain(FILTERS).chain(std::iter::once(1)).collect();
        let scale = INIT_SCALE.powf(1.0 / (FILTERS.len() + 1) as f64);
        let (mut matrices, mut biases, mut factors) = (vec![], vec![], vec![]);
        for i in 0..dims.len() - 1 {
            let init = (1.0 / scale / dims[i + 1] as f64).exp_m1().ln();
            matrices.push(Param::from_tensor(Tensor::full([channels, dims[i + 1], dims[i]], init, device)));
            biases.push(Param::from_tensor(Tensor::random([channels, dims[i + 1], 1], Distribution::Uniform(-0.5, 0.5), device)));
            if i < dims.len() - 2 {
                factors.push(Param::from_tensor(Tensor::zeros([channels, dims[i + 1], 1], device)));
            }
        }
        Self { matrices, biases, factors }
    }

    pub fn channels(&self) -> usize {
        self.matrices[0].dims()[0]
    }

    /// Logit of the learned CDF at `x` ([C, 1, N]).
    fn logits_cumulative(&self, mut x: Tensor<3>) -> Tensor<3> {
        for i in 0..self.matrices.len() {
            x = softplus(self.matrices[i].val(), 1.0).matmul(x) + self.biases[i].val();
            if let Some(f) = self.factors.get(i) {
                x = x.clone() + f.val().tanh() * x.tanh();
            }
        }
        x
    }

    /// Training pass: additive uniform noise as the quantization proxy, and the likelihood of
    /// the noisy values. Returns (z̃, p(z̃)), both [B, C, H, W].
    pub fn forward(&self, z: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, c, h, w] = z.dims();
        let noise = Tensor::random(z.shape(), Distribution::Uniform(-0.5, 0.5), &z.device());
        let z_tilde = z + noise;
        let v = z_tilde.clone().permute([1, 0, 2, 3]).reshape([c, 1, b * h * w]);
        let lower = self.logits_cumulative(v.clone().sub_scalar(0.5));
        let upper = self.logits_cumulative(v.add_scalar(0.5));
        // Evaluate in the tail where the sigmoid is accurate (flip around the median).
        let sign = (lower.clone() + upper.clone()).sign().neg().detach();
        let lik = (sigmoid(sign.clone() * upper) - sigmoid(sign * lower)).abs().clamp_min(LIKELIHOOD_FLOOR);
        let lik = lik.reshape([c, b, h, w]).permute([1, 0, 2, 3]);
        (z_tilde, lik)
    }

    /// Tabulates the learned density into integer tables (float evaluation happens here once).
    pub fn export(&self) -> BottleneckTables {
        let host = HostDensity::from_module(self);
        let mut medians = vec![];
        let mut offsets = vec![];
        let mut freqs = vec![];
        let lo_logit = (TAIL_MASS / 2.0 / (1.0 - TAIL_MASS / 2.0)).ln();
        for c in 0..self.channels() {
            let med = host.solve(c, 0.0);
            let q_lo = host.solve(c, lo_logit);
            let q_hi = host.solve(c, -lo_logit);
            let med32 = med as f32;
            let lo = ((q_lo - med32 as f64).floor() as i64).clamp(-MAX_TABLE / 2, 0);
            let hi = ((q_hi - med32 as f64).ceil() as i64).clamp(0, MAX_TABLE / 2);
            let pmf: Vec<f64> = (lo..=hi).map(|k| host.mass(c, med32 as f64 + k as f64 - 0.5, med32 as f64 + k as f64 + 0.5)).collect();
            medians.push(med32);
            offsets.push(lo as i32);
            freqs.push(super::coder::quantize_pmf(&pmf));
        }
        BottleneckTables::new(medians, offsets, freqs).expect("freshly quantized tables are valid")
    }
}

/// The learned CDF evaluated in f64 on the host, for export only.
/// One density layer on the host: matrix, bias, optional factor, outputs, inputs.
type HostLayer = (Vec<f64>, Vec<f64>, Option<Vec<f64>>, usize, usize);

struct HostDensity {
    /// Per layer: (matrix [C][out][in] after softplus, bias [C][out], factor tanh [C][out]).
    layers: Vec<HostLayer>,
}

impl HostDensity {
    fn from_module(m: &EntropyBottleneck) -> Self {
        let read = |t: Tensor<3>| -> Vec<f64> { crate::nn::to_host(t).into_iter().map(|v| v as f64).collect() };
        let mut layers = vec![];
        for i in 0..m.matrices.len() {
            let [_, out, inp] = m.matrices[i].dims();
            let mat = read(m.matrices[i].val()).into_iter().map(|v| if v > 30.0 { v } else { v.exp().ln_1p() }).collect();
            let bias = read(m.biases[i].val());
            let fac = m.factors.get(i).map(|f| read(f.val()).into_iter().map(f64::tanh).collect());
            layers.push((mat, bias, fac, out, inp));
        }
        Self { layers }
    }

    fn logit(&self, c: usize, x: f64) -> f64 {
        let mut v = vec![x];
        for (mat, bias, fac, out, inp) in &self.layers {
            let mut next = vec![0.0; *out];
            for o in 0..*out {
                let mut acc = bias[c * out + o];
                for i in 0..*inp {
                    acc += mat[(c * out + o) * inp + i] * v[i];
                }
                if let Some(f) = fac {
                    acc += f[c * out + o] * acc.tanh();
                }
                next[o] = acc;
            }
            v = next;
        }
        v[0]
    }

    /// x with logit(c, x) = target, by bisection (the CDF is monotone by construction).
    fn solve(&self, c: usize, target: f64) -> f64 {
        let (mut lo, mut hi) = (-1e4, 1e4);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if self.logit(c, mid) < target { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    }

    fn mass(&self, c: usize, a: f64, b: f64) -> f64 {
        let (la, lb) = (self.logit(c, a), self.logit(c, b));
        let s = if la + lb > 0.0 { -1.0 } else { 1.0 };
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        (sig(s * lb) - sig(s * la)).abs()
    }
}

/// The integer form of a trained bottleneck: what encoder and decoder actually use.
#[derive(Debug, Clone)]
pub struct BottleneckTables {
    medians: Vec<f32>,
    offsets: Vec<i32>,
    freqs: Vec<Vec<u32>>,
    tables: Vec<CdfTable>,
}

impl BottleneckTables {
    pub fn new(medians: Vec<f32>, offsets: Vec<i32>, freqs: Vec<Vec<u32>>) -> Result<Self> {
        if medians.len() != offsets.len() || medians.len() != freqs.len() || medians.iter().any(|m| !m.is_finite()) {
            return Err(Error::Format("inconsistent entropy bottleneck tables".into()));
        }
        let tables = offsets.iter().zip(&freqs).map(|(&o, f)| CdfTable::from_frequencies(o, f)).collect::<Result<_>>()?;
        Ok(Self { medians, offsets, freqs, tables })
    }

    pub fn channels(&self) -> usize {
        self.medians.len()
    }

    pub fn parts(&self) -> (&[f32], &[i32], &[Vec<u32>]) {
        (&self.medians, &self.offsets, &self.freqs)
    }

    /// Codes `z` (CHW layout, `hw` values per channel); returns ẑ in the same layout.
    pub fn compress(&self, z: &[f32], hw: usize, enc: &mut SymbolEncoder) -> Result<Vec<f32>> {
        let mut z_hat = Vec::with_capacity(z.len());
        for (c, plane) in z.chunks(hw).enumerate() {
            let med = self.medians[c];
            for &v in plane {
                let s = (v - med).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32;
                enc.encode(s, &self.tables[c])?;
                z_hat.push(s as f32 + med);
            }
        }
        Ok(z_hat)
    }

    pub fn decompress(&self, hw: usize, dec: &mut SymbolDecoder) -> Result<Vec<f32>> {
        let mut z_hat = Vec::with_capacity(hw * self.channels());
        for c in 0..self.channels() {
            for _ in 0..hw {
                z_hat.push(dec.decode(&self.tables[c])? as f32 + self.medians[c]);
            }
        }
        Ok(z_hat)
    }
}
