//! Multi-reference entropy model (the `mlic` codec): each slice of the latent is predicted from
//! the hyperprior and from three kinds of already-decoded references at once (ELIC, He 2022;
//! MLIC++, Jiang 2023), with latent residual prediction (Minnen 2020).
//!
//! ```text
//!  hyper = h_s(ẑ) = (σ_hp, μ_hp)        ŷ_<i = slices decoded before slice i
//!
//!  for slice i (uneven channel groups, e.g. 16/16/32/32/64 of M = 160):
//!    known    = [hyper, ŷ_<i]            ──1x1──► Q, K          (shared by both global refs)
//!    channel  = conv3x3∘conv3x3(ŷ_<i)                            channel reference
//!    inter    = LinAttn(Q, K, V(ŷ_<i)), keys = all positions      global inter-slice reference
//!    pass 1 (anchors, (row+col) even):
//!      (Δσ, Δμ) = agg([hyper, channel, inter, 0, 0])   ─► σ = σ_hp,i + Δσ, μ = μ_hp,i + Δμ
//!      code anchors of slice i ─► ŷ_i,anchor
//!    pass 2 (non-anchors):
//!      spatial  = checkerboard conv5x5(ŷ_i,anchor)                local spatial reference
//!      intra    = LinAttn(Q, K, V(ŷ_i,anchor)), keys = anchors    global intra-slice reference
//!      (Δσ, Δμ) = agg([hyper, channel, inter, spatial, intra])
//!      code non-anchors of slice i
//!    LRP: ŷ_i += ½·tanh(lrp([hyper, ŷ_<i, ŷ_i]))   (reconstruction only, never a reference)
//! ```
//! `agg` is three 1x1 convolutions, so each pass evaluates it only at the positions it codes.
//! Decoding is two parallel passes per slice: no raster scan.
//!
//! **Composed as three latent codecs**, each a training `forward` (float, on the device) and
//! `compress`/`decompress` (fixed point, on the host; one `code` path serves both, so the two
//! directions cannot drift apart):
//! ```text
//!  channel groups  ContextModel::forward        IntegerContext::{compress, decompress}
//!    │ slice i given ŷ_<i: channel + inter-slice references (SliceContext / IntegerSlice::channel_context)
//!    └─ checkerboard  SliceContext::forward     IntegerSlice::code_checkerboard
//!         │ anchors, then non-anchors given the decoded anchors: spatial + intra-slice refs
//!         └─ Gaussian conditional  gaussian_likelihood   IntegerSlice::code_gaussian
//!              each element under N(μ, σ) through the integer tables of GaussianConditional
//! ```
//!
//! **Temporal references** (the `stem` video codec's P-frames): the same model with the
//! previous frame's decoded latent r = ŷ_{t−1} as one more reference. Features
//! conv3x3∘conv3x3(r) join every `agg` input, and `agg` also gives a gate g per element:
//! ```text
//!  μ = μ_hp + Δμ + clamp(g, 0, 1)·(r − μ_hp)       (g → 1: "same as the previous frame")
//! ```
//!
//! Everything that decides a probability table runs in fixed point ([`IntegerContext`]):
//! encoder and decoder derive bit-identical (σ, μ) on every machine. LRP changes only what
//! g_s sees, so it runs in float on the device like g_s.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::leaky_relu;

use crate::entropy::{GaussianConditional, SymbolDecoder, SymbolEncoder, gaussian_likelihood};
use crate::error::Result;
use crate::nn::attention::{linear_attention, linear_attention_fixed};
use crate::nn::conv;
use crate::nn::fixed::{Activation, FRAC_BITS, FixedConv, to_float};

const SLOPE: f64 = 0.01;

/// Uneven channel groups as in ELIC (16/16/32/64/rest for M = 320), scaled to `m`: small
/// slices first, where the channel context is weakest and cheapest.
pub fn slice_sizes(m: usize) -> Vec<usize> {
    let (a, b) = (m / 10, m / 5);
    vec![a, a, b, b, m - 2 * a - 2 * b]
}

/// Layer widths, proportional to M (M = 160: 64 / 32 / 192 / 128 / 96 / 64).
struct Widths {
    channel: usize,
    temporal: usize,
    attention: usize,
    agg1: usize,
    agg2: usize,
    lrp: usize,
}

impl Widths {
    fn new(m: usize) -> Self {
        let at_least = |v: usize| v.max(4);
        Self { channel: at_least(m * 2 / 5), temporal: at_least(m * 2 / 5), attention: at_least(m / 5), agg1: at_least(m * 6 / 5), agg2: at_least(m * 4 / 5), lrp: at_least(m * 3 / 5) }
    }
}

/// A tenth of an initial weight, as a fresh leaf (no autodiff history on the parameter).
fn shrink(t: Tensor<4>) -> Tensor<4> {
    let grad = t.is_require_grad();
    let t = t.mul_scalar(0.1).detach();
    if grad { t.require_grad() } else { t }
}

/// Checkerboard: anchors are the positions with (row + column) even.
pub fn is_anchor(t: usize, w: usize) -> bool {
    (t / w + t % w).is_multiple_of(2)
}

/// The context model of one slice.
#[derive(Module, Debug)]
pub struct SliceContext {
    /// Channel reference over ŷ_<i (absent for the first slice).
    channel: Option<ChannelContext>,
    query: Conv2d,
    key: Conv2d,
    inter_value: Option<Conv2d>,
    intra_value: Conv2d,
    spatial: Conv2d,
    agg1: Conv2d,
    agg2: Conv2d,
    agg3: Conv2d,
    lrp1: Conv2d,
    lrp2: Conv2d,
}

#[derive(Module, Debug)]
pub struct ChannelContext {
    c1: Conv2d,
    c2: Conv2d,
}

/// What a slice's training pass produces.
pub struct SliceOutput {
    pub likelihood: Tensor<4>,
    /// round(y − μ) + μ with straight-through gradients (what the decoder's references see).
    pub y_hat: Tensor<4>,
    /// ŷ after latent residual prediction (what g_s sees).
    pub y_rec: Tensor<4>,
    /// The Gaussian parameters each element was coded with.
    pub scales: Tensor<4>,
    pub means: Tensor<4>,
}

impl SliceContext {
    /// `temporal`: whether the slice also has the previous frame's latent as a reference.
    fn new(m: usize, prev: usize, c: usize, temporal: bool, device: &Device) -> Self {
        let w = Widths::new(m);
        let hyper = 2 * m;
        let first = prev == 0;
        let agg_in = hyper + if first { 0 } else { w.channel + w.attention } + 2 * c + w.attention + if temporal { w.temporal } else { 0 };
        let mut agg3 = conv(w.agg2, if temporal { 3 * c } else { 2 * c }, 1, 1, device);
        // Start as the plain mean-scale prior (Δσ = Δμ ≈ 0): training only has to improve on it.
        agg3.weight = agg3.weight.map(shrink);
        let mut lrp2 = conv(w.lrp, c, 3, 1, device);
        lrp2.weight = lrp2.weight.map(shrink);
        Self {
            channel: (!first).then(|| ChannelContext { c1: conv(prev, w.channel, 3, 1, device), c2: conv(w.channel, w.channel, 3, 1, device) }),
            query: conv(hyper + prev, w.attention, 1, 1, device),
            key: conv(hyper + prev, w.attention, 1, 1, device),
            inter_value: (!first).then(|| conv(prev, w.attention, 1, 1, device)),
            intra_value: conv(c, w.attention, 1, 1, device),
            spatial: conv(c, 2 * c, 5, 1, device),
            agg1: conv(agg_in, w.agg1, 1, 1, device),
            agg2: conv(w.agg1, w.agg2, 1, 1, device),
            agg3,
            lrp1: conv(hyper + prev + c, w.lrp, 1, 1, device),
            lrp2,
        }
    }

    fn channels(&self) -> usize {
        self.intra_value.weight.dims()[1]
    }

    /// Whether `agg` also gives the temporal gate (a P-frame slice).
    fn gated(&self) -> bool {
        self.agg3.weight.dims()[0] == 3 * self.channels()
    }

    /// This (intra) slice as a P-frame slice: the same function of its old inputs, the
    /// temporal features joining `agg1` with small random weights, and the gate starting
    /// nearly closed (0.1) so training starts from the intra model.
    fn with_temporal(&self, features: usize, device: &Device) -> Self {
        // A copy with parameters of its own: a clone shares the parameter ids, and an optimizer
        // (which goes by id) would then move the intra model along with the P-frame one.
        let mut s = self.clone().map(&mut FreshParams);
        // Fresh leaves: a parameter built from an expression must not carry its history.
        let leaf = |t: Tensor<4>| Param::from_tensor(t.detach());
        let [o, _, _, _] = s.agg1.weight.dims();
        let fresh = conv(features, o, 1, 1, device).weight.val().mul_scalar(0.1);
        s.agg1.weight = leaf(Tensor::cat(vec![s.agg1.weight.val(), fresh], 1));
        let c = s.channels();
        let [_, i, _, _] = s.agg3.weight.dims();
        s.agg3.weight = leaf(Tensor::cat(vec![s.agg3.weight.val(), Tensor::zeros([c, i, 1, 1], device)], 0));
        s.agg3.bias = s.agg3.bias.take().map(|b| Param::from_tensor(Tensor::cat(vec![b.val(), Tensor::full([c], 0.1, device)], 0).detach()));
        s
    }

    fn agg(&self, x: Tensor<4>) -> Tensor<4> {
        let x = leaky_relu(self.agg1.forward(x), SLOPE);
        let x = leaky_relu(self.agg2.forward(x), SLOPE);
        self.agg3.forward(x)
    }

    /// Training pass for slice `y` (`[B, c, H, W]`, after the quality gain), `offset` its first
    /// channel. `hyper`: `[B, 2M, H, W]` (scales, then means); `prev`: ŷ_<i; `reference`: the
    /// previous frame's latent and its features (P-frame slices only).
    pub fn forward(&self, y: Tensor<4>, offset: usize, hyper: Tensor<4>, prev: Option<Tensor<4>>, anchor: Tensor<4>, reference: Option<&Reference>) -> SliceOutput {
        let c = self.channels();
        let [b, two_m, h, w] = hyper.dims();
        let m = two_m / 2;
        let device = y.device();
        let non_anchor = anchor.clone().neg().add_scalar(1.0);
        let (base, q, k) = self.channel_context(hyper.clone(), prev.clone());
        let hp_scale = hyper.clone().narrow(1, offset, c);
        let hp_mean = hyper.clone().narrow(1, m + offset, c);
        assert_eq!(self.gated(), reference.is_some(), "P-frame slices need a reference, intra slices none");
        let params = |extra: Vec<Tensor<4>>| {
            let mut inputs = base.clone();
            inputs.extend(extra);
            inputs.extend(reference.map(|r| r.features.clone()));
            let p = self.agg(Tensor::cat(inputs, 1));
            let mut mean = hp_mean.clone() + p.clone().narrow(1, c, c);
            if let Some(r) = reference {
                let gate = p.clone().narrow(1, 2 * c, c).clamp(0.0, 1.0);
                mean = mean + gate * (r.latent.clone().narrow(1, offset, c) - hp_mean.clone());
            }
            (hp_scale.clone() + p.narrow(1, 0, c), mean)
        };
        let zeros = Tensor::zeros([b, 2 * c + self.intra_value.weight.dims()[0], h, w], &device);
        let (s1, m1) = params(vec![zeros]);
        let y_anchor = ((y.clone() - m1.clone()).round() + m1.clone()).detach() * anchor.clone();
        let spatial = self.spatial.forward(y_anchor.clone());
        let intra = linear_attention(q, k, self.intra_value.forward(y_anchor), Some(anchor.clone()));
        let (s2, m2) = params(vec![spatial, intra]);
        let scales = s1 * anchor.clone() + s2 * non_anchor.clone();
        let means = m1 * anchor + m2 * non_anchor;
        let noise = Tensor::random(y.shape(), burn::tensor::Distribution::Uniform(-0.5, 0.5), &device);
        let likelihood = gaussian_likelihood(y.clone() + noise, scales.clone(), Some(means.clone()));
        let y_hat = crate::nn::ste_round(y - means.clone()) + means.clone();
        let y_rec = y_hat.clone() + self.lrp(hyper, prev, y_hat.clone());
        SliceOutput { likelihood, y_hat, y_rec, scales, means }
    }

    /// The channel-groups level's inputs to this slice: `[hyper, channel(ŷ_<i), inter-slice
    /// attention]`, and the attention queries/keys the intra-slice reference shares.
    fn channel_context(&self, hyper: Tensor<4>, prev: Option<Tensor<4>>) -> (Vec<Tensor<4>>, Tensor<4>, Tensor<4>) {
        let known = match &prev {
            Some(p) => Tensor::cat(vec![hyper.clone(), p.clone()], 1),
            None => hyper.clone(),
        };
        let (q, k) = (self.query.forward(known.clone()), self.key.forward(known));
        let mut base = vec![hyper];
        if let (Some(cc), Some(iv), Some(p)) = (&self.channel, &self.inter_value, prev) {
            base.push(leaky_relu(cc.c2.forward(leaky_relu(cc.c1.forward(p.clone()), SLOPE)), SLOPE));
            base.push(linear_attention(q.clone(), k.clone(), iv.forward(p), None));
        }
        (base, q, k)
    }

    /// ½·tanh of the predicted quantization residual.
    fn lrp(&self, hyper: Tensor<4>, prev: Option<Tensor<4>>, y_hat: Tensor<4>) -> Tensor<4> {
        let mut inputs = vec![hyper];
        inputs.extend(prev);
        inputs.push(y_hat);
        let x = leaky_relu(self.lrp1.forward(Tensor::cat(inputs, 1)), SLOPE);
        self.lrp2.forward(x).tanh().mul_scalar(0.5)
    }

    fn integer(&self, offset: usize) -> IntegerSlice {
        let act = |c: &Conv2d, a| FixedConv::from_conv(c, a);
        IntegerSlice {
            offset,
            c: self.channels(),
            d: self.query.weight.dims()[0],
            channel: self.channel.as_ref().map(|cc| [act(&cc.c1, Activation::LeakyRelu), act(&cc.c2, Activation::LeakyRelu)]),
            query: act(&self.query, Activation::None),
            key: act(&self.key, Activation::None),
            inter_value: self.inter_value.as_ref().map(|c| act(c, Activation::None)),
            intra_value: act(&self.intra_value, Activation::None),
            spatial: act(&self.spatial, Activation::None),
            agg: [act(&self.agg1, Activation::LeakyRelu), act(&self.agg2, Activation::LeakyRelu), act(&self.agg3, Activation::None)],
            gated: self.gated(),
        }
    }
}

/// Gives every parameter a new id (same values).
struct FreshParams;

impl burn::module::ModuleMapper for FreshParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        Param::from_tensor(param.val().detach())
    }
}

/// The previous frame's decoded latent as a reference (training pass).
pub struct Reference {
    /// ŷ_{t−1}, `[B, M, H, W]`, after the quality gain.
    pub latent: Tensor<4>,
    /// [`TemporalReference`] features of it.
    pub features: Tensor<4>,
}

/// conv3x3∘conv3x3 of the previous frame's latent: what every P-frame slice's `agg` sees of it
/// (±2 latent positions, ±32 pixels of motion).
#[derive(Module, Debug)]
pub struct TemporalReference {
    c1: Conv2d,
    c2: Conv2d,
}

impl TemporalReference {
    fn new(m: usize, device: &Device) -> Self {
        let t = Widths::new(m).temporal;
        Self { c1: conv(m, t, 3, 1, device), c2: conv(t, t, 3, 1, device) }
    }

    fn features(&self) -> usize {
        self.c2.weight.dims()[0]
    }

    pub fn forward(&self, latent: Tensor<4>) -> Reference {
        let features = leaky_relu(self.c2.forward(leaky_relu(self.c1.forward(latent.clone()), SLOPE)), SLOPE);
        Reference { latent, features }
    }

    fn integer(&self) -> [FixedConv; 2] {
        [FixedConv::from_conv(&self.c1, Activation::LeakyRelu), FixedConv::from_conv(&self.c2, Activation::LeakyRelu)]
    }
}

/// The slices' context models: everything the `mlic` codec adds to the mean-scale hyperprior.
#[derive(Module, Debug)]
pub struct ContextModel {
    slices: Vec<SliceContext>,
    /// P-frame models only: the temporal reference.
    temporal: Option<TemporalReference>,
}

/// Training pass of the whole context model.
pub struct ContextOutput {
    /// One likelihood map per slice.
    pub likelihoods: Vec<Tensor<4>>,
    pub y_hat: Tensor<4>,
    pub y_rec: Tensor<4>,
    pub scales: Tensor<4>,
    pub means: Tensor<4>,
}

impl ContextModel {
    pub fn new(m: usize, device: &Device) -> Self {
        Self::with_slices(m, false, device)
    }

    /// A P-frame model: every slice also conditioned on the previous frame's latent.
    pub fn new_temporal(m: usize, device: &Device) -> Self {
        Self::with_slices(m, true, device)
    }

    fn with_slices(m: usize, temporal: bool, device: &Device) -> Self {
        let mut prev = 0;
        let slices = slice_sizes(m)
            .into_iter()
            .map(|c| {
                let s = SliceContext::new(m, prev, c, temporal, device);
                prev += c;
                s
            })
            .collect();
        Self { slices, temporal: temporal.then(|| TemporalReference::new(m, device)) }
    }

    /// This intra model as the start of a P-frame model (see [`SliceContext::with_temporal`]):
    /// at the start its rate is close to the intra model's, and training only adds the
    /// temporal reference.
    pub fn temporal_from(&self, device: &Device) -> Self {
        let m: usize = self.slices.iter().map(SliceContext::channels).sum();
        let temporal = TemporalReference::new(m, device);
        let slices = self.slices.iter().map(|s| s.with_temporal(temporal.features(), device)).collect();
        Self { slices, temporal: Some(temporal) }
    }

    /// The temporal reference of a P-frame model.
    pub fn temporal(&self) -> Option<&TemporalReference> {
        self.temporal.as_ref()
    }

    /// `y`: `[B, M, H, W]` after the gain; `hyper`: `[B, 2M, H, W]` from h_s.
    pub fn forward(&self, y: Tensor<4>, hyper: Tensor<4>) -> ContextOutput {
        self.forward_with(y, hyper, None)
    }

    /// [`forward`](Self::forward) of a P-frame model: `reference` is ŷ_{t−1} (`[B, M, H, W]`).
    pub fn forward_with(&self, y: Tensor<4>, hyper: Tensor<4>, reference: Option<Tensor<4>>) -> ContextOutput {
        let reference = match (&self.temporal, reference) {
            (Some(t), Some(r)) => Some(t.forward(r)),
            (None, None) => None,
            _ => panic!("a P-frame model needs a reference frame, an intra model none"),
        };
        let [_, _, h, w] = y.dims();
        let anchor = checkerboard(h, w, &y.device());
        let (mut likelihoods, mut hats, mut recs, mut scales, mut means) = (vec![], vec![], vec![], vec![], vec![]);
        let mut offset = 0;
        for s in &self.slices {
            let c = s.channels();
            let prev = (offset > 0).then(|| Tensor::cat(hats.clone(), 1));
            let out = s.forward(y.clone().narrow(1, offset, c), offset, hyper.clone(), prev, anchor.clone(), reference.as_ref());
            likelihoods.push(out.likelihood);
            hats.push(out.y_hat);
            recs.push(out.y_rec);
            scales.push(out.scales);
            means.push(out.means);
            offset += c;
        }
        let cat = |v| Tensor::cat(v, 1);
        ContextOutput { likelihoods, y_hat: cat(hats), y_rec: cat(recs), scales: cat(scales), means: cat(means) }
    }

    /// LRP for decoded latents: ŷ (`[1, M, H, W]`) → what g_s sees.
    pub fn reconstruct(&self, y_hat: Tensor<4>, hyper: Tensor<4>) -> Tensor<4> {
        let mut offset = 0;
        let mut recs = vec![];
        for s in &self.slices {
            let c = s.channels();
            let cur = y_hat.clone().narrow(1, offset, c);
            let prev = (offset > 0).then(|| y_hat.clone().narrow(1, 0, offset));
            recs.push(cur.clone() + s.lrp(hyper.clone(), prev, cur));
            offset += c;
        }
        Tensor::cat(recs, 1)
    }

    /// The same model with latent residual prediction switched off (its last layer zeroed, so
    /// ŷ reaches g_s unchanged); training can start it again from there.
    pub fn without_lrp(mut self) -> Self {
        for s in &mut self.slices {
            s.lrp2.weight = s.lrp2.weight.clone().map(|t| t.zeros_like());
            s.lrp2.bias = s.lrp2.bias.take().map(|b| b.map(|t| t.zeros_like()));
        }
        self
    }

    /// The fixed-point copy that coding runs.
    pub fn integer(&self) -> IntegerContext {
        let mut offset = 0;
        let slices = self
            .slices
            .iter()
            .map(|s| {
                let i = s.integer(offset);
                offset += i.c;
                i
            })
            .collect();
        IntegerContext { slices, m: offset, temporal: self.temporal.as_ref().map(TemporalReference::integer) }
    }
}

/// `[1, 1, h, w]` mask, 1 at anchors.
fn checkerboard(h: usize, w: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..h * w).map(|t| is_anchor(t, w) as u8 as f32).collect();
    Tensor::from_data(TensorData::new(v, [1, 1, h, w]), device)
}

/// Where symbols go (encoder) or come from (decoder) while the context model runs.
trait SymbolIo {
    /// Codes the element at flat index `index` of the latent under N(`mean`, `scale`)
    /// (both `Q[FRAC_BITS]`); returns its integer symbol round(y − μ).
    fn code(&mut self, g: &GaussianConditional, index: usize, scale: i32, mean: i32) -> Result<i32>;
}

/// Encoder side: symbols from the latent `y`.
struct Encode<'a> {
    y: &'a [f32],
    enc: &'a mut SymbolEncoder,
}

impl SymbolIo for Encode<'_> {
    fn code(&mut self, g: &GaussianConditional, index: usize, scale: i32, mean: i32) -> Result<i32> {
        g.encode_one(self.y[index], scale, mean, self.enc)
    }
}

/// Decoder side: symbols from the range decoder.
struct Decode<'a>(&'a mut SymbolDecoder);

impl SymbolIo for Decode<'_> {
    fn code(&mut self, g: &GaussianConditional, _index: usize, scale: i32, _mean: i32) -> Result<i32> {
        g.decode_one(scale, self.0)
    }
}

#[derive(Debug, Clone)]
struct IntegerSlice {
    offset: usize,
    c: usize,
    d: usize,
    channel: Option<[FixedConv; 2]>,
    query: FixedConv,
    key: FixedConv,
    inter_value: Option<FixedConv>,
    intra_value: FixedConv,
    spatial: FixedConv,
    agg: [FixedConv; 3],
    /// `agg` also gives the temporal gate.
    gated: bool,
}

/// [`ContextModel`] in fixed point: encoder and decoder run exactly this, so the tables they
/// pick are the same bits everywhere.
#[derive(Debug, Clone)]
pub struct IntegerContext {
    slices: Vec<IntegerSlice>,
    m: usize,
    /// P-frame models: the temporal reference's two layers.
    temporal: Option<[FixedConv; 2]>,
}

impl IntegerContext {
    /// Whether this is a P-frame model (it codes with a reference latent).
    pub fn is_temporal(&self) -> bool {
        self.temporal.is_some()
    }

    /// Compresses `y` (`[M][h·w]`, after the gain): `hyper` is h_s's output (`[2M][h·w]`,
    /// scales then means, Q12), `reference` the previous frame's ŷ in Q12 (P-frame models
    /// only). Returns the ŷ section's bytes and ŷ in float (symbol + μ) and in Q12.
    pub fn compress(&self, y: &[f32], hyper: &[i32], reference: Option<&[i32]>, [h, w]: [usize; 2], g: &GaussianConditional) -> Result<(Vec<u8>, Vec<f32>, Vec<i32>)> {
        if y.len() != self.m * h * w {
            return Err(crate::error::Error::Codec("latent size does not match the model".into()));
        }
        let mut enc = SymbolEncoder::new();
        let (y_hat, y_q) = self.code(hyper, reference, h, w, g, &mut Encode { y, enc: &mut enc })?;
        Ok((enc.finish()?, y_hat, y_q))
    }

    /// Inverse of [`compress`](Self::compress): ŷ in float and in Q12 from the section's bytes.
    pub fn decompress(&self, bytes: &[u8], hyper: &[i32], reference: Option<&[i32]>, [h, w]: [usize; 2], g: &GaussianConditional) -> Result<(Vec<f32>, Vec<i32>)> {
        let mut dec = SymbolDecoder::new(bytes)?;
        self.code(hyper, reference, h, w, g, &mut Decode(&mut dec))
    }

    /// The channel-groups level, shared by both directions (`io` encodes or decodes): slice i
    /// is coded by its checkerboard given ŷ_<i.
    fn code(&self, hyper: &[i32], reference: Option<&[i32]>, h: usize, w: usize, g: &GaussianConditional, io: &mut dyn SymbolIo) -> Result<(Vec<f32>, Vec<i32>)> {
        use crate::error::Error;
        let n = h * w;
        let m = self.m;
        if hyper.len() != 2 * m * n {
            return Err(Error::Format("latent geometry does not match the hyperprior".into()));
        }
        let features = match (&self.temporal, reference) {
            (Some([t1, t2]), Some(r)) if r.len() == m * n => t2.forward(&t1.forward(r, h, w).0, h, w).0,
            (Some(_), Some(_)) => return Err(Error::Format("reference latent geometry does not match".into())),
            (None, None) => vec![],
            (Some(_), None) => return Err(Error::Codec("a P-frame needs a reference frame".into())),
            (None, Some(_)) => return Err(Error::Codec("an intra model takes no reference frame".into())),
        };
        let reference = reference.filter(|_| self.temporal.is_some());
        let mut latent = Latent { y_q: vec![0i32; m * n], y_hat: vec![0f32; m * n] };
        let (anchors, others) = (0..n).partition(|&t| is_anchor(t, w));
        let refs = References { hyper, reference, features: &features, m, h, w, anchors, others };
        for s in &self.slices {
            let context = s.channel_context(hyper, &latent.y_q[..s.offset * n], h, w);
            s.code_checkerboard(&context, &refs, g, io, &mut latent)?;
        }
        Ok((latent.y_hat, latent.y_q))
    }
}

/// The latent as decoded so far: Q12 (what later references see) and float (symbol + μ).
struct Latent {
    y_q: Vec<i32>,
    y_hat: Vec<f32>,
}

/// What the channel-groups level gives a slice: the hyperprior with the channel and global
/// inter-slice references (`base`), and the attention queries/keys its intra-slice reference
/// shares.
struct ChannelInputs {
    base: Vec<i32>,
    q: Vec<i32>,
    k: Vec<i32>,
}

/// What every coded element's parameters are relative to: the hyperprior (`[2M][n]`) and, in
/// P-frames, the previous frame's latent (`[M][n]`) and its features, all Q12.
struct References<'a> {
    hyper: &'a [i32],
    reference: Option<&'a [i32]>,
    features: &'a [i32],
    m: usize,
    h: usize,
    w: usize,
    /// The checkerboard's two passes (the same for every slice).
    anchors: Vec<usize>,
    others: Vec<usize>,
}

impl IntegerSlice {
    /// Channel references of this slice from the hyperprior and the decoded slices `prev`.
    fn channel_context(&self, hyper: &[i32], prev: &[i32], h: usize, w: usize) -> ChannelInputs {
        let n = h * w;
        let known = [hyper, prev].concat();
        let (q, _, _) = self.query.forward(&known, h, w);
        let (k, _, _) = self.key.forward(&known, h, w);
        let mut base = hyper.to_vec();
        if let (Some([c1, c2]), Some(iv)) = (&self.channel, &self.inter_value) {
            let (x, _, _) = c1.forward(prev, h, w);
            base.extend(c2.forward(&x, h, w).0);
            let (v, _, _) = iv.forward(prev, h, w);
            base.extend(linear_attention_fixed(&q, &k, &v, self.d, self.d, n, None));
        }
        ChannelInputs { base, q, k }
    }

    /// The checkerboard level: anchors first (their spatial and intra-slice inputs zero), then
    /// the other positions from the decoded anchors; each pass codes through the Gaussian
    /// conditional.
    fn code_checkerboard(&self, ctx: &ChannelInputs, refs: &References, g: &GaussianConditional, io: &mut dyn SymbolIo, latent: &mut Latent) -> Result<()> {
        let (c, h, w) = (self.c, refs.h, refs.w);
        let n = h * w;
        let (anchors, others) = (&refs.anchors, &refs.others);
        let mut extra = vec![0i32; (2 * c + self.d) * n];
        extra.extend_from_slice(refs.features);
        let p = self.params(&ctx.base, &extra, anchors, n);
        self.code_gaussian(&p, anchors, refs, g, io, latent)?;
        let mut cur = vec![0i32; c * n];
        for ch in 0..c {
            for &t in anchors {
                cur[ch * n + t] = latent.y_q[(self.offset + ch) * n + t];
            }
        }
        let mut extra = self.spatial.forward(&cur, h, w).0;
        let (v, _, _) = self.intra_value.forward(&cur, h, w);
        extra.extend(linear_attention_fixed(&ctx.q, &ctx.k, &v, self.d, self.d, n, Some(anchors)));
        extra.extend_from_slice(refs.features);
        let p = self.params(&ctx.base, &extra, others, n);
        self.code_gaussian(&p, others, refs, g, io, latent)
    }

    /// agg([base, extra]) at `positions` only (1x1 layers): `[2c][positions]`.
    fn params(&self, base: &[i32], extra: &[i32], positions: &[usize], n: usize) -> Vec<i32> {
        let cin = (base.len() + extra.len()) / n;
        let mut x = Vec::with_capacity(cin * positions.len());
        for plane in base.chunks_exact(n).chain(extra.chunks_exact(n)) {
            x.extend(positions.iter().map(|&t| plane[t]));
        }
        let len = positions.len();
        for layer in &self.agg {
            x = layer.forward(&x, 1, len).0;
        }
        x
    }

    /// The Gaussian-conditional level: codes this slice at `positions` with parameters `p`
    /// (`[2c or 3c][positions]`: residuals on the hyperprior's σ and μ, then the temporal
    /// gates), channel by channel, and records ŷ.
    fn code_gaussian(&self, p: &[i32], positions: &[usize], refs: &References, g: &GaussianConditional, io: &mut dyn SymbolIo, latent: &mut Latent) -> Result<()> {
        let len = positions.len();
        let (hyper, m, n) = (refs.hyper, refs.m, refs.h * refs.w);
        for ch in 0..self.c {
            let idx = self.offset + ch;
            for (j, &t) in positions.iter().enumerate() {
                let scale = p[ch * len + j].saturating_add(hyper[idx * n + t]);
                let hp_mean = hyper[(m + idx) * n + t];
                let mut mean = p[(self.c + ch) * len + j].saturating_add(hp_mean);
                if let (true, Some(r)) = (self.gated, refs.reference) {
                    // μ += clamp(g, 0, 1)·(r − μ_hp), rounded to nearest in Q12.
                    let gate = p[(2 * self.c + ch) * len + j].clamp(0, 1 << FRAC_BITS) as i64;
                    let step = (gate * (r[idx * n + t] as i64 - hp_mean as i64) + (1 << (FRAC_BITS - 1))) >> FRAC_BITS;
                    mean = (mean as i64 + step).clamp(-(i32::MAX as i64), i32::MAX as i64) as i32;
                }
                let sym = io.code(g, idx * n + t, scale, mean)?;
                let q = ((sym as i64) << FRAC_BITS) + mean as i64;
                latent.y_q[idx * n + t] = q.clamp(-(i32::MAX as i64), i32::MAX as i64) as i32;
                latent.y_hat[idx * n + t] = sym as f32 + to_float(mean);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::fixed::to_fixed;
    use crate::nn::{from_host, to_host};

    /// Records the parameters the integer model codes each element with.
    struct Record<'a> {
        y: &'a [f32],
        scales: Vec<i32>,
        means: Vec<i32>,
    }

    impl SymbolIo for Record<'_> {
        fn code(&mut self, _g: &GaussianConditional, index: usize, scale: i32, mean: i32) -> Result<i32> {
            self.scales[index] = scale;
            self.means[index] = mean;
            Ok((self.y[index] - to_float(mean)).round() as i32)
        }
    }

    /// The fixed-point context model picks the parameters the float one (which training
    /// optimises) computes, for every slice and both checkerboard passes.
    #[test]
    fn integer_context_tracks_float() {
        let device = crate::backend::device();
        device.seed(3);
        let (m, h, w) = (20, 6, 7);
        let n = h * w;
        let model = ContextModel::new(m, &device);
        let wave = |i: usize, a: f32, f: usize| a * (((i * f) % 113) as f32 / 113.0 - 0.5);
        let y: Vec<f32> = (0..m * n).map(|i| wave(i, 12.0, 37)).collect();
        // Hyper features as the integer h_s would give them: exact in Q12.
        let hyper: Vec<f32> = (0..2 * m * n).map(|i| if i < m * n { 0.5 + wave(i, 3.0, 53).abs() } else { wave(i, 8.0, 71) }).map(|v| to_float(to_fixed(v))).collect();
        let out = model.forward(from_host(y.clone(), [1, m, h, w], &device), from_host(hyper.clone(), [1, 2 * m, h, w], &device));
        let (fs, fm) = (to_host(out.scales), to_host(out.means));
        let hq: Vec<i32> = hyper.iter().map(|&v| to_fixed(v)).collect();
        let mut rec = Record { y: &y, scales: vec![0; m * n], means: vec![0; m * n] };
        let (y_hat, _) = model.integer().code(&hq, None, h, w, &GaussianConditional::new(), &mut rec).unwrap();
        let close = |f: &[f32], q: &[i32]| f.iter().zip(q).filter(|&(a, &b)| (a - to_float(b)).abs() < 0.02).count();
        // A value right at a rounding boundary may round differently and shift what follows
        // slightly; nearly every parameter must still agree.
        assert!(close(&fs, &rec.scales) * 100 >= 99 * m * n, "scales: {} of {} agree", close(&fs, &rec.scales), m * n);
        assert!(close(&fm, &rec.means) * 100 >= 99 * m * n, "means: {} of {} agree", close(&fm, &rec.means), m * n);
        let same = to_host(out.y_hat).iter().zip(&y_hat).filter(|(a, b)| (*a - *b).abs() < 0.02).count();
        assert!(same * 100 >= 99 * m * n, "ŷ: {same} of {} agree", m * n);
    }

    /// The same for a P-frame model, whose parameters also depend on the reference latent
    /// through the temporal features and the gate.
    #[test]
    fn integer_temporal_context_tracks_float() {
        let device = crate::backend::device();
        device.seed(4);
        let (m, h, w) = (20, 5, 6);
        let n = h * w;
        let model = ContextModel::new(m, &device).temporal_from(&device);
        let wave = |i: usize, a: f32, f: usize| a * (((i * f) % 101) as f32 / 101.0 - 0.5);
        let y: Vec<f32> = (0..m * n).map(|i| wave(i, 12.0, 37)).collect();
        let hyper: Vec<f32> = (0..2 * m * n).map(|i| if i < m * n { 0.5 + wave(i, 3.0, 53).abs() } else { wave(i, 8.0, 71) }).map(|v| to_float(to_fixed(v))).collect();
        // The previous frame: close to this one, so the gate has something to use.
        let reference: Vec<f32> = y.iter().enumerate().map(|(i, v)| to_float(to_fixed((v + wave(i, 1.0, 29)).round()))).collect();
        // Open the gates half way so the reference matters.
        let mut model = model;
        for s in &mut model.slices {
            let c = s.channels();
            s.agg3.bias = s.agg3.bias.take().map(|b| b.map(|t| t.slice_fill(2 * c..3 * c, 0.5)));
        }
        let out = model.forward_with(from_host(y.clone(), [1, m, h, w], &device), from_host(hyper.clone(), [1, 2 * m, h, w], &device), Some(from_host(reference.clone(), [1, m, h, w], &device)));
        let (fs, fm) = (to_host(out.scales), to_host(out.means));
        let hq: Vec<i32> = hyper.iter().map(|&v| to_fixed(v)).collect();
        let rq: Vec<i32> = reference.iter().map(|&v| to_fixed(v)).collect();
        let mut rec = Record { y: &y, scales: vec![0; m * n], means: vec![0; m * n] };
        let int = model.integer();
        assert!(int.is_temporal());
        let (_, y_q) = int.code(&hq, Some(&rq), h, w, &GaussianConditional::new(), &mut rec).unwrap();
        let close = |f: &[f32], q: &[i32]| f.iter().zip(q).filter(|&(a, &b)| (a - to_float(b)).abs() < 0.02).count();
        assert!(close(&fs, &rec.scales) * 100 >= 99 * m * n, "scales: {} of {} agree", close(&fs, &rec.scales), m * n);
        assert!(close(&fm, &rec.means) * 100 >= 99 * m * n, "means: {} of {} agree", close(&fm, &rec.means), m * n);
        // The reference changes the parameters, and is required.
        let mut other = Record { y: &y, scales: vec![0; m * n], means: vec![0; m * n] };
        int.code(&hq, Some(&vec![0; m * n]), h, w, &GaussianConditional::new(), &mut other).unwrap();
        assert_ne!(other.means, rec.means);
        assert!(int.code(&hq, None, h, w, &GaussianConditional::new(), &mut other).is_err());
        assert!(int.code(&hq, Some(&rq[1..]), h, w, &GaussianConditional::new(), &mut other).is_err());
        assert_eq!(y_q.len(), m * n);
    }

    /// The composed codec's decompress inverts its compress: the same ŷ in float and in Q12.
    #[test]
    fn compress_then_decompress_gives_the_same_latent() {
        let device = crate::backend::device();
        device.seed(6);
        let (m, h, w) = (20, 4, 5);
        let n = h * w;
        let int = ContextModel::new(m, &device).integer();
        let y: Vec<f32> = (0..m * n).map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.7).collect();
        let hyper: Vec<i32> = (0..2 * m * n).map(|i| if i < m * n { to_fixed(0.4 + (i % 9) as f32 * 0.3) } else { to_fixed((i % 7) as f32 - 3.0) }).collect();
        let g = GaussianConditional::new();
        let (bytes, y_hat, y_q) = int.compress(&y, &hyper, None, [h, w], &g).unwrap();
        let (back, back_q) = int.decompress(&bytes, &hyper, None, [h, w], &g).unwrap();
        assert_eq!((back, back_q), (y_hat.clone(), y_q));
        assert!(y_hat.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 0.5 + 1e-4), "ŷ is y rounded around μ");
        assert!(int.compress(&y[1..], &hyper, None, [h, w], &g).is_err());
    }

    #[test]
    fn without_lrp_passes_the_latent_through() {
        let device = crate::backend::device();
        let (m, h, w) = (20, 3, 4);
        let y = from_host((0..m * h * w).map(|i| (i % 7) as f32 - 3.0).collect(), [1, m, h, w], &device);
        let hyper = from_host((0..2 * m * h * w).map(|i| (i % 5) as f32 * 0.3).collect(), [1, 2 * m, h, w], &device);
        let model = ContextModel::new(m, &device);
        let changed = to_host(model.reconstruct(y.clone(), hyper.clone()));
        assert_ne!(changed, to_host(y.clone()), "a fresh LRP corrects the latent");
        assert_eq!(to_host(model.without_lrp().reconstruct(y.clone(), hyper)), to_host(y));
    }

    #[test]
    fn slices_cover_the_latent_unevenly() {
        assert_eq!(slice_sizes(160), vec![16, 16, 32, 32, 64]);
        assert_eq!(slice_sizes(12).iter().sum::<usize>(), 12);
        let w = 5;
        assert_eq!((0..10).filter(|&t| is_anchor(t, w)).collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
        assert_eq!((10..15).filter(|&t| is_anchor(t, w)).collect::<Vec<_>>(), vec![10, 12, 14]);
    }
}
