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
//!  LatentCodec::MultiRef:    as Hyperprior, but y is coded slice by slice, each slice's (σ, μ)
//!                            refined from decoded references (see [`multiref`]) ──► bytes[1]
//!  LatentCodec::Vq:          y ──residual VQ──► code indices ──learned categorical priors──► bytes
//!                            (see [`vq`]; quality levels pick codebook depth, gains are 1)
//!  LatentCodec::Stem:        video frames: intra frames exactly as MultiRef; P-frames with a
//!                            second context model that also references ŷ_{t−1} (see
//!                            [`multiref`] and [`crate::stem`])
//! ```
//! Everything that decides a probability table is integer: the bottleneck's tables, the
//! fixed-point hyper-synthesis ([`IntegerHyperSynthesis`]) and the scale-table index. Entropy
//! decoding therefore needs no device at all and gives the same latent on every machine;
//! only g_a (encoder) and g_s (pixels) run in float on the chosen backend.
//! One model covers every quality level: per-channel gains (Cui et al. 2021, "gain units")
//! scale the latent before quantization, so one set of transforms serves all rate points and
//! training compute is shared between them.

pub mod multiref;
pub mod transforms;
pub mod vq;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Int;
use serde::{Deserialize, Serialize};

use crate::entropy::{BottleneckTables, EntropyBottleneck, GaussianConditional, GaussianParams, SymbolDecoder, SymbolEncoder, gaussian_likelihood};
use crate::error::{Error, Result};
use crate::nn::{from_host, to_host};
pub use multiref::{ContextModel, IntegerContext};
pub use transforms::IntegerHyperSynthesis;
pub use vq::{Codebook, Codebooks, PriorSet, VqConfig, VqLatent, VqPreset};
pub use transforms::{Synthesis, Transforms};
use transforms::{Analysis, HyperAnalysis, HyperSynthesis};

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
    /// Mean-scale hyperprior plus channel, checkerboard and global references (ELIC/MLIC++).
    MultiReference,
    /// Residual vector quantization with learned categorical priors (McQuic-style).
    Vq,
    /// Latent video codec: multi-reference intra frames, P-frames with a spatiotemporal
    /// entropy model on the same transforms.
    Stem,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Factorized => "factorized",
            Architecture::ScaleHyperprior => "hyperprior",
            Architecture::MeanScaleHyperprior => "mean-scale",
            Architecture::MultiReference => "mlic",
            Architecture::Vq => "vq",
            Architecture::Stem => "stem",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Factorized, Self::ScaleHyperprior, Self::MeanScaleHyperprior, Self::MultiReference, Self::Vq, Self::Stem].into_iter().find(|a| a.name() == name)
    }
}

/// λ per quality level, 1 (smallest file) … 8 (best quality): CompressAI's MSE set.
pub const DEFAULT_LAMBDAS: [f64; 8] = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800];

/// Everything needed to rebuild a model's structure (stored in weight files and cards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Channels of the inner transform layers.
    pub n: usize,
    /// Channels of the latent y.
    pub m: usize,
    /// Rate-distortion trade-off per quality level, lowest rate first (loss = λ·255²·MSE + bpp).
    /// Empty for VQ models, whose quality levels are [`VqConfig::presets`].
    pub lambdas: Vec<f64>,
    /// Codebooks and presets of a VQ model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vq: Option<VqConfig>,
    /// g_a/g_s. Omitted for GDN, so older files (and their digests) stay as they were.
    #[serde(default, skip_serializing_if = "Transforms::is_gdn")]
    pub transforms: Transforms,
}

impl ModelConfig {
    pub fn qualities(&self) -> usize {
        match &self.vq {
            Some(vq) if self.architecture == Architecture::Vq => vq.presets.len(),
            _ => self.lambdas.len(),
        }
    }

    /// Rejects configurations no model can be built from (weight files are untrusted input).
    pub fn check(&self) -> Result<()> {
        let min_m = if matches!(self.architecture, Architecture::MultiReference | Architecture::Stem) { 10 } else { 1 };
        if self.architecture == Architecture::Vq {
            self.vq.as_ref().ok_or_else(|| Error::Unsupported("a VQ model needs its codebook configuration".into()))?.check()?;
        } else if self.lambdas.is_empty() || self.lambdas.len() > 255 {
            return Err(Error::Unsupported("need 1 to 255 quality levels".into()));
        }
        if !(1..=1024).contains(&self.n) || !(min_m..=1024).contains(&self.m) {
            return Err(Error::Unsupported(format!("channels must be N in 1..=1024 and M in {min_m}..=1024")));
        }
        Ok(())
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
    MultiRef(MultiRefLatent),
    Vq(VqLatent),
    Stem(StemLatent),
}

/// The `stem` video model's latent codec: the multi-reference model for intra frames, and a
/// P-frame context model (same hyperprior) that also references the previous decoded latent.
#[derive(Module, Debug)]
pub struct StemLatent {
    intra: MultiRefLatent,
    inter: ContextModel,
}

/// The mean-scale hyperprior with the multi-reference context model on top.
#[derive(Module, Debug)]
pub struct MultiRefLatent {
    hyper: HyperpriorLatent,
    context: ContextModel,
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

/// See [`ImageModel::frozen_targets`].
pub struct FrozenTargets {
    /// y after the quality gain: `[B, M, h, w]`.
    pub y: Tensor<4>,
    /// h_s(ẑ): `[B, 2M, h, w]`, scales then means.
    pub hyper: Tensor<4>,
    /// `[B, M, 1, 1]`: what ŷ is multiplied by before g_s.
    pub inv_gain: Tensor<4>,
    /// Bits the mean-scale prior alone spends on y (noisy-latent estimate, for comparison).
    pub mean_scale_bits: f64,
}

/// Integer entropy-coding state derived from a trained model: the bottleneck tables shipped in
/// the weight file, the Gaussian tables, and the fixed-point hyper-synthesis.
#[derive(Debug, Clone)]
pub struct CodingTables {
    pub bottleneck: BottleneckTables,
    pub gaussian: GaussianConditional,
    /// Fixed-point h_s (hyperprior models only).
    pub hyper: Option<IntegerHyperSynthesis>,
    /// Fixed-point context model (multi-reference and stem models).
    pub context: Option<IntegerContext>,
    /// Fixed-point P-frame context model (stem models only).
    pub inter: Option<IntegerContext>,
    /// Run the float h_s on the device instead of the fixed-point one. Only for measuring what
    /// the integer path costs: streams coded this way decode correctly only on the same backend.
    pub float_hyper: bool,
    /// Codebooks and priors (VQ models only).
    pub vq: Option<VqTables>,
}

/// What a VQ model codes with, on the host.
#[derive(Debug, Clone)]
pub struct VqTables {
    pub config: VqConfig,
    pub books: Codebooks,
    /// Empty until learned ([`vq::fit_priors`]) or loaded from a weight file.
    pub priors: Vec<PriorSet>,
}

impl VqTables {
    /// Installs learned or loaded priors after checking they fit the codebooks.
    pub fn set_priors(&mut self, priors: Vec<PriorSet>) -> Result<()> {
        vq::check_priors(&self.config, &priors)?;
        self.priors = priors;
        Ok(())
    }

    /// The level-0 codebook, levels and priors of quality index `q`.
    fn preset(&self, q: usize) -> Result<(&Codebook, usize, &PriorSet)> {
        let p = self.config.presets.get(q).ok_or_else(|| Error::Format("quality out of range".into()))?;
        let set = self.priors.iter().find(|s| s.first_codes == p.codes).ok_or_else(|| Error::Codec("this VQ model has no priors (export it with `ncodec export`)".into()))?;
        Ok((self.books.first(p.codes)?, p.levels, set))
    }
}

impl CodingTables {
    /// The VQ part, which a VQ model's coding needs.
    fn vq_tables(&self) -> Result<&VqTables> {
        self.vq.as_ref().ok_or_else(|| Error::Codec("VQ tables are missing".into()))
    }

    pub fn new(model: &ImageModel, bottleneck: BottleneckTables) -> Self {
        let (hyper, context) = match &model.latent {
            LatentCodec::Factorized(_) | LatentCodec::Vq(_) => (None, None),
            LatentCodec::Hyperprior(hp) => (Some(hp.h_s.integer()), None),
            LatentCodec::MultiRef(mr) | LatentCodec::Stem(StemLatent { intra: mr, .. }) => (Some(mr.hyper.h_s.integer()), Some(mr.context.integer())),
        };
        let inter = match &model.latent {
            LatentCodec::Stem(s) => Some(s.inter.integer()),
            _ => None,
        };
        let vq = match &model.latent {
            LatentCodec::Vq(v) => Some(VqTables { config: v.config().clone(), books: v.host(), priors: vec![] }),
            _ => None,
        };
        Self { bottleneck, gaussian: GaussianConditional::new(), hyper, context, inter, float_hyper: false, vq }
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
        let lg: Vec<f32> = match cfg.lambdas.get(q / 2) {
            Some(&mid) if cfg.architecture != Architecture::Vq => cfg.lambdas.iter().flat_map(|&l| std::iter::repeat_n(((l / mid).ln() / 3.0) as f32, m)).collect(),
            // VQ: every preset sees y itself (gain 1).
            _ => vec![0.0; q * m],
        };
        let log_gain = Tensor::<2>::from_data(TensorData::new(lg, [q, m]), device);
        let log_inv_gain = log_gain.clone().neg();
        let hyperprior = |ms| HyperpriorLatent {
            h_a: HyperAnalysis::new(n, m, ms, device),
            h_s: HyperSynthesis::new(n, m, ms, device),
            z_bottleneck: EntropyBottleneck::new(n, device),
        };
        let latent = match cfg.architecture {
            Architecture::Factorized => LatentCodec::Factorized(EntropyBottleneck::new(m, device)),
            Architecture::ScaleHyperprior => LatentCodec::Hyperprior(hyperprior(false)),
            Architecture::MeanScaleHyperprior => LatentCodec::Hyperprior(hyperprior(true)),
            Architecture::MultiReference => LatentCodec::MultiRef(MultiRefLatent { hyper: hyperprior(true), context: ContextModel::new(m, device) }),
            Architecture::Stem => LatentCodec::Stem(StemLatent {
                intra: MultiRefLatent { hyper: hyperprior(true), context: ContextModel::new(m, device) },
                inter: ContextModel::new_temporal(m, device),
            }),
            Architecture::Vq => LatentCodec::Vq(VqLatent::new(cfg.vq.as_ref().expect("checked VQ configuration"), m, device)),
        };
        Self {
            g_a: Analysis::new(n, m, cfg.transforms, device),
            g_s: Synthesis::new(n, m, cfg.transforms, device),
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
        self.forward_latent(y, q)
    }

    /// [`forward`](Self::forward) from the latent `y` (after the quality gain) on: what the
    /// encoder's latent refinement differentiates.
    pub fn forward_latent(&self, y: Tensor<4>, q: Tensor<1, Int>) -> ForwardOutput {
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
            LatentCodec::MultiRef(mr) | LatentCodec::Stem(StemLatent { intra: mr, .. }) => {
                let hp = &mr.hyper;
                let (z_tilde, z_lik) = hp.z_bottleneck.forward(hp.h_a.forward(y.clone()));
                let out = mr.context.forward(y, hp.hyper_features(z_tilde));
                (out.y_rec, out.likelihoods.into_iter().chain([z_lik]).collect())
            }
            LatentCodec::Vq(v) => {
                // Every level, straight through; VQ training has its own loop (train_vq).
                let [b, m, h, w] = y.dims();
                let books = v.host();
                let vectors: Vec<f32> = to_host(y.clone().detach()).chunks(m * h * w).flat_map(|s| vq::planar_to_vectors(s, m)).collect();
                let (_, recon) = books.quantize(&vectors, books.levels.len(), &books.levels[0]);
                let planar: Vec<f32> = recon.chunks(m * h * w).flat_map(|s| vq::vectors_to_planar(s, m)).collect();
                let q = from_host(planar, [b, m, h, w], &y.device());
                (y.clone() + (q - y).detach(), vec![])
            }
        };
        let x_hat = self.g_s.forward(y_hat * self.gains(q, true));
        ForwardOutput { x_hat, likelihoods }
    }

    /// Integer tables for coding, derived from the trained entropy bottleneck.
    pub fn export_tables(&self) -> CodingTables {
        let eb = match &self.latent {
            LatentCodec::Factorized(eb) => eb,
            LatentCodec::Hyperprior(hp) | LatentCodec::MultiRef(MultiRefLatent { hyper: hp, .. }) | LatentCodec::Stem(StemLatent { intra: MultiRefLatent { hyper: hp, .. }, .. }) => &hp.z_bottleneck,
            // Priors are learned from data, not from the model: see vq::fit_priors.
            LatentCodec::Vq(_) => return CodingTables::new(self, BottleneckTables::new(vec![], vec![], vec![]).expect("empty tables")),
        };
        CodingTables::new(self, eb.export())
    }

    /// Compresses one padded image `x` ([1, 3, H, W], H and W multiples of [`PAD_MULTIPLE`]) at
    /// quality index `q`.
    pub fn compress(&self, x: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        let y = self.latent(x, q);
        self.compress_latent(y, q, tables)
    }

    /// The latent y of a padded image at quality index `q` (g_a, then the quality gain): what
    /// [`compress`](Self::compress) codes.
    pub fn latent(&self, x: Tensor<4>, q: usize) -> Tensor<4> {
        let device = x.device();
        self.g_a.forward(x) * self.gains(quality_tensor(q, &device), false)
    }

    /// [`compress`](Self::compress) of a given latent `y` (`[1, M, h, w]`, after the gain).
    pub fn compress_latent(&self, y: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        let device = y.device();
        let [_, _, h, w] = y.dims();
        let y_host = to_host(y.clone());
        match &self.latent {
            LatentCodec::Factorized(_) => {
                let mut enc = SymbolEncoder::new();
                let y_hat = tables.bottleneck.compress(&y_host, h * w, &mut enc)?;
                Ok(Compressed { sections: vec![enc.finish()?], y_hat })
            }
            LatentCodec::Hyperprior(hp) => {
                let (z_section, z_hat, zhw) = compress_z(hp, y, tables)?;
                // Derive the Gaussian parameters from ẑ exactly as the decoder will.
                let params = self.gaussian_params(hp, z_hat, zhw, tables, &device)?;
                let mut y_enc = SymbolEncoder::new();
                let y_hat = tables.gaussian.compress(&y_host, &params, &mut y_enc)?;
                Ok(Compressed { sections: vec![z_section, y_enc.finish()?], y_hat })
            }
            LatentCodec::MultiRef(mr) | LatentCodec::Stem(StemLatent { intra: mr, .. }) => {
                let (_, context) = integer_multiref(tables)?;
                Ok(compress_context(&mr.hyper, y, context, None, tables)?.0)
            }
            LatentCodec::Vq(_) => {
                let vt = tables.vq_tables()?;
                let (first, levels, priors) = vt.preset(q)?;
                let m = self.latent_channels();
                let (mut idx, recon) = vt.books.quantize(&vq::planar_to_vectors(&y_host, m), levels, first);
                let mut enc = SymbolEncoder::new();
                vq::code_indices(&mut idx, h, w, priors, &mut vq::Encode(&mut enc))?;
                Ok(Compressed { sections: vec![enc.finish()?], y_hat: vq::vectors_to_planar(&recon, m) })
            }
        }
    }

    /// VQ models: the code indices (`[levels][h·w]`) an image gets at quality index `q`.
    pub fn vq_indices(&self, x: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Vec<Vec<u32>>> {
        let vt = tables.vq_tables()?;
        let (first, levels, _) = vt.preset(q)?;
        let y = to_host(self.g_a.forward(x));
        Ok(vt.books.quantize(&vq::planar_to_vectors(&y, self.latent_channels()), levels, first).0)
    }

    /// Entropy-decodes the latent ŷ (`[M][h][w]`) of a stream: integer work on the CPU only,
    /// identical on every machine (unless `tables.float_hyper`).
    pub fn decode_latent(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<Vec<f32>> {
        Ok(self.decode_parts(sections, q, y_hw, tables, device)?.0)
    }

    /// ŷ and, for multi-reference models, the hyperprior features LRP needs.
    fn decode_parts(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        let [h, w] = y_hw;
        let m = self.latent_channels();
        match &self.latent {
            LatentCodec::Factorized(_) => {
                let [bytes] = sections else { return Err(Error::Format("expected 1 section".into())) };
                let mut dec = SymbolDecoder::new(bytes)?;
                Ok((tables.bottleneck.decompress(h * w, &mut dec)?, None))
            }
            LatentCodec::Hyperprior(hp) => {
                let (z_hat, zhw, y_bytes) = decompress_z(sections, y_hw, tables)?;
                let params = self.gaussian_params(hp, z_hat, zhw, tables, device)?;
                check_len(params.len(), m * h * w)?;
                let mut y_dec = SymbolDecoder::new(y_bytes)?;
                Ok((tables.gaussian.decompress(&params, &mut y_dec)?, None))
            }
            LatentCodec::MultiRef(_) | LatentCodec::Stem(_) => {
                let (_, context) = integer_multiref(tables)?;
                let (y_hat, hyper, _) = decode_context(sections, y_hw, context, None, tables)?;
                Ok((y_hat, Some(hyper)))
            }
            LatentCodec::Vq(_) => {
                let [bytes] = sections else { return Err(Error::Format("expected 1 section".into())) };
                let vt = tables.vq_tables()?;
                let (first, levels, priors) = vt.preset(q)?;
                let mut idx = vec![vec![0u32; h * w]; levels];
                let mut dec = SymbolDecoder::new(bytes)?;
                vq::code_indices(&mut idx, h, w, priors, &mut vq::Decode(&mut dec))?;
                Ok((vq::vectors_to_planar(&vt.books.reconstruct(&idx, first), m), None))
            }
        }
    }

    /// Inverse of [`compress`](Self::compress): `y_hw` is the latent's (height, width).
    pub fn decompress(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<Tensor<4>> {
        let (y_hat, hyper) = self.decode_parts(sections, q, y_hw, tables, device)?;
        self.synthesize(y_hat, hyper, q, y_hw, device)
    }

    /// On the device: ŷ (`[M][h][w]`) → (LRP, for multi-reference models) → g_s → padded x̂.
    fn synthesize(&self, y_hat: Vec<f32>, hyper: Option<Vec<i32>>, q: usize, y_hw: [usize; 2], device: &Device) -> Result<Tensor<4>> {
        self.synthesize_with(y_hat, hyper.map(|h| (h, self.context())), q, y_hw, device)
    }

    /// [`synthesize`](Self::synthesize) with LRP by the given context model.
    fn synthesize_with(&self, y_hat: Vec<f32>, lrp: Option<(Vec<i32>, Option<&ContextModel>)>, q: usize, [h, w]: [usize; 2], device: &Device) -> Result<Tensor<4>> {
        let m = self.latent_channels();
        check_len(y_hat.len(), m * h * w)?;
        let mut y_hat = from_host(y_hat, [1, m, h, w], device);
        if let Some((hyper, Some(context))) = lrp {
            let hyper: Vec<f32> = hyper.into_iter().map(crate::nn::fixed::to_float).collect();
            y_hat = context.reconstruct(y_hat, from_host(hyper, [1, 2 * m, h, w], device));
        }
        Ok(self.synthesis_at(y_hat, q))
    }

    /// Video (stem models): compresses one padded frame at quality index `q`, as an intra frame
    /// (`reference` None) or as a P-frame referencing the previous frame's ŷ (Q12). Returns the
    /// sections and this frame's ŷ in Q12, the next frame's reference.
    pub fn compress_frame(&self, x: Tensor<4>, q: usize, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Compressed, Vec<i32>)> {
        let LatentCodec::Stem(stem) = &self.latent else { return Err(Error::Unsupported("not a video (stem) model".into())) };
        let device = x.device();
        let y = self.g_a.forward(x) * self.gains(quality_tensor(q, &device), false);
        compress_context(&stem.intra.hyper, y, frame_context(tables, reference.is_some())?, reference, tables)
    }

    /// Inverse of [`compress_frame`](Self::compress_frame): the padded frame and its ŷ (Q12).
    /// With `pixels` false, only the latent is decoded (no device work).
    #[allow(clippy::too_many_arguments)]
    pub fn decompress_frame(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], reference: Option<&[i32]>, tables: &CodingTables, device: &Device, pixels: bool) -> Result<(Option<Tensor<4>>, Vec<i32>)> {
        let LatentCodec::Stem(stem) = &self.latent else { return Err(Error::Unsupported("not a video (stem) model".into())) };
        let (y_hat, hyper, y_q) = decode_context(sections, y_hw, frame_context(tables, reference.is_some())?, reference, tables)?;
        if !pixels {
            return Ok((None, y_q));
        }
        let lrp = if reference.is_some() { &stem.inter } else { &stem.intra.context };
        Ok((Some(self.synthesize_with(y_hat, Some((hyper, Some(lrp))), q, y_hw, device)?), y_q))
    }

    /// Stem models: the P-frame context model (what stem training trains).
    pub fn inter_context(&self) -> Option<&ContextModel> {
        match &self.latent {
            LatentCodec::Stem(s) => Some(&s.inter),
            _ => None,
        }
    }

    /// A stem model whose P-frame context model starts as its intra one plus a fresh temporal
    /// reference (see [`ContextModel::temporal_from`]).
    pub fn with_inter_from_intra(mut self) -> Self {
        if let LatentCodec::Stem(s) = self.latent {
            let inter = s.intra.context.temporal_from(&self.log_gain.device());
            self.latent = LatentCodec::Stem(StemLatent { intra: s.intra, inter });
        }
        self
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

    /// This model with `other`'s analysis and synthesis transforms (same N and M).
    pub fn with_transforms_of(mut self, other: &ImageModel) -> Self {
        self.g_a = other.g_a.clone();
        self.g_s = other.g_s.clone();
        self
    }

    /// This model with residual and attention stages added to its transforms, starting as the
    /// identity: the same function, now of a [`Transforms::GdnResidual`] configuration.
    pub fn with_residual_transforms(mut self, device: &Device) -> Self {
        self.g_a = self.g_a.with_residual_stages(device);
        self.g_s = self.g_s.with_residual_stages(device);
        self
    }

    /// The residual stages of g_a and g_s ([`Transforms::GdnResidual`] models).
    pub fn residual_stages(&self) -> Option<[&transforms::ResidualStages; 2]> {
        Some([self.g_a.residual_stages()?, self.g_s.residual_stages()?])
    }

    /// This model with quality `q`'s gain multiplied by `factor` (and its inverse gain divided).
    pub fn with_gain_scaled(mut self, q: usize, factor: f64) -> Self {
        let shift = |t: Tensor<2>, by: f64| {
            let [qs, m] = t.dims();
            let mut v = to_host(t.clone());
            for x in &mut v[q * m..(q + 1) * m] {
                *x += by as f32;
            }
            from_host(v, [qs, m], &t.device())
        };
        let ln = factor.ln();
        self.log_gain = self.log_gain.map(|t| shift(t, ln));
        self.log_inv_gain = self.log_inv_gain.map(|t| shift(t, -ln));
        self
    }

    /// The synthesis transform, e.g. to collect only its gradients.
    pub fn synthesis_module(&self) -> &Synthesis {
        &self.g_s
    }

    /// The codebooks of a VQ model.
    pub fn vq_latent(&self) -> Option<&VqLatent> {
        match &self.latent {
            LatentCodec::Vq(v) => Some(v),
            _ => None,
        }
    }

    /// A VQ model with these codebook values (other models unchanged).
    pub fn with_codebooks(mut self, books: &Codebooks) -> Self {
        if let LatentCodec::Vq(v) = self.latent {
            self.latent = LatentCodec::Vq(v.with_host(books));
        }
        self
    }

    /// Measurement: g_s at quality `q` of a latent given after the quality gain, with nothing
    /// in between (no rounding, no LRP): what coding without quantization would reconstruct.
    #[doc(hidden)]
    pub fn synthesis_at(&self, y: Tensor<4>, q: usize) -> Tensor<4> {
        let device = y.device();
        self.g_s.forward(y * self.gains(quality_tensor(q, &device), true))
    }

    /// g_a without the quality gain (the same latent for every quality level).
    pub fn analyze(&self, x: Tensor<4>) -> Tensor<4> {
        self.g_a.forward(x)
    }

    /// g_s on a latent already multiplied by its inverse gain.
    pub fn synthesis(&self, y: Tensor<4>) -> Tensor<4> {
        self.g_s.forward(y)
    }

    /// SHA-256 of g_a's parameters: identifies what [`analyze`](Self::analyze) computes.
    pub fn analysis_digest(&self) -> [u8; 32] {
        use burn::module::{ModuleVisitor, Param};
        use sha2::{Digest, Sha256};
        struct Hash(Sha256);
        impl ModuleVisitor for Hash {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                for v in to_host(param.val()) {
                    self.0.update(v.to_le_bytes());
                }
            }
        }
        let mut h = Hash(Sha256::new());
        self.g_a.visit(&mut h);
        h.0.finalize().into()
    }

    /// A multi-reference model with LRP switched off (see [`ContextModel::without_lrp`]);
    /// other models unchanged.
    pub fn without_lrp(mut self) -> Self {
        self.latent = match self.latent {
            LatentCodec::MultiRef(mr) => LatentCodec::MultiRef(MultiRefLatent { hyper: mr.hyper, context: mr.context.without_lrp() }),
            LatentCodec::Stem(s) => LatentCodec::Stem(StemLatent { intra: MultiRefLatent { hyper: s.intra.hyper, context: s.intra.context.without_lrp() }, inter: s.inter.without_lrp() }),
            other => other,
        };
        self
    }

    /// The (intra) multi-reference context model, if this model has one.
    pub fn context(&self) -> Option<&ContextModel> {
        self.multi_ref().map(|mr| &mr.context)
    }

    fn multi_ref(&self) -> Option<&MultiRefLatent> {
        match &self.latent {
            LatentCodec::MultiRef(mr) | LatentCodec::Stem(StemLatent { intra: mr, .. }) => Some(mr),
            _ => None,
        }
    }

    /// What training the context model on frozen transforms needs for gain-free latents
    /// `y_raw` at qualities `q`: the hyperprior exactly as coding sees it (ẑ rounded around the
    /// bottleneck `medians`), and the mean-scale prior's own rate on the same latents.
    pub fn frozen_targets(&self, y_raw: Tensor<4>, q: Tensor<1, Int>, medians: &[f32]) -> Result<FrozenTargets> {
        let Some(mr) = self.multi_ref() else {
            return Err(Error::Unsupported("frozen-transform training needs a multi-reference model".into()));
        };
        let device = y_raw.device();
        let y = y_raw * self.gains(q.clone(), false);
        let z = mr.hyper.h_a.forward(y.clone());
        let med = from_host(medians.to_vec(), [1, medians.len(), 1, 1], &device);
        let z_hat = (z - med.clone()).round() + med;
        let hyper = mr.hyper.hyper_features(z_hat);
        let m = y.dims()[1];
        let noise = Tensor::random(y.shape(), burn::tensor::Distribution::Uniform(-0.5, 0.5), &device);
        let lik = gaussian_likelihood(y.clone() + noise, hyper.clone().narrow(1, 0, m), Some(hyper.clone().narrow(1, m, m)));
        let bits = crate::entropy::total_bits(vec![lik], &device);
        Ok(FrozenTargets { y, hyper, inv_gain: self.gains(q, true), mean_scale_bits: to_host(bits)[0] as f64 })
    }

    pub fn latent_channels(&self) -> usize {
        self.log_gain.dims()[1]
    }
}

/// z ──h_a──► bottleneck ──► (section, ẑ, (zh, zw)).
fn compress_z(hp: &HyperpriorLatent, y: Tensor<4>, tables: &CodingTables) -> Result<(Vec<u8>, Vec<f32>, [usize; 2])> {
    let z = hp.h_a.forward(y);
    let [_, _, zh, zw] = z.dims();
    let mut z_enc = SymbolEncoder::new();
    let z_hat = tables.bottleneck.compress(&to_host(z), zh * zw, &mut z_enc)?;
    Ok((z_enc.finish()?, z_hat, [zh, zw]))
}

/// The two sections of a hyperprior stream: decodes ẑ, returns it with its size and the y bytes.
fn decompress_z<'a>(sections: &'a [Vec<u8>], [h, w]: [usize; 2], tables: &CodingTables) -> Result<(Vec<f32>, [usize; 2], &'a [u8])> {
    let [z_bytes, y_bytes] = sections else { return Err(Error::Format("expected 2 sections".into())) };
    let (zh, zw) = (h.div_ceil(4), w.div_ceil(4));
    let mut z_dec = SymbolDecoder::new(z_bytes)?;
    Ok((tables.bottleneck.decompress(zh * zw, &mut z_dec)?, [zh, zw], y_bytes))
}

/// The context model that codes a video frame: the P-frame one when there is a reference.
fn frame_context(tables: &CodingTables, inter: bool) -> Result<&IntegerContext> {
    let context = if inter { tables.inter.as_ref() } else { tables.context.as_ref() };
    context.ok_or_else(|| Error::Codec("stem tables are missing".into()))
}

/// y ──(z section, ŷ section)── with the multi-reference `context` (and a reference latent for
/// P-frames); also returns ŷ in Q12.
fn compress_context(hp: &HyperpriorLatent, y: Tensor<4>, context: &IntegerContext, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Compressed, Vec<i32>)> {
    let [_, _, h, w] = y.dims();
    let y_host = to_host(y.clone());
    let (z_section, z_hat, zhw) = compress_z(hp, y, tables)?;
    let (int_hyper, _) = integer_multiref(tables)?;
    let hyper = hyper_raw(int_hyper, &z_hat, zhw, tables)?;
    let (y_section, y_hat, y_q) = context.compress(&y_host, &hyper, reference, [h, w], &tables.gaussian)?;
    Ok((Compressed { sections: vec![z_section, y_section], y_hat }, y_q))
}

/// Inverse of [`compress_context`]: ŷ (float), the hyperprior features (Q12) and ŷ (Q12).
fn decode_context(sections: &[Vec<u8>], y_hw: [usize; 2], context: &IntegerContext, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Vec<f32>, Vec<i32>, Vec<i32>)> {
    let (z_hat, zhw, y_bytes) = decompress_z(sections, y_hw, tables)?;
    let (int_hyper, _) = integer_multiref(tables)?;
    let hyper = hyper_raw(int_hyper, &z_hat, zhw, tables)?;
    let (y_hat, y_q) = context.decompress(y_bytes, &hyper, reference, y_hw, &tables.gaussian)?;
    Ok((y_hat, hyper, y_q))
}

fn integer_multiref(tables: &CodingTables) -> Result<(&IntegerHyperSynthesis, &IntegerContext)> {
    match (&tables.hyper, &tables.context) {
        (Some(h), Some(c)) => Ok((h, c)),
        _ => Err(Error::Codec("multi-reference tables are missing".into())),
    }
}

/// Fixed-point h_s output for the context model (`[2M][4zh][4zw]`, scales then means).
fn hyper_raw(int: &IntegerHyperSynthesis, z_hat: &[f32], [zh, zw]: [usize; 2], tables: &CodingTables) -> Result<Vec<i32>> {
    check_len(z_hat.len(), tables.bottleneck.channels() * zh * zw)?;
    Ok(int.forward_raw(z_hat, zh, zw))
}

impl HyperpriorLatent {
    /// h_s's output as one tensor (scales, then means): the context model's hyper input.
    fn hyper_features(&self, z_hat: Tensor<4>) -> Tensor<4> {
        let (scales, means) = self.h_s.forward(z_hat);
        match means {
            Some(mu) => Tensor::cat(vec![scales, mu], 1),
            None => scales,
        }
    }
}

/// round(x) in the forward pass, identity in the backward pass.
pub(crate) fn ste_round(x: Tensor<4>) -> Tensor<4> {
    let r = (x.clone().round() - x.clone()).detach();
    x + r
}

fn quality_tensor(q: usize, device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(vec![q as i64], [1]), device)
}

fn check_len(len: usize, want: usize) -> Result<()> {
    if len == want { Ok(()) } else { Err(Error::Format("latent geometry does not match the hyperprior".into())) }
}

