//! The HNeRV-style network: a content encoder (kept by the encoder) and a decoder of
//! pixel-shuffle upsampling blocks (its quantized weights are the bitstream).
//!
//! ```text
//!  tile (3, T, T) ──ContentEncoder: L × [conv3x3 s2, SiLU], conv1x1──► e (d, T/2^L, T/2^L)
//!  e ──stem conv1x1──SiLU──► [conv3x3 C_k→4·C_{k+1}, PixelShuffle(2), SiLU] × L ──head conv3x3──► + ½ ──► x̂ (3, T, T)
//! ```
//! Quantization-aware fitting: [`QConv::forward`] can round its weights to a per-tensor step
//! with a straight-through gradient, so the fit optimises the network the decoder will run.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{from_host, to_host};

/// Geometry and widths of a nerv network. Everything the decoder needs to rebuild it is
/// here; the stream header carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NervConfig {
    /// Side of the square tiles frames are cut into (a multiple of 2^levels).
    pub tile: usize,
    /// Number of ×2 upsampling blocks; the embedding grid is tile / 2^levels.
    pub levels: usize,
    /// Embedding channels per grid cell.
    pub embed_dim: usize,
    /// Channel widths: the stem's output, then each block's output (levels + 1 values).
    pub widths: Vec<usize>,
    /// Kernel size of each upsampling block, then of the head (levels + 1 values; 1, 3 or 5).
    pub kernels: Vec<usize>,
}

/// Largest values a stream may declare (checked before anything is allocated).
pub const MAX_TILE: usize = 512;
pub const MAX_LEVELS: usize = 7;
pub const MAX_WIDTH: usize = 512;
pub const MAX_EMBED: usize = 256;

impl NervConfig {
    /// Widths shrinking by `ratio` per level from `c0`, none below 8.
    pub fn with_c0(tile: usize, levels: usize, embed_dim: usize, c0: usize, ratio: f64) -> Self {
        let widths = (0..=levels).map(|k| ((c0 as f64 / ratio.powi(k as i32)).round() as usize).max(8)).collect();
        Self { tile, levels, embed_dim, widths, kernels: vec![3; levels + 1] }
    }

    /// HNeRV's balance: kernels growing with the level (1, 3, 5, 5, …), so parameters spread
    /// more evenly across scales (at more compute at high resolution).
    pub fn with_growing_kernels(mut self) -> Self {
        self.kernels = (0..=self.levels).map(|l| (1 + 2 * l).min(5)).collect();
        self
    }

    pub fn grid(&self) -> usize {
        self.tile >> self.levels
    }

    pub fn check(&self) -> Result<()> {
        let ok = (1..=MAX_LEVELS).contains(&self.levels)
            && (1..=MAX_TILE).contains(&self.tile)
            && self.tile.is_multiple_of(1 << self.levels)
            && (1..=MAX_EMBED).contains(&self.embed_dim)
            && self.widths.len() == self.levels + 1
            && self.widths.iter().all(|&w| (1..=MAX_WIDTH).contains(&w))
            && self.kernels.len() == self.levels + 1
            && self.kernels.iter().all(|k| matches!(k, 1 | 3 | 5));
        if ok { Ok(()) } else { Err(Error::Format(format!("invalid nerv network geometry {self:?}"))) }
    }

    /// Shapes of the decoder's tensors in stream order: per convolution, weight then bias.
    pub fn tensor_shapes(&self) -> Vec<Vec<usize>> {
        let w = &self.widths;
        let k = &self.kernels;
        let mut convs = vec![[w[0], self.embed_dim, 1, 1]];
        for l in 0..self.levels {
            convs.push([4 * w[l + 1], w[l], k[l], k[l]]);
        }
        convs.push([3, w[self.levels], k[self.levels], k[self.levels]]);
        convs.iter().flat_map(|s| [s.to_vec(), vec![s[0]]]).collect()
    }

    /// Decoder parameters (what the stream carries, besides the embeddings).
    pub fn parameters(&self) -> usize {
        self.tensor_shapes().iter().map(|s| s.iter().product::<usize>()).sum()
    }

    /// Multiply-accumulates of the decoder per tile.
    pub fn macs_per_tile(&self) -> usize {
        let g = self.grid();
        let w = &self.widths;
        let mut macs = g * g * self.embed_dim * w[0];
        for l in 0..self.levels {
            let side = g << l;
            macs += side * side * 4 * w[l + 1] * w[l] * self.kernels[l].pow(2);
        }
        macs + self.tile * self.tile * 3 * w[self.levels] * self.kernels[self.levels].pow(2)
    }
}

/// A convolution whose weights can be fake-quantized in the forward pass.
#[derive(Module, Debug)]
pub struct QConv {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

/// Rounds `t` to multiples of `step`; the gradient passes straight through.
pub fn fake_quant<const D: usize>(t: Tensor<D>, step: f32) -> Tensor<D> {
    let q = t.clone().div_scalar(step).round().mul_scalar(step);
    t.clone() + (q - t).detach()
}

impl QConv {
    /// PyTorch's default initialisation, U(±1/√fan_in), from a seeded generator.
    pub fn new(shape: [usize; 4], rng: &mut StdRng, device: &Device) -> Self {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
        let bound = fan_in.sqrt().recip();
        let mut uniform = |n: usize| (0..n).map(|_| rng.gen_range(-bound..bound)).collect::<Vec<f32>>();
        let w = uniform(shape.iter().product());
        let b = uniform(shape[0]);
        Self::from_host(w, shape, b, device)
    }

    pub fn from_host(w: Vec<f32>, shape: [usize; 4], b: Vec<f32>, device: &Device) -> Self {
        Self { weight: Param::from_tensor(from_host(w, shape, device)), bias: Param::from_tensor(from_host(b, [shape[0]], device)) }
    }

    /// `steps` = (weight step, bias step) fake-quantizes both.
    pub fn forward(&self, x: Tensor<4>, steps: Option<(f32, f32)>) -> Tensor<4> {
        let (mut w, mut b) = (self.weight.val(), self.bias.val());
        if let Some((sw, sb)) = steps {
            w = fake_quant(w, sw);
            b = fake_quant(b, sb);
        }
        let p = w.dims()[2] / 2;
        conv2d(x, w, Some(b), ConvOptions::new([1, 1], [p, p], [1, 1], 1))
    }
}

fn pixel_shuffle(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c / 4, 2, 2, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([b, c / 4, 2 * h, 2 * w])
}

/// The transmitted network: embeddings → pixels.
#[derive(Module, Debug)]
pub struct NervDecoder {
    convs: Vec<QConv>,
}

impl NervDecoder {
    pub fn new(config: &NervConfig, seed: u64, device: &Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let shapes = config.tensor_shapes();
        let convs = shapes.iter().step_by(2).map(|s| QConv::new([s[0], s[1], s[2], s[3]], &mut rng, device)).collect();
        Self { convs }
    }

    /// From host tensors in [`NervConfig::tensor_shapes`] order (the decoder's path).
    pub fn from_tensors(config: &NervConfig, tensors: &[Vec<f32>], device: &Device) -> Self {
        let shapes = config.tensor_shapes();
        let convs = shapes.chunks(2).zip(tensors.chunks(2)).map(|(s, t)| QConv::from_host(t[0].clone(), [s[0][0], s[0][1], s[0][2], s[0][3]], t[1].clone(), device)).collect();
        Self { convs }
    }

    /// Host copies of every tensor, in stream order.
    pub fn tensors(&self) -> Vec<Vec<f32>> {
        self.convs.iter().flat_map(|c| [to_host(c.weight.val()), to_host(c.bias.val())]).collect()
    }

    /// `steps`: one per tensor (stream order) to fake-quantize, or `None` for float.
    pub fn forward(&self, e: Tensor<4>, steps: Option<&[f32]>) -> Tensor<4> {
        let n = self.convs.len();
        let st = |i: usize| steps.map(|s| (s[2 * i], s[2 * i + 1]));
        let mut x = silu(self.convs[0].forward(e, st(0)));
        for i in 1..n - 1 {
            x = silu(pixel_shuffle(self.convs[i].forward(x, st(i))));
        }
        self.convs[n - 1].forward(x, st(n - 1)).add_scalar(0.5)
    }
}

/// The content encoder: only the encoder has it; its outputs (quantized) are the embeddings.
#[derive(Module, Debug)]
pub struct ContentEncoder {
    convs: Vec<Conv2d>,
    proj: Conv2d,
}

impl ContentEncoder {
    pub fn new(config: &NervConfig, device: &Device) -> Self {
        let mut cin = 3;
        let convs = (0..config.levels)
            .map(|l| {
                let cout = (16usize << l).min(64);
                let c = crate::nn::conv(cin, cout, 3, 2, device);
                cin = cout;
                c
            })
            .collect();
        Self { convs, proj: crate::nn::conv(cin, config.embed_dim, 1, 1, device) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.convs.iter().fold(x.sub_scalar(0.5), |x, c| silu(c.forward(x)));
        self.proj.forward(x)
    }
}

/// What is fitted per group of frames.
#[derive(Module, Debug)]
pub struct NervNet {
    pub encoder: ContentEncoder,
    pub decoder: NervDecoder,
}

impl NervNet {
    pub fn new(config: &NervConfig, seed: u64, device: &Device) -> Self {
        device.seed(seed);
        Self { encoder: ContentEncoder::new(config, device), decoder: NervDecoder::new(config, seed, device) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parameters_and_output_geometry_agree() {
        let device = Device::flex();
        let cfg = NervConfig::with_c0(32, 3, 4, 16, 1.5);
        cfg.check().unwrap();
        let net = NervNet::new(&cfg, 1, &device);
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        let e = net.encoder.forward(x);
        assert_eq!(e.dims(), [2, 4, 4, 4]);
        let steps = vec![0.01f32; cfg.tensor_shapes().len()];
        assert_eq!(net.decoder.forward(e.clone(), Some(&steps)).dims(), [2, 3, 32, 32]);
        let tensors = net.decoder.tensors();
        let sizes: usize = tensors.iter().map(Vec::len).sum();
        assert_eq!(sizes, cfg.parameters());
        // Rebuilding from host tensors gives the same network.
        let again = NervDecoder::from_tensors(&cfg, &tensors, &device);
        let (a, b) = (to_host(net.decoder.forward(e.clone(), None)), to_host(again.forward(e, None)));
        assert_eq!(a, b);
    }

    #[test]
    fn fake_quant_rounds_values_and_passes_gradients() {
        let device = Device::flex().autodiff();
        let t = Tensor::<1>::from_floats([0.26, -0.74, 0.01], &device).require_grad();
        let q = fake_quant(t.clone(), 0.5);
        assert_eq!(to_host(q.clone()), vec![0.5, -0.5, 0.0]);
        let g = q.sum().backward();
        assert_eq!(to_host(t.grad(&g).unwrap()), vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn hostile_geometry_is_refused() {
        for cfg in [
            NervConfig::with_c0(48, 5, 8, 32, 1.4),
            NervConfig::with_c0(64, 0, 8, 32, 1.4),
            NervConfig { widths: vec![8], ..NervConfig::with_c0(64, 2, 8, 32, 1.4) },
            NervConfig::with_c0(64, 2, 0, 32, 1.4),
            NervConfig::with_c0(4096, 2, 8, 32, 1.4),
        ] {
            assert!(cfg.check().is_err(), "{cfg:?}");
        }
    }
}
