//! Learned image models = analysis/synthesis transforms + quality gains + a latent codec.
//!
//! ```text
//!            ┌──────── gain[q] ────────┐                    ┌── inv_gain[q] ──┐
//!  x ──g_a──►│ y = g_a(x)·gain[q]      │──► LatentCodec ──► │ ŷ·inv_gain[q]   │──g_s──► x̂
//!            └─────────────────────────┘    (forward:        └─────────────────┘
//!                                            likelihoods;
//!                                            compress/decompress: bytes)
//!
//!  LatentCodec: factorized, hyperprior, multi_reference, vq, stem: see [`latent`]
//! ```
//! Everything that decides a probability table is integer: the bottleneck's tables, the
//! fixed-point hyper-synthesis ([`IntegerHyperSynthesis`]) and the scale-table index. Entropy
//! decoding therefore needs no device at all and gives the same latent on every machine;
//! only g_a (encoder) and g_s (pixels) run in float on the chosen backend.
//! One model covers every quality level: per-channel gains (Cui et al. 2021, "gain units")
//! scale the latent before quantization, so one set of transforms serves all rate points and
//! training compute is shared between them.

pub mod auxt;
pub mod latent;
pub mod multiref;
pub mod tables;
pub mod transforms;
pub mod vq;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Int;
use serde::{Deserialize, Serialize};

use crate::entropy::{BottleneckTables, EntropyBottleneck, gaussian_likelihood};
use crate::error::{Error, Result};
use crate::nn::{from_host, to_host};
use latent::check_len;
pub use latent::{HyperpriorLatent, LatentCodec, LatentCoding, MultiRefLatent, StemLatent};
pub use multiref::{ContextModel, IntegerContext};
pub use tables::{CodingTables, Compressed, LatentTables, VqTables};
use transforms::Analysis;
pub use transforms::IntegerHyperSynthesis;
pub use transforms::{Synthesis, Transforms};
pub use vq::{Codebook, Codebooks, PriorSet, VqConfig, VqLatent, VqPreset};

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
        let hyperprior = |mean_scale| HyperpriorLatent::new(n, m, mean_scale, device);
        let latent = match cfg.architecture {
            Architecture::Factorized => LatentCodec::Factorized(EntropyBottleneck::new(m, device)),
            Architecture::ScaleHyperprior => LatentCodec::Hyperprior(hyperprior(false)),
            Architecture::MeanScaleHyperprior => LatentCodec::Hyperprior(hyperprior(true)),
            Architecture::MultiReference => LatentCodec::MultiRef(MultiRefLatent { hyper: hyperprior(true), context: ContextModel::new(m, device) }),
            Architecture::Stem => {
                LatentCodec::Stem(StemLatent { intra: MultiRefLatent { hyper: hyperprior(true), context: ContextModel::new(m, device) }, inter: ContextModel::new_temporal(m, device) })
            }
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
    pub(crate) fn forward_latent(&self, y: Tensor<4>, q: Tensor<1, Int>) -> ForwardOutput {
        let (y_hat, likelihoods) = self.latent.coding().forward(y);
        let x_hat = self.g_s.forward(y_hat * self.gains(q, true));
        ForwardOutput { x_hat, likelihoods }
    }

    /// Integer tables for coding, derived from the trained entropy bottleneck.
    pub fn export_tables(&self) -> CodingTables {
        let bottleneck = match self.latent.coding().bottleneck() {
            Some(eb) => eb.export(),
            None => BottleneckTables::new(vec![], vec![], vec![]).expect("empty tables"),
        };
        self.coding_tables(bottleneck)
    }

    /// The coding tables of this model with the given bottleneck tables (e.g. a weight file's).
    pub(crate) fn coding_tables(&self, bottleneck: BottleneckTables) -> CodingTables {
        CodingTables::new(bottleneck, self.latent.coding().latent_tables())
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
    pub(crate) fn compress_latent(&self, y: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        self.latent.coding().compress(y, q, tables)
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
        self.latent.coding().decompress(sections, q, y_hw, tables, device)
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

    /// M, the latent's channel count.
    pub fn latent_channels(&self) -> usize {
        self.log_gain.dims()[1]
    }

    /// Measurement: g_s at quality `q` of a latent given after the quality gain, with nothing
    /// in between (no rounding, no LRP): what coding without quantization would reconstruct.
    #[doc(hidden)]
    pub fn synthesis_at(&self, y: Tensor<4>, q: usize) -> Tensor<4> {
        let device = y.device();
        self.g_s.forward(y * self.gains(quality_tensor(q, &device), true))
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
}

/// Video (stem models): frames coded as intra frames or P-frames referencing the previous ŷ.
impl ImageModel {
    /// Video (stem models): compresses one padded frame at quality index `q`, as an intra frame
    /// (`reference` None) or as a P-frame referencing the previous frame's ŷ (Q12). Returns the
    /// sections and this frame's ŷ in Q12, the next frame's reference.
    pub(crate) fn compress_frame(&self, x: Tensor<4>, q: usize, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Compressed, Vec<i32>)> {
        let LatentCodec::Stem(stem) = &self.latent else { return Err(Error::Unsupported("not a video (stem) model".into())) };
        let device = x.device();
        let y = self.g_a.forward(x) * self.gains(quality_tensor(q, &device), false);
        stem.compress_frame(y, reference, tables)
    }

    /// Inverse of [`compress_frame`](Self::compress_frame): the padded frame and its ŷ (Q12).
    /// With `pixels` false, only the latent is decoded (no device work).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decompress_frame(
        &self,
        sections: &[Vec<u8>],
        q: usize,
        y_hw: [usize; 2],
        reference: Option<&[i32]>,
        tables: &CodingTables,
        device: &Device,
        pixels: bool,
    ) -> Result<(Option<Tensor<4>>, Vec<i32>)> {
        let LatentCodec::Stem(stem) = &self.latent else { return Err(Error::Unsupported("not a video (stem) model".into())) };
        let frame = stem.decompress_frame(sections, y_hw, reference, tables)?;
        if !pixels {
            return Ok((None, frame.y_q));
        }
        Ok((Some(self.synthesize_with(frame.y_hat, Some((frame.hyper, Some(frame.lrp))), q, y_hw, device)?), frame.y_q))
    }

    /// Stem models: the P-frame context model (what stem training trains).
    #[cfg_attr(not(feature = "tools"), allow(dead_code))]
    pub(crate) fn inter_context(&self) -> Option<&ContextModel> {
        self.latent.inter_context()
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
}

/// Training and model surgery: what `train`, `ship` and the encoder's refinement reach into.
#[cfg_attr(not(feature = "tools"), allow(dead_code))]
impl ImageModel {
    /// This model with `other`'s analysis and synthesis transforms (same N and M).
    pub(crate) fn with_transforms_of(mut self, other: &ImageModel) -> Self {
        self.g_a = other.g_a.clone();
        self.g_s = other.g_s.clone();
        self
    }

    /// This model with residual and attention stages added to its transforms, starting as the
    /// identity: the same function, now of a [`Transforms::GdnResidual`] configuration.
    pub(crate) fn with_residual_transforms(mut self, device: &Device) -> Self {
        self.g_a = self.g_a.with_residual_stages(device);
        self.g_s = self.g_s.with_residual_stages(device);
        self
    }

    /// Σ of the auxiliary paths' distances to orthogonal projections ([`auxt`]); `None`
    /// without them.
    pub(crate) fn ortho_penalty(&self) -> Option<Tensor<1>> {
        let (a, s) = self.auxiliary_paths()?;
        Some(a.ortho_penalty() + s.ortho_penalty())
    }

    /// This model with the auxiliary linear paths added at zero ([`auxt`]): the same
    /// function, now of a [`Transforms::GdnResidualAuxT`] configuration.
    pub(crate) fn with_auxiliary_paths(mut self, device: &Device) -> Self {
        self.g_a = self.g_a.with_auxiliary_path(device);
        self.g_s = self.g_s.with_auxiliary_path(device);
        self
    }

    /// The auxiliary paths beside g_a and g_s ([`Transforms::GdnResidualAuxT`] models).
    pub(crate) fn auxiliary_paths(&self) -> Option<(&auxt::AuxAnalysis, &auxt::AuxSynthesis)> {
        Some((self.g_a.auxiliary_path()?, self.g_s.auxiliary_path()?))
    }

    /// The residual stages of g_a and g_s ([`Transforms::GdnResidual`] models).
    pub(crate) fn residual_stages(&self) -> Option<[&transforms::ResidualStages; 2]> {
        Some([self.g_a.residual_stages()?, self.g_s.residual_stages()?])
    }

    /// This model with quality `q`'s gain multiplied by `factor` (and its inverse gain divided).
    pub(crate) fn with_gain_scaled(mut self, q: usize, factor: f64) -> Self {
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
    pub(crate) fn synthesis_module(&self) -> &Synthesis {
        &self.g_s
    }

    /// The codebooks of a VQ model.
    pub(crate) fn vq_latent(&self) -> Option<&VqLatent> {
        match &self.latent {
            LatentCodec::Vq(v) => Some(v),
            _ => None,
        }
    }

    /// A VQ model with these codebook values (other models unchanged).
    pub(crate) fn with_codebooks(mut self, books: &Codebooks) -> Self {
        if let LatentCodec::Vq(v) = self.latent {
            self.latent = LatentCodec::Vq(v.with_host(books));
        }
        self
    }

    /// g_a without the quality gain (the same latent for every quality level).
    pub(crate) fn analyze(&self, x: Tensor<4>) -> Tensor<4> {
        self.g_a.forward(x)
    }

    /// g_s on a latent already multiplied by its inverse gain.
    pub(crate) fn synthesis(&self, y: Tensor<4>) -> Tensor<4> {
        self.g_s.forward(y)
    }

    /// A multi-reference model with LRP switched off (see [`ContextModel::without_lrp`]);
    /// other models unchanged.
    pub(crate) fn without_lrp(mut self) -> Self {
        self.latent = match self.latent {
            LatentCodec::MultiRef(mr) => LatentCodec::MultiRef(MultiRefLatent { hyper: mr.hyper, context: mr.context.without_lrp() }),
            LatentCodec::Stem(s) => LatentCodec::Stem(StemLatent { intra: MultiRefLatent { hyper: s.intra.hyper, context: s.intra.context.without_lrp() }, inter: s.inter.without_lrp() }),
            other => other,
        };
        self
    }

    /// The (intra) multi-reference context model, if this model has one.
    pub(crate) fn context(&self) -> Option<&ContextModel> {
        self.multi_ref().map(|mr| &mr.context)
    }

    fn multi_ref(&self) -> Option<&MultiRefLatent> {
        self.latent.multi_ref()
    }

    /// What training the context model on frozen transforms needs for gain-free latents
    /// `y_raw` at qualities `q`: the hyperprior exactly as coding sees it (ẑ rounded around the
    /// bottleneck `medians`), and the mean-scale prior's own rate on the same latents.
    pub(crate) fn frozen_targets(&self, y_raw: Tensor<4>, q: Tensor<1, Int>, medians: &[f32]) -> Result<FrozenTargets> {
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
}

fn quality_tensor(q: usize, device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(vec![q as i64], [1]), device)
}
