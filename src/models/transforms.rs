//! Analysis/synthesis transforms (Ballé 2017/2018, Minnen 2018) and their hyper counterparts.
//!
//! ```text
//!  g_a:  x ─c1─GDN─┬─c2─GDN─[res×2]─┬─c3─GDN─[res×2─attn]─┬─c4─► y
//!        (/2)       (/4)              (/8)                   (/16)
//!  g_s:  ŷ ─d1─IGDN─[attn─res×2]─d2─IGDN─[res×2]─d3─IGDN─d4─► x̂
//! ```
//! The bracketed stages exist only in [`Transforms::GdnResidual`] models: ELIC's residual
//! bottlenecks (1x1 → 3x3 → 1x1 at half width) and one linear-attention block for global
//! token mixing (MLIC++), at 1/4 and 1/8 resolution where they cost 16–64× less than at full
//! resolution. Each stage's last layer starts at zero, so adding the stages to a trained
//! model leaves its function unchanged and fine-tuning only has to improve on it.
//! [`Transforms::GdnResidualAuxT`] adds a linear path beside both transforms, its output added
//! after each stride-2 stage ([`super::auxt`]).

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};
use serde::{Deserialize, Serialize};

use super::auxt::{AuxAnalysis, AuxSynthesis};
use crate::entropy::GaussianParams;
use crate::nn::attention::linear_attention;
use crate::nn::fixed::{Activation, FixedConv};
use crate::nn::{Gdn, conv, deconv};

/// Which analysis/synthesis transforms a model has (recorded in weight files; absent = GDN).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "tools", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Transforms {
    /// Four 5x5 stride-2 convolutions with GDN/IGDN between them (Ballé 2018).
    #[default]
    Gdn,
    /// The GDN transforms plus residual bottlenecks at 1/4 and 1/8 and a linear-attention
    /// block at 1/8 (see the module diagram).
    GdnResidual,
    /// [`Transforms::GdnResidual`] plus an auxiliary linear path beside each transform
    /// ([`super::auxt`]).
    #[serde(rename = "gdn-residual-auxt")]
    #[cfg_attr(feature = "tools", value(name = "gdn-residual-auxt"))]
    GdnResidualAuxT,
}

impl Transforms {
    pub fn is_gdn(&self) -> bool {
        *self == Transforms::Gdn
    }

    /// Whether these transforms have the residual and attention stages.
    pub fn has_residual_stages(self) -> bool {
        self != Transforms::Gdn
    }

    /// Whether these transforms have the auxiliary linear path.
    pub fn has_auxiliary_path(self) -> bool {
        self == Transforms::GdnResidualAuxT
    }

    /// The `--transforms` value that selects these transforms.
    pub fn flag(self) -> String {
        match self {
            Transforms::Gdn => "gdn",
            Transforms::GdnResidual => "gdn-residual",
            Transforms::GdnResidualAuxT => "gdn-residual-auxt",
        }
        .to_string()
    }

    pub fn name(self) -> &'static str {
        match self {
            Transforms::Gdn => "GDN transforms",
            Transforms::GdnResidual => "GDN transforms with residual and attention blocks",
            Transforms::GdnResidualAuxT => "GDN transforms with residual and attention blocks and an auxiliary linear path",
        }
    }
}

/// Bottlenecks per resolution in [`ResidualStages`].
const BLOCKS_PER_STAGE: usize = 2;

/// A zero tensor in place of `t`, still a trainable leaf if `t` was one.
fn zeroed<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let grad = t.is_require_grad();
    let z = t.zeros_like().detach();
    if grad { z.require_grad() } else { z }
}

/// `conv` whose weights and bias start at zero: the last layer of a residual branch.
pub(crate) fn zero_conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    let mut c = conv(cin, cout, k, 1, device);
    c.weight = c.weight.map(zeroed);
    c.bias = c.bias.take().map(|b| b.map(zeroed));
    c
}

/// x + c3(relu(c2(relu(c1(x))))), 1x1 → 3x3 → 1x1 at half width (ELIC's residual bottleneck).
#[derive(Module, Debug)]
pub struct ResidualBottleneck {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
}

impl ResidualBottleneck {
    fn new(n: usize, device: &Device) -> Self {
        let h = (n / 2).max(1);
        Self { c1: conv(n, h, 1, 1, device), c2: conv(h, h, 3, 1, device), c3: zero_conv(h, n, 1, device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let r = relu(self.c2.forward(relu(self.c1.forward(x.clone()))));
        x + self.c3.forward(r)
    }
}

/// x + out(LinAttn(q(x), k(x), v(x))): every position sees the whole image, at a cost linear
/// in its area.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    query: Conv2d,
    key: Conv2d,
    value: Conv2d,
    out: Conv2d,
}

impl AttentionBlock {
    fn new(n: usize, device: &Device) -> Self {
        let d = (n / 2).max(1);
        Self { query: conv(n, d, 1, 1, device), key: conv(n, d, 1, 1, device), value: conv(n, d, 1, 1, device), out: zero_conv(d, n, 1, device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = linear_attention(self.query.forward(x.clone()), self.key.forward(x.clone()), self.value.forward(x.clone()), None);
        x + self.out.forward(a)
    }
}

/// The extra stages of [`Transforms::GdnResidual`], for one transform.
#[derive(Module, Debug)]
pub struct ResidualStages {
    quarter: Vec<ResidualBottleneck>,
    eighth: Vec<ResidualBottleneck>,
    attention: AttentionBlock,
}

impl ResidualStages {
    fn new(n: usize, device: &Device) -> Self {
        let blocks = || (0..BLOCKS_PER_STAGE).map(|_| ResidualBottleneck::new(n, device)).collect();
        Self { quarter: blocks(), eighth: blocks(), attention: AttentionBlock::new(n, device) }
    }
}

fn run(blocks: &[ResidualBottleneck], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, b| b.forward(x))
}

/// Adds an auxiliary path's outputs, one per call in stage order, to the stages' outputs;
/// without a path (`None`) it returns them as they are.
fn adder(outputs: Option<Vec<Tensor<4>>>) -> impl FnMut(Tensor<4>) -> Tensor<4> {
    let mut outputs = outputs.unwrap_or_default().into_iter();
    move |t| match outputs.next() {
        Some(a) => t + a,
        None => t,
    }
}

/// x (3, H, W) → y (M, H/16, W/16): four stride-2 5x5 convolutions with GDN between them.
#[derive(Module, Debug)]
pub struct Analysis {
    c1: Conv2d,
    n1: Gdn,
    c2: Conv2d,
    n2: Gdn,
    c3: Conv2d,
    n3: Gdn,
    c4: Conv2d,
    /// Last, so GDN models' parameters keep their order in weight files.
    stages: Option<ResidualStages>,
    /// After the stages, for the same reason.
    aux: Option<AuxAnalysis>,
}

impl Analysis {
    pub fn new(n: usize, m: usize, transforms: Transforms, device: &Device) -> Self {
        Self {
            c1: conv(3, n, 5, 2, device),
            n1: Gdn::new(n, false, device),
            c2: conv(n, n, 5, 2, device),
            n2: Gdn::new(n, false, device),
            c3: conv(n, n, 5, 2, device),
            n3: Gdn::new(n, false, device),
            c4: conv(n, m, 5, 2, device),
            stages: transforms.has_residual_stages().then(|| ResidualStages::new(n, device)),
            aux: transforms.has_auxiliary_path().then(|| AuxAnalysis::new(n, m, device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut plus_aux = adder(self.aux.as_ref().map(|a| a.forward(x.clone())));
        let x = plus_aux(self.n1.forward(self.c1.forward(x)));
        let mut x = plus_aux(self.n2.forward(self.c2.forward(x)));
        if let Some(s) = &self.stages {
            x = run(&s.quarter, x);
        }
        let mut x = plus_aux(self.n3.forward(self.c3.forward(x)));
        if let Some(s) = &self.stages {
            x = s.attention.forward(run(&s.eighth, x));
        }
        plus_aux(self.c4.forward(x))
    }

    pub fn auxiliary_path(&self) -> Option<&AuxAnalysis> {
        self.aux.as_ref()
    }

    /// These transforms with an auxiliary path added, its projections at zero: the same
    /// function, to be grafted onto trained weights.
    pub fn with_auxiliary_path(mut self, device: &Device) -> Self {
        let (n, m) = (self.c2.weight.dims()[0], self.c4.weight.dims()[0]);
        self.aux.get_or_insert_with(|| AuxAnalysis::grafted(n, m, device));
        self
    }

    pub fn residual_stages(&self) -> Option<&ResidualStages> {
        self.stages.as_ref()
    }

    /// These transforms with residual stages added (identity at first; see the module doc).
    pub fn with_residual_stages(mut self, device: &Device) -> Self {
        let n = self.c2.weight.dims()[0];
        self.stages.get_or_insert_with(|| ResidualStages::new(n, device));
        self
    }
}

/// ŷ (M, H/16, W/16) → x̂ (3, H, W): the mirror of [`Analysis`] with inverse GDN.
#[derive(Module, Debug)]
pub struct Synthesis {
    d1: ConvTranspose2d,
    n1: Gdn,
    d2: ConvTranspose2d,
    n2: Gdn,
    d3: ConvTranspose2d,
    n3: Gdn,
    d4: ConvTranspose2d,
    /// Last, so GDN models' parameters keep their order in weight files.
    stages: Option<ResidualStages>,
    /// After the stages, for the same reason.
    aux: Option<AuxSynthesis>,
}

impl Synthesis {
    pub fn new(n: usize, m: usize, transforms: Transforms, device: &Device) -> Self {
        Self {
            d1: deconv(m, n, 5, 2, device),
            n1: Gdn::new(n, true, device),
            d2: deconv(n, n, 5, 2, device),
            n2: Gdn::new(n, true, device),
            d3: deconv(n, n, 5, 2, device),
            n3: Gdn::new(n, true, device),
            d4: deconv(n, 3, 5, 2, device),
            stages: transforms.has_residual_stages().then(|| ResidualStages::new(n, device)),
            aux: transforms.has_auxiliary_path().then(|| AuxSynthesis::new(n, m, device)),
        }
    }

    pub fn forward(&self, y: Tensor<4>) -> Tensor<4> {
        let mut plus_aux = adder(self.aux.as_ref().map(|a| a.forward(y.clone())));
        let mut x = plus_aux(self.n1.forward(self.d1.forward(y)));
        if let Some(s) = &self.stages {
            x = run(&s.eighth, s.attention.forward(x));
        }
        let mut x = plus_aux(self.n2.forward(self.d2.forward(x)));
        if let Some(s) = &self.stages {
            x = run(&s.quarter, x);
        }
        let x = plus_aux(self.n3.forward(self.d3.forward(x)));
        plus_aux(self.d4.forward(x))
    }

    pub fn auxiliary_path(&self) -> Option<&AuxSynthesis> {
        self.aux.as_ref()
    }

    /// See [`Analysis::with_auxiliary_path`].
    pub fn with_auxiliary_path(mut self, device: &Device) -> Self {
        let (m, n) = (self.d1.weight.dims()[0], self.d2.weight.dims()[0]);
        self.aux.get_or_insert_with(|| AuxSynthesis::grafted(n, m, device));
        self
    }

    pub fn residual_stages(&self) -> Option<&ResidualStages> {
        self.stages.as_ref()
    }

    /// See [`Analysis::with_residual_stages`].
    pub fn with_residual_stages(mut self, device: &Device) -> Self {
        let n = self.d2.weight.dims()[0];
        self.stages.get_or_insert_with(|| ResidualStages::new(n, device));
        self
    }
}

/// y (M) → z (N, /4). ReLU on |y| for the scale hyperprior, leaky ReLU on y for mean-scale.
#[derive(Module, Debug)]
pub struct HyperAnalysis {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
    mean_scale: bool,
}

impl HyperAnalysis {
    /// M, the channels of the latent it reads.
    pub fn input_channels(&self) -> usize {
        self.c1.weight.dims()[1]
    }

    pub fn new(n: usize, m: usize, mean_scale: bool, device: &Device) -> Self {
        Self { c1: conv(m, n, 3, 1, device), c2: conv(n, n, 5, 2, device), c3: conv(n, n, 5, 2, device), mean_scale }
    }

    pub fn forward(&self, y: Tensor<4>) -> Tensor<4> {
        if self.mean_scale {
            let x = leaky_relu(self.c1.forward(y), 0.01);
            let x = leaky_relu(self.c2.forward(x), 0.01);
            self.c3.forward(x)
        } else {
            let x = relu(self.c1.forward(y.abs()));
            let x = relu(self.c2.forward(x));
            self.c3.forward(x)
        }
    }
}

/// ẑ (N, /4) → Gaussian parameters for y: M scales, or 2M (scales then means) for mean-scale.
#[derive(Module, Debug)]
pub struct HyperSynthesis {
    d1: ConvTranspose2d,
    d2: ConvTranspose2d,
    c3: Conv2d,
    mean_scale: bool,
}

impl HyperSynthesis {
    pub fn new(n: usize, m: usize, mean_scale: bool, device: &Device) -> Self {
        if mean_scale {
            Self { d1: deconv(n, m, 5, 2, device), d2: deconv(m, m * 3 / 2, 5, 2, device), c3: conv(m * 3 / 2, 2 * m, 3, 1, device), mean_scale }
        } else {
            Self { d1: deconv(n, n, 5, 2, device), d2: deconv(n, n, 5, 2, device), c3: conv(n, m, 3, 1, device), mean_scale }
        }
    }

    /// Returns (scales, means).
    pub fn forward(&self, z_hat: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        if self.mean_scale {
            let x = leaky_relu(self.d1.forward(z_hat), 0.01);
            let x = leaky_relu(self.d2.forward(x), 0.01);
            let mut p = self.c3.forward(x).chunk(2, 1);
            let means = p.pop().unwrap();
            (p.pop().unwrap(), Some(means))
        } else {
            let x = relu(self.d1.forward(z_hat));
            let x = relu(self.d2.forward(x));
            (relu(self.c3.forward(x)), None)
        }
    }
}

impl HyperSynthesis {
    /// The fixed-point copy that coding uses (see [`IntegerHyperSynthesis`]).
    pub fn integer(&self) -> IntegerHyperSynthesis {
        let (hidden, last) = if self.mean_scale { (Activation::LeakyRelu, Activation::None) } else { (Activation::Relu, Activation::Relu) };
        IntegerHyperSynthesis { layers: vec![FixedConv::from_deconv(&self.d1, hidden), FixedConv::from_deconv(&self.d2, hidden), FixedConv::from_conv(&self.c3, last)], mean_scale: self.mean_scale }
    }
}

/// [`HyperSynthesis`] in fixed point: what encoder and decoder both run to get the Gaussian
/// parameters, bit-identical on every machine and backend.
///
/// ```text
///  ẑ (f32, = symbol + median) ──to_fixed──► deconv ─► act ─► deconv ─► act ─► conv ─► (σ, μ) in Q12
/// ```
#[derive(Debug, Clone)]
pub struct IntegerHyperSynthesis {
    layers: Vec<FixedConv>,
    mean_scale: bool,
}

impl IntegerHyperSynthesis {
    /// The output planes as computed: `[M][4h][4w]` scales, then (mean-scale) as many means.
    pub fn forward_raw(&self, z_hat: &[f32], h: usize, w: usize) -> Vec<i32> {
        let mut x: Vec<i32> = z_hat.iter().map(|&v| crate::nn::fixed::to_fixed(v)).collect();
        let (mut h, mut w) = (h, w);
        for layer in &self.layers {
            (x, h, w) = layer.forward(&x, h, w);
        }
        x
    }

    /// `z_hat`: `[N][h][w]` decoded hyper-latent. Returns parameters for a `[M][4h][4w]` latent.
    pub fn forward(&self, z_hat: &[f32], h: usize, w: usize) -> GaussianParams {
        let mut x = self.forward_raw(z_hat, h, w);
        if self.mean_scale {
            let means = x.split_off(x.len() / 2);
            GaussianParams { scales: x, means: Some(means) }
        } else {
            GaussianParams { scales: x, means: None }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "tools")]
    #[test]
    fn flags_are_the_command_line_values() {
        use clap::ValueEnum;
        for t in super::Transforms::value_variants() {
            assert_eq!(t.to_possible_value().unwrap().get_name(), t.flag());
        }
    }

    use super::*;
    use crate::nn::fixed::to_float;
    use crate::nn::to_host;

    /// Added residual stages leave a trained transform's output exactly as it was, and are
    /// wired in: once their last layers move, the output changes.
    #[test]
    fn residual_stages_start_as_the_identity() {
        let device = crate::backend::device();
        device.seed(5);
        let (n, m) = (8, 12);
        let x = Tensor::<4>::random([1, 3, 64, 48], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
        let g_a = Analysis::new(n, m, Transforms::Gdn, &device);
        let g_s = Synthesis::new(n, m, Transforms::Gdn, &device);
        let y = g_a.forward(x.clone());
        let x_hat = g_s.forward(y.clone());
        let (mut ra, mut rs) = (g_a.with_residual_stages(&device), g_s.with_residual_stages(&device));
        assert_eq!(to_host(ra.forward(x.clone())), to_host(y.clone()));
        assert_eq!(to_host(rs.forward(y.clone())), to_host(x_hat.clone()));
        let nudge = |s: &mut ResidualStages| {
            s.attention.out.weight = s.attention.out.weight.clone().map(|t| t.ones_like().mul_scalar(0.05));
            s.quarter[1].c3.weight = s.quarter[1].c3.weight.clone().map(|t| t.ones_like().mul_scalar(0.05));
        };
        nudge(ra.stages.as_mut().unwrap());
        nudge(rs.stages.as_mut().unwrap());
        assert_ne!(to_host(ra.forward(x)), to_host(y.clone()));
        assert_ne!(to_host(rs.forward(y)), to_host(x_hat));
    }

    /// The fixed-point network computes what the float one does, up to quantization.
    #[test]
    fn integer_hyper_synthesis_tracks_float() {
        let device = crate::backend::device();
        for mean_scale in [false, true] {
            let hs = HyperSynthesis::new(8, 12, mean_scale, &device);
            let (h, w) = (3, 5);
            let z: Vec<f32> = (0..8 * h * w).map(|i| ((i * 37 % 11) as f32 - 5.0) + 0.25).collect();
            let (scales, means) = hs.forward(Tensor::from_data(TensorData::new(z.clone(), [1, 8, h, w]), &device));
            let fixed = hs.integer().forward(&z, h, w);
            let pairs = to_host(scales).into_iter().zip(fixed.scales.iter().copied());
            let pairs: Vec<(f32, i32)> = match (means, &fixed.means) {
                (Some(m), Some(fm)) => pairs.chain(to_host(m).into_iter().zip(fm.iter().copied())).collect(),
                (None, None) => pairs.collect(),
                _ => panic!("means present on one side only"),
            };
            assert_eq!(pairs.len(), if mean_scale { 2 } else { 1 } * 12 * 4 * h * 4 * w);
            let worst = pairs.iter().map(|&(f, q)| (f - to_float(q)).abs()).fold(0f32, f32::max);
            assert!(worst < 5e-3, "fixed-point h_s off by {worst} (mean_scale {mean_scale})");
        }
    }
}
