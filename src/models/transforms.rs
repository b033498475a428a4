//! Analysis/synthesis transforms (Ballé 2017/2018, Minnen 2018) and their hyper counterparts.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};

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
