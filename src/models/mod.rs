//! Learned image models = analysis/synthesis transforms + quality gains + a latent codec.
//!
//! ```text
//!            ┌──────── gain[q] ────────┐                    ┌── inv_gain[q] ──┐
//!  x ──g_a──►│ y = g_a(x)·gain[q]      │──► LatentCodec ──► │ ŷ·inv_gain[q]   │──g_s──► x̂
//!            └─────────────────────────┘    (forward:        └─────────────────┘
//!                                            likelihoods;
//!                                            compress/decompress: bytes)
//!
//!  LatentCodec::Factorized:  y ──EntropyBottleneck──► bytes
//!  LatentCodec::Hyperprior:  y ──h_a──► z ──EntropyBottleneck──► bytes[0]
//!                                        ẑ ──h_s (fixed point)──► (σ, μ) ──GaussianConditional(y)──► bytes[1]
//! ```
//! Everything that decides a probability table is integer: the bottleneck's tables, the
//! fixed-point hyper-synthesis ([`IntegerHyperSynthesis`]) and the scale-table index. Entropy
//! decoding therefore needs no device at all and gives the same latent on every machine;
//! only g_a (encoder) and g_s (pixels) run in float on the chosen backend.
//! One model covers every quality level: per-channel gains (Cui et al. 2021, "gain units")
//! scale the latent before quantization, so one set of transforms serves all rate points and
//! training compute is shared between them.

pub mod transforms;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Int;
use serde::{Deserialize, Serialize};

use crate::entropy::{BottleneckTables, EntropyBottleneck, GaussianConditional, GaussianParams, SymbolDecoder, SymbolEncoder, gaussian_likelihood};
use crate::error::{Error, Result};
pub use transforms::IntegerHyperSynthesis;
use transforms::{Analysis, HyperAnalysis, HyperSynthesis, Synthesis};

/// Spatial downsampling of y relative to x, and of the padding unit for whole images.
pub const Y_STRIDE: usize = 16;
pub const PAD_MULTIPLE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Ballé et al. 2017: factorized prior on y.
    Factorized,
    /// Ballé et al. 2018: scale hyperprior.
    ScaleHyperprior,
    /// Minnen et al. 2018: mean-scale hyperprior (no context model).
    MeanScaleHyperprior,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Factorized => "factorized",
            Architecture::ScaleHyperprior => "hyperprior",
            Architecture::MeanScaleHyperprior => "mean-scale",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Factorized, Self::ScaleHyperprior, Self::MeanScaleHyperprior].into_iter().find(|a| a.name() == name)
    }
}

/// Everything needed to rebuild a model's structure (stored in weight files and cards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Channels of the inner transform layers.
    pub n: usize,
    /// Channels of the latent y.
    pub m: usize,
    /// Rate-distortion trade-off per quality level, lowest rate first (loss = λ·255²·MSE + bpp).
    pub lambdas: Vec<f64>,
}

impl ModelConfig {
    pub fn qualities(&self) -> usize {
        self.lambdas.len()
    }

    pub fn init(&self, device: &Device) -> ImageModel {
        ImageModel::new(self, device)
    }
}

/// The latent codec of a model (see the module diagram).
#[derive(Module, Debug)]
pub enum LatentCodec {
    Factorized(EntropyBottleneck),
    Hyperprior(HyperpriorLatent),
}

#[derive(Module, Debug)]
pub struct HyperpriorLatent {
    h_a: HyperAnalysis,
    h_s: HyperSynthesis,
    z_bottleneck: EntropyBottleneck,
}

/// Result of a training pass.
pub struct ForwardOutput {
    pub x_hat: Tensor<4>,
    /// Likelihoods of every coded latent (y, and z for hyperpriors).
    pub likelihoods: Vec<Tensor<4>>,
}

/// Integer entropy-coding state derived from a trained model: the bottleneck tables shipped in
/// the weight file, the Gaussian tables, and the fixed-point hyper-synthesis.
#[derive(Debug, Clone)]
pub struct CodingTables {
    pub bottleneck: BottleneckTables,
    pub gaussian: GaussianConditional,
    /// Fixed-point h_s (hyperprior models only).
    pub hyper: Option<IntegerHyperSynthesis>,
    /// Run the float h_s on the device instead of the fixed-point one. Only for measuring what
    /// the integer path costs: streams coded this way decode correctly only on the same backend.
    pub float_hyper: bool,
}

impl CodingTables {
    pub fn new(model: &ImageModel, bottleneck: BottleneckTables) -> Self {
        let hyper = match &model.latent {
            LatentCodec::Factorized(_) => None,
            LatentCodec::Hyperprior(hp) => Some(hp.h_s.integer()),
        };
        Self { bottleneck, gaussian: GaussianConditional::new(), hyper, float_hyper: false }
    }
}

/// What [`ImageModel::compress`] produces: the coded sections and the quantized latent ŷ
/// (`[M][h][w]`, before the inverse gain) that any decoder will reconstruct from them.
pub struct Compressed {
    pub sections: Vec<Vec<u8>>,
    pub y_hat: Vec<f32>,
}

#[derive(Module, Debug)]
pub struct ImageModel {
    g_a: Analysis,
    g_s: Synthesis,
    /// log of the per-quality, per-channel gain applied to y before quantization: [Q, M].
    log_gain: Param<Tensor<2>>,
    /// log of the inverse gain applied to ŷ before synthesis: [Q, M].
    log_inv_gain: Param<Tensor<2>>,
    latent: LatentCodec,
}

impl ImageModel {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (n, m, q) = (cfg.n, cfg.m, cfg.qualities());
        // Start each quality with a gain roughly matched to its λ (quantization step ~ λ^-1/3),
        // relative to the middle quality, so the rate points are apart from the first step.
        let mid = cfg.lambdas[q / 2];
        let lg: Vec<f32> = cfg.lambdas.iter().flat_map(|&l| std::iter::repeat_n(((l / mid).ln() / 3.0) as f32, m)).collect();
        let log_gain = Tensor::<2>::from_data(TensorData::new(lg, [q, m]), device);
        let log_inv_gain = log_gain.clone().neg();
        let latent = match cfg.architecture {
            Architecture::Factorized => LatentCodec::Factorized(EntropyBottleneck::new(m, device)),
            arch => {
                let ms = arch == Architecture::MeanScaleHyperprior;
                LatentCodec::Hyperprior(HyperpriorLatent {
                    h_a: HyperAnalysis::new(n, m, ms, device),
                    h_s: HyperSynthesis::new(n, m, ms, device),
                    z_bottleneck: EntropyBottleneck::new(n, device),
                })
            }
        };
        Self {
            g_a: Analysis::new(n, m, device),
            g_s: Synthesis::new(n, m, device),
            log_gain: Param::from_tensor(log_gain),
            log_inv_gain: Param::from_tensor(log_inv_gain.detach()),
            latent,
        }
    }

    fn gains(&self, q: Tensor<1, Int>, inverse: bool) -> Tensor<4> {
        let table = if inverse { &self.log_inv_gain } else { &self.log_gain };
        let [_, m] = table.dims();
        let b = q.dims()[0];
        table.val().select(0, q).exp().reshape([b, m, 1, 1])
    }

    /// Training pass for a batch where sample `i` is trained at quality `q[i]`.
    pub fn forward(&self, x: Tensor<4>, q: Tensor<1, Int>) -> ForwardOutput {
        let y = self.g_a.forward(x) * self.gains(q.clone(), false);
        let (y_hat, likelihoods) = match &self.latent {
            LatentCodec::Factorized(eb) => {
                let (_, lik) = eb.forward(y.clone());
                (ste_round(y), vec![lik])
            }
            LatentCodec::Hyperprior(hp) => {
                let z = hp.h_a.forward(y.clone());
                let (z_tilde, z_lik) = hp.z_bottleneck.forward(z);
                let (scales, means) = hp.h_s.forward(z_tilde);
                let noise = Tensor::random(y.shape(), burn::tensor::Distribution::Uniform(-0.5, 0.5), &y.device());
                let y_lik = gaussian_likelihood(y.clone() + noise, scales, means.clone());
                // Noise for the rate term, straight-through rounding for what the decoder sees.
                let y_hat = match means {
                    Some(mu) => ste_round(y - mu.clone()) + mu,
                    None => ste_round(y),
                };
                (y_hat, vec![y_lik, z_lik])
            }
        };
        let x_hat = self.g_s.forward(y_hat * self.gains(q, true));
        ForwardOutput { x_hat, likelihoods }
    }

    /// Integer tables for coding, derived from the trained entropy bottleneck.
    pub fn export_tables(&self) -> CodingTables {
        let eb = match &self.latent {
            LatentCodec::Factorized(eb) => eb,
            LatentCodec::Hyperprior(hp) => &hp.z_bottleneck,
        };
        CodingTables::new(self, eb.export())
    }

    /// Compresses one padded image `x` ([1, 3, H, W], H and W multiples of [`PAD_MULTIPLE`]) at
    /// quality index `q`.
    pub fn compress(&self, x: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        let device = x.device();
        let y = self.g_a.forward(x) * self.gains(quality_tensor(q, &device), false);
        let [_, _, h, w] = y.dims();
        let y_host = to_host(y.clone());
        match &self.latent {
            LatentCodec::Factorized(_) => {
                let mut enc = SymbolEncoder::new();
                let y_hat = tables.bottleneck.compress(&y_host, h * w, &mut enc)?;
                Ok(Compressed { sections: vec![enc.finish()?], y_hat })
            }
            LatentCodec::Hyperprior(hp) => {
                let z = hp.h_a.forward(y);
                let [_, _, zh, zw] = z.dims();
                let mut z_enc = SymbolEncoder::new();
                let z_hat = tables.bottleneck.compress(&to_host(z), zh * zw, &mut z_enc)?;
                // Derive the Gaussian parameters from ẑ exactly as the decoder will.
                let params = self.gaussian_params(hp, z_hat, [zh, zw], tables, &device)?;
                let mut y_enc = SymbolEncoder::new();
                let y_hat = tables.gaussian.compress(&y_host, &params, &mut y_enc)?;
                Ok(Compressed { sections: vec![z_enc.finish()?, y_enc.finish()?], y_hat })
            }
        }
    }

    /// Entropy-decodes the latent ŷ (`[M][h][w]`) of a stream: integer work on the CPU only,
    /// identical on every machine (unless `tables.float_hyper`).
    pub fn decode_latent(&self, sections: &[Vec<u8>], y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<Vec<f32>> {
        let [h, w] = y_hw;
        let m = self.latent_channels();
        match &self.latent {
            LatentCodec::Factorized(_) => {
                let [bytes] = sections else { return Err(Error::Format("expected 1 section".into())) };
                let mut dec = SymbolDecoder::new(bytes)?;
                tables.bottleneck.decompress(h * w, &mut dec)
            }
            LatentCodec::Hyperprior(hp) => {
                let [z_bytes, y_bytes] = sections else { return Err(Error::Format("expected 2 sections".into())) };
                let (zh, zw) = (h.div_ceil(4), w.div_ceil(4));
                let mut z_dec = SymbolDecoder::new(z_bytes)?;
                let z_hat = tables.bottleneck.decompress(zh * zw, &mut z_dec)?;
                let params = self.gaussian_params(hp, z_hat, [zh, zw], tables, device)?;
                check_len(params.len(), m * h * w)?;
                let mut y_dec = SymbolDecoder::new(y_bytes)?;
                tables.gaussian.decompress(&params, &mut y_dec)
            }
        }
    }

    /// Inverse of [`compress`](Self::compress): `y_hw` is the latent's (height, width).
    pub fn decompress(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<Tensor<4>> {
        let y_hat = self.decode_latent(sections, y_hw, tables, device)?;
        self.synthesize(y_hat, q, y_hw, device)
    }

    /// g_s on the device: ŷ (`[M][h][w]`) → padded x̂.
    pub fn synthesize(&self, y_hat: Vec<f32>, q: usize, [h, w]: [usize; 2], device: &Device) -> Result<Tensor<4>> {
        let m = self.latent_channels();
        check_len(y_hat.len(), m * h * w)?;
        let y_hat = from_host(y_hat, [1, m, h, w], device);
        Ok(self.g_s.forward(y_hat * self.gains(quality_tensor(q, device), true)))
    }

    /// ẑ → Gaussian parameters, in fixed point (or through the float h_s when measuring).
    fn gaussian_params(&self, hp: &HyperpriorLatent, z_hat: Vec<f32>, [zh, zw]: [usize; 2], tables: &CodingTables, device: &Device) -> Result<GaussianParams> {
        let n = tables.bottleneck.channels();
        check_len(z_hat.len(), n * zh * zw)?;
        match &tables.hyper {
            Some(int) if !tables.float_hyper => Ok(int.forward(&z_hat, zh, zw)),
            _ => {
                let (scales, means) = hp.h_s.forward(from_host(z_hat, [1, n, zh, zw], device));
                Ok(GaussianParams::from_float(&to_host(scales), means.map(to_host).as_deref()))
            }
        }
    }

    pub fn latent_channels(&self) -> usize {
        self.log_gain.dims()[1]
    }
}

/// round(x) in the forward pass, identity in the backward pass.
fn ste_round(x: Tensor<4>) -> Tensor<4> {
    let r = (x.clone().round() - x.clone()).detach();
    x + r
}

fn quality_tensor(q: usize, device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(vec![q as i64], [1]), device)
}

fn check_len(len: usize, want: usize) -> Result<()> {
    if len == want { Ok(()) } else { Err(Error::Format("latent geometry does not match the hyperprior".into())) }
}

/// Tensor → host `f32` values (row-major).
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 tensor data")
}

pub fn from_host<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}
