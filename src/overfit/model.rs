//! The network an encoder fits to one image: a latent pyramid, the ARM, and the synthesis.
//!
//! ```text
//!  latents ŷ_0 (H×W) … ŷ_{L−1} (H/2^{L−1}×W/2^{L−1}), one channel each
//!      ──bilinear upsampling of every level to H×W──► [1, L, H, W]
//!      ──1x1 conv L→S, ReLU, S→S, ReLU, S→3──► + 3x3 conv 3→3 (residual), leaky ReLU,
//!      + 3x3 conv 3→3 (residual) ──► x̂
//!  rate: −log₂ p(ŷ_l | μ, σ) with (μ, σ) = ARM(causal context of ŷ_l), per level
//! ```

use burn::module::Param;
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::arm::{CONTEXT, IntLayer, IntegerArm, first_layer};
use super::lanes;
use super::prior::{ARM_FRAC, SCALE_MAX, SCALE_MIN};
use crate::error::{Error, Result};
use crate::nerv::model::QConv;
use crate::nn::{from_host, ste_round, to_host};

/// The mass a Laplace distribution (mean `mu`, scale `b`) puts on [y − ½, y + ½]:
/// F(½ − v) − F(−½ − v) with v = |y − μ| and F(x) = ½ + ½·sign(x)·(1 − e^−|x|/b); only
/// exponentials of non-positive numbers, so no branch overflows (as the CPU pass computes it).
fn laplace_likelihood(y: Tensor<4>, b: Tensor<4>, mu: Tensor<4>) -> Tensor<4> {
    let v = (y - mu).abs();
    let hi = v.clone().neg().add_scalar(0.5) / b.clone();
    let f_hi = hi.clone().sign().mul(hi.abs().neg().exp().neg().add_scalar(1.0)).mul_scalar(0.5).add_scalar(0.5);
    let f_lo = (v.neg().sub_scalar(0.5) / b).exp().mul_scalar(0.5);
    (f_hi - f_lo).clamp_min(1e-9)
}

/// What a stream states about its decoder's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    /// Pyramid levels (the finest at full resolution, each next one half as large).
    pub levels: usize,
    /// Hidden width of the ARM.
    pub arm_hidden: usize,
    /// Hidden width of the synthesis.
    pub synthesis_width: usize,
}

/// Largest values a stream may declare (checked before anything is allocated).
pub const MAX_LEVELS: usize = 8;
pub use super::arm::MAX_WIDTH;

impl Architecture {
    pub fn check(&self) -> Result<()> {
        if !(1..=MAX_LEVELS).contains(&self.levels) || !(1..=MAX_WIDTH).contains(&self.arm_hidden) || !(1..=MAX_WIDTH).contains(&self.synthesis_width) {
            return Err(Error::Format(format!("overfit architecture out of range: {self:?}")));
        }
        Ok(())
    }

    /// (height, width) of every pyramid level of an H×W image.
    pub fn level_sizes(&self, height: usize, width: usize) -> Vec<[usize; 2]> {
        (0..self.levels).map(|l| [height.div_ceil(1 << l), width.div_ceil(1 << l)]).collect()
    }

    /// Shapes of the ARM's layers, then the synthesis's (out, in, k, k).
    pub fn tensor_shapes(&self) -> Vec<[usize; 4]> {
        let (a, s) = (self.arm_hidden, self.synthesis_width);
        let mut shapes = vec![[a, CONTEXT.len(), 1, 1], [a, a, 1, 1], [2, a, 1, 1], [s, self.levels, 1, 1], [s, s, 1, 1], [3, s, 1, 1]];
        shapes.extend([[3, 3, 3, 3]; RESIDUAL_LAYERS]);
        shapes
    }

    /// Multiplications per pixel of decoding: the ARM over every latent, the synthesis over
    /// every pixel (upsampling not counted: 4 per level and pixel).
    pub fn macs_per_pixel(&self) -> f64 {
        let shapes = self.tensor_shapes();
        let macs = |s: &[usize; 4]| (s[0] * s[1] * s[2] * s[3]) as f64;
        let latents_per_pixel: f64 = (0..self.levels).map(|l| 0.25f64.powi(l as i32)).sum();
        shapes[..3].iter().map(macs).sum::<f64>() * latents_per_pixel + shapes[3..].iter().map(macs).sum::<f64>()
    }
}

/// A network's layers quantized: each layer's weight and bias as integer multiples of a step.
pub type QuantizedLayers = Vec<(Vec<i32>, Vec<i32>)>;

/// One layer: weight `[out][in][k][k]` and bias `[out]`, as in [`Architecture::tensor_shapes`].
pub type Layer = (Vec<f32>, Vec<f32>);

/// Every parameter of a fit, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub latents: Vec<Vec<f32>>,
    pub layers: Vec<Layer>,
}

impl Params {
    /// Zeros of the same shapes (gradients, Adam moments).
    pub fn zeros_like(&self) -> Self {
        self.zeros_like_in(|n| vec![0.0; n])
    }

    /// [`Params::zeros_like`] with the latents' planes from `zeros(len)`.
    pub fn zeros_like_in(&self, zeros: impl Fn(usize) -> Vec<f32>) -> Self {
        Self { latents: self.latents.iter().map(|v| zeros(v.len())).collect(), layers: self.layers.iter().map(|(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()])).collect() }
    }

    pub(crate) fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = self.latents.iter_mut().map(|v| v.as_mut_slice()).collect();
        for (w, b) in &mut self.layers {
            out.push(w);
            out.push(b);
        }
        out
    }

    pub(crate) fn slices(&self) -> Vec<&[f32]> {
        let mut out: Vec<&[f32]> = self.latents.iter().map(|v| v.as_slice()).collect();
        for (w, b) in &self.layers {
            out.push(w);
            out.push(b);
        }
        out
    }
}

/// Largest magnitude of a latent and of a quantized weight: the encoder clamps to them, and a
/// stream beyond them is corrupt.
pub const MAX_LATENT: i32 = 32767;
pub const MAX_WEIGHT: i32 = 1 << 20;

/// The synthesis's 3x3 residual layers after its MLP: `x + conv(x)`, a leaky ReLU between
/// them (Cool-chic's default synthesis ends the same way with a plain ReLU).
pub const RESIDUAL_LAYERS: usize = 2;

/// Slope of the activation between the residual layers below zero. A plain ReLU (0) stalled
/// 5 of 15 fits: where the MLP's first output was negative no gradient reached the latents.
pub const RESIDUAL_LEAK: f32 = 0.1;

/// Number of ARM layers among [`Architecture::tensor_shapes`].
pub const ARM_LAYERS: usize = 3;

/// How latents are quantized in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantization {
    /// Additive uniform noise (the first phase of fitting).
    Noise,
    /// Rounding with a straight-through gradient (the last phase, and what decoding sees).
    Round,
    /// Soft rounding with noise (Agustsson & Theis 2020, as C3 uses it): the rate sees
    /// `s(y) + u`, the synthesis `s(s(y) + u)`, where `s` tends to rounding as the
    /// temperature falls; gradients flow through `s`.
    SoftRound { temperature: f32 },
}

/// The soft rounding `s(y) = ⌊y⌋ + ½ + ½·tanh(r/T)/tanh(1/(2T))`, `r = y − ⌊y⌋ − ½`, and its
/// derivative.
#[inline(always)]
pub fn soft_round(y: f32, temperature: f32) -> (f32, f32) {
    soft_round_normed(y, temperature, soft_round_norm(temperature))
}

/// `tanh(1/(2T))`, [`soft_round`]'s normalisation: once per pass, not per latent.
#[inline(always)]
pub fn soft_round_norm(temperature: f32) -> f32 {
    lanes::tanh(0.5 / temperature)
}

/// [`soft_round`] with its normalisation `norm` ([`soft_round_norm`]) given.
#[inline(always)]
pub fn soft_round_normed(y: f32, temperature: f32, norm: f32) -> (f32, f32) {
    let m = lanes::floor(y) + 0.5;
    let t = lanes::tanh((y - m) / temperature);
    (m + 0.5 * t / norm, 0.5 * (1.0 - t * t) / (temperature * norm))
}

/// [`soft_round`] on a tensor (⌊y⌋ carries no gradient).
fn soft_round_tensor(y: Tensor<4>, temperature: f32) -> Tensor<4> {
    let m = y.clone().floor().detach().add_scalar(0.5);
    let norm = (0.5 / temperature).tanh() as f64;
    m.clone() + (y - m).div_scalar(temperature as f64).tanh().mul_scalar(0.5 / norm)
}

#[derive(Module, Debug)]
pub struct OverfitNet {
    latents: Vec<Param<Tensor<4>>>,
    layers: Vec<QConv>,
}

/// Distortion and rate of a forward pass.
pub struct Output {
    pub x_hat: Tensor<4>,
    /// Total bits of the latents under the ARM (a proxy: the coded rate comes from bytes).
    pub bits: Tensor<1>,
}

impl OverfitNet {
    /// Zero latents (what Cool-chic starts from) and a seeded network.
    pub fn new(arch: &Architecture, height: usize, width: usize, seed: u64, device: &Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let latents = arch.level_sizes(height, width).into_iter().map(|[h, w]| Param::from_tensor(Tensor::zeros([1, 1, h, w], device))).collect();
        let shapes = arch.tensor_shapes();
        let last = shapes.len() - 1;
        // Residual layers before the last start as zeros, the identity: random ones left whole
        // channels dead behind a plain ReLU, and the fit never recovered (15.6 dB).
        let layers = shapes
            .into_iter()
            .enumerate()
            .map(|(i, s)| if i >= ARM_LAYERS + 3 && i < last { QConv::from_host(vec![0.0; s.iter().product()], s, vec![0.0; s[0]], device) } else { QConv::new(s, &mut rng, device) })
            .collect();
        Self { latents, layers }
    }

    fn conv(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        self.layers[i].forward(x, None)
    }

    /// The ARM's (μ, log σ) for every position of a level.
    fn arm(&self, y: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let first = &self.layers[0];
        let h = first_layer(y, first.weight.val(), first.bias.val()).clamp_min(0.0);
        let h = self.conv(1, h).clamp_min(0.0);
        let out = self.conv(2, h);
        (out.clone().narrow(1, 0, 1), out.narrow(1, 1, 1))
    }

    /// The synthesis of an image from its (quantized) latents.
    pub fn synthesize(&self, levels: Vec<Tensor<4>>, [height, width]: [usize; 2]) -> Tensor<4> {
        let x = Tensor::cat(levels.into_iter().map(|y| upsample(y, [height, width])).collect(), 1);
        let h = self.conv(ARM_LAYERS, x).clamp_min(0.0);
        let h = self.conv(ARM_LAYERS + 1, h).clamp_min(0.0);
        let x = self.conv(ARM_LAYERS + 2, h);
        let mut x = x;
        for i in 0..RESIDUAL_LAYERS {
            let y = x.clone() + self.conv(ARM_LAYERS + 3 + i, x);
            x = if i + 1 < RESIDUAL_LAYERS { burn::tensor::activation::leaky_relu(y, RESIDUAL_LEAK as f64) } else { y };
        }
        x
    }

    /// Training pass: quantized latents, their rate under the ARM, the reconstruction.
    pub fn forward(&self, quantization: Quantization) -> Output {
        let device = self.latents[0].val().device();
        let [_, _, height, width] = self.latents[0].val().dims();
        let mut bits = Tensor::<1>::zeros([1], &device);
        let mut levels = Vec::with_capacity(self.latents.len());
        for y in &self.latents {
            let y = y.val();
            let noise = || Tensor::random(y.shape(), burn::tensor::Distribution::Uniform(-0.5, 0.5), &device);
            // What the rate sees, and what the synthesis sees.
            let (y_rate, y_syn) = match quantization {
                Quantization::Noise => {
                    let n = y.clone() + noise();
                    (n.clone(), n)
                }
                Quantization::Round => {
                    let r = ste_round(y);
                    (r.clone(), r)
                }
                Quantization::SoftRound { temperature } => {
                    let n = soft_round_tensor(y.clone(), temperature) + noise();
                    (n.clone(), soft_round_tensor(n, temperature))
                }
            };
            let (mu, log_scale) = self.arm(y_rate.clone());
            let scale = log_scale.exp().clamp(SCALE_MIN, SCALE_MAX);
            let lik = laplace_likelihood(y_rate, scale, mu);
            bits = bits + lik.log().sum().neg().div_scalar(std::f64::consts::LN_2);
            levels.push(y_syn);
        }
        Output { x_hat: self.synthesize(levels, [height, width]), bits }
    }

    /// The ids of the latent grids (optimised at their own learning rate).
    pub fn latent_ids(&self) -> Vec<burn::module::ParamId> {
        self.latents.iter().map(|y| y.id).collect()
    }

    /// Every parameter on the host (latents level by level, layers as in
    /// [`Architecture::tensor_shapes`]).
    pub fn to_params(&self) -> Params {
        Params { latents: self.latents.iter().map(|y| to_host(y.val())).collect(), layers: self.layers.iter().map(|l| (to_host(l.weight.val()), to_host(l.bias.val()))).collect() }
    }

    /// A network holding `params` (e.g. to continue a fit on another device).
    pub fn from_params(arch: &Architecture, sizes: &[[usize; 2]], params: &Params, device: &Device) -> Self {
        let latents = params.latents.iter().zip(sizes).map(|(y, &[h, w])| Param::from_tensor(from_host(y.clone(), [1, 1, h, w], device))).collect();
        let layers = arch.tensor_shapes().into_iter().zip(&params.layers).map(|(s, (w, b))| QConv::from_host(w.clone(), s, b.clone(), device)).collect();
        Self { latents, layers }
    }

    /// The gradients `grads` hold for every parameter, on the host (zeros where none reached).
    pub fn gradients(&self, grads: &burn::tensor::Gradients) -> Params {
        let host = |t: Tensor<4>| t.grad(grads).map(to_host).unwrap_or_else(|| vec![0.0; t.shape().num_elements()]);
        let host1 = |t: Tensor<1>| t.grad(grads).map(to_host).unwrap_or_else(|| vec![0.0; t.shape().num_elements()]);
        Params { latents: self.latents.iter().map(|y| host(y.val())).collect(), layers: self.layers.iter().map(|l| (host(l.weight.val()), host1(l.bias.val()))).collect() }
    }

    /// The float network a decoder builds from quantized layers (the latents are separate).
    pub fn decoder(arch: &Architecture, layers: &[(Vec<i32>, Vec<i32>)], device: &Device) -> Self {
        Self::from_params(arch, &[], &Params { latents: vec![], layers: dequantized(layers) }, device)
    }
}

/// Bilinear taps (PyTorch's `align_corners = false`) from `inp` samples to `out`.
#[derive(Debug, Clone)]
pub(crate) struct Taps {
    pub i0: Vec<usize>,
    pub i1: Vec<usize>,
    pub w1: Vec<f32>,
}

impl Taps {
    pub fn new(inp: usize, out: usize) -> Self {
        let scale = inp as f32 / out as f32;
        let (mut i0, mut i1, mut w1) = (vec![], vec![], vec![]);
        for d in 0..out {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let a = (src.floor() as usize).min(inp - 1);
            i0.push(a);
            i1.push((a + 1).min(inp - 1));
            w1.push(src - a as f32);
        }
        Self { i0, i1, w1 }
    }
}

/// Bilinear upsampling of a level to `[height, width]` (PyTorch's `align_corners = false`):
/// rows, then columns, each output `a + (b − a)·f` from the CPU pass's taps. Gathers and
/// sums rather than burn's `interpolate`, whose backward the GPU backends lack.
fn upsample(y: Tensor<4>, [height, width]: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = y.dims();
    let device = y.device();
    // Along dimension `dim` (2: rows, 3: columns), to `out` samples.
    let blend = |y: Tensor<4>, dim: usize, inp: usize, out: usize| {
        if inp == out {
            return y;
        }
        let taps = Taps::new(inp, out);
        let index = |v: &[usize]| Tensor::<1, Int>::from_ints(v.iter().map(|&i| i as i64).collect::<Vec<_>>().as_slice(), &device);
        let mut shape = [1; 4];
        shape[dim] = out;
        let (a, b) = (y.clone().select(dim, index(&taps.i0)), y.select(dim, index(&taps.i1)));
        a.clone() + (b - a) * from_host(taps.w1, shape, &device)
    };
    blend(blend(y, 2, h, height), 3, w, width)
}

/// The latents rounded to integers, level by level (row-major).
pub fn integer_latents(p: &Params) -> Vec<Vec<i32>> {
    let max = MAX_LATENT as f32;
    p.latents.iter().map(|y| y.iter().map(|&v| v.round().clamp(-max, max) as i32).collect()).collect()
}

/// Every layer's weights and biases in units of [`weight_step`], each tensor rounded to a
/// multiple of its own step 2^−e (`exponents[t]` ≤ `ARM_FRAC`, weight then bias per layer).
pub fn quantized_layers(p: &Params, exponents: &[u8]) -> QuantizedLayers {
    let q = |t: &[f32], e: u8| {
        let unit = 1i32 << (ARM_FRAC - e as u32);
        // The largest multiple of the step within the bound.
        let max = (MAX_WEIGHT / unit) as f32;
        t.iter().map(|&v| ((v * (e as f32).exp2()).round().clamp(-max, max) as i32) * unit).collect()
    };
    p.layers.iter().enumerate().map(|(i, (w, b))| (q(w, exponents[2 * i]), q(b, exponents[2 * i + 1]))).collect()
}

/// The float layers a decoder computes with, from quantized ones.
pub fn dequantized(layers: &[(Vec<i32>, Vec<i32>)]) -> Vec<Layer> {
    let step = weight_step();
    let f = |t: &[i32]| t.iter().map(|&v| v as f32 * step).collect();
    layers.iter().map(|(w, b)| (f(w), f(b))).collect()
}

/// The ARM layers of quantized weights, in fixed point (step 2^−[`ARM_FRAC`]).
pub fn integer_arm(arch: &Architecture, layers: &[(Vec<i32>, Vec<i32>)]) -> IntegerArm {
    let shapes = arch.tensor_shapes();
    IntegerArm { layers: (0..ARM_LAYERS).map(|i| IntLayer { inputs: shapes[i][1], outputs: shapes[i][0], weight: layers[i].0.clone(), bias: layers[i].1.clone() }).collect() }
}

/// The weight step every layer is quantized to: the ARM's fixed point.
pub fn weight_step() -> f32 {
    (-(ARM_FRAC as f32)).exp2()
}

/// Latents (integers) as the synthesis's input tensors.
pub fn latent_tensors(latents: &[Vec<i32>], sizes: &[[usize; 2]], device: &Device) -> Vec<Tensor<4>> {
    latents.iter().zip(sizes).map(|(y, &[h, w])| from_host(y.iter().map(|&v| v as f32).collect(), [1, 1, h, w], device)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor soft rounding (GPU fitting) computes the host one (CPU fitting), values and
    /// derivatives, and tends to rounding as the temperature falls.
    #[test]
    fn soft_rounding_is_the_same_on_tensors_and_tends_to_rounding() {
        let ys: Vec<f32> = (0..40).map(|i| -3.1 + i as f32 * 0.157).collect();
        let device = Device::flex().autodiff();
        let y = from_host(ys.clone(), [1, 1, 1, ys.len()], &device).require_grad();
        let s = soft_round_tensor(y.clone(), 0.2);
        let grads = s.clone().sum().backward();
        let (values, slopes) = (to_host(s), to_host(y.grad(&grads).expect("a gradient")));
        for (i, &v) in ys.iter().enumerate() {
            let (want, slope) = soft_round(v, 0.2);
            assert!((values[i] - want).abs() < 1e-5 && (slopes[i] - slope).abs() < 1e-4, "at {v}: {} {} vs {want} {slope}", values[i], slopes[i]);
            // Away from the half-way points, where even a cold soft rounding is steep.
            if (v - v.floor() - 0.5).abs() > 0.05 {
                assert!((soft_round(v, 0.01).0 - v.round()).abs() < 1e-3, "at {v}");
            }
        }
    }
}
