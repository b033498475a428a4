//! Analysis/synthesis transforms (Ballé 2017/2018, Minnen 2018) and their hyper counterparts.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};

use crate::entropy::GaussianParams;
use crate::nn::fixed::{Activation, FixedConv};
use crate::nn::{Gdn, conv, deconv};

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
}

impl Analysis {
    pub fn new(n: usize, m: usize, device: &Device) -> Self {
        Self {
            c1: conv(3, n, 5, 2, device),
            n1: Gdn::new(n, false, device),
            c2: conv(n, n, 5, 2, device),
            n2: Gdn::new(n, false, device),
            c3: conv(n, n, 5, 2, device),
            n3: Gdn::new(n, false, device),
            c4: conv(n, m, 5, 2, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.n1.forward(self.c1.forward(x));
        let x = self.n2.forward(self.c2.forward(x));
        let x = self.n3.forward(self.c3.forward(x));
        self.c4.forward(x)
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
}

impl Synthesis {
    pub fn new(n: usize, m: usize, device: &Device) -> Self {
        Self {
            d1: deconv(m, n, 5, 2, device),
            n1: Gdn::new(n, true, device),
            d2: deconv(n, n, 5, 2, device),
            n2: Gdn::new(n, true, device),
            d3: deconv(n, n, 5, 2, device),
            n3: Gdn::new(n, true, device),
            d4: deconv(n, 3, 5, 2, device),
        }
    }

    pub fn forward(&self, y: Tensor<4>) -> Tensor<4> {
        let x = self.n1.forward(self.d1.forward(y));
        let x = self.n2.forward(self.d2.forward(x));
        let x = self.n3.forward(self.d3.forward(x));
        self.d4.forward(x)
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
            Self {
                d1: deconv(n, m, 5, 2, device),
                d2: deconv(m, m * 3 / 2, 5, 2, device),
                c3: conv(m * 3 / 2, 2 * m, 3, 1, device),
                mean_scale,
            }
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
        IntegerHyperSynthesis {
            layers: vec![
                FixedConv::from_deconv(&self.d1, hidden),
                FixedConv::from_deconv(&self.d2, hidden),
                FixedConv::from_conv(&self.c3, last),
            ],
            mean_scale: self.mean_scale,
        }
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
    use super::*;
    use crate::models::to_host;
    use crate::nn::fixed::to_float;

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
